"""Expected events and population over simulated time, derived from the model (never simulated).

The expected number of subjects in each state, ``d_t``, follows the per-tick rule exactly: in tick t a
subject in state s takes transition k with probability ``p_k * m_k(t) / 100`` (``m_k`` its profile's
multiplier at the tick's timestamp), so the expected events of k in tick t are ``d_t[s] * p_k(t)`` and
``d_{t+1} = d_t M_t + a_t``, where ``a_t`` holds the expected arrivals of tick t (they act from the next
tick, as in the engine). Where neither the probabilities nor the arrival rates change, a stretch of L
ticks is one matrix power (by doubling); elsewhere the recurrence steps tick by tick. Stretches are also
cut wherever the caller aggregates (timeline buckets, local hours), so every sum is exact.

Arrivals of a stream with a ``limit`` are ``min(N_t, limit)`` with N_t Poisson of mean ``Lambda_t``
(the sum of ``rate * m(u)`` over the ticks before t); their expectation is
``Lambda - (Lambda P(N >= L) - L P(N >= L + 1))``. Action callbacks that veto transitions are not
modelled: every drawn transition counts as an event.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._analysis import propagate
from ._profiles import DAY_MS, HOUR_MS, HourOfWeek, scaled_by_profiles

__all__ = ["ExpectedTimeline", "CalendarExpectation", "Segment", "expected_timeline", "expected_calendar",
           "capped_poisson_mean", "calendar_zone", "profiled", "merge_by_trigger", "WEEKDAYS"]

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_CHUNK = 16_384        # ticks whose probabilities are evaluated at once
_STEP_BY_TICK = 4      # stretches this short step tick by tick instead of taking a matrix power


@dataclass
class Segment:
    """Expected counts over ticks ``[start, start + length)`` (a stretch with one bucket and hour)."""

    start: int
    length: int
    events: np.ndarray   # per transition
    arrived: float
    departed: float


@dataclass
class ExpectedTimeline:
    """Expected events per transition and population changes per bucket of ``bucket_ticks`` ticks,
    aligned with a run's :class:`~doge_dist.run._result.Timeline` (the same bucket numbers)."""

    bucket_ticks: int
    tick_ms: int
    timestamp_start: int
    first_tick: int
    ticks: int
    initial: int
    triggers: list[str]              # one per transition, in the model's order (as Timeline.triggers)
    buckets: np.ndarray              # bucket numbers (tick // bucket_ticks)
    bucket_lengths: np.ndarray       # ticks of the run in each bucket (the last one may be short)
    events: np.ndarray               # [bucket, transition]
    created: np.ndarray              # expected arrivals per bucket (initial subjects not included)
    departed: np.ndarray             # expected departures (entries into final states) per bucket
    live: np.ndarray                 # expected live subjects at each bucket's end

    def bucket_start_ms(self, bucket: int) -> int:
        return self.timestamp_start + bucket * self.bucket_ticks * self.tick_ms

    def by_trigger(self) -> dict[str, np.ndarray]:
        """Expected events per bucket for each trigger (transitions sharing a trigger added up)."""
        out: dict[str, np.ndarray] = {}
        for k, trigger in enumerate(self.triggers):
            column = self.events[:, k]
            out[trigger] = column.copy() if trigger not in out else out[trigger] + column
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"bucket_ticks": self.bucket_ticks, "first_tick": self.first_tick, "ticks": self.ticks,
                "initial": self.initial, "buckets": self.buckets.tolist(),
                "events_by_trigger": {k: v.tolist() for k, v in self.by_trigger().items()},
                "created": self.created.tolist(), "departed": self.departed.tolist(),
                "live": self.live.tolist()}


@dataclass
class CalendarExpectation:
    """Expected events per trigger by local hour of day (events in one hour) and by day of week
    (events in one day), averaged over the occurrences of each hour and day in the analysed ticks."""

    tz: str
    ticks: int
    timestamp_start: int
    tick_ms: int
    triggers: list[str]
    per_hour: dict[str, list[float | None]] = field(default_factory=dict)     # 24 values, None: not covered
    per_weekday: dict[str, list[float | None]] = field(default_factory=dict)  # 7 values, Monday first
    hours_covered: list[float] = field(default_factory=list)      # hours of the run in each hour of day
    days_covered: list[float] = field(default_factory=list)       # days of the run on each weekday

    def to_dict(self) -> dict[str, Any]:
        return {"tz": self.tz, "ticks": self.ticks, "per_hour": self.per_hour,
                "per_weekday": self.per_weekday, "hours_covered": self.hours_covered,
                "days_covered": self.days_covered}


