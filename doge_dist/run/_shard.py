"""One shard's life: create (or restore) its subjects, run windows, take checkpoints, close its sinks.

Used in-process and in Ray actors. After a lost worker, a replacement ShardWorker restores the shard
from the last checkpoint (or starts it afresh), puts its sinks back where they were then, and replays
the windows up to where the other shards are: every draw is a function of (seed, subject, tick), so
the replay makes exactly the same events.
"""

from __future__ import annotations

import random as _py_random
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .._context import ShardInfo, shard_scope
from .._errors import SimulationError
from ..engine._arrivals import ArrivalSchedule
from ..engine._layout import ShardLayout
from ..engine._shard_engine import ShardEngine, ShardSnapshot
from ._checkpoint import Manifest, SnapshotWriter, read_part, read_shard
from ._closing import close_all, sink_failures, sink_stats
from ._plan import OutputChunk, RunPlan, WindowReport
from ._result import ShardResult

__all__ = ["ShardWorker", "sink_positions_for"]


def sink_positions_for(positions: dict[str, dict[str, Any]], name: str,
                                                 layout: ShardLayout) -> dict[str, Any]:
    """The positions recorded for sink ``name`` that belong to this shard (its parts, or its index)."""
    mine = {f"part:{p}" for p in layout.owned_parts} | {f"shard:{layout.index}"}
    return {key: value for key, value in positions.get(name, {}).items() if key in mine}


