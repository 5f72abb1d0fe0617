"""The model compiled to arrays: what the engine reads on its hot path."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._profiles import scaled_by_profiles
from ._vocabulary import Transition, sink_name

__all__ = ["CompiledModel", "compile_model", "factory_takes_index", "unique_sink_names", "sinks_in_use_order"]

STRIDE = 1000.0  # > 100 %, so states' cumulative ranges never overlap in flat_cum


@dataclass
class CompiledModel:
    """Per-state probability tables and per-transition dispatch info, built once on the driver."""

    states: list[str]
    transitions: list[Transition]
    initial: int
    to_state: np.ndarray        # int16[T]: transition id -> target state
    out_total_scaled: np.ndarray  # float64[S]: outgoing percent * 2**-32 (maps a 32-bit draw onto it)
    inv_log_stay: np.ndarray    # float64[S]: 1 / log(1 - q); 0 where q == 0 (final states)
    final: np.ndarray           # bool[S]: no outgoing transition (or total probability 0)
    flat_cum: np.ndarray        # float64[T]: state * STRIDE + cumulative percent, sorted
    flat_tid: np.ndarray        # int32[T]: transition id at each flat_cum position
    state_base: np.ndarray      # float64[S]: state * STRIDE
    state_last: np.ndarray      # int64[S]: last flat position of each state (clip for rounding)
    sinks: list[Any]            # unique sinks, first-use order
    sink_names: list[str]       # unique readable names, aligned with sinks
    sink_ids_by_transition: list[tuple[int, ...]]
    has_callbacks: bool
    # time-varying probabilities (None when no transition has a profile)
    flat_prob: np.ndarray | None = None      # float64[T]: base percent at each flat position
    flat_profile: list[Any] | None = None    # profile (or None) at each flat position
    flat_state: np.ndarray | None = None     # int64[T]: from-state at each flat position

    @property
    def profiled(self) -> bool:
        return self.flat_profile is not None

    def cumulative_rows(self, timestamps: np.ndarray) -> np.ndarray:
        """``flat_cum`` for each timestamp (rows), with every profile applied: row k holds, per flat
        position, the state's offset plus the cumulative percent of its transitions at that time."""
        if self.flat_profile is None:
            return np.broadcast_to(self.flat_cum, (len(timestamps), self.flat_cum.size))
        probs = scaled_by_profiles(self.flat_prob, self.flat_profile, timestamps)
        cum = np.cumsum(probs, axis=1)
        # restart the running sum at each state's first position (segmented cumsum)
        starts = np.flatnonzero(np.r_[True, self.flat_state[1:] != self.flat_state[:-1]])
        before = np.where(starts > 0, cum[:, np.maximum(starts - 1, 0)], 0.0) if starts.size else None
        if before is not None:
            seg = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, self.flat_state.size]))
            cum -= before[:, seg]
        cum += self.state_base[self.flat_state]
        return cum

    @property
    def state_index(self) -> dict[str, int]:
        """State name -> its number in the engine's arrays."""
        index = self.__dict__.get("_state_index")
        if index is None:
            index = self.__dict__["_state_index"] = {name: k for k, name in enumerate(self.states)}
        return index

    @property
    def triggers(self) -> list[str]:
        return [tr.trigger for tr in self.transitions]

    def dispatch_table(self) -> list[tuple[Transition, Callable | None, tuple[Callable, ...]]]:
        """(transition, callback, bound collect methods) per transition id, for the hot loop."""
        return [(tr, tr.action_callback, tuple(sink.collect for sink in tr.event_sinks))
                for tr in self.transitions]


def sinks_in_use_order(transitions: list[Transition]) -> list[Any]:
    """Every sink used by the transitions, once each (by identity), in first-use order."""
    seen: dict[int, Any] = {}
    for tr in transitions:
        for sink in tr.event_sinks:
            seen.setdefault(id(sink), sink)
    return list(seen.values())


