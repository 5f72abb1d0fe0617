"""The Ray backend: one actor per shard, driven window by window (step by step) in lockstep.

The actors run the same ShardWorker as the in-process backend; this module only moves plain data
(the plan once, window bounds and budgets in, reports out) and turns Ray's failures into errors
that name the shard.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .. import rand as _doge_rand
from .._errors import SimulationError
from ..engine._layout import ShardLayout
from ..engine._shard_engine import CreationStopped
from ._checkpoint import Manifest
from ._closing import earliest_error, raise_collected
from ._driver import drive
from ._plan import RunControls, RunPlan, WindowReport
from ._result import RunResult, ShardResult
from ._shard import ShardWorker

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

        def setup(self, plan: RunPlan, layout: ShardLayout) -> None:
            self.worker = ShardWorker(plan, layout, in_driver=False)

        def begin(self) -> float:
            return self.worker.begin()

        def step(self, t0: int, t1: int, budget: int | None, checkpoint: bool) -> WindowReport:
            return self.worker.step(t0, t1, budget, checkpoint)

        def recover(self, manifest: Manifest | None, replay_to: int) -> WindowReport:
            return self.worker.recover(manifest, replay_to)

        def checkpoint_now(self, tick: int) -> WindowReport:
            return self.worker.checkpoint_now(tick)

        def abandon(self) -> WindowReport:
            return self.worker.abandon()

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


# -- Python's global generator and doge_dist.rand travel as references to the worker's own ----------

_REDUCERS_REGISTERED = False


def _register_generator_reducers() -> None:
    """Teach Ray's serializer (once per process) to send Python's global generator and
    ``doge_dist.rand``'s as references to the receiving process's own, never as copies.

    A model module pickled by value (a file target, ``__main__``) carries ``from random import
    randrange`` as a bound method of ``random._inst``; a copy would escape the engine's seeding.
    Private ``random.Random`` instances are copied with their state, as pickling always did.
    """
    global _REDUCERS_REGISTERED
    if _REDUCERS_REGISTERED:
        return
    import ray

    ray.util.register_serializer(random.Random, serializer=_python_generator_state,
                                 deserializer=_python_generator)
    ray.util.register_serializer(_doge_rand.KeyedRandom, serializer=_keyed_generator_state,
                                 deserializer=_keyed_generator)
    _REDUCERS_REGISTERED = True


def _python_generator_state(obj: random.Random) -> Any:
    return None if obj is random._inst else obj.getstate()


def _python_generator(state: Any) -> random.Random:
    if state is None:
        return random._inst
    copy = random.Random()
    copy.setstate(state)
    return copy


def _keyed_generator_state(obj: Any) -> Any:
    return None if obj is _doge_rand._inst else obj.getstate()


def _keyed_generator(state: Any) -> Any:
    if state is None:
        return _doge_rand._inst
    copy = _doge_rand.KeyedRandom()
    copy.setstate(state)
    return copy


class RayBackend:
    """Starts one actor per shard and drives them; closes every shard's sinks even on failure."""

    def __init__(self, plan: RunPlan, *, keep_workers: bool = False) -> None:
        import ray

        self.ray = ray
        self.plan = plan
        self.keep_workers = keep_workers
        self.timings: dict[str, float] = {}
        count = len(plan.layouts)
        total_cpus = float(ray.cluster_resources().get("CPU", 1.0))
        cpus = 1.0 if count <= total_cpus else max(total_cpus / count, 0.01)
        if cpus < 1.0:
            LOGGER.warning("%d shards but only %g CPUs in the Ray cluster now: each shard actor asks for "
                           "%.2f CPU, so shards share cores (an autoscaling cluster will not grow for them)",
                           count, total_cpus, cpus)
        self.cpus = cpus
        started = time.perf_counter()
        self.actors = _acquire_actors(count, cpus)
        self.timings["actor_start_s"] = time.perf_counter() - started
        self.alive = [True] * count
        self.failed = False
        self.plan_ref: Any = None
        self.restarts = [0] * count
        self.restarts_total = 0
        self.possible_duplicates: dict[str, int] = {}
        self.notes: list[str] = []
        self.latest_manifest: Callable[[], Manifest | None] = lambda: None

    # -- helpers -----------------------------------------------------------------------------

    def _describe(self, shard: int) -> str:
        layout = self.plan.layouts[shard]
        return f"shard {shard} (subjects {layout.start}..{layout.stop - 1})"

    def _gather(self, refs: list[Any], what: str, timeout: float | None,
                abort: Callable[[], bool] | None = None) -> list[Any]:
        """Wait for one call per shard; on a failure wait for the rest, then raise the earliest error
        (by tick and subject). ``abort`` is asked between polls: True kills the actors and raises
        CreationStopped (used while subjects are being created, when no sink has an event yet)."""
        outcomes = self._outcomes(refs, what, timeout, abort)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            self.failed = True
            raise earliest_error(failures)
        return outcomes

    def _outcomes(self, refs: list[Any], what: str, timeout: float | None,
                  abort: Callable[[], bool] | None = None) -> list[Any]:
        """Like ``_gather``, with each shard's error in place of its result."""
        ray = self.ray
        index = {ref: shard for shard, ref in enumerate(refs)}
        results: list[Any] = [None] * len(refs)
        pending = list(refs)
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
            if abort is not None and abort():
                _kill(self.actors)
                self.alive = [False] * len(self.alive)
                raise CreationStopped(f"stopped during {what}")
            ready, pending = ray.wait(pending, num_returns=1, timeout=POLL_S)
            for ref in ready:
                shard = index[ref]
                try:
                    results[shard] = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - translated below
                    results[shard] = self._translate(shard, what, exc)
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

    def begin(self, should_stop: Callable[[], bool] | None = None) -> None:
        ray, plan = self.ray, self.plan
        _register_generator_reducers()
        started = time.perf_counter()
        plan_ref = self.plan_ref = ray.put(plan)
        setups = [actor.setup.remote(plan_ref, layout) for actor, layout in zip(self.actors, plan.layouts)]
        self._gather(setups, "actor start-up", ACTOR_START_TIMEOUT_S)
        self.timings["actor_start_s"] = self.timings.get("actor_start_s", 0.0) + time.perf_counter() - started
        started = time.perf_counter()
        self._gather([a.begin.remote() for a in self.actors], "subject creation", None, abort=should_stop)
        self.timings["create_s"] = time.perf_counter() - started

    def step(self, t0: int, t1: int, budget: int | None, checkpoint: bool = False) -> list[WindowReport]:
        what = f"window {t0}..{t1 - 1}"
        outcomes = self._outcomes([a.step.remote(t0, t1, budget, checkpoint) for a in self.actors], what, None)
        failures = []
        for shard, outcome in enumerate(outcomes):
            if not isinstance(outcome, BaseException):
                continue
            lost = isinstance(outcome, ShardActorError) and not self.alive[shard]
            if lost and self.restarts[shard] < self.plan.max_restarts:
                outcomes[shard] = self._recover(shard, t0, t1, budget, checkpoint, outcome)
            else:
                failures.append(outcome)
        if failures:
            self.failed = True
            raise earliest_error(failures)
        return outcomes

    def _recover(self, shard: int, t0: int, t1: int, budget: int | None, checkpoint: bool,
                 error: BaseException) -> WindowReport:
        """Replace a lost shard: a new actor restores it from the newest complete checkpoint (or from
        the start), replays to ``t0`` and runs this window; returns that window's report."""
        plan = self.plan
        self.restarts[shard] += 1
        self.restarts_total += 1
        manifest = self.latest_manifest()
        since = manifest.tick if manifest is not None else plan.start_tick
        LOGGER.warning("%s was lost during window %d..%d (%s); restart %d of %d: replaying it from tick %d "
                       "(%s)", self._describe(shard), t0, t1 - 1, str(error).splitlines()[0],
                       self.restarts[shard], plan.max_restarts, since,
                       "its last checkpoint" if manifest is not None else "the start of the run")
        actor = _actor_class().options(num_cpus=self.cpus).remote()
        self.actors[shard] = actor
        self._gather_one(actor.setup.remote(self.plan_ref, plan.layouts[shard]), shard,
                         "replacement start-up", ACTOR_START_TIMEOUT_S)
        self.alive[shard] = True
        self._gather_one(actor.recover.remote(manifest, t0), shard, f"replay of ticks {since}..{t0 - 1}", None)
        report = self._gather_one(actor.step.remote(t0, t1, budget, checkpoint), shard,
                                  f"window {t0}..{t1 - 1} after a restart", None)
        before = {}
        if manifest is not None:
            before = manifest.data.get("events_by_sink_by_shard", {}).get(str(shard), {})
        for sink, name in zip(plan.model.sinks, plan.model.sink_names):
            if callable(getattr(sink, "resume", None)):
                continue  # it puts itself back to its checkpoint: nothing is sent twice
            resent = report.events_by_sink.get(name, 0) - before.get(name, 0)
            if resent > 0:
                self.possible_duplicates[name] = self.possible_duplicates.get(name, 0) + resent
        self.notes.append(f"{self._describe(shard)} was lost in window {t0}..{t1 - 1} and replayed from tick "
                          f"{since} (restart {self.restarts[shard]} of {plan.max_restarts})")
        return report

    def _gather_one(self, ref: Any, shard: int, what: str, timeout: float | None) -> Any:
        outcome = self._outcomes([ref], what, timeout)[0]
        if isinstance(outcome, BaseException):
            self.failed = True
            if isinstance(outcome, SimulationError):
                outcome.shard = shard
            raise outcome
        return outcome

    def checkpoint_now(self, tick: int) -> list[WindowReport]:
        return self._gather([a.checkpoint_now.remote(tick) for a in self.actors], "the final checkpoint", None)

    def abandon(self) -> list[WindowReport]:
        return self._gather([a.abandon.remote() for a in self.actors], "ending the window", None)

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
        if dead and not errors and not self.failed:
            errors.append(ShardActorError(f"{', '.join(dead)} died; their sinks could not be closed"))
        for error in errors:
            try:
                error.shard_results = results  # type: ignore[attr-defined]
            except AttributeError:
                pass
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


def run_ray(plan: RunPlan, controls: RunControls, *, ray_address: str | None = None) -> RunResult:
    """Run the plan's shards as Ray actors (connecting to or starting Ray as needed)."""
    started = time.perf_counter()
    started_here = _connect(ray_address)
    ray_start_s = time.perf_counter() - started
    try:
        backend = RayBackend(plan, keep_workers=plan.keep_workers and not started_here)
        backend.timings["ray_start_s"] = ray_start_s
        return drive(plan, backend, controls)
    finally:
        if started_here:
            import ray

            release_workers()
            ray.shutdown()
