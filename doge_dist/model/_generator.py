"""DataOnlineGenerator: the doge-datagen 1.0.4 API, validated up front, run by the event engine."""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any, Generic

from .._errors import ModelError
from ..run._driver import RunPlan
from ..run._local import run_local
from ..run._result import Progress, RunResult
from . import _validate as v
from ._compiled import CompiledModel, compile_model, sinks_in_use_order
from ._vocabulary import EventSink, Subject, SubjectFactory, Transition, sink_name

__all__ = ["DataOnlineGenerator"]

LOGGER = logging.getLogger("doge_dist")


def _callable_identity(fn: Any) -> Any:
    """A description of a callable that is the same in every process (no memory addresses)."""
    if fn is None:
        return None
    if isinstance(fn, functools.partial):
        return ("partial", _callable_identity(fn.func), [_callable_identity(a) for a in fn.args],
                sorted((k, _callable_identity(v)) for k, v in fn.keywords.items()))
    if isinstance(fn, (str, int, float, bool, bytes)) or fn is None:
        return repr(fn)
    target = fn if hasattr(fn, "__qualname__") else type(fn)
    return (target.__qualname__, _source_digest(target))


def _source_digest(obj: Any) -> str | None:
    """A digest of an object's source code, so that changed callbacks change the fingerprint
    (the module name is left out: the same file may be imported under different names)."""
    import inspect

    try:
        return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]
    except (OSError, TypeError):
        return None


