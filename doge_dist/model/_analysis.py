"""Markov-chain analysis of a model: reachability, long-run shares, expected events and stays.

Pure math on the per-tick chain of a generator: in every tick a subject in state ``s`` takes
transition ``k`` with probability ``p_k / 100`` and otherwise stays. Action callbacks that veto
transitions are not modelled (every drawn transition is counted as taken).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._errors import ModelError
from ._compiled import sinks_in_use_order, unique_sink_names

__all__ = [
    "Estimate",
    "ModelAnalysis",
    "analyze",
    "analyze_generator",
    "transition_matrix",
    "propagate",
    "VETO_NOTE",
]

VETO_NOTE = ("action callbacks that veto transitions are not modelled: every drawn transition "
             "is counted as an event")
_TOLERANCE = 1e-9


@dataclass
class Estimate:
    """Expected events of one trigger, sink or transition.

    ``rate_per_tick``: events per tick once the population is in its long-run distribution
    (None when that distribution is not unique). ``expected_count``: expected events over the
    configured ticks with every subject starting in the initial state (None when unbounded).
    """

    rate_per_tick: float | None
    expected_count: float | None

    def to_dict(self) -> dict[str, float | None]:
        return {"rate_per_tick": self.rate_per_tick, "expected_count": self.expected_count}


@dataclass
class ModelAnalysis:
    """Everything ``doge-dist inspect`` reports about a model."""

    states: list[str]
    initial_state: str
    subjects: int
    ticks: int | None
    unreachable: list[str]
    final_states: list[str]
    closed_classes: list[list[str]]
    stationary: dict[str, float] | None
    stationary_note: str
    period: int | None
    long_run_from_initial: dict[str, float]
    distribution_at_end: dict[str, float] | None
    expected_stay: dict[str, float]
    by_trigger: dict[str, Estimate]
    by_sink: dict[str, Estimate]
    by_transition: dict[str, Estimate]
    notes: list[str] = field(default_factory=list)
    calendar: Any = None        # CalendarExpectation: per hour of day / weekday (profiled models)
    population: Any = None      # PopulationOutlook: expected arrivals, departures, live (with arrivals)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data; an infinite expected stay is written as null."""
        return {
            "states": self.states,
            "initial_state": self.initial_state,
            "subjects": self.subjects,
            "ticks": self.ticks,
            "unreachable": self.unreachable,
            "final_states": self.final_states,
            "closed_classes": self.closed_classes,
            "stationary": self.stationary,
            "stationary_note": self.stationary_note,
            "period": self.period,
            "long_run_from_initial": self.long_run_from_initial,
            "distribution_at_end": self.distribution_at_end,
            "expected_stay_ticks": {s: (None if math.isinf(v) else v) for s, v in self.expected_stay.items()},
            "by_trigger": {k: v.to_dict() for k, v in self.by_trigger.items()},
            "by_sink": {k: v.to_dict() for k, v in self.by_sink.items()},
            "by_transition": {k: v.to_dict() for k, v in self.by_transition.items()},
            "notes": self.notes,
            "calendar": None if self.calendar is None else self.calendar.to_dict(),
            "population": None if self.population is None else self.population.to_dict(),
        }


# -- the chain ---------------------------------------------------------------------------------