def unique_sink_names(sinks: list[Any]) -> list[str]:
    """Readable names for sinks, made unique with ``#2``, ``#3`` suffixes."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for sink in sinks:
        base = sink_name(sink)
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return names


def factory_takes_index(factory: Any) -> bool:
    """True when ``factory.create`` accepts one positional argument (the global subject index)."""
    try:
        params = list(inspect.signature(factory.create).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return False  # the abstract signature create(*args): treat as doge-datagen style
    return len(positional) >= 1


def compile_model(states: list[str], initial_state: str, transitions: list[Transition], *,
                  max_total: dict[str, float] | None = None) -> CompiledModel:
    """Turn validated states and transitions into the engine's lookup tables.

    ``max_total`` gives each state's largest total outgoing percent over the run when profiles make
    it vary: the engine draws candidate ticks at that rate and thins them (see ShardEngine).
    """
    index = {name: i for i, name in enumerate(states)}
    n_states = len(states)
    outgoing: list[list[int]] = [[] for _ in states]
    for tid, tr in enumerate(transitions):
        outgoing[index[tr.from_state]].append(tid)
    # One sorted array over all states: state s's cumulative percentages are offset by s * STRIDE,
    # so one searchsorted picks the transition of every acting subject whatever its state.
    out_total = np.zeros(n_states)
    flat_cum: list[float] = []
    flat_tid: list[int] = []
    flat_state: list[int] = []
    state_last = np.zeros(n_states, dtype=np.int64)
    for s, out in enumerate(outgoing):
        running = 0.0
        for tid in out:
            running += float(transitions[tid].probability)
            flat_cum.append(s * STRIDE + running)
            flat_tid.append(tid)
            flat_state.append(s)
        out_total[s] = running
        state_last[s] = max(len(flat_cum) - 1, 0)
    profiled = any(getattr(tr, "profile", None) is not None for tr in transitions)
    if profiled and max_total is not None:
        out_total = np.array([float(max_total[name]) for name in states])
    q = np.minimum(out_total / 100.0, 1.0)
    final = q <= 0.0
    with np.errstate(divide="ignore"):
        log_stay = np.log1p(-q)
    inv_log_stay = np.zeros(n_states)
    acting = ~final
    inv_log_stay[acting] = 1.0 / log_stay[acting]  # -0.0 when q == 1: the delay is always 0
    # |log u| <= 32 ln 2 for the engine's 32-bit draws; clipping keeps every delay below 2**62
    # (a state acting less than once in 1e17 ticks is as good as final).
    np.maximum(inv_log_stay, -1e17, out=inv_log_stay)
    sinks = sinks_in_use_order(transitions)
    position = {id(sink): k for k, sink in enumerate(sinks)}
    return CompiledModel(
        states=list(states),
        transitions=list(transitions),
        initial=index[initial_state],
        to_state=np.array([index[tr.to_state] for tr in transitions] or [0],
                          dtype=np.int16 if n_states <= np.iinfo(np.int16).max else np.int32),
        out_total_scaled=out_total * 2.0**-32,
        inv_log_stay=inv_log_stay,
        final=final,
        flat_cum=np.array(flat_cum or [0.0]),
        flat_tid=np.array(flat_tid or [0], dtype=np.int32),
        state_base=np.arange(n_states, dtype=np.float64) * STRIDE,
        state_last=state_last,
        sinks=sinks,
        sink_names=unique_sink_names(sinks),
        sink_ids_by_transition=[tuple(position[id(sink)] for sink in tr.event_sinks) for tr in transitions],
        has_callbacks=any(tr.action_callback is not None for tr in transitions),
        flat_prob=np.array([float(transitions[t].probability) for t in flat_tid]) if profiled else None,
        flat_profile=[transitions[t].profile for t in flat_tid] if profiled else None,
        flat_state=np.array(flat_state, dtype=np.int64) if profiled else None,
    )
