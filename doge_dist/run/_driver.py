"""The driver loop shared by the in-process and the Ray backends: windows, steps, pacing, progress, stop.

The driver never touches subjects or events: it asks the pacer when the next window (or event
budget) may go, tells the backend to run it, and folds the shards' plain-data reports together.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator
from typing import Protocol

from .._errors import RunInterrupted
from ..engine._shard_engine import CreationStopped
from . import _schedule
from ._checkpoint import CheckpointLog, write_run_status
from ._output import OUTPUT_WINDOW_LINES, OutputMerger
from ._pacer import make_pacer
from ._plan import RunControls, RunPlan, WindowReport
from ._result import Progress, RunResult, ShardResult, Timeline, add_counts, merge_shards

__all__ = ["Backend", "drive"]

LOGGER = logging.getLogger("doge_dist")


class Backend(Protocol):
    """One runner interface, two implementations (in-process and Ray)."""

    timings: dict[str, float]

    def begin(self, should_stop) -> None: ...
    def step(self, t0: int, t1: int, budget: int | None, checkpoint: bool) -> list[WindowReport]: ...
    def abandon(self) -> list[WindowReport]: ...
    def checkpoint_now(self, tick: int) -> list[WindowReport]: ...
    def finish(self, ticks_done: int) -> list[ShardResult]: ...


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


class _Window:
    """Folds the shards' reports of each window into the run's timeline and population."""

    def __init__(self, plan: RunPlan) -> None:
        model = plan.model
        self.timeline = Timeline(plan.settings.timeline_bucket, plan.settings.tick_ms,
                                 plan.settings.timestamp_start, [tr.trigger for tr in model.transitions],
                                 initial=plan.subjects)
        self.output = OutputMerger(model.sinks)

    def fold(self, reports: list[WindowReport]) -> None:
        timeline = self.timeline
        for report in reports:
            for bucket, counts in report.timeline.items():
                slot = timeline.events.get(bucket)
                timeline.events[bucket] = counts if slot is None else [a + b for a, b in zip(slot, counts)]
            for bucket, (born, gone) in report.population.items():
                if born:
                    timeline.created[bucket] = timeline.created.get(bucket, 0) + born
                if gone:
                    timeline.departed[bucket] = timeline.departed.get(bucket, 0) + gone


def _checkpoint_log(plan: RunPlan) -> CheckpointLog | None:
    """The driver's record of checkpoints (None when the run writes none)."""
    if not plan.checkpoint_url:
        return None
    layouts = plan.layouts
    base = {"run_id": plan.run_id, "fingerprint": plan.fingerprint, "seed": plan.seed,
            "run_key": str(plan.settings.run_key), "parts": plan.parts, "bounds": list(layouts[0].bounds),
            "shards": [[layout.first_part, layout.stop_part] for layout in layouts],
            "tick_ms": plan.settings.tick_ms, "timestamp_start": plan.settings.timestamp_start,
            "first_tick": plan.start_tick}
    log = CheckpointLog(plan.checkpoint_url, len(layouts), base, keep=plan.checkpoint_keep)
    write_run_status(log.store, {"run_id": plan.run_id, "status": "running", "first_tick": plan.start_tick})
    return log


def _finish_log(log: CheckpointLog, plan: RunPlan, status: str, ticks_done: int,
                failure: BaseException | None, events_by_sink: dict[str, int]) -> None:
    """Say in RUN.json how the run ended, which checkpoint finishes it with ``--resume``, and how many
    events each sink got (a resume after a failure sends those after the checkpoint again)."""
    try:
        write_run_status(log.store, {
            "run_id": plan.run_id, "status": status, "first_tick": plan.start_tick,
            "ticks_reached": ticks_done, "latest_checkpoint": log.latest,
            "error": None if failure is None else repr(failure)[:2000], "events_by_sink": events_by_sink})
    except OSError as exc:  # pragma: no cover - the run's own outcome matters more
        LOGGER.warning("could not write %s: %s", log.store.path("RUN.json"), exc)


def _resume_notes(plan: RunPlan) -> list[str]:
    if not plan.resent_on_resume:
        return []
    return [f"resumed from tick {plan.start_tick}, which the run before had gone past: sinks without "
            f"resume() got these events again: {plan.resent_on_resume}"]


