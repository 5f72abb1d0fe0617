"""The run loop shared by the in-process and the Ray backends: windows, pacing, progress, stopping."""

from __future__ import annotations

import contextlib
import random as _py_random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .._errors import RunInterrupted
from ..engine._keyed import seed_key
from . import _schedule
from ._result import Progress, RunResult, ShardResult

if TYPE_CHECKING:
    from ..model._compiled import CompiledModel
    from ..model._generator import DataOnlineGenerator

__all__ = ["RunPlan", "WindowReport", "Backend", "drive", "merge_shards", "close_all", "raise_collected",
           "sink_failures"]


@dataclass
class RunPlan:
    """Everything a run needs, decided on the driver before any subject exists."""

    model: CompiledModel
    shards: list[tuple[int, int]]
    run_key: int
    ticks: int | None
    window: int
    fixed_window: bool
    realtime: bool
    speed: float
    progress: Callable[[Progress], None] | None
    stop_events: list[threading.Event] = field(default_factory=list)
    keep_workers: bool = False
    worker_setup: Callable[[], None] | None = None

    @classmethod
    def build(cls, gen: DataOnlineGenerator, *, workers: int, window: int | None, realtime: bool,
              speed: float, progress: Callable[[Progress], None] | None,
              stop_events: list[threading.Event], keep_workers: bool = False,
              worker_setup: Callable[[], None] | None = None) -> RunPlan:
        model = gen.compile()
        # no empty shards: fewer subjects than workers means fewer shards
        shards = _schedule.partition(gen.subjects_num, min(workers, max(1, gen.subjects_num)))
        for sink in model.sinks:  # sinks that can tell a bad plan from a good one say so now
            check = getattr(sink, "check_plan", None)
            if callable(check):
                check(len(shards))
        for sink in model.sinks:  # then the I/O checks (connect, reflect or create a table)
            prepare = getattr(sink, "prepare", None)
            if callable(prepare):
                prepare()
        return cls(
            model=model,
            shards=shards,
            run_key=seed_key(gen.seed) if gen.seed is not None else _py_random.getrandbits(64),
            ticks=gen.ticks_num,
            window=window or _schedule.default_window(gen.ticks_num, realtime),
            fixed_window=window is not None or realtime,
            realtime=realtime,
            speed=float(speed),
            progress=progress,
            stop_events=stop_events,
            keep_workers=keep_workers,
            worker_setup=worker_setup,
        )

    def stop_requested(self) -> bool:
        return any(event.is_set() for event in self.stop_events)


@dataclass
class WindowReport:
    """What one shard reports after a window."""

    shard: int
    compute_s: float
    total_events: int
    events_by_sink: dict[str, int]
    failed_by_sink: dict[str, int] = field(default_factory=dict)


class Backend(Protocol):
    """One runner interface, two implementations (in-process and Ray)."""

    def begin(self) -> None: ...
    def run_window(self, t0: int, t1: int) -> list[WindowReport]: ...
    def finish(self, ticks_done: int) -> list[ShardResult]: ...


def merge_shards(shards: list[ShardResult], *, subjects: int, ticks: int, elapsed_s: float,
                 workers: int, window: int, seed: int | None, stopped: bool, max_lag_s: float,
                 events_by_transition: dict[str, int]) -> RunResult:
    """Sum per-shard counts into one RunResult."""
    stats: dict[str, dict[str, int]] = {}
    for shard in shards:
        for name, numbers in shard.sink_stats.items():
            slot = stats.setdefault(name, {})
            for key, value in numbers.items():
                if isinstance(value, (int, float)):
                    slot[key] = slot.get(key, 0) + value
    return RunResult(
        events_by_trigger=_add_counts([s.events_by_trigger for s in shards]),
        vetoed_by_trigger=_add_counts([s.vetoed_by_trigger for s in shards]),
        events_by_sink=_add_counts([s.events_by_sink for s in shards]),
        events_by_transition=events_by_transition,
        total_events=sum(s.total_events for s in shards),
        total_vetoed=sum(s.total_vetoed for s in shards),
        subjects=subjects,
        ticks=ticks,
        elapsed_s=elapsed_s,
        workers=workers,
        window=window,
        seed=seed,
        stopped=stopped,
        max_lag_s=max_lag_s,
        sink_stats=stats,
        shards=shards,
    )


def close_all(sinks: list[Any], names: list[str]) -> tuple[dict[str, dict[str, int]], list[BaseException]]:
    """Close every sink once; collect stats and errors instead of stopping at the first error."""
    errors: list[BaseException] = []
    stats: dict[str, dict[str, int]] = {}
    for sink, name in zip(sinks, names):
        try:
            sink.close()
        except BaseException as exc:  # noqa: BLE001 - every sink must get its close()
            errors.append(exc)
        numbers = _sink_stats(sink)
        if numbers is not None:
            stats[name] = numbers
    return stats, errors


def raise_collected(errors: list[BaseException], what: str) -> None:
    """Raise the first error, with the others attached as notes (``what`` names them)."""
    if not errors:
        return
    first = errors[0]
    for extra in errors[1:]:
        if hasattr(first, "add_note"):
            first.add_note(f"{what}: {extra!r}")
    raise first


