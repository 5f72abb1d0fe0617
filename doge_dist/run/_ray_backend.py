"""The Ray backend: one actor per shard, driven window by window in lockstep.

The actors run the same ShardWorker as the in-process backend; this module only moves plain data
(window bounds in, counts out) and turns Ray's failures into errors that name the shard.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .._errors import SimulationError
from ._driver import RunPlan, WindowReport, drive, raise_collected
from ._result import RunResult, ShardResult
from ._shard import ShardWorker

if TYPE_CHECKING:
    from ..model._generator import DataOnlineGenerator

__all__ = ["RayBackend", "run_ray", "ShardActorError", "release_workers"]

LOGGER = logging.getLogger("doge_dist")

ACTOR_START_TIMEOUT_S = 120.0
FINISH_TIMEOUT_S = 600.0
CONNECT_TIMEOUT_S = 10.0
POLL_S = 0.5


class ShardActorError(SimulationError):
    """A shard's actor process died or could not be started."""


_ACTOR_CLASS: Any = None
# Idle shard actors kept between runs when a run asks for it (keep_workers=True): process start-up
# and imports cost about a second per actor; a warm actor takes a new shard in milliseconds.
_POOL: dict[str, Any] = {"job": None, "cpus": None, "idle": []}
_POOL_LOCK = threading.Lock()


def _actor_class():
    global _ACTOR_CLASS
    if _ACTOR_CLASS is not None:
        return _ACTOR_CLASS
    import ray

    class ShardActor:
        """Hosts one ShardWorker at a time in its own process."""

        def __init__(self) -> None:
            self.worker: ShardWorker | None = None

        def pid(self) -> int:
            return os.getpid()

        def setup(self, *args: Any, **kwargs: Any) -> None:
            self.worker = ShardWorker(*args, **kwargs)

        def begin(self) -> float:
            return self.worker.begin()

        def run_window(self, t0: int, t1: int) -> WindowReport:
            return self.worker.run_window(t0, t1)

        def finish(self, ticks_done: int) -> tuple[ShardResult, list[BaseException]]:
            try:
                return self.worker.finish(ticks_done)
            finally:
                self.worker = None

    _ACTOR_CLASS = ray.remote(max_restarts=0, max_task_retries=0)(ShardActor)
    return _ACTOR_CLASS