class DataOnlineGenerator(Generic[Subject]):
    """Subjects walk a state machine in ticks; each successful transition is an event sent to sinks.

    Probabilities are percent per tick; a state's outgoing probabilities sum to at most 100 and the
    rest is the chance of staying put. Each tick every subject takes at most one transition.
    """

    STAY_TRIGGER = "__stay"

    def __init__(
        self,
        states: list[str],
        initial_state: str,
        subject_factory: SubjectFactory,
        subjects_num: int,
        tick_ms: int,
        ticks_num: int | None,
        timestamp_start: int = 0,
        seed: int | None = None,
        *,
        reseed_python_random: bool = True,
    ) -> None:
        self.states = v.check_states(states)
        v.check_state("initial state", initial_state, self.states)
        v.check_factory(subject_factory)
        self.initial_state = initial_state
        self.subject_factory = subject_factory
        self.configure(subjects_num=subjects_num, tick_ms=tick_ms, ticks_num=ticks_num,
                       timestamp_start=timestamp_start, seed=seed)
        self.reseed_python_random = bool(reseed_python_random)
        self.transitions: list[Transition] = []
        self._probability_sum: dict[str, float] = {state: 0.0 for state in self.states}
        self._triggers: dict[str, set[str]] = {state: set() for state in self.states}
        self._stop_requested = threading.Event()
        self._warned_final: set[str] = set()

    # -- model building ----------------------------------------------------------------------

    def configure(self, **settings: Any) -> DataOnlineGenerator:
        """Change population and run settings (validated): subjects_num, ticks_num, tick_ms,
        timestamp_start, seed. Used by job specs and CLI flags."""
        checks: dict[str, Callable[[Any], None]] = {
            "subjects_num": lambda x: v.check_count("subjects_num", x),
            "ticks_num": lambda x: v.check_count("ticks_num", x, allow_none=True),
            "tick_ms": v.check_tick_ms,
            "timestamp_start": v.check_timestamp,
            "seed": v.check_seed,
        }
        unknown = sorted(set(settings) - set(checks))
        if unknown:
            raise ModelError(f"unknown setting(s) {unknown}; expected some of {sorted(checks)}")
        for name, value in settings.items():
            checks[name](value)
            setattr(self, name, value)
        return self

    @property
    def timestamp(self) -> int:  # doge-datagen kept the start timestamp under this name
        return self.timestamp_start

    def add_transition(
        self,
        trigger: str,
        from_state: str,
        to_state: str,
        probability: float,
        action_callback: Callable[[Any, Transition], bool] | None = None,
        event_sinks: Iterable[EventSink] | None = None,
    ) -> Transition:
        """Add a transition taken with ``probability`` percent per tick from ``from_state``."""
        if not isinstance(trigger, str) or not trigger:
            raise ModelError(f"trigger must be a non-empty string, got {trigger!r}")
        v.check_state(f"transition {trigger!r}: from_state", from_state, self.states)
        v.check_state(f"transition {trigger!r}: to_state", to_state, self.states)
        if trigger in self._triggers[from_state]:
            raise ModelError(f"trigger {trigger!r} is already defined from state {from_state!r}")
        new_sum = v.check_probability(trigger, from_state, probability, self._probability_sum[from_state])
        v.check_callback(trigger, action_callback)
        sinks = v.check_sinks(trigger, event_sinks)
        transition = Transition(trigger, from_state, to_state, probability, action_callback, sinks)
        self.transitions.append(transition)
        self._probability_sum[from_state] = new_sum
        self._triggers[from_state].add(trigger)
        return transition

    # -- introspection -----------------------------------------------------------------------

    @property
    def sinks(self) -> list[Any]:
        """Every sink used by a transition, once each, in first-use order."""
        return sinks_in_use_order(self.transitions)

    def final_states(self) -> list[str]:
        """States with no way out (no transition, or only zero probabilities)."""
        return [s for s in self.states if self._probability_sum[s] <= 0]

    def compile(self) -> CompiledModel:
        """Validate the whole model and build the engine's tables (warns once per final state)."""
        for state in self.final_states():
            if state not in self._warned_final:  # once per state per generator, not per run
                self._warned_final.add(state)
                LOGGER.warning("State %s is a final state and has no output transitions", state)
        return compile_model(self.states, self.initial_state, self.transitions)

    def model_fingerprint(self) -> str:
        """A sha256 over what determines the output: states, transitions (with the source code of
        callbacks and of the factory's class), population, ticks, timestamps and seed."""
        h = hashlib.sha256()
        parts: list[Any] = [self.states, self.initial_state, self.subjects_num, self.ticks_num,
                            self.tick_ms, self.timestamp_start, self.seed,
                            _callable_identity(type(self.subject_factory))]
        for tr in self.transitions:
            parts.append((tr.trigger, tr.from_state, tr.to_state, repr(float(tr.probability)),
                          _callable_identity(tr.action_callback),
                          [sink_name(s) for s in tr.event_sinks]))
        h.update(repr(parts).encode())
        return h.hexdigest()

    # -- running -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask a running ``start()`` (from another thread or a signal handler) to stop at the next window."""
        self._stop_requested.set()

    def start(
        self,
        workers: int = 1,
        ray_address: str | None = None,
        window: int | None = None,
        *,
        realtime: bool = False,
        speed: float = 1.0,
        progress: Callable[[Progress], None] | None = None,
        stop_event: threading.Event | None = None,
        backend: str | None = None,
        keep_workers: bool = False,
    ) -> RunResult:
        """Run the simulation and close every sink once; return counts and timings.

        ``workers >= 2`` (or ``backend="ray"``, or a ``ray_address``) shards the population over
        Ray actors that tick in lockstep windows; otherwise everything runs in this process.
        ``keep_workers=True`` parks the shard actors (and the CPUs they hold) after the run for the
        next run of this driver to reuse; ``doge_dist.release_workers()`` frees them.
        """
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ModelError(f"workers must be an integer >= 1, got {workers!r}")
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
            raise ModelError(f"window must be an integer >= 1 (ticks), got {window!r}")
        if not (isinstance(speed, (int, float)) and speed > 0):
            raise ModelError(f"speed must be a number > 0, got {speed!r}")
        if self.ticks_num is None and stop_event is None and not realtime:
            raise ModelError("ticks_num=None (unbounded) needs realtime=True or a stop_event to end the run")
        if backend not in (None, "local", "ray"):
            raise ModelError(f"backend must be 'local' or 'ray', got {backend!r}")
        if backend == "local" and workers > 1:
            raise ModelError("backend='local' runs one shard; use workers=1 or backend='ray'")
        self._stop_requested.clear()
        stops = [self._stop_requested] + ([stop_event] if stop_event is not None else [])
        plan = RunPlan.build(self, workers=workers, window=window, realtime=realtime, speed=speed,
                             progress=progress, stop_events=stops, keep_workers=keep_workers)
        use_ray = backend == "ray" or (backend is None and (workers > 1 or ray_address is not None))
        if not use_ray:
            return run_local(self, plan)
        from ..run._ray_backend import run_ray

        return run_ray(self, plan, ray_address=ray_address)
