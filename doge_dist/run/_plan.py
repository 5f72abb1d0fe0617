"""The run plan: everything a run needs, decided on the driver before any subject exists, as plain data.

Backends and shards read the plan; nothing reads the generator behind it. What only the driver
needs and cannot travel (the progress callback, stop events) lives in ``RunControls``.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .._errors import ModelError
from ..engine._layout import ShardLayout
from ..engine._shard_engine import EngineSettings
from ..model._arrivals import ArrivalStream
from ..model._vocabulary import sink_flag
from ._checkpoint import Manifest
from ._pacer import Pacing
from ._result import Progress

if TYPE_CHECKING:
    from ..model._compiled import CompiledModel
    from ..model._generator import DataOnlineGenerator

__all__ = ["RunPlan", "RunControls", "WindowReport", "OutputChunk", "timeline_bucket"]

TIMELINE_BUCKETS = 1000  # a bounded run's timeline has at most about this many buckets


def timeline_bucket(ticks: int | None, tick_ms: int) -> int:
    """Ticks per timeline bucket: about TIMELINE_BUCKETS buckets over a bounded run, one simulated
    minute (at least one tick) per bucket for an unbounded one."""
    if ticks is not None:
        return max(1, math.ceil(ticks / TIMELINE_BUCKETS))
    return max(1, 60_000 // tick_ms)


@dataclass
class RunPlan:
    """What every shard and backend reads: the model, the population layout, the run's settings."""

    model: CompiledModel
    factory: Any
    layouts: list[ShardLayout]
    settings: EngineSettings
    arrivals: list[ArrivalStream]
    subjects: int
    ticks: int | None
    seed: int | None
    window: int
    fixed_window: bool
    pacing: Pacing
    route_parts: bool = False
    keep_workers: bool = False
    worker_setup: Callable[[], None] | None = None
    run_id: str = ""                      # one per run lineage: a resumed run keeps its checkpoint's
    start_tick: int = 0                   # the first tick of this run (a resumed run goes on from there)
    checkpoint_url: str | None = None     # where checkpoints go (local folder or fsspec URL)
    checkpoint_every: int | None = None   # ticks between checkpoints (None: only at the end)
    checkpoint_keep: int = 2              # complete checkpoints kept (0: all)
    resume: Manifest | None = None        # the checkpoint this run continues
    max_restarts: int = 0                 # replacements allowed per shard when its worker is lost
    resent_on_resume: dict[str, int] = field(default_factory=dict)  # by sink: events sent again
    fingerprint: dict[str, Any] = field(default_factory=dict)

    @property
    def end_tick(self) -> int | None:
        return None if self.ticks is None else self.start_tick + self.ticks

    @property
    def shards(self) -> list[tuple[int, int]]:
        """Each shard's initial ``[start, stop)`` subject range."""
        return [(layout.start, layout.stop) for layout in self.layouts]

    @property
    def parts(self) -> int:
        return self.layouts[0].parts

    @property
    def driver_output(self) -> bool:
        """Whether some sink writes to the driver's stdout (its lines travel with window reports)."""
        return any(sink_flag(sink, "driver_output") for sink in self.model.sinks)

    @classmethod
    def build(cls, gen: DataOnlineGenerator, *, workers: int, window: int | None, pacing: Pacing,
              keep_workers: bool = False, worker_setup: Callable[[], None] | None = None,
              parts: int | None = None, run_key: int, checkpoint_dir: str | None = None,
              checkpoint_every: int | None = None, checkpoint_keep: int = 2, resume: Manifest | None = None,
              max_restarts: int = 0) -> RunPlan:
        model = gen.compile()
        # what a checkpoint records to refuse a different model (reads the callbacks' source: only then)
        fingerprint = gen.fingerprint_components() if checkpoint_dir or resume is not None else {}
        shard_count = workers if gen.arrivals else min(workers, max(1, gen.subjects_num))
        if resume is not None:
            check_resumable(resume, fingerprint)
            if parts is not None and parts != resume.parts:
                raise ModelError(f"parts={parts}, but the checkpoint at tick {resume.tick} has "
                                 f"{resume.parts} parts: a resumed run keeps its checkpoint's parts")
            parts = resume.parts
            run_key = int(resume.data["run_key"])
            shard_count = min(workers, resume.parts)
        part_count = _part_count(model.sinks, parts, shard_count)
        if shard_count > part_count:
            raise ModelError(f"{workers} workers but the output has {part_count} parts: each worker writes "
                             f"whole parts, so use at most {part_count} workers (or more parts)")
        for sink in model.sinks:  # sinks that can tell a bad plan from a good one say so now
            check = getattr(sink, "check_plan", None)
            if callable(check):
                check(shard_count)
        for sink in model.sinks:  # then the I/O checks (connect, reflect or create a table)
            prepare = getattr(sink, "prepare", None)
            if callable(prepare):
                prepare()
        layouts = ShardLayout.plan(gen.subjects_num, part_count, shard_count)
        if resume is not None and tuple(layouts[0].bounds) != resume.bounds:
            raise ModelError("the checkpoint's population split does not match this run's (subjects_num or "
                             "parts differ)")
        settings = EngineSettings(
            run_key=run_key, tick_ms=gen.tick_ms, timestamp_start=gen.timestamp_start,
            reseed_python_random=gen.reseed_python_random and gen.seed is not None,
            keyed_callbacks=gen.seed is not None, drop_final=gen.drop_final,
            timeline_bucket=timeline_bucket(gen.ticks_num, gen.tick_ms), track_changes=bool(checkpoint_dir),
        )
        from ._schedule import default_window

        return cls(
            model=model, factory=gen.subject_factory, layouts=layouts, settings=settings,
            arrivals=list(gen.arrivals), subjects=gen.subjects_num, ticks=gen.ticks_num, seed=gen.seed,
            window=window or default_window(gen.ticks_num, pacing.mode == "clock"),
            fixed_window=window is not None or pacing.mode == "clock", pacing=pacing,
            route_parts=any(sink_flag(s, "uses_parts") for s in model.sinks),
            keep_workers=keep_workers, worker_setup=worker_setup,
            run_id=str(resume.data["run_id"]) if resume is not None else uuid.uuid4().hex[:16],
            start_tick=resume.tick if resume is not None else 0,
            checkpoint_url=checkpoint_dir, checkpoint_every=checkpoint_every, checkpoint_keep=checkpoint_keep,
            resume=resume,
            max_restarts=max_restarts, fingerprint=fingerprint,
            resent_on_resume=resent_on_resume(resume, model) if resume is not None else {},
        )