def _kill(actors: list[Any]) -> None:
    import ray

    for actor in actors:
        try:
            ray.kill(actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass


def _acquire_actors(count: int, cpus: float) -> list[Any]:
    """Idle pooled actors of this Ray job first, then new ones; the caller owns them until returned."""
    import ray

    job = ray.get_runtime_context().get_job_id()
    stale: list[Any] = []
    with _POOL_LOCK:
        if _POOL["job"] != job or _POOL["cpus"] != cpus:
            stale = _POOL["idle"] if _POOL["job"] == job else []
            _POOL.update(job=job, cpus=cpus, idle=[])
        idle = _POOL["idle"]
        taken, _POOL["idle"] = idle[:count], idle[count:]
    _kill(stale)
    actor_cls = _actor_class().options(num_cpus=cpus)
    return taken + [actor_cls.remote() for _ in range(count - len(taken))]


def _return_actors(actors: list[Any], cpus: float, keep: bool) -> None:
    """Park healthy actors in the pool (keep) or kill them."""
    if keep:
        import ray

        job = ray.get_runtime_context().get_job_id()
        with _POOL_LOCK:
            if _POOL["job"] == job and _POOL["cpus"] == cpus:
                _POOL["idle"].extend(actors)
                return
    _kill(actors)


def release_workers() -> int:
    """Kill the idle shard actors kept by ``start(keep_workers=True)``; return how many there were."""
    with _POOL_LOCK:
        idle = _POOL["idle"]
        _POOL.update(job=None, cpus=None, idle=[])
    _kill(idle)
    return len(idle)


@contextlib.contextmanager
def _process_generators_by_reference() -> Iterator[None]:
    """While the model is pickled for the actors, send Python's global generator (and
    doge_dist.rand's) as a reference to the receiving process's own, not as a copy.

    A model module pickled by value (a file target, ``__main__``) carries ``from random import
    randrange`` as a bound method of ``random._inst``; a copy would escape the engine's seeding.
    """
    import copyreg
    import random

    from .. import rand

    saved = {cls: copyreg.dispatch_table.get(cls) for cls in (random.Random, rand.KeyedRandom)}
    copyreg.pickle(random.Random, _reduce_generator)
    copyreg.pickle(rand.KeyedRandom, _reduce_generator)
    try:
        yield
    finally:
        for cls, previous in saved.items():
            if previous is None:
                copyreg.dispatch_table.pop(cls, None)
            else:
                copyreg.dispatch_table[cls] = previous


def _reduce_generator(obj: Any) -> Any:
    import random

    from .. import rand

    if obj is random._inst:
        return (_python_global_random, ())
    if obj is rand._inst:
        return (_doge_rand_generator, ())
    return obj.__reduce_ex__(2)


def _python_global_random() -> Any:
    import random

    return random._inst


def _doge_rand_generator() -> Any:
    from .. import rand

    return rand._inst


class RayBackend:
    """Starts one actor per shard and drives them; closes every shard's sinks even on failure."""

    def __init__(self, gen: DataOnlineGenerator, plan: RunPlan, *, keep_workers: bool = False) -> None:
        import ray

        self.ray = ray
        self.plan = plan
        self.gen = gen
        self.keep_workers = keep_workers
        count = len(plan.shards)
        total_cpus = float(ray.cluster_resources().get("CPU", 1.0))
        cpus = 1.0 if count <= total_cpus else max(total_cpus / count, 0.01)
        if cpus < 1.0:
            LOGGER.warning("%d shards but only %g CPUs in the Ray cluster now: each shard actor asks for "
                           "%.2f CPU, so shards share cores (an autoscaling cluster will not grow for them)",
                           count, total_cpus, cpus)
        self.cpus = cpus
        self.actors = _acquire_actors(count, cpus)
        self.alive = [True] * count
        self.failed = False

    # -- helpers -----------------------------------------------------------------------------

    def _describe(self, shard: int) -> str:
        start, stop = self.plan.shards[shard]
        return f"shard {shard} (subjects {start}..{stop - 1})"

    def _gather(self, refs: list[Any], what: str, timeout: float | None) -> list[Any]:
        """Wait for one call per shard; on the first failure wait for the rest, then raise."""
        ray = self.ray
        index = {ref: shard for shard, ref in enumerate(refs)}
        results: list[Any] = [None] * len(refs)
        pending = list(refs)
        failure: BaseException | None = None
        deadline = None if timeout is None else time.monotonic() + timeout
        while pending:
            if deadline is not None and time.monotonic() > deadline:
                self.failed = True
                for ref in pending:
                    self.alive[index[ref]] = False  # never answered: nothing to close there
                stuck = ", ".join(self._describe(index[r]) for r in pending)
                raise ShardActorError(
                    f"{what}: no answer from {stuck} within {timeout:.0f} s (is the Ray cluster out of free "
                    f"CPUs? each shard actor asks for {self.cpus:g})")
            ready, pending = ray.wait(pending, num_returns=1, timeout=POLL_S)
            for ref in ready:
                shard = index[ref]
                try:
                    results[shard] = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - translated below
                    self.failed = True
                    error = self._translate(shard, what, exc)
                    if failure is None:
                        failure = error
        if failure is not None:
            raise failure
        return results

    def _translate(self, shard: int, what: str, exc: BaseException) -> BaseException:
        from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

        if isinstance(exc, RayTaskError):
            cause = exc.as_instanceof_cause() if hasattr(exc, "as_instanceof_cause") else exc
            original = getattr(exc, "cause", None) or cause
            if isinstance(original, SimulationError):
                original.shard = shard
                return original
            err = SimulationError(f"{self._describe(shard)} failed during {what}: {original!r}", shard=shard)
            err.__cause__ = original
            return err
        if isinstance(exc, RayActorError):
            self.alive[shard] = False
            err = ShardActorError(
                f"{self._describe(shard)}: its Ray actor process died during {what} "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}); "
                "the run is stopped", shard=shard)
            err.__cause__ = exc
            return err
        if isinstance(exc, GetTimeoutError):
            return ShardActorError(f"{self._describe(shard)}: timed out during {what}", shard=shard)
        err = SimulationError(f"{self._describe(shard)} failed during {what}: {exc!r}", shard=shard)
        err.__cause__ = exc
        return err

    # -- Backend -----------------------------------------------------------------------------

    def begin(self) -> None:
        ray, gen, plan = self.ray, self.gen, self.plan
        reseed = gen.reseed_python_random and gen.seed is not None
        with _process_generators_by_reference():
            model_ref = ray.put(plan.model)
            factory_ref = ray.put(gen.subject_factory)
        count = len(plan.shards)
        setups = [
            actor.setup.remote(model_ref, factory_ref, shard, count, start, stop, run_key=plan.run_key,
                               tick_ms=gen.tick_ms, timestamp_start=gen.timestamp_start,
                               reseed_python_random=reseed, keyed_callbacks=gen.seed is not None,
                               worker_setup=plan.worker_setup)
            for actor, (shard, (start, stop)) in zip(self.actors, enumerate(plan.shards))
        ]
        self._gather(setups, "actor start-up", ACTOR_START_TIMEOUT_S)
        self._gather([a.begin.remote() for a in self.actors], "subject creation", None)

    def run_window(self, t0: int, t1: int) -> list[WindowReport]:
        return self._gather([a.run_window.remote(t0, t1) for a in self.actors],
                            f"window {t0}..{t1 - 1}", None)

    def finish(self, ticks_done: int) -> list[ShardResult]:
        live = [shard for shard, ok in enumerate(self.alive) if ok]
        refs = [self.actors[shard].finish.remote(ticks_done) for shard in live]
        results: list[ShardResult] = []
        errors: list[BaseException] = []
        try:
            for outcome in self._gather_all(refs, live):
                if isinstance(outcome, BaseException):
                    errors.append(outcome)
                    continue
                result, close_errors = outcome
                results.append(result)
                for error in close_errors:
                    if hasattr(error, "add_note"):
                        error.add_note(f"raised while closing the sinks of {self._describe(result.shard)}")
                    errors.append(error)
        finally:
            healthy = not (self.failed or errors or not all(self.alive))
            _return_actors(self.actors, self.cpus, keep=self.keep_workers and healthy)
        dead = [self._describe(s) for s, ok in enumerate(self.alive) if not ok]
        if dead and not errors:
            errors.append(ShardActorError(f"{', '.join(dead)} died; their sinks could not be closed"))
        raise_collected(errors, "another shard failed to close")
        return sorted(results, key=lambda r: r.shard)

    def _gather_all(self, refs: list[Any], shards: list[int]) -> list[Any]:
        """Like _gather, but keeps going after failures and returns exceptions in place."""
        ray = self.ray
        out: list[Any] = []
        deadline = time.monotonic() + FINISH_TIMEOUT_S
        for shard, ref in zip(shards, refs):
            try:
                out.append(ray.get(ref, timeout=max(1.0, deadline - time.monotonic())))
            except Exception as exc:  # noqa: BLE001
                self.failed = True
                out.append(self._translate(shard, "closing sinks", exc))
        return out


