"""Time-varying probabilities: per-state maxima over a run and the check that no state goes over 100%.

Profiles are constant (step) or linear between their breakpoints, so a state's total outgoing
probability is too: its maximum over the ticks of a run is found by looking at the first and
last tick between consecutive breakpoints, never at every tick.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .._errors import ModelError
from ._profiles import WEEK_MS, Product, Profile
from ._vocabulary import Transition

__all__ = ["StateBound", "state_bounds", "run_span", "format_timestamp"]

_TOLERANCE = 1e-9
_YEAR_MS = 366 * 24 * 3_600_000
_EXHAUSTIVE_TICKS = 1_000_000  # quadratic pieces (a product of two linear profiles): look at every tick


@dataclass(frozen=True)
class StateBound:
    """The largest total outgoing probability (percent) of one state over a run, and where it is."""

    state: str
    max_percent: float
    at_tick: int


def run_span(ticks: int | None, profiles: Sequence[Profile], timestamp_start: int, tick_ms: int) -> int:
    """How many ticks to look at: the run's, or for an unbounded run enough to see every value the
    profiles take (a year plus a week past the last piecewise point: calendars repeat by then)."""
    if ticks is not None:
        return ticks
    horizon = max((p.horizon_ms for p in profiles if p.horizon_ms is not None), default=timestamp_start)
    stop = max(horizon, timestamp_start) + _YEAR_MS + WEEK_MS
    return max(1, (stop - timestamp_start) // tick_ms + 1)


def _evaluation_ticks(profiles: Sequence[Profile], timestamp_start: int, tick_ms: int,
                      ticks: int) -> np.ndarray:
    """Ticks at which a sum of these profiles reaches its maximum over ``[0, ticks)``: the first and
    last tick of every interval between breakpoints (every tick where a piece may be quadratic)."""
    if ticks <= 0:
        return np.empty(0, dtype=np.int64)
    stop_ms = timestamp_start + (ticks - 1) * tick_ms
    cuts = [p.breakpoints(timestamp_start, stop_ms + 1) for p in profiles]
    points = np.unique(np.concatenate(cuts)) if cuts else np.empty(0, dtype=np.int64)
    # first tick at or after each breakpoint starts an interval; the tick before it ends the previous one
    first = -((timestamp_start - points) // tick_ms)  # ceil((b - ts0) / tick_ms)
    first = first[(first > 0) & (first < ticks)]
    starts = np.unique(np.concatenate(([0], first)))
    ends = np.concatenate((starts[1:] - 1, [ticks - 1]))
    chosen = np.unique(np.concatenate((starts, ends)))
    quadratic = any(isinstance(p, Product) and p.linear_factors >= 2 for p in profiles)
    if quadratic:
        chosen = np.arange(min(ticks, _EXHAUSTIVE_TICKS), dtype=np.int64)
    return chosen


def format_timestamp(timestamp_ms: int) -> str:
    """An epoch-ms timestamp as ISO-8601 UTC, for messages."""
    try:
        moment = _dt.datetime.fromtimestamp(timestamp_ms / 1000, _dt.timezone.utc)
        return moment.isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return f"epoch ms {timestamp_ms}"


def state_bounds(states: Sequence[str], transitions: Sequence[Transition], *, timestamp_start: int,
                 tick_ms: int, ticks: int | None, check: bool = True) -> dict[str, StateBound]:
    """Each state's maximum total outgoing probability over the run (``ticks=None``: over every value
    the profiles take); with ``check``, ModelError naming the state and the first timestamp where the
    total goes over 100%."""
    by_state: dict[str, list[Transition]] = {s: [] for s in states}
    for tr in transitions:
        by_state[tr.from_state].append(tr)
    bounds: dict[str, StateBound] = {}
    for state, outgoing in by_state.items():
        profiled = [tr.profile for tr in outgoing if getattr(tr, "profile", None) is not None]
        if not profiled:
            total = sum(float(tr.probability) for tr in outgoing)
            bounds[state] = StateBound(state, total, 0)
            continue
        span = run_span(ticks, profiled, timestamp_start, tick_ms)
        at = _evaluation_ticks(profiled, timestamp_start, tick_ms, span)
        totals = np.zeros(at.size)
        stamps = timestamp_start + at * tick_ms
        for tr in outgoing:
            prob = float(tr.probability)
            totals += prob * (tr.profile.values(stamps) if getattr(tr, "profile", None) is not None else 1.0)
        over = np.flatnonzero(totals > 100 + _TOLERANCE) if check else np.empty(0, dtype=np.int64)
        if over.size:
            tick = _first_tick_over(outgoing, timestamp_start, tick_ms, at, totals, int(over[0]))
            stamp = timestamp_start + tick * tick_ms
            value = _total_at(outgoing, stamp)
            raise ModelError(
                f"sum of probabilities for state {state!r} is {value:g}% (over 100%) at "
                f"{format_timestamp(stamp)} (tick {tick}, timestamp {stamp}): lower the probabilities "
                f"or the profiles' multipliers of {[tr.trigger for tr in outgoing]}")
        best = int(np.argmax(totals)) if totals.size else 0
        bounds[state] = StateBound(state, float(totals[best]) if totals.size else 0.0,
                                   int(at[best]) if at.size else 0)
    return bounds


def _total_at(outgoing: Sequence[Transition], stamp: int) -> float:
    stamps = np.array([stamp], dtype=np.int64)
    return float(sum(float(tr.probability) * (tr.profile.values(stamps)[0] if tr.profile is not None else 1.0)
                     for tr in outgoing))


def _first_tick_over(outgoing: Sequence[Transition], timestamp_start: int, tick_ms: int, at: np.ndarray,
                     totals: np.ndarray, k: int) -> int:
    """The first tick over 100%: the evaluated tick ``at[k]``, or an earlier one on a rising linear piece."""
    tick = int(at[k])
    if k == 0 or at[k - 1] >= tick - 1:
        return tick
    lo, hi = int(at[k - 1]), tick  # total(lo) <= 100 < total(hi): bisect the ticks in between
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _total_at(outgoing, timestamp_start + mid * tick_ms) > 100 + _TOLERANCE:
            hi = mid
        else:
            lo = mid
    return hi
