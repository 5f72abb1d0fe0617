"""Progress on stderr while a run goes: ticks done, events/s, ETA, events per sink, lag."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from ..run._result import Progress
from ._mask import Masker

__all__ = ["ProgressPrinter", "format_duration", "format_progress", "format_rate"]


def format_duration(seconds: float) -> str:
    """``h:mm:ss`` (or ``m:ss``) for an ETA."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _same(text: str) -> str:
    return text


def format_rate(target: float, achieved: float | None, recent_target: float | None = None) -> str:
    """``target 20,000/s, achieved 15,400/s (shortfall 23%)``: the shortfall compares the last second's
    achieved rate with that second's average target (``recent_target``, default ``target``: on a ramp the
    target now is ahead of the last second's), shown only below 95%."""
    if achieved is None:
        return f"target {target:,.0f}/s, achieved -"
    text = f"target {target:,.0f}/s, achieved {achieved:,.0f}/s"
    base = target if recent_target is None else recent_target
    if base > 0 and achieved < 0.95 * base:
        text += f" (shortfall {1 - achieved / base:.0%})"
    return text


def format_progress(p: Progress, tick_s: float | None = None, mask: Callable[[str], str] = _same,
                    recent_target: float | None = None) -> str:
    """One status line for a Progress snapshot (``mask`` is applied to the sink names; ``recent_target``:
    the average target rate over the last second, for the shortfall of a rate-paced run)."""
    if p.ticks_total:
        pct = 100.0 * p.ticks_done / p.ticks_total
        parts = [f"tick {p.ticks_done:,}/{p.ticks_total:,} ({pct:.1f}%)"]
    else:
        parts = [f"tick {p.ticks_done:,} (unbounded)"]
    parts.append(f"{p.total_events:,} events")
    parts.append(f"{p.events_per_s:,.0f} events/s")
    target = getattr(p, "target_rate", None)
    if target is not None:  # a rate-paced run: what it is asked for and what it makes
        parts.append(format_rate(target, getattr(p, "achieved_rate", None), recent_target))
    if p.ticks_total and p.ticks_done:
        remaining = p.ticks_total - p.ticks_done
        per_tick = p.elapsed_s / p.ticks_done if tick_s is None else tick_s
        parts.append(f"ETA {format_duration(remaining * per_tick)}")
    if p.events_by_sink:
        parts.append(", ".join(f"{mask(name)}: {count:,}" for name, count in p.events_by_sink.items()))
    failed = getattr(p, "failed_by_sink", None)
    if failed:
        parts.append("FAILED " + ", ".join(f"{mask(name)}: {count:,}" for name, count in failed.items()))
    if p.lag_s > 0.0005:
        parts.append(f"lag {p.lag_s:.3f} s")
    return " | ".join(parts)


class ProgressPrinter:
    """A ``progress`` callback for ``generator.start()``.

    On a terminal it redraws one line; otherwise (forced with ``--progress``) it writes a line
    at most every ``interval`` seconds. Sink names are masked (they may hold URLs and secrets).
    """

    def __init__(self, stream: TextIO, masker: Masker, *, tty: bool, tick_s: float | None = None,
                 interval: float | None = None) -> None:
        self.stream = stream
        self.masker = masker
        self.tty = tty
        self.tick_s = tick_s
        self.interval = interval if interval is not None else (0.2 if tty else 1.0)
        self._last = -float("inf")
        self._width = 0
        self._drawn = False
        self.updates = 0
        self._targets: list[tuple[float, float]] = []  # (elapsed s, target rate) over the last second

    def _recent_target(self, progress: Progress) -> float | None:
        """The average target rate over the last second (trapezoids between the snapshots; the value a
        second ago interpolated, or extrapolated from the two oldest snapshots early in the run)."""
        target = getattr(progress, "target_rate", None)
        if target is None:
            return None
        now = progress.elapsed_s
        start = now - 1.0
        older = [(t, r) for t, r in self._targets if t <= start]
        self._targets = older[-1:] + [(t, r) for t, r in self._targets if t > start] + [(now, target)]
        points = self._targets
        if len(points) < 2 or now < 1.0:
            return target
        (t0, r0), (t1, r1) = points[0], points[1]
        at_start = r0 + (r1 - r0) * (start - t0) / (t1 - t0) if t1 > t0 else r1
        at_start = min(max(at_start, 0.0), max(r for _, r in points))
        inside = [(start, at_start)] + [(t, r) for t, r in points if t > start]
        return sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in zip(inside, inside[1:]))

    def __call__(self, progress: Progress) -> None:
        recent = self._recent_target(progress)  # every snapshot counts, shown or not
        now = time.monotonic()
        done = progress.ticks_total is not None and progress.ticks_done >= progress.ticks_total
        if now - self._last < self.interval and not done:
            return
        self._last = now
        self.updates += 1
        line = format_progress(progress, self.tick_s, mask=self.masker.mask, recent_target=recent)
        if self.tty:
            pad = max(0, self._width - len(line))
            self.stream.write("\r" + line + " " * pad)
            self._width = len(line)
            self._drawn = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """End the redrawn line so later output starts on a fresh one."""
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
