"""Sinks that need no server: printing (as in doge-datagen) and counting (for benchmarks and tests)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from .._context import current_shard
from ..model._vocabulary import EventSink, Transition
from ._pickling import PicklesAsDescription

__all__ = ["PrintingSink", "CountingSink"]


class PrintingSink(EventSink):
    """Prints ``format_function(timestamp, subject, transition)`` for every event.

    Its lines always reach the driver's stdout, in the order one process prints them: in a worker
    process (a Ray shard) they are kept and shipped with the window's report, and the driver prints
    every shard's lines sorted by (tick, subject index).
    """

    name = "print"
    driver_output = True

    def __init__(self, format_function: Callable[[int, Any, Transition], str]) -> None:
        self.format_function = format_function
        self.printed = 0
        self._kept: list[str] | None = None

    def begin_run(self) -> None:
        """Start counting afresh; keep lines for the driver when this process is a worker."""
        self.printed = 0
        self._kept = None if current_shard().in_driver else []

    def collect(self, timestamp: int, subject: Any, transition: Transition) -> None:
        line = self.format_function(timestamp, subject, transition)
        if self._kept is None:
            print(line)
        else:
            self._kept.append(str(line))
        self.printed += 1

    def drain(self) -> list[str]:
        """The lines kept since the last call (worker processes), one per collected event."""
        kept, self._kept = self._kept or [], [] if self._kept is not None else None
        return kept

    def emit(self, lines: list[str]) -> None:
        """Write lines shipped from the shards (called on the driver, in event order)."""
        if lines:
            sys.stdout.write("\n".join(lines) + "\n")

    def close(self) -> None:
        sys.stdout.flush()

    def stats(self) -> dict[str, int]:
        return {"delivered": self.printed}

    def __getstate__(self) -> dict[str, Any]:
        return {"format_function": self.format_function, "printed": 0, "_kept": None}


class CountingSink(PicklesAsDescription, EventSink):
    """Counts events and does nothing else: the cheapest possible sink.

    ``count`` is the events of the current run in this process; ``closed`` how often it was closed.
    """

    def __init__(self, name: str = "count") -> None:
        self.name = name
        self._reset()

    def _reset(self) -> None:
        self._count = 0
        self._closed = 0

    @property
    def count(self) -> int:
        return self._count

    @property
    def closed(self) -> int:
        return self._closed

    def begin_run(self) -> None:
        """Counts start at zero for each run."""
        self._count = 0

    def collect(self, timestamp: int, subject: Any, transition: Transition) -> None:
        self._count += 1

    def close(self) -> None:
        self._closed += 1

    def stats(self) -> dict[str, int]:
        return {"delivered": self._count}
