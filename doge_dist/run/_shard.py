"""One shard's life: create its subjects, run windows, close its sinks. Used in-process and in Ray actors."""

from __future__ import annotations

import random as _py_random
import time
from collections.abc import Callable
from dataclasses import replace

from .._context import ShardInfo, shard_scope
from .._errors import SimulationError
from ..engine._arrivals import ArrivalSchedule
from ..engine._layout import ShardLayout
from ..engine._shard_engine import ShardEngine
from ._closing import close_all, sink_failures
from ._plan import OutputChunk, RunPlan, WindowReport
from ._result import ShardResult

__all__ = ["ShardWorker"]


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
                              in_driver=in_driver)
        settings = plan.settings
        if not in_driver and plan.driver_output:
            settings = replace(settings, record_output_keys=True)
        arrivals = None
        if plan.arrivals:
            arrivals = ArrivalSchedule(plan.arrivals, settings.run_key, layout.initial,
                                       timestamp_start=settings.timestamp_start, tick_ms=settings.tick_ms)
        self.engine = ShardEngine(plan.model, plan.factory, layout, settings, arrivals=arrivals,
                                  route_parts=plan.route_parts)
        self._saved_random = _py_random.getstate() if settings.reseed_python_random else None
        self.create_s = 0.0
        self.engine_s = 0.0
        self._closed: ShardResult | None = None

    def begin(self, should_stop: Callable[[], bool] | None = None) -> float:
        """Run the worker setup, start every sink's run, create the subjects; return seconds spent."""
        started = time.perf_counter()
        if self.plan.worker_setup is not None:  # e.g. the CLI's log masking, in this worker process
            self.plan.worker_setup()
        with shard_scope(self.info):
            for sink in self.engine.model.sinks:  # every run starts each sink afresh
                begin_run = getattr(sink, "begin_run", None)
                if callable(begin_run):
                    begin_run()
            self.engine.create_subjects(should_stop)
        self.create_s = time.perf_counter() - started
        return self.create_s

    def step(self, t0: int, t1: int, budget: int | None = None) -> WindowReport:
        """Run window ``[t0, t1)`` (or go on with it) for at most ``budget`` events."""
        started = time.perf_counter()
        engine = self.engine
        with shard_scope(self.info):
            if engine.in_window:
                complete = engine.resume(budget)
            elif engine.ticks_done >= t1:  # this shard finished the window in an earlier step
                complete = True
            else:
                complete = engine.run_window(t0, t1, budget)
        spent = time.perf_counter() - started
        self.engine_s += spent
        return self._report(spent, complete)

    def abandon(self) -> WindowReport:
        """End the current window where it stands (the load shape is over): count what it made."""
        started = time.perf_counter()
        with shard_scope(self.info):
            self.engine.abandon_window()
        report = self._report(time.perf_counter() - started, True)
        return report

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
        return report

    def run_window(self, t0: int, t1: int) -> WindowReport:
        """The whole window at once."""
        return self.step(t0, t1, None)

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

    def finish(self, ticks_done: int) -> tuple[ShardResult, list[BaseException]]:
        """Close this process's sinks (once, even when called again) and report the shard's counts."""
        if self._closed is not None:
            return self._closed, []
        started = time.perf_counter()
        model = self.engine.model
        with shard_scope(self.info):
            stats, errors = close_all(model.sinks, model.sink_names)
        if self._saved_random is not None:
            _py_random.setstate(self._saved_random)
        engine = self.engine
        events, vetoed = engine.counts_by_trigger()
        self._closed = ShardResult(
            shard=self.info.index, start=self.info.start, stop=self.info.stop, ticks=ticks_done,
            total_events=engine.total_events(), total_vetoed=int(engine.vetoed.sum()),
            events_by_trigger=events, vetoed_by_trigger=vetoed,
            events_by_sink=engine.counts_by_sink(), sink_stats=stats,
            create_s=self.create_s, engine_s=self.engine_s, close_s=time.perf_counter() - started,
            events_by_transition=engine.counts_by_transition(), created=engine.created,
            departed=engine.departed,
        )
        return self._closed, errors