def drive(plan: RunPlan, backend: Backend, controls: RunControls) -> RunResult:
    """Run windows in lockstep until the ticks are done, a load shape ends or a stop is requested;
    close every shard's sinks at the end, also on failure (the error then carries ``.result``)."""
    started = time.perf_counter()
    ticks_done = plan.start_tick
    end_tick = plan.end_tick
    every = plan.checkpoint_every
    log = _checkpoint_log(plan)
    if log is not None and hasattr(backend, "latest_manifest"):
        backend.latest_manifest = log.manifest  # a lost shard's replacement starts from it
    ended = False
    began = False
    stopped = False
    max_lag = 0.0
    window = plan.window
    pacer = make_pacer(plan.pacing, tick_ms=plan.settings.tick_ms, shards=len(plan.layouts))
    folded = _Window(plan)
    sigint = threading.Event()
    controls.stop_events.append(sigint)
    stop = controls.stop_requested
    failure: BaseException | None = None
    simulate_started = None
    last_reports: list[WindowReport] = []
    with _sigint_stops(sigint) as hit:
        try:
            try:
                backend.begin(stop)
                began = True
            except CreationStopped:
                stopped = True
            simulate_started = time.perf_counter()
            pacer.begin()
            while not stopped and (end_tick is None or ticks_done < end_tick):
                if stop():
                    stopped = True
                    break
                if pacer.finished():
                    break
                window = pacer.window_ticks(window) if pacer.kind == "rate" else window
                t0, t1 = _schedule.window_bounds(ticks_done, window, end_tick)
                if every:  # checkpoints fall on multiples of checkpoint_every, whatever the windows
                    t1 = min(t1, (t0 // every + 1) * every)
                checkpoint = log is not None and bool(every) and t1 % every == 0
                lag = pacer.wait_window(t0, stop)
                if stop():
                    stopped = True
                    break
                max_lag = max(max_lag, lag)
                window_start = time.perf_counter()
                compute = 0.0
                while True:
                    if pacer.finished() and not stop():  # the load shape is over: end mid-window
                        reports = backend.abandon()
                        folded.output.add([c for r in reports for c in r.output])
                        folded.fold(reports)
                        last_reports = reports
                        t1 = max(r.ticks_done for r in reports)
                        ended = True
                        break
                    budget = None if stop() else pacer.budget()
                    reports = backend.step(t0, t1, budget, checkpoint)
                    if log is not None:
                        log.add(reports)
                    done = all(r.complete for r in reports)
                    pacer.record(sum(r.total_events for r in reports), window_done=done, ticks=t1 - t0)
                    folded.output.add([c for r in reports for c in r.output])
                    compute += max((r.compute_s for r in reports), default=0.0)
                    folded.fold(reports)
                    last_reports = reports
                    if done:
                        break
                    if not stop():
                        pacer.wait_step(stop)
                wall = time.perf_counter() - window_start
                lines = folded.output.flush()
                ticks_done = t1
                if pacer.kind == "none":
                    window = _schedule.next_window(window, compute, max(wall - compute, 0.0),
                                                   fixed=plan.fixed_window)
                if lines and not plan.fixed_window:  # keep a window's printed lines bounded
                    window = max(1, min(window, (t1 - t0) * OUTPUT_WINDOW_LINES // lines))
                if ended:
                    break
                if controls.progress is not None:  # shards report cumulative counts
                    target, achieved = pacer.rates()
                    controls.progress(Progress(
                        ticks_done - plan.start_tick, plan.ticks, sum(r.total_events for r in last_reports),
                        add_counts([r.events_by_sink for r in last_reports]), time.perf_counter() - started,
                        lag, add_counts([r.failed_by_sink for r in last_reports]),
                        live=sum(r.created - r.departed for r in last_reports),
                        target_rate=target, achieved_rate=achieved))
        except BaseException as exc:  # noqa: BLE001 - sinks are closed below, then it is re-raised
            failure = exc
        simulate_s = time.perf_counter() - (simulate_started or started)
        if log is not None:
            try:
                if failure is None and began and not ended:  # the end-of-run (or stop) checkpoint
                    log.add(backend.checkpoint_now(ticks_done))
            except BaseException as exc:  # noqa: BLE001 - a checkpoint failure fails the run, sinks closed
                failure = exc
        shard_results: list[ShardResult] = []
        close_started = time.perf_counter()
        try:
            folded.output.flush()
            shard_results = backend.finish(ticks_done)
        except BaseException as close_exc:  # noqa: BLE001
            shard_results = list(getattr(close_exc, "shard_results", []) or [])
            if failure is None:
                failure = close_exc
            elif hasattr(failure, "add_note"):
                failure.add_note(f"while closing sinks after the error: {close_exc!r}")
        controls.stop_events.remove(sigint)
        interrupted = hit[0]
    timings = dict(getattr(backend, "timings", {}))
    timings.update(simulate_s=simulate_s, close_s=time.perf_counter() - close_started,
                   total_s=time.perf_counter() - started + timings.get("ray_start_s", 0.0))
    status = "failed" if failure is not None else ("stopped" if stopped or interrupted else "completed")
    if log is not None:
        try:
            log.complete_from_store()  # snapshots written but never reported (a failed window's)
        except (OSError, ValueError) as exc:  # pragma: no cover - the run's own outcome matters more
            LOGGER.warning("could not complete the checkpoints in %s: %s", log.store.url, exc)
    if failure is not None:  # how far the shards got (a failed window's tick counts)
        ticks_done = max([ticks_done, *(s.ticks for s in shard_results)])
    if log is not None:
        _finish_log(log, plan, status, ticks_done, failure,
                    add_counts([s.events_by_sink for s in shard_results]))
    result = merge_shards(
        shard_results, subjects=plan.subjects, ticks=ticks_done - plan.start_tick,
        elapsed_s=time.perf_counter() - started, workers=len(plan.layouts), window=window,
        seed=plan.seed, stopped=stopped or interrupted, max_lag_s=max_lag, status=status, timings=timings,
        timeline=folded.timeline, rate=pacer.report(), first_tick=plan.start_tick, run_id=plan.run_id,
        checkpoint=None if log is None else {"dir": plan.checkpoint_url, "latest_tick": log.latest,
                                             "written": log.completed},
        restarts=getattr(backend, "restarts_total", 0),
        possible_duplicates=add_counts([plan.resent_on_resume, getattr(backend, "possible_duplicates", {})]),
        notes=list(getattr(backend, "notes", [])) + _resume_notes(plan),
    )
    if failure is not None:
        try:
            failure.result = result  # type: ignore[attr-defined]
        except AttributeError:
            pass
        raise failure
    if interrupted:
        raise RunInterrupted(f"interrupted by Ctrl-C after {ticks_done} ticks "
                             f"({result.total_events} events written, all sinks closed)", result)
    return result
