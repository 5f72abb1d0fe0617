"""One shard's life: create its subjects, run windows, close its sinks. Used in-process and in Ray actors."""

from __future__ import annotations

import random as _py_random
import time
from typing import Any

from .._context import ShardInfo, shard_scope
from ..engine._shard_engine import ShardEngine
from ._driver import WindowReport, close_all, sink_failures
from ._result import ShardResult

__all__ = ["ShardWorker"]


class ShardWorker:
    """Owns a ShardEngine and the sinks of its process."""

    def __init__(self, model: Any, factory: Any, shard: int, shard_count: int, start: int, stop: int, *,
                 run_key: int, tick_ms: int, timestamp_start: int, reseed_python_random: bool,
                 keyed_callbacks: bool = True, worker_setup: Any = None) -> None:
        self.info = ShardInfo(index=shard, count=shard_count, start=start, stop=stop)
        self.engine = ShardEngine(model, factory, start, stop, run_key=run_key, tick_ms=tick_ms,
                                  timestamp_start=timestamp_start,
                                  reseed_python_random=reseed_python_random,
                                  keyed_callbacks=keyed_callbacks, shard=shard)
        self._saved_random = _py_random.getstate() if reseed_python_random else None
        self.create_s = 0.0
        self.engine_s = 0.0
        self._closed: ShardResult | None = None
        self._worker_setup = worker_setup

    def begin(self) -> float:
        started = time.perf_counter()
        if self._worker_setup is not None:  # e.g. the CLI's log masking, in this worker process
            self._worker_setup()
        with shard_scope(self.info):
            for sink in self.engine.model.sinks:  # every run starts each sink afresh
                begin_run = getattr(sink, "begin_run", None)
                if callable(begin_run):
                    begin_run()
            self.engine.create_subjects()
        self.create_s = time.perf_counter() - started
        return self.create_s

    def run_window(self, t0: int, t1: int) -> WindowReport:
        started = time.perf_counter()
        with shard_scope(self.info):
            self.engine.run_window(t0, t1)
        spent = time.perf_counter() - started
        self.engine_s += spent
        model = self.engine.model
        return WindowReport(self.info.index, spent, self.engine.total_events(),
                            self.engine.counts_by_sink(), sink_failures(model.sinks, model.sink_names))

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
        events, vetoed = self.engine.counts_by_trigger()
        self._closed = ShardResult(
            shard=self.info.index, start=self.info.start, stop=self.info.stop, ticks=ticks_done,
            total_events=self.engine.total_events(), total_vetoed=int(self.engine.vetoed.sum()),
            events_by_trigger=events, vetoed_by_trigger=vetoed,
            events_by_sink=self.engine.counts_by_sink(), sink_stats=stats,
            create_s=self.create_s, engine_s=self.engine_s, close_s=time.perf_counter() - started,
            events_by_transition=self.engine.counts_by_transition(),
        )
        return self._closed, errors