# -- arrivals with a cap -----------------------------------------------------------------------------


def _poisson_tail(k: int, mean: float) -> float:
    """P(N >= k) for N ~ Poisson(mean), from the pmf over mean +- 12 sd (the rest is below 1e-30)."""
    if k <= 0:
        return 1.0
    if mean <= 0:
        return 0.0
    spread = 12.0 * math.sqrt(mean) + 10.0
    lo, hi = max(0, int(mean - spread)), int(mean + spread) + 1
    if k <= lo:
        return 1.0
    if k > hi:
        return 0.0
    ks = np.arange(k, hi + 1, dtype=np.float64)
    log_pmf = ks * math.log(mean) - mean - np.array([math.lgamma(x + 1) for x in ks.tolist()])
    return float(np.exp(log_pmf).sum())


def capped_poisson_mean(means: np.ndarray, limit: int | None) -> np.ndarray:
    """``E[min(N, limit)]`` for N ~ Poisson(mean), per mean (``limit=None``: the means)."""
    means = np.asarray(means, dtype=np.float64)
    if limit is None:
        return means.copy()
    out = means.copy()
    spread = 12.0 * np.sqrt(np.maximum(means, limit)) + 10.0
    above = means - spread >= limit
    out[above] = float(limit)
    near = np.flatnonzero(~above & (means + spread > limit))
    for i in near.tolist():
        lam = float(means[i])
        out[i] = lam - (lam * _poisson_tail(limit, lam) - limit * _poisson_tail(limit + 1, lam))
    return np.minimum(out, float(limit))


# -- the chain over time -----------------------------------------------------------------------------


class _Chain:
    """The expected state vector of a generator's population, advanced tick by tick (or by powers)."""

    def __init__(self, generator: Any) -> None:
        compiled = generator.compile()  # validates (<= 100% at every tick) and says which states are final
        states = list(generator.states)
        index = {name: i for i, name in enumerate(states)}
        self.transitions = list(generator.transitions)
        n, t = len(states), len(self.transitions)
        self.n_states = n
        self.from_idx = np.array([index[tr.from_state] for tr in self.transitions], dtype=np.int64)
        self.to_idx = np.array([index[tr.to_state] for tr in self.transitions], dtype=np.int64)
        self.from_onehot = np.zeros((t, n))
        self.from_onehot[np.arange(t), self.from_idx] = 1.0
        self.moves = -self.from_onehot.copy()
        self.moves[np.arange(t), self.to_idx] += 1.0
        self.base = np.array([float(tr.probability) / 100.0 for tr in self.transitions])
        self.into_final = np.asarray(compiled.final, dtype=bool)[self.to_idx] if t else np.zeros(0, bool)
        self.tick_ms = int(generator.tick_ms)
        self.timestamp_start = int(generator.timestamp_start)
        self.streams = list(getattr(generator, "arrivals", []) or [])
        self.stream_state = np.array([index[s.state] for s in self.streams], dtype=np.int64)
        self.d = np.zeros(n)
        self.d[index[generator.initial_state]] = float(generator.subjects_num)
        self.lam = np.zeros(len(self.streams))   # cumulative arrival means before the next tick
        self.tick = 0

    def _stamps(self, t0: int, t1: int) -> np.ndarray:
        return self.timestamp_start + np.arange(t0, t1, dtype=np.int64) * self.tick_ms

    def _probabilities(self, stamps: np.ndarray) -> np.ndarray:
        """[tick, transition]: the per-tick probability of each transition (a fraction)."""
        profiles = [getattr(tr, "profile", None) for tr in self.transitions]
        return scaled_by_profiles(self.base, profiles, stamps)

    def _arrivals(self, stamps: np.ndarray) -> np.ndarray:
        """[tick, state]: expected arrivals per tick into each state (advances the cumulative means)."""
        out = np.zeros((stamps.size, self.n_states))
        for s, stream in enumerate(self.streams):
            means = np.full(stamps.size, stream.rate_per_tick)
            if stream.profile is not None:
                means *= stream.profile.values(stamps)
            cumulative = self.lam[s] + np.concatenate(([0.0], np.cumsum(means)))
            per_tick = means
            if stream.limit is not None:
                capped = capped_poisson_mean(cumulative, stream.limit)
                per_tick = np.diff(capped)
                # far below the cap the means themselves: differences of a running sum differ in their last
                # bits, and a row that changes every tick would cost a step per tick
                uncapped = (capped[:-1] == cumulative[:-1]) & (capped[1:] == cumulative[1:])
                per_tick[uncapped] = means[uncapped]
            out[:, self.stream_state[s]] += per_tick
            self.lam[s] = cumulative[-1]
        return out

    def _power(self, p: np.ndarray, a: np.ndarray, length: int) -> np.ndarray:
        """Advance ``length`` ticks at constant probabilities and arrivals; return the summed occupancy."""
        n = self.n_states
        step = np.eye(n + 1)
        step[:n, :n] += (self.from_onehot.T * p) @ self.moves
        step[n, :n] = a
        occupancy, end = propagate(step, np.append(self.d, 1.0), length)
        self.d = end[:n]
        return occupancy[:n]

    def segments(self, stop: int, cuts: Callable[[int, int], np.ndarray]) -> Iterator[Segment]:
        """Expected counts from the current tick to ``stop`` in stretches of constant probabilities and
        arrival rates, also cut at every tick ``cuts(t0, t1)`` returns."""
        while self.tick < stop:
            t0, t1 = self.tick, min(stop, self.tick + _CHUNK)
            stamps = self._stamps(t0, t1)
            probs = self._probabilities(stamps)
            arrivals = self._arrivals(stamps)
            rows = np.concatenate((probs, arrivals), axis=1)
            change = np.zeros(t1 - t0, dtype=bool)
            change[0] = True
            if t1 - t0 > 1:
                change[1:] = np.any(rows[1:] != rows[:-1], axis=1)
            cut = np.asarray(cuts(t0, t1), dtype=np.int64) - t0
            change[cut[(cut >= 0) & (cut < t1 - t0)]] = True
            starts = np.flatnonzero(change)
            ends = np.append(starts[1:], t1 - t0)
            for a, b in zip(starts.tolist(), ends.tolist()):
                yield self._advance(t0 + a, b - a, probs[a], arrivals[a])
            self.tick = t1

    def _advance(self, start: int, length: int, p: np.ndarray, a: np.ndarray) -> Segment:
        if length <= _STEP_BY_TICK:
            events = np.zeros(p.size)
            for _ in range(length):
                flows = (self.from_onehot @ self.d) * p
                events += flows
                self.d = self.d + flows @ self.moves + a
        else:
            occupancy = self._power(p, a, length)
            events = (self.from_onehot @ occupancy) * p
        departed = float(events[self.into_final].sum()) if events.size else 0.0
        return Segment(start, length, events, float(a.sum()) * length, departed)


