"""Which shard the current process is writing for; file sinks use it to pick their path."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["ShardInfo", "current_shard", "shard_scope"]


@dataclass(frozen=True)
class ShardInfo:
    """The shard this process writes for: its initial subjects ``[start, stop)`` and its parts
    ``first_part .. stop_part-1`` of ``parts`` (arriving subjects belong to parts too).
    ``in_driver``: the shard runs in the driver's process (an in-process run). ``run_id`` names the
    run's lineage (a resumed run keeps its checkpoint's): sinks that record progress key it by that.
    A tick's timestamp is ``timestamp_start + tick * tick_ms``."""

    index: int = 0
    count: int = 1
    start: int = 0
    stop: int = 0
    parts: int = 1
    first_part: int = 0
    stop_part: int = 1
    in_driver: bool = True
    run_id: str = ""
    tick_ms: int = 1
    timestamp_start: int = 0


_current: ShardInfo = ShardInfo()


def current_shard() -> ShardInfo:
    """The shard this process is running (shard 0 of 1 in an in-process run)."""
    return _current


@contextlib.contextmanager
def shard_scope(info: ShardInfo) -> Iterator[ShardInfo]:
    """Make ``info`` the current shard for the duration of the block."""
    global _current
    previous, _current = _current, info
    try:
        yield info
    finally:
        _current = previous