def transition_matrix(states: Sequence[str], transitions: Iterable[Any]) -> np.ndarray:
    """Row-stochastic per-tick matrix: ``P[i, j]`` = probability of moving from state i to j.

    Raises ModelError for unknown states, negative probabilities or a state whose outgoing
    probabilities exceed 100%.
    """
    index = {name: i for i, name in enumerate(states)}
    n = len(states)
    matrix = np.zeros((n, n))
    for tr in transitions:
        for end in (tr.from_state, tr.to_state):
            if end not in index:
                raise ModelError(f"transition {tr.trigger!r}: state {end!r} is not one of {list(states)}")
        p = float(tr.probability)
        if not math.isfinite(p) or p < 0:
            raise ModelError(f"transition {tr.trigger!r} from {tr.from_state!r}: probability {p} is not >= 0")
        matrix[index[tr.from_state], index[tr.to_state]] += p / 100.0
    totals = matrix.sum(axis=1)
    for i, total in enumerate(totals):
        if total > 1.0 + _TOLERANCE:
            raise ModelError(f"state {states[i]!r}: outgoing probabilities sum to {total * 100:g}% (> 100%)")
    matrix[np.arange(n), np.arange(n)] += np.clip(1.0 - totals, 0.0, None)  # the implicit stay
    return matrix


def propagate(matrix: np.ndarray, start: np.ndarray, ticks: int) -> tuple[np.ndarray, np.ndarray]:
    """``(sum of d_t for t < ticks, d_ticks)`` with ``d_0 = start`` and ``d_{t+1} = d_t P``.

    Uses repeated doubling, so the cost is logarithmic in ``ticks``.
    """
    n = matrix.shape[0]
    # (power, partial sum) for a block of `length` ticks: P^len and sum_{t<len} P^t.
    acc_power, acc_sum = np.eye(n), np.zeros((n, n))
    block_power, block_sum = matrix.copy(), np.eye(n)
    remaining = int(ticks)
    while remaining > 0:
        if remaining & 1:
            acc_sum = acc_sum + acc_power @ block_sum
            acc_power = acc_power @ block_power
        remaining >>= 1
        if remaining:
            block_sum = block_sum + block_power @ block_sum
            block_power = block_power @ block_power
    return start @ acc_sum, start @ acc_power


def _reachable(adjacency: np.ndarray, source: int) -> set[int]:
    seen, stack = {source}, [source]
    while stack:
        i = stack.pop()
        for j in np.nonzero(adjacency[i])[0]:
            if int(j) not in seen:
                seen.add(int(j))
                stack.append(int(j))
    return seen


def _closed_classes(adjacency: np.ndarray) -> list[list[int]]:
    """Communicating classes that cannot be left (recurrent classes of a finite chain)."""
    n = adjacency.shape[0]
    reach = [_reachable(adjacency, i) for i in range(n)]
    classes: list[list[int]] = []
    assigned: set[int] = set()
    for i in range(n):
        if i in assigned:
            continue
        members = sorted(j for j in reach[i] if i in reach[j])
        assigned.update(members)
        if all(reach[j] <= set(members) for j in members):
            classes.append(members)
    return classes


def _period(adjacency: np.ndarray, members: list[int]) -> int:
    level = {members[0]: 0}
    queue = [members[0]]
    inside = set(members)
    gcd = 0
    while queue:
        i = queue.pop(0)
        for j in np.nonzero(adjacency[i])[0]:
            j = int(j)
            if j not in inside:
                continue
            if j not in level:
                level[j] = level[i] + 1
                queue.append(j)
            else:
                gcd = math.gcd(gcd, level[i] + 1 - level[j])
    return gcd or 1


def _class_distribution(matrix: np.ndarray, members: list[int]) -> np.ndarray:
    """The stationary distribution of the chain restricted to one closed class."""
    sub = matrix[np.ix_(members, members)]
    k = len(members)
    system = np.vstack([(sub.T - np.eye(k)), np.ones((1, k))])
    rhs = np.zeros(k + 1)
    rhs[-1] = 1.0
    solution, *_ = np.linalg.lstsq(system, rhs, rcond=None)
    solution = np.clip(solution, 0.0, None)
    return solution / solution.sum()


