"""Pure scheduling functions: shard partitioning, window bounds, adaptive window size, realtime pacing."""

from __future__ import annotations

import pytest

from doge_dist.run._schedule import (
    BARRIER_TARGET,
    DEFAULT_WINDOW,
    MAX_WINDOW,
    default_window,
    next_window,
    partition,
    realtime_due,
    window_bounds,
)


@pytest.mark.parametrize("subjects", [0, 1, 2, 3, 7, 10, 99, 100, 101, 1_000_003])
@pytest.mark.parametrize("shards", [1, 2, 3, 4, 8, 16])
def test_partition_covers_all_indices_contiguously(subjects, shards):
    bounds = partition(subjects, shards)
    assert len(bounds) == shards
    assert bounds[0][0] == 0
    assert bounds[-1][1] == subjects
    for (_, stop), (start, _) in zip(bounds, bounds[1:]):
        assert stop == start
    sizes = [stop - start for start, stop in bounds]
    assert min(sizes) >= 0
    assert max(sizes) - min(sizes) <= 1
    assert sum(sizes) == subjects
    assert sizes == sorted(sizes, reverse=True)  # the extra subjects go to the first shards


def test_partition_examples():
    assert partition(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert partition(2, 4) == [(0, 1), (1, 2), (2, 2), (2, 2)]
    assert partition(0, 2) == [(0, 0), (0, 0)]


@pytest.mark.parametrize("subjects,shards", [(10, 0), (10, -1), (-1, 2)])
def test_partition_rejects_bad_arguments(subjects, shards):
    with pytest.raises(ValueError):
        partition(subjects, shards)


def test_window_bounds_clip_to_ticks():
    assert window_bounds(0, 100, 1000) == (0, 100)
    assert window_bounds(900, 100, 1000) == (900, 1000)
    assert window_bounds(950, 100, 1000) == (950, 1000)
    assert window_bounds(0, 100, 30) == (0, 30)
    assert window_bounds(5000, 100, None) == (5000, 5100)


def test_default_window():
    assert default_window(1000, realtime=False) == DEFAULT_WINDOW
    assert default_window(None, realtime=False) == DEFAULT_WINDOW
    assert default_window(7, realtime=False) == 7
    assert default_window(0, realtime=False) == 1
    assert default_window(1000, realtime=True) == 1
    assert default_window(None, realtime=True) == 1


def test_next_window_grows_only_when_barrier_overhead_exceeds_target():
    assert BARRIER_TARGET == pytest.approx(0.05)
    assert next_window(100, compute_s=0.96, overhead_s=0.04, fixed=False) == 100
    assert next_window(100, compute_s=0.94, overhead_s=0.06, fixed=False) == 200
    assert next_window(100, compute_s=0.0, overhead_s=0.0, fixed=False) == 100
    assert next_window(100, compute_s=0.0, overhead_s=0.5, fixed=False) == 200


def test_next_window_never_changes_a_fixed_window():
    for overhead in (0.0, 0.5, 10.0):
        assert next_window(1, compute_s=0.001, overhead_s=overhead, fixed=True) == 1
        assert next_window(100, compute_s=0.001, overhead_s=overhead, fixed=True) == 100


def test_next_window_caps_at_max_window():
    window = DEFAULT_WINDOW
    for _ in range(40):
        window = next_window(window, compute_s=0.01, overhead_s=1.0, fixed=False)
    assert window == MAX_WINDOW
    assert next_window(MAX_WINDOW - 1, 0.0, 1.0, fixed=False) == MAX_WINDOW
    assert next_window(10, 0.0, 1.0, fixed=False, limit=15) == 15


def test_realtime_due():
    assert realtime_due(100.0, 0, 1000, 1.0) == pytest.approx(100.0)
    assert realtime_due(100.0, 5, 1000, 1.0) == pytest.approx(105.0)
    assert realtime_due(100.0, 5, 200, 2.0) == pytest.approx(100.5)
    assert realtime_due(0.0, 60, 60_000, 60.0) == pytest.approx(60.0)  # a minute per tick at 60x: 1 s each
