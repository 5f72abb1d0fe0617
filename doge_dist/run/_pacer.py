"""Pacing: how fast the driver lets a run go. The engine has no clock; only the pacer looks at one.

Three kinds, chosen by ``Pacing`` (plain data in the plan):

- ``none``: as fast as the machine goes;
- ``clock``: tick k is due at ``start + k * tick_ms / speed`` of wall-clock time (``realtime=True``);
- ``rate``: events at a target rate per wall-clock second, constant or following a load shape of
  steps (``{rate: 1000, for: 30s}``, ``{ramp: [1000, 50000], for: 5m}``): the driver hands the
  shards event budgets in slices of about 20 ms and waits so that the events emitted so far follow
  the integral of the target rate (like SimPy's RealtimeEnvironment, one level up).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .._errors import ModelError
from ._result import RateReport

__all__ = ["Pacing", "LoadStep", "parse_load_shape", "parse_duration", "make_pacer", "Pacer"]

SLICE_S = 0.02          # events are released in budgets of about this much time at the target rate
WINDOW_S = 0.25         # a rate-paced window holds about this much time of events
_MAX_CATCH_UP = 10      # a late run may take up to this many slices at once


@dataclass(frozen=True)
class LoadStep:
    """A constant rate (``start_rate == end_rate``) or a linear ramp, for ``duration_s`` seconds."""

    start_rate: float
    end_rate: float
    duration_s: float

    def rate_at(self, s: float) -> float:
        if self.duration_s == math.inf or self.duration_s <= 0:
            return self.start_rate
        return self.start_rate + (self.end_rate - self.start_rate) * min(max(s / self.duration_s, 0.0), 1.0)

    def events_until(self, s: float) -> float:
        """Target events from the step's start to ``s`` seconds into it."""
        s = min(max(s, 0.0), self.duration_s)
        if s == 0:
            return 0.0
        return s * (self.start_rate + self.rate_at(s)) / 2.0

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready: an endless step's ``for_s`` is None)."""
        duration = self.duration_s if math.isfinite(self.duration_s) else None
        if self.start_rate == self.end_rate:
            return {"rate": self.start_rate, "for_s": duration}
        return {"ramp": [self.start_rate, self.end_rate], "for_s": duration}


