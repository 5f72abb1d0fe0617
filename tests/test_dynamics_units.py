"""Pure pieces of behaviour over time, without a run: arrival draws, the population's fixed parts,
load shapes and the rate pacer's target."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import poisson

from doge_dist import ModelError
from doge_dist.engine._arrivals import ArrivalSchedule, poisson_quantile
from doge_dist.engine._layout import ShardLayout, part_bounds, split_parts
from doge_dist.model._arrivals import ArrivalStream
from doge_dist.profiles import daily, piecewise
from doge_dist.run._pacer import (
    LoadStep,
    Pacing,
    RatePacer,
    _events_between,
    parse_duration,
    parse_load_shape,
)

HOUR = 3_600_000


# -- arrival draws ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mean", [0.001, 0.3, 5.0, 49.9, 50.0, 200.0, 1e4, 1e6])
@pytest.mark.parametrize("u", [1e-6, 0.01, 0.3, 0.5, 0.9, 0.99, 1 - 1e-6])
def test_poisson_quantile_is_the_inverse_cdf(mean, u):
    k = poisson_quantile(u, mean)
    assert poisson.cdf(k, mean) >= u
    assert k == 0 or poisson.cdf(k - 1, mean) < u


def test_poisson_quantile_of_a_zero_mean_is_zero():
    assert poisson_quantile(0.999, 0.0) == 0 and poisson_quantile(0.5, -1.0) == 0


def schedule(streams, run_key=7, initial=100, tick_ms=60_000, timestamp_start=0) -> ArrivalSchedule:
    return ArrivalSchedule(streams, run_key, initial, timestamp_start=timestamp_start, tick_ms=tick_ms)


def flatten(windows) -> list[tuple[int, int, int]]:
    """(tick, global index, stream) of every arrival, from (t0, WindowArrivals) pairs."""
    out = []
    for t0, window in windows:
        for offset, (indices, streams) in sorted(window.by_offset.items()):
            out.extend((t0 + offset, int(i), int(s)) for i, s in zip(indices, streams))
    return out


def draw_in_windows(sched: ArrivalSchedule, cuts: list[int]) -> list[tuple[int, int, int]]:
    return flatten((a, sched.draw(a, b)) for a, b in zip(cuts, cuts[1:]))


STREAMS = [ArrivalStream(0.7, None, None, "a"), ArrivalStream(2.0, daily([0.5] * 12 + [1.5] * 12), None, "b")]


def test_arrivals_do_not_depend_on_how_ticks_are_cut_into_windows():
    whole = draw_in_windows(schedule(STREAMS), [0, 3000])
    pieces = draw_in_windows(schedule(STREAMS), [0, 1, 7, 100, 101, 1999, 3000])
    assert whole == pieces and len(whole) > 1000
    # global indices follow (tick, stream) order from the initial population's size on
    assert [i for _, i, _ in whole] == list(range(100, 100 + len(whole)))
    assert [(t, s) for t, _, s in whole] == sorted((t, s) for t, _, s in whole)
    assert draw_in_windows(schedule(STREAMS, run_key=8), [0, 3000]) != whole


def test_arrival_counts_are_poisson_with_the_profiled_mean():
    """Over 10 days of minutes: counts per stream within 4.5 sd of sum(rate * m(t)), derived here."""
    ticks = 10 * 24 * 60
    arrivals = draw_in_windows(schedule(STREAMS), [0, ticks // 3, ticks])
    hours = (np.arange(ticks) // 60) % 24
    for s, expected in ((0, 0.7 * ticks), (1, float(np.sum(2.0 * np.where(hours < 12, 0.5, 1.5))))):
        got = sum(1 for _, _, stream in arrivals if stream == s)
        assert abs(got - expected) <= 4.5 * math.sqrt(expected), (s, got, expected)
    # and per half-day for the profiled stream: 0.5 vs 1.5 per minute times 2.0
    for half, m in ((0, 0.5), (1, 1.5)):
        got = sum(1 for t, _, s in arrivals if s == 1 and ((t // 60) % 24 >= 12) == half)
        expected = 2.0 * m * ticks / 2
        assert abs(got - expected) <= 4.5 * math.sqrt(expected), (half, got, expected)


def test_a_limit_caps_the_arrivals_exactly_and_for_good():
    limited = [ArrivalStream(5.0, None, 37, "a"), ArrivalStream(1.0, None, None, "b")]
    sched = schedule(limited)
    arrivals = draw_in_windows(sched, [0, 5, 6, 200])
    assert sum(1 for _, _, s in arrivals if s == 0) == 37
    assert sched.arrived[0] == 37 and sched.total_arrived == len(arrivals)
    assert [i for _, i, _ in arrivals] == list(range(100, 100 + len(arrivals)))
    # the same cap wherever the windows are cut
    assert draw_in_windows(schedule(limited), [0, 200]) == arrivals


def test_zero_rate_and_a_profile_at_zero_give_no_arrivals():
    off = piecewise([(0, 0.0), (50 * 60_000, 1.0)])
    streams = [ArrivalStream(0.0, None, None, "a"), ArrivalStream(3.0, off, None, "a")]
    arrivals = draw_in_windows(schedule(streams), [0, 100])
    assert arrivals and min(t for t, _, _ in arrivals) >= 50


def test_schedules_move_forward_and_restore_from_their_state():
    sched = schedule(STREAMS)
    first = flatten([(0, sched.draw(0, 40))])
    with pytest.raises(RuntimeError, match="arrival schedule at tick 40, asked for 39"):
        sched.draw(39, 60)
    saved = sched.state()
    rest = flatten([(40, sched.draw(40, 90))])
    again = schedule(STREAMS)
    again.restore(saved)
    assert flatten([(40, again.draw(40, 90))]) == rest
    assert first + rest == draw_in_windows(schedule(STREAMS), [0, 90])


# -- parts of the population -----------------------------------------------------------------------


def test_part_bounds_and_split_parts():
    assert part_bounds(10, 3) == (0, 4, 7, 10)
    assert part_bounds(2, 4) == (0, 1, 2, 2, 2)
    assert split_parts(6, 4) == [(0, 2), (2, 4), (4, 5), (5, 6)]
    assert split_parts(3, 3) == [(0, 1), (1, 2), (2, 3)]


@pytest.mark.parametrize("shards", [1, 2, 3, 6])
def test_every_index_belongs_to_one_part_whatever_the_shard_count(shards):
    layouts = ShardLayout.plan(1000, 6, shards)
    indices = np.arange(0, 1500)  # 1000 initial subjects and 500 arrivals
    owners = np.zeros(indices.size, dtype=int)
    for layout in layouts:
        owners += layout.owns(indices)
    assert owners.tolist() == [1] * indices.size
    reference = ShardLayout.plan(1000, 6, 1)[0].parts_of(indices)
    for layout in layouts:
        assert layout.parts_of(indices).tolist() == reference.tolist()
    # initial subjects: contiguous ranges; arrivals: (index - initial) % parts
    assert reference[:1000].tolist() == sorted(reference[:1000].tolist())
    assert reference[1000:].tolist() == [k % 6 for k in range(500)]
    assert [layout.start for layout in layouts] == sorted({layout.start for layout in layouts})
    assert layouts[0].start == 0 and layouts[-1].stop == 1000 and layouts[0].initial == 1000


# -- load shapes and the pacer's target --------------------------------------------------------------


@pytest.mark.parametrize("text, seconds", [
    (30, 30.0), (2.5, 2.5), ("30", 30.0), ("30s", 30.0), ("5m", 300.0), ("5min", 300.0), ("1h", 3600.0),
    ("250ms", 0.25), (" 1.5 s ", 1.5), (".5s", 0.5),
])
def test_durations(text, seconds):
    assert parse_duration(text, "here") == seconds


@pytest.mark.parametrize("text", ["", "5 minutes", "-1s", "1d", "s", True, "0s", 0, -3, math.inf, "nan"])
def test_bad_durations(text):
    message = r"^here: (expected a duration such as 30s, 5m or 1h|a duration must be > 0)"
    with pytest.raises(ModelError, match=message):
        parse_duration(text, "here")


def test_load_shapes_parse_steps_and_ramps():
    steps = parse_load_shape([{"rate": 1000, "for": "30s"}, {"ramp": [1000, 50000], "for": "5m"},
                              LoadStep(5.0, 5.0, 2.0)])
    assert steps == (LoadStep(1000.0, 1000.0, 30.0), LoadStep(1000.0, 50000.0, 300.0),
                     LoadStep(5.0, 5.0, 2.0))
    assert Pacing("rate", steps=steps).total_s == 332.0 and Pacing("rate", steps=steps).bounded
    assert not Pacing("rate", steps=steps, repeat=True).bounded


BAD_SHAPES = [
    ([], r"load shape: expected a non-empty list of steps"),
    ({"rate": 1, "for": "1s"}, r"load shape: expected a non-empty list of steps"),
    ("rate 5", r"load shape: expected a non-empty list of steps"),
    ([5], r"load shape step 1: expected \{rate: R, for: D\} or \{ramp: \[R0, R1\], for: D\}, got 5"),
    ([{"rate": 1, "for": "1s"}, {"rate": 1, "for": "1s", "burst": 3}],
     r"load shape step 2: unknown key\(s\) \['burst'\]; expected rate or ramp, and for"),
    ([{"rate": 1, "ramp": [1, 2], "for": "1s"}], r"load shape step 1: give exactly one of rate or ramp"),
    ([{"for": "1s"}], r"load shape step 1: give exactly one of rate or ramp, got \['for'\]"),
    ([{"rate": 10}], r"load shape step 1: missing 'for' \(a duration such as 30s or 5m\)"),
    ([{"rate": 10, "for": "soon"}],
     r"load shape step 1: expected a duration such as 30s, 5m or 1h, got 'soon'"),
    ([{"rate": 10, "for": 0}], r"load shape step 1: a duration must be > 0, got 0"),
    ([{"rate": -1, "for": "1s"}],
     r"load shape step 1: a rate must be a number of events per second >= 0, got -1"),
    ([{"rate": "fast", "for": "1s"}], r"load shape step 1: a rate must be a number .* got 'fast'"),
    ([{"rate": math.inf, "for": "1s"}], r"load shape step 1: a rate must be a number .* got inf"),
    ([{"rate": True, "for": "1s"}], r"load shape step 1: a rate must be a number .* got True"),
    ([{"ramp": [1], "for": "1s"}], r"load shape step 1: ramp must be \[from_rate, to_rate\], got \[1\]"),
    ([{"ramp": "1-2", "for": "1s"}], r"load shape step 1: ramp must be \[from_rate, to_rate\]"),
    ([{"ramp": [1, -2], "for": "1s"}], r"load shape step 1: a rate must be a number .* >= 0, got -2"),
]


@pytest.mark.parametrize("shape, message", BAD_SHAPES, ids=[m for _, m in BAD_SHAPES])
def test_bad_load_shapes(shape, message):
    with pytest.raises(ModelError, match=message):
        parse_load_shape(shape)


def test_a_ramp_targets_the_integral_of_its_rate():
    ramp = LoadStep(1000.0, 5000.0, 4.0)  # rate(s) = 1000 + 1000 s
    for s in (0.0, 0.5, 1.0, 3.9, 4.0, 10.0):
        into = min(s, 4.0)
        assert ramp.events_until(s) == pytest.approx(1000 * into + 500 * into**2)
    assert ramp.rate_at(2.0) == 3000.0 and ramp.rate_at(9.0) == 5000.0
    assert LoadStep(7.0, 7.0, math.inf).events_until(3.0) == 21.0


def test_the_pacer_target_follows_the_steps_and_repeats():
    steps = parse_load_shape([{"rate": 100, "for": "2s"}, {"ramp": [100, 300], "for": "2s"}])
    once = RatePacer(Pacing("rate", steps=steps), shards=2)
    assert once.target_events(1.0) == pytest.approx(100.0)
    assert once.target_events(3.0) == pytest.approx(200 + 100 + 50)  # the ramp's first second: 100 -> 200
    assert once.target_events(4.0) == pytest.approx(200 + 400)
    assert once.target_rate(3.0) == pytest.approx(200.0) and once.target_rate(9.0) == 0.0
    looped = RatePacer(Pacing("rate", steps=steps, repeat=True), shards=2)
    assert looped.target_events(5.0) == pytest.approx(600 + 100)
    assert looped.target_rate(5.0) == pytest.approx(100.0) and looped.target_rate(7.5) == pytest.approx(250.0)


def test_events_between_spreads_each_step_over_its_own_run():
    marks = [(0.0, 0.5, 100), (0.5, 0.5, 7), (1.0, 2.0, 50)]  # (start s, end s, events)
    assert _events_between(marks, 0.0, 1.0) == pytest.approx(107.0)
    assert _events_between(marks, 0.25, 1.5) == pytest.approx(50 + 7 + 25)
    assert _events_between(marks, 2.0, 3.0) == 0.0