def resent_on_resume(manifest: Manifest, model: CompiledModel) -> dict[str, int]:
    """Events a resumed run sends again to sinks that cannot put themselves back (no ``resume``): when
    the run that wrote the checkpoint went on past it and then failed, what it sent after it."""
    from ._checkpoint import read_run_status

    status = read_run_status(manifest)
    if not status or status.get("run_id") != manifest.data.get("run_id"):
        return {}
    if int(status.get("ticks_reached") or 0) <= manifest.tick:
        return {}
    sent = status.get("events_by_sink") or {}
    at_checkpoint: dict[str, int] = {}
    for counts in (manifest.data.get("events_by_sink_by_shard") or {}).values():
        for name, value in counts.items():
            at_checkpoint[name] = at_checkpoint.get(name, 0) + int(value)
    out = {}
    for sink, name in zip(model.sinks, model.sink_names):
        if callable(getattr(sink, "resume", None)) or name not in sent:
            continue
        again = int(sent[name]) - at_checkpoint.get(name, 0)
        if again > 0:
            out[name] = again
    return out


#: fingerprint components a resumed run may change: its length and where its events go
_RESUME_MAY_CHANGE = ("ticks_num", "sinks")


def check_resumable(manifest: Manifest, fingerprint: dict[str, Any]) -> None:
    """ModelError naming what differs between the model and the checkpoint it should continue."""
    saved = manifest.data.get("fingerprint", {})
    changed = []
    for key in sorted(set(saved) | set(fingerprint)):
        if key in _RESUME_MAY_CHANGE or saved.get(key) == fingerprint.get(key):
            continue
        if key == "transitions":
            old, new = saved.get(key, {}), fingerprint.get(key, {})
            names = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            changed.append(f"transitions {names}")
        elif key in ("seed", "subjects_num", "tick_ms", "timestamp_start", "drop_final"):
            changed.append(f"{key} (checkpoint {saved.get(key)!r}, now {fingerprint.get(key)!r})")
        else:
            changed.append(key)
    if changed:
        raise ModelError(f"cannot resume from the checkpoint at tick {manifest.tick} ({manifest.url}): the "
                         f"model differs in {'; '.join(changed)}")


def _part_count(sinks: list[Any], parts: int | None, shards: int) -> int:
    """The number of parts: what the part-writing sinks (``{part}`` files) and ``parts=`` say, else one
    per shard. Sinks that disagree are a ModelError naming them."""
    declared = {}
    for sink in sinks:
        count = getattr(sink, "parts", None)  # a part-routed sink may leave the count to the run
        if sink_flag(sink, "uses_parts") and isinstance(count, int) and not isinstance(count, bool):
            declared[getattr(sink, "name", type(sink).__name__)] = count
    if parts is not None:
        if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
            raise ModelError(f"parts must be an integer >= 1, got {parts!r}")
        declared["parts="] = parts
    values = set(declared.values())
    if len(values) > 1:
        raise ModelError(f"the sinks split the population into different numbers of parts: {declared}; "
                         "give every {part} sink the same parts=")
    return values.pop() if values else shards


@dataclass
class RunControls:
    """What only the driver holds: the progress callback and the events that ask for a stop."""

    progress: Callable[[Progress], None] | None = None
    stop_events: list[threading.Event] = field(default_factory=list)

    def stop_requested(self) -> bool:
        return any(event.is_set() for event in self.stop_events)


@dataclass
class OutputChunk:
    """Lines a driver-output sink produced in a shard, with the (tick, subject) of each."""

    sink: int
    keys: np.ndarray  # int64 (n, 2): tick, subject index
    lines: list[str]


@dataclass
class WindowReport:
    """What one shard reports after a step of a window (plain data)."""

    shard: int
    compute_s: float
    total_events: int
    events_by_sink: dict[str, int]
    failed_by_sink: dict[str, int] = field(default_factory=dict)
    complete: bool = True
    output: list[OutputChunk] = field(default_factory=list)
    timeline: dict[int, list[int]] = field(default_factory=dict)     # bucket -> events per transition
    population: dict[int, list[int]] = field(default_factory=dict)   # bucket -> [created, departed]
    created: int = 0
    departed: int = 0
    ticks_done: int = 0
    snapshots: list[dict[str, Any]] = field(default_factory=list)   # checkpoint parts written since last
    checkpoint: dict[str, Any] | None = None  # sink positions etc. captured at this window's checkpoint
