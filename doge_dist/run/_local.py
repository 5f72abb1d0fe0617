"""The in-process backend: one shard, this process, no Ray."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._driver import RunPlan, WindowReport, drive, raise_collected
from ._result import RunResult, ShardResult
from ._shard import ShardWorker

if TYPE_CHECKING:
    from ..model._generator import DataOnlineGenerator

__all__ = ["LocalBackend", "run_local"]


class LocalBackend:
    """Runs every shard of the plan in this process, one after another per window."""

    def __init__(self, gen: DataOnlineGenerator, plan: RunPlan) -> None:
        count = len(plan.shards)
        self.workers = [
            ShardWorker(plan.model, gen.subject_factory, shard, count, start, stop, run_key=plan.run_key,
                        tick_ms=gen.tick_ms, timestamp_start=gen.timestamp_start,
                        reseed_python_random=gen.reseed_python_random and gen.seed is not None,
                        keyed_callbacks=gen.seed is not None, worker_setup=None)
            for shard, (start, stop) in enumerate(plan.shards)
        ]

    def begin(self) -> None:
        for worker in self.workers:
            worker.begin()

    def run_window(self, t0: int, t1: int) -> list[WindowReport]:
        return [worker.run_window(t0, t1) for worker in self.workers]

    def finish(self, ticks_done: int) -> list[ShardResult]:
        results, errors = [], []
        for worker in self.workers:
            result, errs = worker.finish(ticks_done)
            results.append(result)
            errors.extend(errs)
        raise_collected(errors, "another sink failed to close")
        return results


def run_local(gen: DataOnlineGenerator, plan: RunPlan) -> RunResult:
    """Run the whole population in this process."""
    return drive(gen, plan, LocalBackend(gen, plan))
