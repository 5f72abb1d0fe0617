"""Maximum-likelihood estimation of a doge-dist model (a per-tick Markov chain) from an event log.

Each subject is in one state at a time and acts in ticks of ``tick_ms``. The per-tick probability
of trigger e out of state s is estimated as (e-events out of s) / (ticks subjects spent in s),
counting each subject's time up to the end of the log. That is the exact maximum-likelihood
estimate of the chain doge-dist simulates. With a profile kind, the same ratio is taken per
profile slot (hour of day, weekday, hour of week) and written as multipliers.

Memory: the counters are per (state, trigger, target) and per (state, profile slot); per subject the
fitter keeps a cursor (last state, last tick: 12 bytes in numpy arrays) and one entry in a dict
from the subject's key to its index. Nothing grows with the number of events.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._errors import ModelError
from ..model._arrivals import ArrivalStream
from ..model._profiles import Daily, HourOfWeek, Profile, Weekly
from ..model._yaml_model import ModelTransition, YamlModel
from ._names import Names, SubjectIndex, grow
from ._readers import LogBatch

__all__ = ["PROFILE_KINDS", "FitError", "FitOptions", "FitResult", "LogFitter", "Calendar", "fit_log",
           "floor_significant"]

PROFILE_KINDS = ("none", "daily", "weekly", "hour_of_week")
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
_NEW = np.iinfo(np.int64).min  # cursor tick of a subject not seen yet
_BITS = 21  # state and event ids are packed into one int64 key: from << 42 | event << 21 | to
_MASK = (1 << _BITS) - 1
PROBABILITY_DIGITS = 6  # significant digits written for probabilities (rounded down)
MULTIPLIER_DIGITS = 5  # ... and for profile multipliers


class FitError(ValueError):
    """The log cannot be fitted as asked (too little data, bad options, out-of-order events)."""


def floor_significant(value: float, digits: int) -> float:
    """``value`` rounded down to ``digits`` significant digits (never above ``value``)."""
    if value <= 0 or not math.isfinite(value):
        return 0.0 if value <= 0 else value
    exponent = math.floor(math.log10(value))
    scale = 10.0 ** (digits - 1 - exponent)
    rounded = math.floor(value * scale) / scale
    return rounded if rounded <= value else math.nextafter(rounded, 0.0)


@dataclass(frozen=True)
class FitOptions:
    """How to read states and time out of a log.

    ``use_state``: the log names the state each event leads to; otherwise the state is the last
    event. ``start_state``: the state before a subject's first event. ``population``: subjects
    present from the log's start, including those that never act (None: every subject arrives
    with its first event, which gives ``arrivals``).
    """

    tick_ms: int
    profile: str = "none"
    population: int | None = None
    min_count: int = 5
    start_state: str = "start"
    use_state: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.tick_ms, bool) or not isinstance(self.tick_ms, int) or self.tick_ms <= 0:
            raise FitError(f"--tick-ms must be a positive integer (milliseconds), got {self.tick_ms!r}")
        if self.profile not in PROFILE_KINDS:
            raise FitError(f"--profile must be one of {', '.join(PROFILE_KINDS)}, got {self.profile!r}")
        if self.population is not None and (isinstance(self.population, bool) or
                                            not isinstance(self.population, int) or self.population < 1):
            raise FitError(f"--population must be a positive integer, got {self.population!r}")
        if isinstance(self.min_count, bool) or not isinstance(self.min_count, int) or self.min_count < 1:
            raise FitError(f"--min-count must be an integer >= 1, got {self.min_count!r}")
        if not isinstance(self.start_state, str) or not self.start_state:
            raise FitError(f"--start-state must be a non-empty name, got {self.start_state!r}")
        if self.profile != "none":
            Calendar(self.profile, self.tick_ms)  # checks that ticks tile the slots


class Calendar:
    """Profile slots over integer ticks (tick t covers ``[t, t+1) * tick_ms`` from ``origin``).

    ``slot(t)`` is the hour of day, weekday (Monday 0) or hour of week in UTC. ``cum_grouped``
    sums, per group, F(t) = the number of ticks in ``[0, t)`` falling in each slot, so that the
    ticks of any interval per slot are F(b) - F(a): exposure per slot without a loop over ticks.
    """

    def __init__(self, kind: str, tick_ms: int, origin: int = 0) -> None:
        slot_ms, self.slots, shift_ms = {"daily": (HOUR_MS, 24, 0), "weekly": (DAY_MS, 7, 3 * DAY_MS),
                                         "hour_of_week": (HOUR_MS, 168, 3 * DAY_MS)}[kind]
        if slot_ms % tick_ms:
            unit = "an hour" if slot_ms == HOUR_MS else "a day"
            raise FitError(f"--profile {kind} needs a --tick-ms that divides {unit} ({slot_ms:,} ms) so that "
                           f"ticks fall in one slot each; got {tick_ms:,}")
        self.kind = kind
        self.per_slot = slot_ms // tick_ms
        self.period = self.per_slot * self.slots
        self.shift = (shift_ms // tick_ms + origin) % self.period  # 1970-01-01 was a Thursday

    def slot(self, ticks: np.ndarray) -> np.ndarray:
        return ((np.asarray(ticks, dtype=np.int64) + self.shift) // self.per_slot) % self.slots

    def cum_grouped(self, groups: np.ndarray, ticks: np.ndarray, n_groups: int) -> np.ndarray:
        """(n_groups, slots): per group, the sum of F(t) over its ticks."""
        k, size = self.slots, self.per_slot
        t = np.asarray(ticks, dtype=np.int64) + self.shift
        periods = np.floor_divide(t, self.period)
        rest = t - periods * self.period
        slot = rest // size
        into = (rest - slot * size).astype(np.float64)
        flat = np.asarray(groups, dtype=np.int64) * k + slot
        out = np.repeat(np.bincount(groups, weights=periods.astype(np.float64), minlength=n_groups)[:, None]
                        * size, k, axis=1)
        counts = np.bincount(flat, minlength=n_groups * k).reshape(n_groups, k).astype(np.float64)
        after = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1] - counts  # ticks whose slot is later
        out += size * after
        out += np.bincount(flat, weights=into, minlength=n_groups * k).reshape(n_groups, k)
        return out

    def cum(self, ticks: Iterable[int] | np.ndarray) -> np.ndarray:
        ticks = np.atleast_1d(np.asarray(ticks, dtype=np.int64))
        return self.cum_grouped(np.zeros(ticks.size, dtype=np.int64), ticks, 1)[0]

    def profile(self, multipliers: list[float]) -> Profile:
        return {"daily": Daily, "weekly": Weekly, "hour_of_week": HourOfWeek}[self.kind](multipliers)


@dataclass
class TransitionStat:
    from_state: str
    event: str
    to_state: str
    count: int
    slot_counts: np.ndarray | None


@dataclass
class FitResult:
    """The fitted model and what it was fitted from."""

    model: YamlModel
    events: int
    events_used: int
    subjects: int
    population: int | None
    first_ms: int
    last_ms: int
    ticks: int
    start_ms: int  # the first tick's timestamp (use as timestamp_start to line generated data up)
    log_likelihood: float
    dropped: list[dict[str, Any]]
    same_tick_events: int
    unprofiled: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    state_ticks: dict[str, float] = field(default_factory=dict)  # ticks spent in each state (exposure)
    slot_ticks: dict[str, list[float]] | None = None  # ... per profile slot, with --profile

    def summary(self) -> str:
        """A short report: states, transitions, events used, time span, log-likelihood, dropped."""
        model = self.model
        profiled = sum(1 for t in model.transitions if t.profile is not None)
        span_h = (self.last_ms - self.first_ms) / HOUR_MS
        lines = [
            f"fitted {len(model.states)} states, {len(model.transitions)} transitions"
            + (f" ({profiled} with a {_profile_kind(model)} profile)" if profiled else "")
            + f" from {self.events:,} events of {self.subjects:,} subjects",
            f"  events used: {self.events_used:,} ({self.events - self.events_used:,} in dropped "
            "transitions)",
            f"  time span: {_iso(self.first_ms)} .. {_iso(self.last_ms)} ({span_h:,.1f} h, {self.ticks:,} "
            f"ticks of {model.tick_ms:,} ms)",
            f"  log-likelihood: {self.log_likelihood:,.1f} "
            f"({self.log_likelihood / max(self.events_used, 1):.4f} per event used)",
        ]
        if self.population is not None:
            lines.append(f"  population: {self.population:,} subjects from the start "
                         f"({self.population - self.subjects:,} never act)")
        else:
            rate = model.arrivals[0].rate_per_tick if model.arrivals else 0.0
            lines.append(f"  arrivals: {rate:.6g} new subjects per tick (each subject arrives with its first "
                         "event; --population N for a fixed population)")
        lines.append(f"  states: {', '.join(model.states)}")
        if self.dropped:
            shown = ", ".join(f"{d['event']} ({d['from']} -> {d['to']}: {d['count']})"
                              for d in self.dropped[:8])
            more = f" and {len(self.dropped) - 8} more" if len(self.dropped) > 8 else ""
            lines.append(f"  dropped {len(self.dropped)} transition(s) seen fewer than --min-count times: "
                         f"{shown}{more}")
        else:
            lines.append("  dropped: none")
        if self.unprofiled:
            lines.append(f"  no profile (too few events per slot): {', '.join(self.unprofiled[:8])}"
                         + (f" and {len(self.unprofiled) - 8} more" if len(self.unprofiled) > 8 else ""))
        if self.same_tick_events:
            lines.append(f"  note: {self.same_tick_events:,} events came in the same tick as their subject's "
                         "previous event (the model allows one per tick); a smaller --tick-ms fits them "
                         "better")
        if self.elapsed_s > 0:
            lines.append(f"  read and fitted in {self.elapsed_s:.2f} s "
                         f"({self.events / self.elapsed_s:,.0f} events/s)")
        return "\n".join(lines)


def _profile_kind(model: YamlModel) -> str:
    for t in model.transitions:
        if t.profile is not None:
            return next(iter(t.profile.to_dict()))
    return "none"


def _iso(ms: int) -> str:
    moment = _dt.datetime.fromtimestamp(ms / 1000, _dt.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LogFitter:
    """Streams batches of a log into counters; ``result()`` turns them into a model."""

    def __init__(self, options: FitOptions) -> None:
        self.options = options
        self.tick_ms = options.tick_ms
        self.states = Names([options.start_state])
        self.events = Names()
        self.subjects = SubjectIndex()
        self.event_state = np.zeros(0, dtype=np.int64)  # event id -> state id (states = last events)
        self.cur_state = np.zeros(1024, dtype=np.int32)
        self.cur_tick = np.full(1024, _NEW, dtype=np.int64)
        self.calendar: Calendar | None = None
        self.slots = 1
        self.exposure = np.zeros(16)
        self.exposure_slot = np.zeros((16, 1))
        self.counts: dict[int, int] = {}
        self.slot_counts: dict[int, np.ndarray] = {}
        self.origin: int | None = None
        self.first_n = 0
        self.first_sum = 0
        self.first_cum = np.zeros(1)
        self.first_hist = np.zeros(1)
        self.arrival_hist = np.zeros(1)
        self.t_min = self.t_max = 0
        self.ms_min = self.ms_max = 0
        self.n_events = 0
        self.same_tick = 0

    # -- streaming ---------------------------------------------------------------------------------

    def add(self, batch: LogBatch) -> None:
        """Count one batch (each subject's events must come in time order, across batches too)."""
        n = len(batch)
        if n == 0:
            return
        time_ms = batch.time_ms
        if self.origin is None:
            self.origin = int(time_ms.min()) // self.tick_ms
            self.t_min = self.t_max = 0
            self.ms_min = self.ms_max = int(time_ms[0])
            if self.options.profile != "none":
                self.calendar = Calendar(self.options.profile, self.tick_ms, self.origin)
                self.slots = self.calendar.slots
                self.exposure_slot = np.zeros((16, self.slots))
                self.first_cum = np.zeros(self.slots)
                self.first_hist = np.zeros(self.slots)
                self.arrival_hist = np.zeros(self.slots)
        tick = np.floor_divide(time_ms, self.tick_ms) - self.origin
        sid, new_subjects = self.subjects.encode(batch.subject)
        ev, new_events = self.events.encode(batch.event)
        if batch.state is not None:
            to, _ = self.states.encode(batch.state)
        else:
            if new_events:
                ids = self.states.ids
                for name in new_events:
                    ids.setdefault(name, len(ids))
                self.event_state = np.array([ids[name] for name in self.events.ids], dtype=np.int64)
            to = self.event_state[ev]
        if len(self.states) > _MASK or len(self.events) > _MASK:
            raise FitError(f"too many distinct states or events (over {_MASK:,})")
        n_subjects = len(self.subjects)
        if n_subjects > len(self.cur_state):
            self.cur_state = grow(self.cur_state, n_subjects, 0)
            self.cur_tick = grow(self.cur_tick, n_subjects, _NEW)
        n_states = len(self.states)
        if n_states > len(self.exposure):
            self.exposure = grow(self.exposure, n_states, 0.0)
            self.exposure_slot = grow(self.exposure_slot, n_states, 0.0)

        order = np.argsort(sid, kind="stable")
        sid, tick_s, ev_s, to_s = sid[order], tick[order], ev[order], to[order]
        starts = np.empty(n, dtype=bool)
        starts[0] = True
        np.not_equal(sid[1:], sid[:-1], out=starts[1:])
        prev_state = np.empty(n, dtype=np.int64)
        prev_tick = np.empty(n, dtype=np.int64)
        prev_state[1:] = to_s[:-1]
        prev_tick[1:] = tick_s[:-1]
        first_rows = np.flatnonzero(starts)
        first_ids = sid[first_rows]
        prev_state[first_rows] = self.cur_state[first_ids]
        prev_tick[first_rows] = self.cur_tick[first_ids]
        new = prev_tick == _NEW
        old = ~new
        gaps = tick_s - prev_tick
        backwards = old & (gaps < 0)
        if backwards.any():
            self._out_of_order(batch, order, sid, tick_s, prev_tick, int(np.flatnonzero(backwards)[0]))

        # time spent in the previous state, up to and including the event's tick
        from_old = prev_state[old]
        end = tick_s[old] + 1
        begin = np.where(gaps[old] == 0, tick_s[old], prev_tick[old] + 1)
        self.same_tick += int(np.count_nonzero(gaps[old] == 0))
        self.exposure[:n_states] += np.bincount(from_old, weights=(end - begin).astype(np.float64),
                                                minlength=n_states)
        calendar = self.calendar
        if calendar is not None and from_old.size:
            self.exposure_slot[:n_states] += (calendar.cum_grouped(from_old, end, n_states)
                                              - calendar.cum_grouped(from_old, begin, n_states))

        # first events: out of the start state
        first_ticks = tick_s[new]
        if first_ticks.size:
            self.first_n += int(first_ticks.size)
            self.first_sum += int((first_ticks + 1).sum())
            if calendar is not None:
                self.first_cum += calendar.cum(first_ticks + 1)
                self.first_hist += np.bincount(calendar.slot(first_ticks), minlength=self.slots)
                self.arrival_hist += np.bincount(calendar.slot(first_ticks - 1), minlength=self.slots)
        from_state = np.where(new, 0, prev_state)

        keys = (from_state << (2 * _BITS)) | (ev_s << _BITS) | to_s
        self._count(keys, tick_s)

        ends = np.empty(n, dtype=bool)
        ends[-1] = True
        np.not_equal(sid[1:], sid[:-1], out=ends[:-1])
        self.cur_state[sid[ends]] = to_s[ends]
        self.cur_tick[sid[ends]] = tick_s[ends]

        self.t_min = min(self.t_min, int(tick_s.min()))
        self.t_max = max(self.t_max, int(tick_s.max()))
        self.ms_min = min(self.ms_min, int(time_ms.min()))
        self.ms_max = max(self.ms_max, int(time_ms.max()))
        self.n_events += n

    def _count(self, keys: np.ndarray, ticks: np.ndarray) -> None:
        calendar = self.calendar
        if calendar is None:
            unique, counts = np.unique(keys, return_counts=True)
            table = self.counts
            for key, count in zip(unique.tolist(), counts.tolist()):
                table[key] = table.get(key, 0) + count
            return
        slots = calendar.slot(ticks)
        unique, counts = np.unique(keys * self.slots + slots, return_counts=True)
        table = self.slot_counts
        for packed, count in zip(unique.tolist(), counts.tolist()):
            key, slot = divmod(packed, self.slots)
            row = table.get(key)
            if row is None:
                row = table[key] = np.zeros(self.slots)
            row[slot] += count

    def _out_of_order(self, batch: LogBatch, order: np.ndarray, sid: np.ndarray, ticks: np.ndarray,
                      prev_ticks: np.ndarray, row: int) -> None:
        record = batch.first_record + int(order[row])
        key = self.subjects.key_of(int(sid[row]))
        when = _iso(int(batch.time_ms[order[row]]))
        before = _iso((int(prev_ticks[row]) + (self.origin or 0)) * self.tick_ms)
        raise FitError(f"{batch.source}: record {record:,}: subject {key!r} has an event at {when}, earlier "
                       f"than its previous event (in the tick starting {before}); fit reads each subject's "
                       "events in time order: sort the log by time (or by subject, then time)")

    # -- the model ---------------------------------------------------------------------------------

    def result(self, sources: list[str] | None = None, fields: dict[str, Any] | None = None) -> FitResult:
        """The fitted model; FitError when the log has too little to fit."""
        options = self.options
        if self.n_events == 0:
            raise FitError("the log has no events")
        if self.n_events == 1:
            raise FitError("the log has only one event: fitting needs events spread over at least two ticks")
        if self.t_max == self.t_min:
            raise FitError(f"all {self.n_events:,} events fall within one tick of --tick-ms "
                           f"{self.tick_ms:,}: nothing to estimate (use a smaller --tick-ms)")
        n_subjects = len(self.subjects)
        population = options.population
        if population is not None and population < n_subjects:
            raise FitError(f"--population {population:,} is smaller than the {n_subjects:,} subjects in "
                           "the log")
        if population is None and any((key & _MASK) == 0 for key in self._keys()):
            raise FitError(f"--start-state {options.start_state!r} is also a state of the log: that needs "
                           "--population N (a fixed population waiting there before its first event)")
        exposure, exposure_slot = self._exposure(n_subjects, population)
        stats = self._transitions()
        model, dropped, unprofiled = self._model(stats, exposure, exposure_slot, n_subjects, population)
        ll, used = self._log_likelihood(model, stats, exposure, exposure_slot)
        ticks = self.t_max - self.t_min + 1
        start_ms = (self.t_min + (self.origin or 0)) * self.tick_ms
        model.fit = {
            "logs": list(sources or []),
            "fields": dict(fields or {}),
            "events": self.n_events,
            "events_used": used,
            "subjects": n_subjects,
            "population": population,
            "time_span": {"first": _iso(self.ms_min), "last": _iso(self.ms_max), "start_ms": start_ms,
                          "ticks": ticks},
            "log_likelihood": round(ll, 3),
            "profile": options.profile,
            "min_count": options.min_count,
            "states": {name: {"ticks": int(exposure[i]),
                              "events": int(sum(s.count for s in stats if s.from_state == name))}
                       for i, name in enumerate(self.states.names())},
            "counts": [{"trigger": t.trigger, "from": t.from_state, "events": c}
                       for t, c in zip(model.transitions, self._kept_counts(model, stats))],
            "dropped": dropped,
        }
        names = self.states.names()
        return FitResult(model, self.n_events, used, n_subjects, population, self.ms_min, self.ms_max, ticks,
                         start_ms, ll, dropped, self.same_tick, unprofiled,
                         state_ticks={name: float(exposure[i]) for i, name in enumerate(names)},
                         slot_ticks=None if exposure_slot is None else
                         {name: exposure_slot[i].tolist() for i, name in enumerate(names)})

    def _keys(self) -> list[int]:
        return list(self.counts) if self.calendar is None else list(self.slot_counts)

    def _exposure(self, n_subjects: int, population: int | None) -> tuple[np.ndarray, np.ndarray | None]:
        n_states = len(self.states)
        exposure = self.exposure[:n_states].copy()
        cs = self.cur_state[:n_subjects]
        ct = self.cur_tick[:n_subjects]
        exposure += np.bincount(cs, weights=(self.t_max - ct).astype(np.float64), minlength=n_states)
        calendar = self.calendar
        slot_exposure = None
        if calendar is not None:
            slot_exposure = self.exposure_slot[:n_states].copy()
            slot_exposure += (calendar.cum_grouped(cs, np.full(n_subjects, self.t_max + 1), n_states)
                              - calendar.cum_grouped(cs, ct + 1, n_states))
        if population is not None:
            never = population - n_subjects
            exposure[0] += self.first_sum - self.first_n * self.t_min + never * (self.t_max - self.t_min + 1)
            if calendar is not None:
                at_start = calendar.cum([self.t_min])
                slot_exposure[0] += self.first_cum - self.first_n * at_start \
                    + never * (calendar.cum([self.t_max + 1]) - at_start)
        else:
            exposure[0] += self.first_n
            if calendar is not None:
                slot_exposure[0] += self.first_hist
        return exposure, slot_exposure

    def _transitions(self) -> list[TransitionStat]:
        states, events = self.states.names(), self.events.names()
        stats = []
        source = self.counts if self.calendar is None else self.slot_counts
        for key, value in source.items():
            source_state, event, target = key >> (2 * _BITS), (key >> _BITS) & _MASK, key & _MASK
            count = int(value) if self.calendar is None else int(round(value.sum()))
            stats.append(TransitionStat(states[source_state], events[event], states[target], count,
                                        None if self.calendar is None else value))
        order = {name: i for i, name in enumerate(states)}
        stats.sort(key=lambda s: (order[s.from_state], -s.count, s.event, order[s.to_state]))
        return stats

    def _model(self, stats: list[TransitionStat], exposure: np.ndarray, slot_exposure: np.ndarray | None,
               n_subjects: int, population: int | None) -> tuple[YamlModel, list[dict], list[str]]:
        options = self.options
        state_index = {name: i for i, name in enumerate(self.states.names())}
        kept = [s for s in stats if s.count >= options.min_count]
        dropped = [{"from": s.from_state, "event": s.event, "to": s.to_state, "count": s.count}
                   for s in stats if s.count < options.min_count]
        targets: dict[tuple[str, str], set[str]] = {}
        for s in kept:
            targets.setdefault((s.from_state, s.event), set()).add(s.to_state)
        calendar = self.calendar
        need = options.min_count * (calendar.slots if calendar is not None else 1)
        transitions: list[ModelTransition] = []
        unprofiled: list[str] = []
        multipliers: list[np.ndarray | None] = []
        for s in kept:
            i = state_index[s.from_state]
            rate = s.count / exposure[i]
            trigger = s.event if len(targets[(s.from_state, s.event)]) == 1 else f"{s.event}->{s.to_state}"
            m = None
            if calendar is not None and slot_exposure is not None:
                if s.count >= need:
                    with np.errstate(divide="ignore", invalid="ignore"):
                        slot_rate = np.where(slot_exposure[i] > 0, s.slot_counts / slot_exposure[i], rate)
                    m = slot_rate / rate
                else:
                    unprofiled.append(f"{trigger} from {s.from_state}")
            multipliers.append(m)
            transitions.append(ModelTransition(trigger, s.from_state, s.to_state,
                                               floor_significant(100.0 * rate, PROBABILITY_DIGITS), None,
                                               None if trigger == s.event else s.event))
        transitions = _with_profiles(transitions, multipliers, calendar)
        arrivals: list[ArrivalStream] = []
        if population is None:
            arrivals.append(self._arrivals(n_subjects))
        model = YamlModel(self.tick_ms, self.states.names(), options.start_state, transitions, arrivals)
        return model, dropped, unprofiled

    def _arrivals(self, n_subjects: int) -> ArrivalStream:
        ticks = self.t_max - self.t_min + 1
        rate = n_subjects / ticks
        profile = None
        calendar = self.calendar
        if calendar is not None and n_subjects >= self.options.min_count * calendar.slots:
            slot_ticks = calendar.cum([self.t_max]) - calendar.cum([self.t_min - 1])
            with np.errstate(divide="ignore", invalid="ignore"):
                per_slot = np.where(slot_ticks > 0, self.arrival_hist / slot_ticks, rate)
            profile = calendar.profile([floor_significant(float(m), MULTIPLIER_DIGITS)
                                        for m in per_slot / rate])
        return ArrivalStream(floor_significant(rate, PROBABILITY_DIGITS), profile, None,
                             self.options.start_state)

    def _kept_counts(self, model: YamlModel, stats: list[TransitionStat]) -> list[int]:
        by_key = {(s.from_state, s.event, s.to_state): s.count for s in stats}
        return [by_key[(t.from_state, t.event or t.trigger, t.to_state)] for t in model.transitions]

    def _log_likelihood(self, model: YamlModel, stats: list[TransitionStat], exposure: np.ndarray,
                        slot_exposure: np.ndarray | None) -> tuple[float, int]:
        """Per-tick log-likelihood of the events used (dropped transitions' events left out)."""
        state_index = {name: i for i, name in enumerate(model.states)}
        by_key = {(s.from_state, s.event, s.to_state): s for s in stats}
        total = 0.0
        used = 0
        slots = self.slots
        for state in model.states:
            i = state_index[state]
            outgoing = [t for t in model.transitions if t.from_state == state]
            all_events = [s for s in stats if s.from_state == state]
            if slot_exposure is not None:
                seen = np.sum([s.slot_counts for s in all_events], axis=0) if all_events else np.zeros(slots)
                stay_ticks = slot_exposure[i] - seen
                leave = np.zeros(slots)
                for t in outgoing:
                    stat = by_key[(t.from_state, t.event or t.trigger, t.to_state)]
                    per_slot = t.probability / 100.0 * (
                        np.asarray(t.profile.values(_slot_starts(self.calendar, slots)))
                        if t.profile is not None else np.ones(slots))
                    leave += per_slot
                    with np.errstate(divide="ignore", invalid="ignore"):
                        terms = np.where(stat.slot_counts > 0, stat.slot_counts * np.log(per_slot), 0.0)
                    total += float(np.sum(terms))
                    used += stat.count
                total += _stay_term(stay_ticks, leave)
            else:
                seen = sum(s.count for s in all_events)
                leave = 0.0
                for t in outgoing:
                    stat = by_key[(t.from_state, t.event or t.trigger, t.to_state)]
                    p = t.probability / 100.0
                    leave += p
                    total += stat.count * math.log(p)
                    used += stat.count
                total += _stay_term(np.array([exposure[i] - seen]), np.array([leave]))
        return total, used


def _stay_term(stay_ticks: np.ndarray, leave: np.ndarray) -> float:
    stay_ticks = np.maximum(stay_ticks, 0.0)
    if np.any((stay_ticks > 0) & (leave >= 1.0)):
        return -math.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.sum(np.where(stay_ticks > 0, stay_ticks * np.log1p(-np.minimum(leave, 1.0)), 0.0)))