class ShardWorker:
    """Owns a ShardEngine and the sinks of its process.

    ``in_driver``: the shard runs in the driver's own process, so sinks that write to the driver's
    stdout (print) write directly; in a worker process they keep their lines for the window report.
    """

    def __init__(self, plan: RunPlan, layout: ShardLayout, *, in_driver: bool) -> None:
        self.plan = plan
        self.layout = layout
        self.info = ShardInfo(index=layout.index, count=layout.count, start=layout.start, stop=layout.stop,
                              parts=layout.parts, first_part=layout.first_part, stop_part=layout.stop_part,
                              in_driver=in_driver, run_id=plan.run_id, tick_ms=plan.settings.tick_ms,
                              timestamp_start=plan.settings.timestamp_start)
        settings = plan.settings
        if not in_driver and plan.driver_output:
            settings = replace(settings, record_output_keys=True)
        arrivals = None
        if plan.arrivals:
            arrivals = ArrivalSchedule(plan.arrivals, settings.run_key, layout.initial,
                                       timestamp_start=settings.timestamp_start, tick_ms=settings.tick_ms)
        self.engine = ShardEngine(plan.model, plan.factory, layout, settings, arrivals=arrivals,
                                  route_parts=plan.route_parts)
        self.engine.ticks_done = plan.start_tick
        self._saved_random = _py_random.getstate() if settings.reseed_python_random else None
        self.writer = SnapshotWriter(plan.checkpoint_url, layout.index) if plan.checkpoint_url else None
        self.create_s = 0.0
        self.engine_s = 0.0
        self._closed: ShardResult | None = None
        self._checkpoint: dict[str, Any] | None = None
        self.last_checkpoint: int | None = None
        self._stats_base: dict[str, dict[str, Any]] = {}  # a replacement's sink counts before its start

    # -- starting ------------------------------------------------------------------------------

    def _setup_process(self) -> None:
        if self.plan.worker_setup is not None:  # e.g. the CLI's log masking, in this worker process
            self.plan.worker_setup()

    def begin(self, should_stop: Callable[[], bool] | None = None) -> float:
        """Run the worker setup, start every sink's run, create (or restore) the subjects."""
        started = time.perf_counter()
        self._setup_process()
        with shard_scope(self.info):
            resume = self.plan.resume
            if resume is None:
                self._begin_sinks()
                self.engine.create_subjects(should_stop)
            else:
                self._restore(resume, counters=False)
                self._resume_sinks(resume.positions)
        self.create_s = time.perf_counter() - started
        return self.create_s

    def recover(self, manifest: Manifest | None, replay_to: int) -> WindowReport:
        """Take over a lost shard: restore it from ``manifest`` (None: from the run's start), put the
        sinks back to their positions then, and replay the windows up to tick ``replay_to``."""
        started = time.perf_counter()
        self._setup_process()
        with shard_scope(self.info):
            if manifest is None:
                resume = self.plan.resume
                if resume is None:
                    self.engine.create_subjects()
                    self._resume_sinks({})
                else:
                    self._restore(resume, counters=False)
                    self._resume_sinks(resume.positions)
            else:
                self._restore(manifest, counters=True)
                self._resume_sinks(manifest.positions)
        self.create_s = time.perf_counter() - started
        return self._replay(replay_to)

    def _restore(self, manifest: Manifest, *, counters: bool) -> None:
        """This shard's parts from a checkpoint; with ``counters``, its counts too (same run)."""
        parts = [read_part(manifest, p) for p in self.layout.owned_parts]
        own = read_shard(manifest, self.layout.index if counters else 0)
        snapshot = None
        if counters:  # the same run: its sinks' counts so far carry on from the checkpoint's
            self._stats_base = own.get("sink_stats") or {}
            snapshot = ShardSnapshot(ticks_done=own["ticks_done"], parts={}, events=own["events"],
                                     vetoed=own["vetoed"], created=own["created"], departed=own["departed"],
                                     factory=None, arrivals=None)
        self.engine.restore(parts, ticks_done=manifest.tick, factory=own["factory"], arrivals=own["arrivals"],
                            counters=snapshot)

    def _begin_sinks(self) -> None:
        for sink in self.engine.model.sinks:  # every run starts each sink afresh
            begin_run = getattr(sink, "begin_run", None)
            if callable(begin_run):
                begin_run()

    def _resume_sinks(self, positions: dict[str, dict[str, Any]]) -> None:
        """Put each sink back where the checkpoint recorded it (``resume``); a sink without ``resume``
        starts afresh (``begin_run``) and is at-least-once from there."""
        model = self.engine.model
        for sink, name in zip(model.sinks, model.sink_names):
            resume = getattr(sink, "resume", None)
            if callable(resume):
                resume(sink_positions_for(positions, name, self.layout))
                continue
            begin_run = getattr(sink, "begin_run", None)
            if callable(begin_run):
                begin_run()

    def _replay(self, replay_to: int) -> WindowReport:
        """Run the windows from the restored tick to ``replay_to``, cut at checkpoint ticks (where the
        sinks mark their positions as in the first run, and snapshots are taken again)."""
        engine = self.engine
        every = self.plan.checkpoint_every
        started = time.perf_counter()
        with shard_scope(self.info):
            while engine.ticks_done < replay_to:
                t0 = engine.ticks_done
                t1 = replay_to if not every else min(replay_to, (t0 // every + 1) * every)
                engine.run_window(t0, t1)
                self._end_window(t1, checkpoint=bool(every) and t1 % every == 0)
        self._drain_output()  # the driver printed these lines before the worker was lost
        report = self._report(time.perf_counter() - started, True)
        report.timeline, report.population = {}, {}
        return report

    # -- windows -------------------------------------------------------------------------------

    def step(self, t0: int, t1: int, budget: int | None = None, checkpoint: bool = False) -> WindowReport:
        """Run window ``[t0, t1)`` (or go on with it) for at most ``budget`` events; take a checkpoint
        at ``t1`` when the window completes and ``checkpoint`` is set."""
        started = time.perf_counter()
        engine = self.engine
        with shard_scope(self.info):
            if engine.in_window:
                complete = engine.resume(budget)
            elif engine.ticks_done >= t1:  # this shard finished the window in an earlier step
                complete = True
            else:
                complete = engine.run_window(t0, t1, budget)
            if complete and engine.ticks_done == t1 and not engine.in_window:
                self._end_window(t1, checkpoint)
        spent = time.perf_counter() - started
        self.engine_s += spent
        return self._report(spent, complete)

    def _end_window(self, tick: int, checkpoint: bool) -> None:
        """After a complete window: let sinks commit per window; take the checkpoint if one is due."""
        for sink in self.engine.model.sinks:
            end_window = getattr(sink, "end_window", None)
            if callable(end_window):
                end_window()
        if checkpoint:
            self.checkpoint(tick)

    def checkpoint(self, tick: int, *, inline: bool = False) -> None:
        """Record the sinks' positions now and write this shard's snapshot (in a forked child unless
        ``inline``); the report carries both."""
        if self.writer is None or self.last_checkpoint == tick:
            return
        model = self.engine.model
        positions: dict[str, dict[str, Any]] = {}
        for sink, name in zip(model.sinks, model.sink_names):
            take = getattr(sink, "checkpoint_positions", None)
            if callable(take):  # every checkpoint tick, also a skipped one: outputs stay identical
                positions[name] = take()
        stats = {name: numbers for sink, name in zip(model.sinks, model.sink_names)
                 if (numbers := sink_stats(sink)) is not None}
        self.writer.start(tick, self.engine.snapshot, positions, inline=inline,
                          extra={"sink_stats": self._add_base(stats)})  # snapshot(since) in the writer
        self.last_checkpoint = tick
        arrivals = self.engine.arrivals
        self._checkpoint = {"tick": tick, "shard": self.layout.index, "positions": positions,
                            "arrivals": arrivals.state() if arrivals is not None else None,
                            "total_events": self.engine.total_events(), "live": self.engine.live,
                            "events_by_sink": self.engine.counts_by_sink()}

    def abandon(self) -> WindowReport:
        """End the current window where it stands (the load shape is over): count what it made."""
        started = time.perf_counter()
        with shard_scope(self.info):
            self.engine.abandon_window()
        return self._report(time.perf_counter() - started, True)

    def run_window(self, t0: int, t1: int) -> WindowReport:
        """The whole window at once."""
        return self.step(t0, t1, None)

    def checkpoint_now(self, tick: int) -> WindowReport:
        """The end-of-run checkpoint: written before this returns; earlier ones are waited for too."""
        with shard_scope(self.info):
            self.checkpoint(tick, inline=True)
        report = self._report(0.0, True)
        if self.writer is not None:
            report.snapshots.extend(self.writer.poll(wait=True))
        return report

    # -- reporting -----------------------------------------------------------------------------

    def _report(self, spent: float, complete: bool) -> WindowReport:
        engine = self.engine
        model = engine.model
        report = WindowReport(engine.shard, spent, engine.total_events(), engine.counts_by_sink(),
                              sink_failures(model.sinks, model.sink_names), complete=complete,
                              output=self._drain_output(), created=engine.created, departed=engine.departed,
                              ticks_done=engine.ticks_done)
        if complete:
            report.timeline = {b: row.tolist() for b, row in engine.timeline.items()}
            report.population = {b: list(v) for b, v in engine.population.items()}
            engine.timeline, engine.population = {}, {}
        if self.writer is not None:
            report.snapshots = self.writer.poll()
        report.checkpoint, self._checkpoint = self._checkpoint, None
        return report

    def _drain_output(self) -> list[OutputChunk]:
        """Lines of driver-output sinks kept since the last report, with their (tick, subject) keys."""
        engine = self.engine
        if not engine._output_sinks:
            return []
        chunks = []
        for sid in engine._output_sinks:
            sink = engine.model.sinks[sid]
            lines = sink.drain()
            keys = engine.take_output_keys(sid)
            if len(lines) != len(keys):
                raise SimulationError(f"shard {engine.shard}: sink {engine.model.sink_names[sid]!r} kept "
                                      f"{len(lines)} lines for {len(keys)} events (a driver-output sink must "
                                      "keep exactly one entry per collect())", shard=engine.shard)
            if lines:
                chunks.append(OutputChunk(sid, keys, lines))
        return chunks

    def _add_base(self, stats: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Sink counts plus what a lost worker's sinks had counted up to the checkpoint it restarted from."""
        if not self._stats_base:
            return stats
        out = {name: dict(numbers) for name, numbers in stats.items()}
        for name, numbers in self._stats_base.items():
            slot = out.setdefault(name, {})
            for key, value in numbers.items():
                if isinstance(value, (int, float)):
                    slot[key] = slot.get(key, 0) + value
        return out

    def finish(self, ticks_done: int) -> tuple[ShardResult, list[BaseException]]:
        """Close this process's sinks (once, even when called again) and report the shard's counts."""
        if self._closed is not None:
            return self._closed, []
        started = time.perf_counter()
        model = self.engine.model
        with shard_scope(self.info):
            stats, errors = close_all(model.sinks, model.sink_names)
        stats = self._add_base(stats)
        if self.writer is not None:
            self.writer.poll(wait=True)
        if self._saved_random is not None:
            _py_random.setstate(self._saved_random)
        engine = self.engine
        events, vetoed = engine.counts_by_trigger()
        reached = max(ticks_done, engine.ticks_done, engine._tick_now + 1)  # a failed window: its tick
        self._closed = ShardResult(
            shard=self.info.index, start=self.info.start, stop=self.info.stop, ticks=reached,
            total_events=engine.total_events(), total_vetoed=int(engine.vetoed.sum()),
            events_by_trigger=events, vetoed_by_trigger=vetoed,
            events_by_sink=engine.counts_by_sink(), sink_stats=stats,
            create_s=self.create_s, engine_s=self.engine_s, close_s=time.perf_counter() - started,
            events_by_transition=engine.counts_by_transition(), created=engine.created,
            departed=engine.departed,
        )
        return self._closed, errors