def _connect(ray_address: str | None) -> bool:
    """Make sure Ray is initialised; return True when this run started it (and must shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    address = ray_address or os.environ.get("RAY_ADDRESS")
    # Ray folds log lines that look alike ("[repeated 170x across cluster]"), which would swallow
    # a PrintingSink's events; keep every line (only affects a Ray this process starts or joins).
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if address:
        _check_reachable(address)
        with _keep_signal_handlers():
            ray.init(address=address, log_to_driver=True)
        return False
    # Workers import the model's modules by the driver's path. Ray's processes inherit this
    # environment; a runtime_env with env_vars would do the same but slows every actor's start
    # (about 1.0 s instead of 0.6 s here).
    paths = [os.getcwd(), *(p for p in sys.path if p and os.path.isdir(p))]
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    try:
        with _keep_signal_handlers(), _quiet_token_auth_notice():
            ray.init(include_dashboard=False, log_to_driver=True)
    finally:
        if previous is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = previous
    return True


@contextlib.contextmanager
def _quiet_token_auth_notice() -> Iterator[None]:
    """A Ray started here turns token authentication on (RAY_AUTH_MODE unset) and says so as a WARNING
    on every run ("Token authentication is enabled for this Ray cluster..."): that is Ray's secure
    default, not a problem, so hold back that logger's warnings during ray.init(). (Setting
    RAY_AUTH_MODE=token beforehand would also silence it, but the driver's Ray config is read when ray is
    imported, so the driver would then be refused by its own cluster.)"""
    notice = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = notice.level
    notice.setLevel(logging.ERROR)
    try:
        yield
    finally:
        notice.setLevel(level)


@contextlib.contextmanager
def _keep_signal_handlers() -> Iterator[None]:
    """ray.init() installs a SIGTERM handler that calls sys.exit(): keep the caller's SIGINT/SIGTERM
    handlers instead (the CLI's stop at a window boundary, close sinks, write the report)."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)


def _check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast with a clear error when a host:port Ray address does not accept connections
    (ray.init would retry for minutes). ``auto``, ``local`` and ``ray://`` addresses are left to Ray."""
    import socket

    if "://" in address or address in ("auto", "local"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return
    except OSError as exc:
        raise ConnectionError(f"cannot reach the Ray cluster at {address} within {timeout_s:.0f} s: {exc}; "
                              "check the head node's address and port (default 6379)") from exc


def run_ray(gen: DataOnlineGenerator, plan: RunPlan, *, ray_address: str | None = None) -> RunResult:
    """Run the plan's shards as Ray actors (connecting to or starting Ray as needed)."""
    started_here = _connect(ray_address)
    try:
        return drive(gen, plan, RayBackend(gen, plan, keep_workers=plan.keep_workers and not started_here))
    finally:
        if started_here:
            import ray

            release_workers()
            ray.shutdown()