def _slot_starts(calendar: Calendar | None, slots: int) -> np.ndarray:
    """One timestamp (epoch ms, UTC) inside each profile slot, in slot order."""
    assert calendar is not None
    if calendar.kind == "daily":
        return np.arange(slots, dtype=np.int64) * HOUR_MS
    if calendar.kind == "weekly":  # 1970-01-05 was a Monday
        return (4 + np.arange(slots, dtype=np.int64)) * DAY_MS
    return 4 * DAY_MS + np.arange(slots, dtype=np.int64) * HOUR_MS


def _with_profiles(transitions: list[ModelTransition], multipliers: list[np.ndarray | None],
                   calendar: Calendar | None) -> list[ModelTransition]:
    """Attach the profiles, keeping every state's total per slot at or below 100%."""
    if calendar is None:
        return transitions
    by_state: dict[str, list[int]] = {}
    for k, t in enumerate(transitions):
        by_state.setdefault(t.from_state, []).append(k)
    rounded: list[np.ndarray | None] = [
        None if m is None else np.array([floor_significant(float(x), MULTIPLIER_DIGITS) for x in m])
        for m in multipliers]
    for members in by_state.values():
        profiled = [k for k in members if rounded[k] is not None]
        if not profiled:
            continue
        flat = sum(transitions[k].probability for k in members if rounded[k] is None)
        varying = np.sum([transitions[k].probability * rounded[k] for k in profiled], axis=0)
        over = flat + varying > 100.0
        if over.any():
            with np.errstate(divide="ignore", invalid="ignore"):
                factor = np.where(over, np.maximum(100.0 - flat, 0.0) / varying, 1.0)
            for k in profiled:
                scaled = rounded[k] * factor
                rounded[k] = np.array([floor_significant(float(x), MULTIPLIER_DIGITS) for x in scaled])
    out = []
    for t, m in zip(transitions, rounded):
        profile = None if m is None else calendar.profile(m.tolist())
        out.append(ModelTransition(t.trigger, t.from_state, t.to_state, t.probability, profile, t.event))
    return out


def fit_log(batches: Iterable[LogBatch], options: FitOptions, *, sources: list[str] | None = None,
            fields: dict[str, Any] | None = None,
            progress: Callable[[int, str], None] | None = None) -> FitResult:
    """Fit a model to a stream of batches (``progress(events so far, source)`` after each batch)."""
    import time

    started = time.perf_counter()
    fitter = LogFitter(options)
    for batch in batches:
        fitter.add(batch)
        if progress is not None:
            progress(fitter.n_events, batch.source)
    try:
        result = fitter.result(sources, fields)
    except ModelError as exc:
        raise FitError(str(exc)) from exc
    result.elapsed_s = time.perf_counter() - started
    return result