def _absorption(matrix: np.ndarray, classes: list[list[int]], start: int) -> np.ndarray:
    """Probability of ending in each closed class when starting from ``start``."""
    n = matrix.shape[0]
    recurrent = {i for members in classes for i in members}
    transient = [i for i in range(n) if i not in recurrent]
    result = np.zeros(len(classes))
    if start in recurrent:
        result[next(k for k, members in enumerate(classes) if start in members)] = 1.0
        return result
    q = matrix[np.ix_(transient, transient)]
    into = np.column_stack([matrix[np.ix_(transient, members)].sum(axis=1) for members in classes])
    absorbed = np.linalg.solve(np.eye(len(transient)) - q, into)
    return absorbed[transient.index(start)]


# -- the report --------------------------------------------------------------------------------


def analyze(
    states: Sequence[str],
    initial_state: str,
    transitions: Sequence[Any],
    subjects: int,
    ticks: int | None,
    sinks: Sequence[Any] | None = None,
) -> ModelAnalysis:
    """Analyse the per-tick chain of a model with ``subjects`` subjects over ``ticks`` ticks.

    ``transitions`` are objects with ``trigger``, ``from_state``, ``to_state``, ``probability``
    (percent) and ``event_sinks``; ``sinks`` fixes the sink order (first use otherwise).
    """
    states = list(states)
    if initial_state not in states:
        raise ModelError(f"initial state {initial_state!r} is not one of {states}")
    index = {name: i for i, name in enumerate(states)}
    matrix = transition_matrix(states, transitions)
    n = len(states)
    init = index[initial_state]
    adjacency = matrix > 0

    reachable = _reachable(adjacency, init)
    unreachable = [s for i, s in enumerate(states) if i not in reachable]
    leave = 1.0 - np.diag(matrix)
    leave[np.isclose(leave, 0.0, atol=_TOLERANCE)] = 0.0
    final_states = [s for i, s in enumerate(states) if leave[i] == 0.0]
    expected_stay = {s: (math.inf if leave[i] == 0.0 else 1.0 / leave[i]) for i, s in enumerate(states)}

    classes = _closed_classes(adjacency)
    class_dists = [_class_distribution(matrix, members) for members in classes]
    period: int | None = None
    stationary_vec: np.ndarray | None = None
    if len(classes) == 1:
        stationary_vec = np.zeros(n)
        stationary_vec[classes[0]] = class_dists[0]
        period = _period(adjacency, classes[0])
        note = "unique"
        if period > 1:
            note = (f"unique, but the chain is periodic (period {period}): the shares are long-run "
                    "averages and the distribution itself oscillates")
    else:
        names = ["{" + ", ".join(states[i] for i in members) + "}" for members in classes]
        note = (f"not unique: {len(classes)} closed classes {', '.join(names)}; the long-run share "
                "depends on where subjects start (see long_run_from_initial)")
    absorbed = _absorption(matrix, classes, init)
    long_run = np.zeros(n)
    for weight, members, dist in zip(absorbed, classes, class_dists, strict=True):
        long_run[members] += weight * dist

    start = np.zeros(n)
    start[init] = 1.0
    occupancy: np.ndarray | None = None
    at_end: np.ndarray | None = None
    if ticks is not None:
        occupancy, at_end = propagate(matrix, start, ticks)

    def estimate(selected: list[Any]) -> Estimate:
        rate = count = None
        if stationary_vec is not None:
            rate = subjects * sum(stationary_vec[index[t.from_state]] * t.probability / 100.0
                                  for t in selected)
        if occupancy is not None:
            count = subjects * sum(occupancy[index[t.from_state]] * t.probability / 100.0
                                   for t in selected)
        return Estimate(_clean(rate), _clean(count))

    by_trigger: dict[str, list[Any]] = {}
    by_transition: dict[str, list[Any]] = {}
    for tr in transitions:
        by_trigger.setdefault(tr.trigger, []).append(tr)
        by_transition.setdefault(f"{tr.from_state}:{tr.trigger}", []).append(tr)
    ordered_sinks = list(sinks) if sinks is not None else sinks_in_use_order(transitions)
    by_sink = {name: [t for t in transitions if any(s is sink for s in t.event_sinks)]
               for name, sink in zip(unique_sink_names(ordered_sinks), ordered_sinks, strict=True)}

    return ModelAnalysis(
        states=states,
        initial_state=initial_state,
        subjects=int(subjects),
        ticks=ticks,
        unreachable=unreachable,
        final_states=final_states,
        closed_classes=[[states[i] for i in members] for members in classes],
        stationary=None if stationary_vec is None else _named(states, stationary_vec),
        stationary_note=note,
        period=period,
        long_run_from_initial=_named(states, long_run),
        distribution_at_end=None if at_end is None else _named(states, at_end),
        expected_stay=expected_stay,
        by_trigger={k: estimate(v) for k, v in by_trigger.items()},
        by_sink={k: estimate(v) for k, v in by_sink.items()},
        by_transition={k: estimate(v) for k, v in by_transition.items()},
        notes=[VETO_NOTE] if any(getattr(t, "action_callback", None) for t in transitions) else [],
    )


