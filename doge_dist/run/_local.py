"""The in-process backend: every shard of the plan in this process, no Ray."""

from __future__ import annotations

import time
from collections.abc import Callable

from ._closing import raise_collected
from ._driver import drive
from ._plan import RunControls, RunPlan, WindowReport
from ._result import RunResult, ShardResult
from ._shard import ShardWorker

__all__ = ["LocalBackend", "run_local"]


class LocalBackend:
    """Runs every shard of the plan in this process, one after another per step."""

    def __init__(self, plan: RunPlan) -> None:
        self.workers = [ShardWorker(plan, layout, in_driver=True) for layout in plan.layouts]
        self.timings: dict[str, float] = {}

    def begin(self, should_stop: Callable[[], bool] | None = None) -> None:
        started = time.perf_counter()
        for worker in self.workers:
            worker.begin(should_stop)
        self.timings["create_s"] = time.perf_counter() - started

    def step(self, t0: int, t1: int, budget: int | None, checkpoint: bool = False) -> list[WindowReport]:
        return [worker.step(t0, t1, budget, checkpoint) for worker in self.workers]

    def checkpoint_now(self, tick: int) -> list[WindowReport]:
        return [worker.checkpoint_now(tick) for worker in self.workers]

    def abandon(self) -> list[WindowReport]:
        return [worker.abandon() for worker in self.workers]

    def finish(self, ticks_done: int) -> list[ShardResult]:
        results, errors = [], []
        for worker in self.workers:
            result, errs = worker.finish(ticks_done)
            results.append(result)
            errors.extend(errs)
        if errors:
            for error in errors:
                try:
                    error.shard_results = results  # type: ignore[attr-defined]
                except AttributeError:
                    pass
        raise_collected(errors, "another sink failed to close")
        return results


def run_local(plan: RunPlan, controls: RunControls) -> RunResult:
    """Run the whole population in this process."""
    return drive(plan, LocalBackend(plan), controls)
