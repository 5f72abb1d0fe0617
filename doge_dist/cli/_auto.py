"""``workers: auto``: run small jobs in this process and large ones on every core.

The decision weighs the run's expected work in one process -- subject creation, subject-ticks and the
expected events from the Markov-chain analysis (:mod:`doge_dist.model._analysis`) -- against what
starting Ray and one actor per core costs. The rates are deliberately conservative figures from the
project's benchmarks (README, "Performance"): seeded runs with Python callbacks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

__all__ = ["WorkersChoice", "choose_workers", "estimate_work_s", "local_cores", "RAY_WORTH_S"]

#: Below this much expected work in one process, starting Ray (seconds here) does not pay off.
RAY_WORTH_S = 10.0
EVENTS_PER_S = 300_000.0            # seeded, callbacks on Python's random
SUBJECT_TICKS_PER_S = 100_000_000.0
SUBJECTS_CREATED_PER_S = 500_000.0


@dataclass(frozen=True)
class WorkersChoice:
    """What ``auto`` chose and why (shown in the summary and the report)."""

    workers: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"requested": "auto", "workers": self.workers, "reason": self.reason}


def local_cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _expected_events(generator: Any) -> tuple[float | None, float | None]:
    """(expected events over the run, expected events per tick in the long run); None where unknown."""
    from ..model._analysis import analyze_generator

    try:
        analysis = analyze_generator(generator)
    except Exception:  # noqa: BLE001 - an estimate only: fall back to subjects x ticks
        return None, None
    counts = [e.expected_count for e in analysis.by_trigger.values()]
    rates = [e.rate_per_tick for e in analysis.by_trigger.values()]
    total = sum(counts) if counts and all(c is not None for c in counts) else None
    rate = sum(rates) if rates and all(r is not None for r in rates) else None
    return total, rate


def estimate_work_s(generator: Any, events: float | None) -> float:
    """Expected seconds of one process for a bounded run."""
    subjects, ticks = generator.subjects_num, generator.ticks_num or 0
    return (subjects / SUBJECTS_CREATED_PER_S + subjects * ticks / SUBJECT_TICKS_PER_S
            + (events or 0.0) / EVENTS_PER_S)


def choose_workers(generator: Any, *, realtime: bool = False, speed: float = 1.0,
                   cores: int | None = None) -> WorkersChoice:
    """1 for small runs, every local core for large ones, with the reason in words."""
    cores = local_cores() if cores is None else cores
    if cores <= 1:
        return WorkersChoice(1, "auto: this machine has one core")
    events, rate = _expected_events(generator)
    if generator.ticks_num is None:
        if not realtime:
            return WorkersChoice(cores, f"auto: an unbounded run as fast as possible, so all {cores} cores")
        ticks_per_s = 1000.0 / generator.tick_ms * speed
        load = ticks_per_s * (generator.subjects_num / SUBJECT_TICKS_PER_S + (rate or 0.0) / EVENTS_PER_S)
        if load < 0.5:
            return WorkersChoice(1, f"auto: the realtime stream needs about {100 * load:.0f}% of one core")
        return WorkersChoice(cores, f"auto: the realtime stream needs about {100 * load:.0f}% of one core, "
                             f"so all {cores} cores")
    work = estimate_work_s(generator, events)
    what = (f"about {events:,.0f} expected events and {generator.subjects_num * generator.ticks_num:,} "
            "subject-ticks" if events is not None
            else f"{generator.subjects_num * generator.ticks_num:,} subject-ticks")
    if work < RAY_WORTH_S:
        return WorkersChoice(1, f"auto: {what}, about {work:.1f} s in one process, less than starting "
                             f"Ray costs (runs estimated over {RAY_WORTH_S:g} s use every core)")
    return WorkersChoice(cores, f"auto: {what}, about {work:.0f} s in one process, so all {cores} cores")
