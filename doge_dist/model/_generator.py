"""DataOnlineGenerator: the doge-datagen 1.0.4 API, validated up front, run by the event engine."""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import random as _py_random
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic

from .._errors import ModelError
from ..engine._keyed import seed_key
from ..run._local import run_local  # light (no Ray): the in-process runner, loaded with the model
from ..run._memory import check_memory, estimate_run_memory
from ..run._pacer import LoadStep, Pacing, parse_load_shape
from ..run._plan import RunControls, RunPlan
from ..run._result import Progress, RunResult
from . import _validate as v
from ._arrivals import ArrivalStream, make_arrival_stream
from ._compiled import CompiledModel, compile_model, sinks_in_use_order
from ._dynamics import StateBound, state_bounds
from ._profiles import Profile, profile_from_dict
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
        drop_final: bool = False,
    ) -> None:
        self.states = v.check_states(states)
        v.check_state("initial state", initial_state, self.states)
        v.check_factory(subject_factory)
        self.initial_state = initial_state
        self.subject_factory = subject_factory
        self.configure(subjects_num=subjects_num, tick_ms=tick_ms, ticks_num=ticks_num,
                       timestamp_start=timestamp_start, seed=seed)
        self.reseed_python_random = bool(reseed_python_random)
        self.drop_final = bool(drop_final)
        self.transitions: list[Transition] = []
        self.arrivals: list[ArrivalStream] = []
        self._probability_sum: dict[str, float] = {state: 0.0 for state in self.states}
        self._triggers: dict[str, set[str]] = {state: set() for state in self.states}
        self._profiled_states: set[str] = set()
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
        merged = {name: settings.get(name, getattr(self, name, None)) for name in checks}
        if all(name in merged and merged[name] is not None for name in ("tick_ms", "timestamp_start")):
            v.check_time_range(merged["timestamp_start"], merged["tick_ms"], merged.get("ticks_num"))
        for name, value in settings.items():
            setattr(self, name, value)
        return self

    def add_arrivals(self, rate_per_tick: float, profile: Profile | dict | None = None,
                     limit: int | None = None, state: str | None = None) -> ArrivalStream:
        """New subjects join during the run as a Poisson process of ``rate_per_tick`` per tick (times
        ``profile(timestamp)`` when given), at most ``limit`` in all, entering ``state`` (default: the
        initial state). They take the next global indices in arrival order, are made by the subject
        factory, and act from the tick after they arrive."""
        stream = make_arrival_stream(rate_per_tick, profile, limit,
                                     self.initial_state if state is None else state, self.states)
        self.arrivals.append(stream)
        return stream

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
        *,
        profile: Profile | dict | None = None,
    ) -> Transition:
        """Add a transition taken with ``probability`` percent per tick from ``from_state``.

        With a ``profile`` (``doge_dist.profiles``) the probability in tick t is
        ``probability * profile(timestamp(t))`` percent; the state's total must stay <= 100% at
        every tick of the run (checked by ``compile()``, before any subject exists).
        """
        if not isinstance(trigger, str) or not trigger:
            raise ModelError(f"trigger must be a non-empty string, got {trigger!r}")
        v.check_state(f"transition {trigger!r}: from_state", from_state, self.states)
        v.check_state(f"transition {trigger!r}: to_state", to_state, self.states)
        if trigger in self._triggers[from_state]:
            raise ModelError(f"trigger {trigger!r} is already defined from state {from_state!r}")
        if profile is not None and not isinstance(profile, Profile):
            profile = profile_from_dict(profile, f"transition {trigger!r} from {from_state!r}: profile")
        if profile is not None or from_state in self._profiled_states:
            # the state's total varies with time: compile() checks it at every tick of the run
            v.check_probability(trigger, from_state, probability, 0.0)
            new_sum = self._probability_sum[from_state] + float(probability)
            if profile is not None:
                self._profiled_states.add(from_state)
        else:
            new_sum = v.check_probability(trigger, from_state, probability, self._probability_sum[from_state])
        v.check_callback(trigger, action_callback)
        sinks = v.check_sinks(trigger, event_sinks)
        transition = Transition(trigger, from_state, to_state, probability, action_callback, sinks, profile)
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
        """States with no way out (no transition, or only zero probabilities over the whole run)."""
        if not self._profiled_states:
            return [s for s in self.states if self._probability_sum[s] <= 0]
        bounds = self.state_bounds()
        return [s for s in self.states if bounds[s].max_percent <= 0]

    def state_bounds(self) -> dict[str, StateBound]:
        """Each state's largest total outgoing probability over the run (profiles applied);
        ModelError naming the state and the first timestamp where a total goes over 100%."""
        return state_bounds(self.states, self.transitions, timestamp_start=self.timestamp_start,
                            tick_ms=self.tick_ms, ticks=self.ticks_num)

    def compile(self) -> CompiledModel:
        """Validate the whole model and build the engine's tables (warns once per final state).

        The engine's per-state bounds (the rate candidates are drawn at) do not depend on the
        run's length, so a run continued from a checkpoint draws exactly what one long run draws.
        """
        self.state_bounds()  # the <= 100% check over this run's ticks, naming state and timestamp
        engine_bounds = state_bounds(self.states, self.transitions, timestamp_start=self.timestamp_start,
                                     tick_ms=self.tick_ms, ticks=None, check=False)
        for state in self.states:
            if engine_bounds[state].max_percent <= 0 and state not in self._warned_final:
                self._warned_final.add(state)  # once per state per generator, not per run
                LOGGER.warning("State %s is a final state and has no output transitions", state)
        return compile_model(self.states, self.initial_state, self.transitions,
                             max_total={s: min(b.max_percent, 100.0) for s, b in engine_bounds.items()})

    def fingerprint_components(self) -> dict[str, Any]:
        """What determines the output, part by part (digests), so that a checkpoint can say what
        changed: states, each transition (with its callback's source code and profile), the
        factory's class, the sinks, the population and run settings, arrivals and the seed."""
        def digest(value: Any) -> str:
            return hashlib.sha256(repr(value).encode()).hexdigest()[:16]

        transitions = {
            f"{tr.from_state}:{tr.trigger}": digest((
                tr.to_state, repr(float(tr.probability)), _callable_identity(tr.action_callback),
                tr.profile.to_dict() if tr.profile is not None else None))
            for tr in self.transitions}
        return {
            "states": digest((self.states, self.initial_state)),
            "transitions": transitions,
            "factory": digest(_callable_identity(type(self.subject_factory))),
            "sinks": digest([[sink_name(s) for s in tr.event_sinks] for tr in self.transitions]),
            "subjects_num": self.subjects_num,
            "ticks_num": self.ticks_num,
            "tick_ms": self.tick_ms,
            "timestamp_start": self.timestamp_start,
            "seed": self.seed,
            "arrivals": digest([a.to_dict() for a in self.arrivals]),
            "drop_final": self.drop_final,
        }

    def model_fingerprint(self) -> str:
        """A sha256 over what determines the output: states, transitions (with the source code of
        callbacks and of the factory's class), population, ticks, timestamps and seed."""
        return hashlib.sha256(repr(sorted(self.fingerprint_components().items())).encode()).hexdigest()

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
        rate: float | None = None,
        load_shape: Sequence[Any] | None = None,
        repeat: bool = False,
        progress: Callable[[Progress], None] | None = None,
        stop_event: threading.Event | None = None,
        backend: str | None = None,
        keep_workers: bool = False,
        worker_setup: Callable[[], None] | None = None,
        parts: int | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int | None = None,
        checkpoint_keep: int = 2,
        resume_from: str | os.PathLike | None = None,
        max_restarts: int = 0,
    ) -> RunResult:
        """Run the simulation and close every sink once; return counts and timings.

        ``workers >= 2`` (or ``backend="ray"``, or a ``ray_address``) shards the population over
        Ray actors that tick in lockstep windows; otherwise everything runs in this process.
        ``realtime=True`` paces ticks to the wall clock (tick k at ``k * tick_ms / speed``);
        ``rate=R`` instead emits R events per wall-clock second whatever the model's events per
        tick, and ``load_shape=[{"rate": 1000, "for": "30s"}, {"ramp": [1000, 50000], "for": "5m"}]``
        follows steps and ramps (the run ends after the last step unless ``repeat=True``); both
        imply realtime. ``parts``: split the population into this many fixed parts (default: what
        the ``{part}`` sinks say, else one per worker). ``keep_workers=True`` parks the shard actors
        (and the CPUs they hold) after the run for the next run of this driver to reuse;
        ``doge_dist.release_workers()`` frees them. ``worker_setup``: a picklable callable run once in
        each worker process before its shard starts (the CLI installs its log masking there).

        ``checkpoint_dir`` (a folder or an fsspec URL such as ``s3://bucket/run``) receives a checkpoint
        every ``checkpoint_every`` ticks and at the end (also of a stopped run); the newest
        ``checkpoint_keep`` complete ones are kept (0: all). ``resume_from`` (such a
        folder, or one of its ``tick-...`` folders) continues that checkpoint's population for
        ``ticks_num`` more ticks: the events are exactly those one longer run would have made.
        ``max_restarts``: on Ray, a shard whose worker is lost is replaced and replayed from the last
        checkpoint (or from the start) up to this many times per shard.

        Without a ``seed``, the engine's key is taken from Python's ``random`` module (one
        ``getrandbits(64)``), so ``random.seed(42)`` before ``start()`` repeats a run, as in doge-datagen.
        """
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ModelError(f"workers must be an integer >= 1, got {workers!r}")
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
            raise ModelError(f"window must be an integer >= 1 (ticks), got {window!r}")
        if not (isinstance(speed, (int, float)) and not isinstance(speed, bool) and speed > 0):
            raise ModelError(f"speed must be a number > 0, got {speed!r}")
        pacing = _pacing(realtime=realtime, speed=speed, rate=rate, load_shape=load_shape, repeat=repeat)
        if self.ticks_num is None and stop_event is None and pacing.mode == "none":
            raise ModelError("ticks_num=None (unbounded) needs realtime=True or a stop_event to end the run")
        if backend not in (None, "local", "ray"):
            raise ModelError(f"backend must be 'local' or 'ray', got {backend!r}")
        if checkpoint_every is not None:
            every = checkpoint_every
            if isinstance(every, bool) or not isinstance(every, int) or every < 1:
                raise ModelError(f"checkpoint_every must be an integer >= 1 (ticks), got {every!r}")
            if checkpoint_dir is None:
                raise ModelError("checkpoint_every needs checkpoint_dir (where the checkpoints go)")
        keep = checkpoint_keep
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise ModelError(f"checkpoint_keep must be an integer >= 0 (0: keep all), got {keep!r}")
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
            raise ModelError(f"max_restarts must be an integer >= 0, got {max_restarts!r}")
        manifest = None
        if resume_from is not None:
            from ..run._checkpoint import load_manifest

            manifest = load_manifest(os.fspath(resume_from))
        if backend == "local" and workers > 1:
            raise ModelError("backend='local' runs one shard; use workers=1 or backend='ray'")
        if ray_address is None and not os.environ.get("RAY_ADDRESS") and manifest is None:
            check_memory(estimate_run_memory(self, workers))  # a run this machine cannot hold: refused now
        self._stop_requested.clear()
        stops = [self._stop_requested] + ([stop_event] if stop_event is not None else [])
        run_key = seed_key(self.seed) if self.seed is not None else _py_random.getrandbits(64)
        plan = RunPlan.build(self, workers=workers, window=window, pacing=pacing, keep_workers=keep_workers,
                             worker_setup=worker_setup, parts=parts, run_key=run_key,
                             checkpoint_dir=None if checkpoint_dir is None else os.fspath(checkpoint_dir),
                             checkpoint_every=checkpoint_every, checkpoint_keep=keep, resume=manifest,
                             max_restarts=max_restarts)
        controls = RunControls(progress=progress, stop_events=stops)
        use_ray = backend == "ray" or (backend is None and (workers > 1 or ray_address is not None))
        if not use_ray:
            return run_local(plan, controls)
        from ..run._ray_backend import run_ray

        return run_ray(plan, controls, ray_address=ray_address)


def _pacing(*, realtime: bool, speed: float, rate: float | None, load_shape: Sequence[Any] | None,
            repeat: bool) -> Pacing:
    """How the driver paces the run, from start()'s arguments (ModelError on a bad combination)."""
    if rate is not None and load_shape is not None:
        raise ModelError("give rate= or load_shape=, not both (a constant rate is a one-step load shape)")
    if (rate is not None or load_shape is not None) and speed != 1.0:
        raise ModelError("speed= paces ticks to the clock; with rate= or load_shape= the event rate sets "
                         "the pace: drop speed=")
    if rate is not None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (0 < rate < math.inf):
            raise ModelError(f"rate must be a number of events per second > 0, got {rate!r}")
        return Pacing("rate", steps=(LoadStep(float(rate), float(rate), math.inf),))
    if load_shape is not None:
        return Pacing("rate", steps=parse_load_shape(load_shape), repeat=bool(repeat))
    if repeat:
        raise ModelError("repeat=True repeats a load_shape; give load_shape= too")
    return Pacing("clock", speed=float(speed)) if realtime else Pacing()
