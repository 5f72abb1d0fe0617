"""Pure scheduling: how subjects split into shards and how ticks split into lockstep windows."""

from __future__ import annotations

from ..engine._layout import part_bounds

__all__ = ["partition", "default_window", "next_window", "window_bounds", "realtime_due"]

DEFAULT_WINDOW = 100
MAX_WINDOW = 10_000
BARRIER_TARGET = 0.05


def partition(subjects: int, shards: int) -> list[tuple[int, int]]:
    """Split indices ``0..subjects-1`` into ``shards`` contiguous ``[start, stop)`` slices.

    Sizes differ by at most one; the first ``subjects % shards`` slices get the extra subject.
    With fewer subjects than shards the trailing slices are empty.
    """
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    if subjects < 0:
        raise ValueError(f"subjects must be >= 0, got {subjects}")
    bounds = part_bounds(subjects, shards)
    return list(zip(bounds[:-1], bounds[1:]))


def default_window(ticks: int | None, realtime: bool) -> int:
    """The first window: one tick in realtime mode, else up to ``DEFAULT_WINDOW`` ticks."""
    if realtime:
        return 1
    if ticks is None:
        return DEFAULT_WINDOW
    return max(1, min(DEFAULT_WINDOW, ticks))


def next_window(current: int, compute_s: float, overhead_s: float, *, fixed: bool,
                target: float = BARRIER_TARGET, limit: int = MAX_WINDOW) -> int:
    """Grow the window while barrier overhead exceeds ``target`` of the window's wall time.

    ``compute_s`` is the slowest shard's compute time in the window, ``overhead_s`` what the
    window cost beyond it (the barrier). A fixed window (set by the user, or realtime) never changes.
    """
    if fixed:
        return current
    total = compute_s + overhead_s
    if total > 0 and overhead_s / total > target:
        return min(limit, current * 2)
    return current


def window_bounds(t0: int, window: int, ticks: int | None) -> tuple[int, int]:
    """The half-open tick range of the window starting at ``t0``, clipped to the run's ticks."""
    t1 = t0 + window
    if ticks is not None:
        t1 = min(t1, ticks)
    return t0, t1


def realtime_due(start_s: float, tick: int, tick_ms: int, speed: float) -> float:
    """Wall-clock time (same clock as ``start_s``) at which ``tick`` is due in realtime mode."""
    return start_s + tick * tick_ms / 1000.0 / speed