@dataclass(frozen=True)
class Pacing:
    """How the driver paces a run (see the module docstring)."""

    mode: str = "none"
    speed: float = 1.0
    steps: tuple[LoadStep, ...] = ()
    repeat: bool = False

    @property
    def total_s(self) -> float:
        return sum(step.duration_s for step in self.steps)

    @property
    def bounded(self) -> bool:
        """A load shape without ``repeat`` ends after its last step."""
        return self.mode == "rate" and not self.repeat and math.isfinite(self.total_s)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|min|h)?\s*$")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(value: Any, where: str) -> float:
    """Seconds from ``30``, ``"30s"``, ``"5m"``, ``"1h"``, ``"250ms"``; ModelError naming ``where``."""
    if isinstance(value, bool):
        raise ModelError(f"{where}: expected a duration such as 30s, 5m or 1h, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ModelError(f"{where}: expected a duration such as 30s, 5m or 1h, got {value!r}")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ModelError(f"{where}: a duration must be > 0, got {value!r}")
    return seconds


def _rate(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value < math.inf):
        raise ModelError(f"{where}: a rate must be a number of events per second >= 0, got {value!r}")
    return float(value)


def parse_load_shape(steps: Sequence[Any]) -> tuple[LoadStep, ...]:
    """Load steps from their plain form: ``{rate: R, for: D}`` or ``{ramp: [R0, R1], for: D}``
    (``LoadStep`` objects pass through); ModelError naming the step."""
    if isinstance(steps, (str, bytes, dict)) or not isinstance(steps, Sequence) or not steps:
        raise ModelError(f"load shape: expected a non-empty list of steps such as "
                         f"[{{rate: 1000, for: 30s}}, {{ramp: [1000, 50000], for: 5m}}], got {steps!r}")
    out = []
    for k, step in enumerate(steps):
        where = f"load shape step {k + 1}"
        if isinstance(step, LoadStep):
            out.append(step)
            continue
        if not isinstance(step, dict):
            raise ModelError(f"{where}: expected {{rate: R, for: D}} or {{ramp: [R0, R1], for: D}}, "
                             f"got {step!r}")
        unknown = sorted(set(step) - {"rate", "ramp", "for"})
        if unknown:
            raise ModelError(f"{where}: unknown key(s) {unknown}; expected rate or ramp, and for")
        if ("rate" in step) == ("ramp" in step):
            raise ModelError(f"{where}: give exactly one of rate or ramp, got {sorted(step)}")
        if "for" not in step:
            raise ModelError(f"{where}: missing 'for' (a duration such as 30s or 5m)")
        duration = parse_duration(step["for"], where)
        if "rate" in step:
            rate = _rate(step["rate"], where)
            out.append(LoadStep(rate, rate, duration))
        else:
            ramp = step["ramp"]
            if not isinstance(ramp, (list, tuple)) or len(ramp) != 2:
                raise ModelError(f"{where}: ramp must be [from_rate, to_rate], got {ramp!r}")
            out.append(LoadStep(_rate(ramp[0], where), _rate(ramp[1], where), duration))
    return tuple(out)


class Pacer:
    """The driver's clock: decides when the next window or step may go and how big it may be."""

    kind = "none"

    def begin(self) -> None:
        self.started = time.monotonic()

    def wait_window(self, t0: int, stop: Callable[[], bool]) -> float:
        """Wait until window ``t0`` may start; return how late it is (seconds)."""
        return 0.0

    def window_ticks(self, current: int) -> int:
        return current

    def budget(self) -> int | None:
        """Events the shards may emit in the next step (None: the whole window)."""
        return None

    def record(self, total_events: int, *, window_done: bool, ticks: int) -> None:
        """Note the events emitted so far (after each step)."""

    def wait_step(self, stop: Callable[[], bool]) -> None:
        """Wait until the next step may go (rate pacing)."""

    def finished(self) -> bool:
        """A load shape that has ended."""
        return False

    def report(self) -> RateReport | None:
        return None

    def rates(self) -> tuple[float | None, float | None]:
        """(target, achieved over the last second) in events/s, for progress."""
        return None, None


def _sleep_until(due: float, stop: Callable[[], bool]) -> float:
    """Sleep until ``due`` (monotonic seconds) in short slices so a stop is noticed; return lag."""
    while True:
        remaining = due - time.monotonic()
        if remaining <= 0:
            return -remaining
        if stop():
            return 0.0
        time.sleep(min(remaining, 0.05))


class ClockPacer(Pacer):
    """Tick k is due at ``start + k * tick_ms / speed``."""

    kind = "clock"

    def __init__(self, tick_ms: int, speed: float) -> None:
        self.tick_s = tick_ms / 1000.0 / speed

    def wait_window(self, t0: int, stop: Callable[[], bool]) -> float:
        return _sleep_until(self.started + t0 * self.tick_s, stop)


class RatePacer(Pacer):
    """Keeps the cumulative events on the integral of the target rate, step by step."""

    kind = "rate"

    def __init__(self, pacing: Pacing, shards: int) -> None:
        self.steps = pacing.steps
        self.repeat = pacing.repeat
        self.period = pacing.total_s
        self.shards = shards
        self.emitted = 0
        self.events_per_tick: float | None = None
        self._steps_done: list[tuple[float, float, int]] = []  # (start s, end s, events) of each step
        self._step_started = 0.0
        self._throughput: float | None = None
        self._window_events = 0
        self._window_ticks = 0

    # -- the target --------------------------------------------------------------------------

    def _locate(self, s: float) -> tuple[float, int, float]:
        """(events of whole earlier periods and steps, step index, seconds into that step)."""
        done = 0.0
        if self.repeat and math.isfinite(self.period) and self.period > 0:
            whole = math.floor(s / self.period)
            done = whole * sum(step.events_until(step.duration_s) for step in self.steps)
            s -= whole * self.period
        for k, step in enumerate(self.steps):
            if s < step.duration_s or k == len(self.steps) - 1:
                return done, k, s
            done += step.events_until(step.duration_s)
            s -= step.duration_s
        return done, len(self.steps) - 1, s  # pragma: no cover - loop always returns

    def target_events(self, s: float) -> float:
        done, k, into = self._locate(s)
        return done + self.steps[k].events_until(into)

    def target_rate(self, s: float) -> float:
        _, k, into = self._locate(s)
        if not self.repeat and into > self.steps[k].duration_s:
            return 0.0
        return self.steps[k].rate_at(into)

    def _time_for(self, events: float, now_s: float) -> float:
        """The earliest time (seconds since start, >= now) at which the target reaches ``events``."""
        if self.target_events(now_s) >= events:
            return now_s
        lo, hi = now_s, now_s + 0.001
        while self.target_events(hi) < events:
            lo, hi = hi, now_s + (hi - now_s) * 2
            if hi - now_s > 1e7:
                return math.inf
        for _ in range(50):
            mid = (lo + hi) / 2
            if self.target_events(mid) >= events:
                hi = mid
            else:
                lo = mid
        return hi

    # -- Pacer -------------------------------------------------------------------------------

    def window_ticks(self, current: int) -> int:
        if self.events_per_tick is None or self.events_per_tick <= 0:
            return 1 if self.events_per_tick is None else max(current, 1) * 2
        rate = max(self.target_rate(time.monotonic() - self.started), 1.0)
        return int(min(10_000, max(1, round(rate * WINDOW_S / self.events_per_tick))))

    def budget(self) -> int | None:
        now = time.monotonic() - self.started
        self._step_started = now
        rate = self.target_rate(now)
        chunk = max(1.0, rate * SLICE_S)
        behind = self.target_events(now) - self.emitted
        chunk = min(max(chunk, behind), chunk * _MAX_CATCH_UP)
        if self._throughput:  # never hand out more than the shards make in a few slices
            chunk = min(chunk, self._throughput * SLICE_S * 2)
        return max(1, math.ceil(chunk / self.shards))

    def wait_step(self, stop: Callable[[], bool]) -> None:
        now = time.monotonic() - self.started
        chunk = max(1.0, self.target_rate(now) * SLICE_S)
        due = self._time_for(self.emitted + chunk / 2.0, now)
        if not math.isfinite(due):  # the target will not grow again: wait for the shape's end
            due = self.period if math.isfinite(self.period) else now + 1.0
        _sleep_until(self.started + due, stop)

    def record(self, total_events: int, *, window_done: bool, ticks: int) -> None:
        step_events = total_events - self.emitted
        self.emitted = total_events
        spent = time.monotonic() - self.started - self._step_started
        if step_events > 0 and spent > 0:  # events per second of stepping, an average over recent steps
            rate = step_events / spent
            self._throughput = rate if self._throughput is None else 0.7 * self._throughput + 0.3 * rate
        self._steps_done.append((self._step_started, time.monotonic() - self.started, step_events))
        self._window_events += step_events
        if window_done:
            self._window_ticks += ticks
            if self._window_ticks > 0:
                observed = self._window_events / self._window_ticks
                self.events_per_tick = observed if self.events_per_tick is None else \
                    0.5 * self.events_per_tick + 0.5 * observed
            self._window_events = 0
            self._window_ticks = 0

    def finished(self) -> bool:
        return not self.repeat and time.monotonic() - self.started >= self.period

    def rates(self) -> tuple[float | None, float | None]:
        now = time.monotonic() - self.started
        achieved = _events_between(self._steps_done, now - 1.0, now) if now >= 1.0 else None
        return self.target_rate(now), achieved

    def report(self) -> RateReport:
        end = self._steps_done[-1][1] if self._steps_done else 0.0
        per_second = []
        marks = self._steps_done
        for second in range(int(math.ceil(end))):
            a, b = float(second), float(second + 1)
            per_second.append({"second": second, "target": self.target_events(b) - self.target_events(a),
                               "achieved": _events_between(marks, a, b)})
        steps = []
        start = 0.0
        for k, step in enumerate(self.steps):
            stop = start + step.duration_s
            span_end = min(stop, end)
            if span_end > start:
                achieved = _events_between(marks, start, span_end) / (span_end - start)
                target = (self.target_events(span_end) - self.target_events(start)) / (span_end - start)
                steps.append({"step": k + 1, **step.to_dict(), "target_events_per_s": target,
                              "achieved_events_per_s": achieved, "seconds": span_end - start})
            start = stop
        return RateReport(steps=steps, per_second=per_second, target_events=self.target_events(end),
                          achieved_events=self.emitted)


def _events_between(steps: list[tuple[float, float, int]], a: float, b: float) -> float:
    """Events emitted between times a and b: each step's events spread over the step's own run
    (from handing out its budget to its report), not over the waits between steps."""
    total = 0.0
    for start, end, events in steps:
        if end <= a or start >= b or events == 0:
            continue
        if end <= start:
            total += events
            continue
        total += events * (min(end, b) - max(start, a)) / (end - start)
    return total


def make_pacer(pacing: Pacing, *, tick_ms: int, shards: int) -> Pacer:
    """The pacer for a plan's pacing."""
    if pacing.mode == "clock":
        return ClockPacer(tick_ms, pacing.speed)
    if pacing.mode == "rate":
        return RatePacer(pacing, shards)
    return Pacer()