def analyze_generator(generator: Any) -> ModelAnalysis:
    """``analyze`` on a DataOnlineGenerator's states, transitions, population and ticks.

    With profiles or arrivals, the expected counts over the run come from the time-varying chain
    (:mod:`._expected`), and the analysis adds the expected events per hour of day and weekday
    (profiles) and the expected population over the run (arrivals)."""
    analysis = analyze(
        generator.states,
        generator.initial_state,
        list(generator.transitions),
        generator.subjects_num,
        generator.ticks_num,
        sinks=list(getattr(generator, "sinks", None) or sinks_in_use_order(generator.transitions)),
    )
    arrivals = list(getattr(generator, "arrivals", []) or [])
    from ._expected import expected_calendar, profiled

    if not profiled(generator) and not arrivals:
        return analysis
    from ._outlook import population_outlook

    outlook = population_outlook(generator)
    if generator.ticks_num is not None:
        _replace_counts(analysis, generator, outlook.events_by_transition)
    if profiled(generator):
        analysis.calendar = expected_calendar(generator)
        analysis.notes.append(PROFILE_NOTE)
    if arrivals:
        analysis.population = outlook
        analysis.notes.append(ARRIVALS_NOTE)
    return analysis


PROFILE_NOTE = ("profiles: the stationary share and the per-tick rates use the base probabilities "
                "(multiplier 1); the expected counts over the run, per hour and per weekday apply the "
                "profiles")
ARRIVALS_NOTE = ("arrivals: the stationary share and the per-tick rates are for the initial population; "
                 "the expected counts over the run include the arriving subjects")


def _replace_counts(analysis: ModelAnalysis, generator: Any, per_transition: list[float]) -> None:
    """Expected counts over the run from the time-varying chain (per trigger, sink and transition)."""
    transitions = list(generator.transitions)
    ordered_sinks = list(getattr(generator, "sinks", None) or sinks_in_use_order(transitions))

    def total(selected: Iterable[int]) -> float:
        return float(sum(per_transition[k] for k in selected))

    for name, estimate in analysis.by_trigger.items():
        estimate.expected_count = _clean(total(k for k, t in enumerate(transitions) if t.trigger == name))
    for name, estimate in analysis.by_transition.items():
        estimate.expected_count = _clean(total(
            k for k, t in enumerate(transitions) if f"{t.from_state}:{t.trigger}" == name))
    for name, sink in zip(unique_sink_names(ordered_sinks), ordered_sinks, strict=True):
        if name in analysis.by_sink:
            analysis.by_sink[name].expected_count = _clean(total(
                k for k, t in enumerate(transitions) if any(s is sink for s in t.event_sinks)))


def _named(states: Sequence[str], values: np.ndarray) -> dict[str, float]:
    return {s: _clean(float(v)) for s, v in zip(states, values, strict=True)}


def _clean(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return 0.0 if abs(value) < 1e-15 else value
