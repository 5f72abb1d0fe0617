"""The expected population over a run at a dozen readable moments (what ``inspect`` prints)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._dynamics import format_timestamp
from ._expected import expected_timeline
from ._profiles import DAY_MS, HOUR_MS

__all__ = ["PopulationOutlook", "population_outlook", "outlook_step_ms", "MAX_ROWS"]

MAX_ROWS = 14
_STEPS_MS = (60_000, 5 * 60_000, 15 * 60_000, HOUR_MS, 3 * HOUR_MS, 6 * HOUR_MS, 12 * HOUR_MS, DAY_MS,
             7 * DAY_MS, 28 * DAY_MS)


@dataclass
class PopulationOutlook:
    """Expected arrivals, departures and live subjects at the end of each step of ``step_ticks`` ticks,
    and the expected events per transition over the ``ticks`` analysed."""

    ticks: int
    step_ticks: int
    tick_ms: int
    initial: int
    bounded: bool                                   # False: the run is unbounded, one week is shown
    rows: list[dict[str, Any]] = field(default_factory=list)
    events_by_transition: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"ticks": self.ticks, "step_ticks": self.step_ticks, "initial": self.initial,
                "bounded": self.bounded, "rows": self.rows}


def outlook_step_ms(span_ms: int, tick_ms: int) -> int:
    """A round step (a minute, an hour, a day ...) that cuts ``span_ms`` into at most MAX_ROWS rows."""
    for step in _STEPS_MS:
        if step >= tick_ms and span_ms / step <= MAX_ROWS:
            return step
    return max(tick_ms, -(-span_ms // MAX_ROWS))


def population_outlook(generator: Any) -> PopulationOutlook:
    """The expected population of ``generator`` over its run (over one week when it is unbounded)."""
    tick_ms = int(generator.tick_ms)
    bounded = generator.ticks_num is not None
    ticks = generator.ticks_num if bounded else max(1, -(-7 * DAY_MS // tick_ms))
    step_ticks = max(1, outlook_step_ms(ticks * tick_ms, tick_ms) // tick_ms)
    timeline = expected_timeline(generator, step_ticks, ticks=ticks)
    outlook = PopulationOutlook(ticks=ticks, step_ticks=step_ticks, tick_ms=tick_ms,
                                initial=timeline.initial, bounded=bounded,
                                events_by_transition=timeline.events.sum(axis=0).tolist())
    arrived = departed = 0.0
    for k, bucket in enumerate(timeline.buckets.tolist()):
        arrived += float(timeline.created[k])
        departed += float(timeline.departed[k])
        end_tick = min((bucket + 1) * step_ticks, ticks)
        outlook.rows.append({
            "tick": end_tick, "time": format_timestamp(int(generator.timestamp_start) + end_tick * tick_ms),
            "arrived": arrived, "departed": departed, "live": float(timeline.live[k])})
    return outlook