def _sink_stats(sink: Any) -> dict[str, int] | None:
    """A sink's ``stats()`` as a dict of numbers, or None when it has none or it is not usable
    (a broken or foreign ``stats`` must not turn a finished run into a failure)."""
    stats_fn = getattr(sink, "stats", None)
    if not callable(stats_fn):
        return None
    try:
        raw = stats_fn()
        return {str(k): v for k, v in dict(raw).items() if isinstance(v, (int, float))}
    except Exception:  # noqa: BLE001
        return None


@contextlib.contextmanager
def _sigint_stops(event: threading.Event) -> Iterator[list[bool]]:
    """While running in the main thread with Python's default Ctrl-C handler, the first Ctrl-C asks
    for a stop at the next window boundary and the second interrupts at once."""
    hit = [False]
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield hit
        return

    def handler(signum, frame):  # noqa: ARG001
        if hit[0]:
            raise KeyboardInterrupt
        hit[0] = True
        event.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield hit
    finally:
        signal.signal(signal.SIGINT, previous)


def drive(gen: DataOnlineGenerator, plan: RunPlan, backend: Backend) -> RunResult:
    """Run windows in lockstep until the ticks are done or a stop is requested; close at the end."""
    started = time.perf_counter()
    ticks_done = 0
    stopped = False
    max_lag = 0.0
    window = plan.window
    sigint = threading.Event()
    plan.stop_events.append(sigint)
    failure: BaseException | None = None
    with _sigint_stops(sigint) as hit:
        try:
            backend.begin()
            clock_start = time.monotonic()
            while plan.ticks is None or ticks_done < plan.ticks:
                if plan.stop_requested():
                    stopped = True
                    break
                t0, t1 = _schedule.window_bounds(ticks_done, window, plan.ticks)
                lag = 0.0
                if plan.realtime:
                    due = _schedule.realtime_due(clock_start, t0, gen.tick_ms, plan.speed)
                    lag = _sleep_until(due, plan)
                    if plan.stop_requested():
                        stopped = True
                        break
                    max_lag = max(max_lag, lag)
                window_start = time.perf_counter()
                reports = backend.run_window(t0, t1)
                wall = time.perf_counter() - window_start
                ticks_done = t1
                compute = max((r.compute_s for r in reports), default=0.0)
                window = _schedule.next_window(window, compute, max(wall - compute, 0.0),
                                               fixed=plan.fixed_window)
                if plan.progress is not None:  # shards report cumulative counts
                    plan.progress(Progress(ticks_done, plan.ticks, sum(r.total_events for r in reports),
                                           _add_counts([r.events_by_sink for r in reports]),
                                           time.perf_counter() - started, lag,
                                           _add_counts([r.failed_by_sink for r in reports])))
        except BaseException as exc:  # noqa: BLE001 - sinks are closed below, then it is re-raised
            failure = exc
        shard_results: list[ShardResult] = []
        try:
            shard_results = backend.finish(ticks_done)
        except BaseException as close_exc:  # noqa: BLE001
            if failure is None:
                failure = close_exc
            elif hasattr(failure, "add_note"):
                failure.add_note(f"while closing sinks after the error: {close_exc!r}")
        plan.stop_events.remove(sigint)
        interrupted = hit[0]
    if failure is not None:
        raise failure
    counts = _add_counts([getattr(shard, "events_by_transition", {}) for shard in shard_results])
    result = merge_shards(
        shard_results, subjects=gen.subjects_num, ticks=ticks_done,
        elapsed_s=time.perf_counter() - started, workers=len(plan.shards), window=window,
        seed=gen.seed, stopped=stopped, max_lag_s=max_lag, events_by_transition=counts,
    )
    if interrupted:
        raise RunInterrupted(f"interrupted by Ctrl-C after {ticks_done} ticks "
                             f"({result.total_events} events written, all sinks closed)", result)
    return result


def _sleep_until(due: float, plan: RunPlan) -> float:
    """Sleep until ``due`` (monotonic seconds) in short slices so a stop is noticed; return lag."""
    while True:
        remaining = due - time.monotonic()
        if remaining <= 0:
            return -remaining
        if plan.stop_requested():
            return 0.0
        time.sleep(min(remaining, 0.05))


def _add_counts(dicts: list[dict[str, int]]) -> dict[str, int]:
    """Key-wise sum of count dicts (shards' counts into one)."""
    out: dict[str, int] = {}
    for d in dicts:
        for key, value in d.items():
            out[key] = out.get(key, 0) + value
    return out


def sink_failures(sinks: list[Any], names: list[str]) -> dict[str, int]:
    """The ``failed`` count of each sink's stats() that has one above zero (in-flight messages
    are not failures yet), so progress shows delivery failures while a stream runs."""
    out: dict[str, int] = {}
    for sink, name in zip(sinks, names):
        numbers = _sink_stats(sink)
        if numbers and numbers.get("failed"):
            out[name] = int(numbers["failed"])
    return out