def _multiples(step: int) -> Callable[[int, int], np.ndarray]:
    def cuts(t0: int, t1: int) -> np.ndarray:
        first = -(-t0 // step) * step
        return np.arange(first, t1, step, dtype=np.int64)
    return cuts


def expected_timeline(generator: Any, bucket_ticks: int, *, ticks: int | None = None,
                      first_tick: int = 0) -> ExpectedTimeline:
    """Expected events per transition, arrivals, departures and live subjects per bucket of
    ``bucket_ticks`` ticks, over ticks ``[first_tick, first_tick + ticks)`` of the run that starts at
    tick 0 with every initial subject in the initial state (``ticks`` defaults to the generator's).

    Use the run's ``result.timeline.bucket_ticks`` to compare with what a run observed."""
    if isinstance(bucket_ticks, bool) or not isinstance(bucket_ticks, int) or bucket_ticks < 1:
        raise ValueError(f"bucket_ticks must be an integer >= 1, got {bucket_ticks!r}")
    ticks = generator.ticks_num if ticks is None else ticks
    if ticks is None:
        raise ValueError("ticks is needed for an unbounded generator (ticks_num=None)")
    stop = first_tick + int(ticks)
    chain = _Chain(generator)
    first_bucket = first_tick // bucket_ticks
    count = max(0, -(-stop // bucket_ticks) - first_bucket) if stop > first_tick else 0
    events = np.zeros((count, len(chain.transitions)))
    created = np.zeros(count)
    departed = np.zeros(count)
    before_created = before_departed = 0.0
    for seg in chain.segments(stop, _multiples(bucket_ticks)):
        b = seg.start // bucket_ticks - first_bucket
        if seg.start < first_tick:
            before_created += seg.arrived
            before_departed += seg.departed
            continue
        events[b] += seg.events
        created[b] += seg.arrived
        departed[b] += seg.departed
    buckets = np.arange(first_bucket, first_bucket + count, dtype=np.int64)
    starts = np.maximum(buckets * bucket_ticks, first_tick)
    lengths = np.minimum((buckets + 1) * bucket_ticks, stop) - starts
    initial = int(generator.subjects_num)
    live = initial + before_created - before_departed + np.cumsum(created) - np.cumsum(departed)
    return ExpectedTimeline(
        bucket_ticks=bucket_ticks, tick_ms=int(generator.tick_ms),
        timestamp_start=int(generator.timestamp_start), first_tick=first_tick, ticks=int(ticks),
        initial=initial, triggers=[tr.trigger for tr in chain.transitions], buckets=buckets,
        bucket_lengths=lengths, events=events, created=created, departed=departed, live=live)


def calendar_zone(generator: Any) -> str:
    """The time zone to show hours in: the one the profiles name when they agree, else UTC."""
    zones: set[str] = set()

    def collect(profile: Any) -> None:
        if profile is None:
            return
        for factor in getattr(profile, "factors", (profile,)):
            tz = getattr(factor, "tz", None)
            if tz:
                zones.add(tz)

    for tr in generator.transitions:
        collect(getattr(tr, "profile", None))
    for stream in getattr(generator, "arrivals", []) or []:
        collect(stream.profile)
    zones.discard("UTC")
    return zones.pop() if len(zones) == 1 else "UTC"


def expected_calendar(generator: Any, *, ticks: int | None = None,
                      tz: str | None = None) -> CalendarExpectation:
    """Expected events per trigger in one local hour of each hour of day, and in one day of each day of
    the week, averaged over the ``ticks`` analysed (default: the generator's; one week when unbounded)."""
    if ticks is None:
        ticks = generator.ticks_num
    if ticks is None:
        ticks = max(1, -(-7 * DAY_MS // int(generator.tick_ms)))
    tz = tz or calendar_zone(generator)
    slots_of = HourOfWeek([1.0] * 168, tz)._slots
    chain = _Chain(generator)
    tick_ms, ts0 = int(generator.tick_ms), int(generator.timestamp_start)

    chunk: dict[str, Any] = {}

    def hour_changes(t0: int, t1: int) -> np.ndarray:
        slots = slots_of(ts0 + np.arange(t0, t1, dtype=np.int64) * tick_ms)
        chunk.update(first=t0, slots=slots)  # the segments of this chunk look their hour up here
        return t0 + np.flatnonzero(np.diff(slots) != 0) + 1

    by_slot = np.zeros((168, len(chain.transitions)))
    ticks_in_slot = np.zeros(168)
    for seg in chain.segments(int(ticks), hour_changes):
        slot = int(chunk["slots"][seg.start - chunk["first"]])
        by_slot[slot] += seg.events
        ticks_in_slot[slot] += seg.length
    triggers = list(dict.fromkeys(tr.trigger for tr in chain.transitions))
    per_trigger = np.zeros((168, len(triggers)))
    for k, tr in enumerate(chain.transitions):
        per_trigger[:, triggers.index(tr.trigger)] += by_slot[:, k]
    hours = ticks_in_slot.reshape(7, 24).sum(axis=0) * tick_ms / HOUR_MS
    days = ticks_in_slot.reshape(7, 24).sum(axis=1) * tick_ms / DAY_MS
    by_hour = per_trigger.reshape(7, 24, -1).sum(axis=0)
    by_day = per_trigger.reshape(7, 24, -1).sum(axis=1)
    result = CalendarExpectation(tz=tz, ticks=int(ticks), timestamp_start=ts0, tick_ms=tick_ms,
                                 triggers=triggers, hours_covered=hours.tolist(), days_covered=days.tolist())
    for j, trigger in enumerate(triggers):
        result.per_hour[trigger] = _per_unit(by_hour[:, j], hours)
        result.per_weekday[trigger] = _per_unit(by_day[:, j], days)
    return result


def _per_unit(totals: np.ndarray, units: np.ndarray) -> list[float | None]:
    return [None if u <= 0 else float(t / u) for t, u in zip(totals.tolist(), units.tolist())]


def profiled(generator: Any) -> bool:
    """Whether any transition or arrival stream of the generator has a profile."""
    return any(getattr(tr, "profile", None) is not None for tr in generator.transitions) or any(
        s.profile is not None for s in getattr(generator, "arrivals", []) or [])


def merge_by_trigger(triggers: Sequence[str], values: np.ndarray) -> dict[str, float]:
    """Per-transition totals added up per trigger."""
    out: dict[str, float] = {}
    for trigger, value in zip(triggers, values.tolist()):
        out[trigger] = out.get(trigger, 0.0) + value
    return out
