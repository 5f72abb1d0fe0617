"""Expected events over simulated time (profiles) and the expected population (arrivals), derived from
the model: against closed forms, an independent tick-by-tick reference, simulation, and ``inspect``.

The closed forms: a self-loop ``a -> a`` keeps every subject in ``a``, so with a daily profile the
expected events in one hour h are ``N x ticks-per-hour x p x m_h / 100``; a stream of ``rate`` arrivals
per tick brings ``rate x ticks`` subjects, with a profile ``sum of rate x m(t)`` over the ticks.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from doge_dist import CountingSink, DataOnlineGenerator, SubjectFactory
from doge_dist.cli import main
from doge_dist.model._analysis import analyze_generator
from doge_dist.model._expected import (
    calendar_zone,
    capped_poisson_mean,
    expected_calendar,
    expected_timeline,
)
from doge_dist.model._outlook import population_outlook
from doge_dist.profiles import daily, piecewise, weekly

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
MONDAY = 1_704_067_200_000  # 2024-01-01T00:00:00Z
SAWTOOTH = [0.2 + 0.15 * (h % 12) for h in range(24)]
WEEK = [1.0, 1.2, 1.4, 1.6, 1.8, 0.4, 0.2]


class Plain(SubjectFactory):
    def create(self, index: int) -> int:
        return index


def self_loop(subjects: int, ticks: int | None, tick_ms: int, percent: float, profile, start: int = MONDAY):
    gen = DataOnlineGenerator(["a"], "a", Plain(), subjects, tick_ms, ticks, start, seed=3)
    gen.add_transition("x", "a", "a", percent, event_sinks=[CountingSink()], profile=profile)
    return gen


def test_self_loop_with_a_daily_profile_per_hour_is_n_ticks_p_m():
    gen = self_loop(2000, 3 * 24 * 60, MINUTE, 1.0, daily(SAWTOOTH))
    calendar = expected_calendar(gen)
    assert calendar.tz == "UTC"
    expected = [2000 * 60 * 1.0 * m / 100 for m in SAWTOOTH]
    assert calendar.per_hour["x"] == pytest.approx(expected, rel=1e-9)
    # three days from Monday: Monday to Wednesday covered, the rest not
    per_day = 2000 * 60 * sum(SAWTOOTH) / 100
    assert calendar.per_weekday["x"][:3] == pytest.approx([per_day] * 3, rel=1e-9)
    assert calendar.per_weekday["x"][3:] == [None] * 4
    assert calendar.hours_covered == pytest.approx([3.0] * 24)
    # a check that can fail: the profile one hour off
    shifted = [2000 * 60 * m / 100 for m in SAWTOOTH[1:] + SAWTOOTH[:1]]
    assert calendar.per_hour["x"] != pytest.approx(shifted, rel=1e-3)


def test_daily_times_weekly_per_weekday_and_per_hour():
    gen = self_loop(500, 14 * 24, HOUR, 2.0, daily(SAWTOOTH) * weekly(WEEK))
    calendar = expected_calendar(gen)
    assert calendar.per_weekday["x"] == pytest.approx(
        [500 * 0.02 * w * sum(SAWTOOTH) for w in WEEK], rel=1e-9)
    assert calendar.per_hour["x"] == pytest.approx(
        [500 * 0.02 * m * sum(WEEK) / 7 for m in SAWTOOTH], rel=1e-9)
    assert calendar.days_covered == pytest.approx([2.0] * 7)


def test_hours_are_local_in_the_profiles_time_zone():
    gen = self_loop(100, 2 * 24 * 60, MINUTE, 1.0, daily(SAWTOOTH, tz="Europe/Warsaw"))
    assert calendar_zone(gen) == "Europe/Warsaw"
    calendar = expected_calendar(gen)
    assert calendar.tz == "Europe/Warsaw"
    # the run starts at 01:00 Warsaw time (UTC+1 in January) and ends at 00:59 two days later: every
    # local hour is covered twice, and the table is by local hour, so it is the profile itself
    assert calendar.per_hour["x"] == pytest.approx([100 * 60 * m / 100 for m in SAWTOOTH], rel=1e-9)
    utc = expected_calendar(gen, tz="UTC")
    assert utc.per_hour["x"] == pytest.approx([100 * 60 * m / 100 for m in SAWTOOTH[1:] + SAWTOOTH[:1]],
                                              rel=1e-9)


def test_expected_counts_over_the_run_apply_the_profiles():
    gen = self_loop(1000, 5 * 24, HOUR, 1.5, daily(SAWTOOTH) * weekly(WEEK))
    analysis = analyze_generator(gen)
    stamps = [MONDAY + t * HOUR for t in range(5 * 24)]
    total = sum(1000 * 0.015 * SAWTOOTH[dt.datetime.fromtimestamp(s / 1000, dt.timezone.utc).hour]
                * WEEK[dt.datetime.fromtimestamp(s / 1000, dt.timezone.utc).weekday()] for s in stamps)
    assert analysis.by_trigger["x"].expected_count == pytest.approx(total, rel=1e-9)
    assert analysis.calendar is not None and analysis.population is None
    assert any(note.startswith("profiles:") for note in analysis.notes)


def reference(gen, ticks: int) -> tuple[np.ndarray, np.ndarray]:
    """Tick by tick in plain Python, independent of the module under test: expected events per transition
    per tick and the expected live subjects after each tick (no arrival limit)."""
    states = {name: k for k, name in enumerate(gen.states)}
    d = [0.0] * len(states)
    d[states[gen.initial_state]] = float(gen.subjects_num)
    finals = {s for s in gen.states if not any(t.from_state == s for t in gen.transitions)}
    live = float(gen.subjects_num)
    events = np.zeros((ticks, len(gen.transitions)))
    lives = np.zeros(ticks)
    for t in range(ticks):
        stamp = gen.timestamp_start + t * gen.tick_ms
        new = list(d)
        for k, tr in enumerate(gen.transitions):
            m = 1.0 if tr.profile is None else tr.profile(stamp)
            flow = d[states[tr.from_state]] * tr.probability * m / 100
            events[t, k] = flow
            new[states[tr.from_state]] -= flow
            new[states[tr.to_state]] += flow
            if tr.to_state in finals:
                live -= flow
        for stream in gen.arrivals:
            arriving = stream.rate_per_tick * (1.0 if stream.profile is None else stream.profile(stamp))
            new[states[stream.state]] += arriving
            live += arriving
        d = new
        lives[t] = live
    return events, lives


def churn_model(ticks: int = 600, limit: int | None = None) -> DataOnlineGenerator:
    gen = DataOnlineGenerator(["new", "active", "gone"], "new", Plain(), 300, MINUTE, ticks, MONDAY, seed=11)
    sink = CountingSink()
    gen.add_transition("activate", "new", "active", 4, event_sinks=[sink],
                       profile=piecewise([(MONDAY, 0.5), (MONDAY + 200 * MINUTE, 2.0)]))
    gen.add_transition("ping", "active", "active", 10, event_sinks=[sink], profile=daily(SAWTOOTH))
    gen.add_transition("leave", "active", "gone", 0.5, event_sinks=[sink])
    gen.add_transition("ramp", "new", "new", 1, event_sinks=[sink],
                       profile=piecewise([(MONDAY, 0.0), (MONDAY + 600 * MINUTE, 3.0)], "linear"))
    gen.add_arrivals(0.8, profile=daily(SAWTOOTH), limit=limit)
    return gen


@pytest.mark.parametrize("bucket", [1, 7, 60, 1000])
def test_the_timeline_matches_a_tick_by_tick_reference_at_any_bucket_size(bucket):
    """Bucket 1 steps tick by tick, larger buckets take matrix powers over constant stretches: both
    must give the reference's numbers, bucket by bucket."""
    gen = churn_model()
    events, lives = reference(gen, 600)
    timeline = expected_timeline(gen, bucket)
    assert timeline.buckets.tolist() == list(range(-(-600 // bucket)))
    for k, b in enumerate(timeline.buckets.tolist()):
        lo, hi = b * bucket, min((b + 1) * bucket, 600)
        assert timeline.events[k] == pytest.approx(events[lo:hi].sum(axis=0), rel=1e-9, abs=1e-9)
        assert timeline.live[k] == pytest.approx(lives[hi - 1], rel=1e-9)
    assert timeline.bucket_lengths.sum() == 600
    assert timeline.created.sum() == pytest.approx(sum(0.8 * SAWTOOTH[t // 60 % 24] for t in range(600)))


def test_a_later_window_of_the_timeline_continues_the_same_run():
    gen = churn_model()
    whole = expected_timeline(gen, 50)
    tail = expected_timeline(gen, 50, ticks=300, first_tick=300)
    assert tail.buckets.tolist() == list(range(6, 12))
    assert tail.events == pytest.approx(whole.events[6:], rel=1e-12)
    assert tail.live == pytest.approx(whole.live[6:], rel=1e-12)


def test_arrivals_expected_population_is_rate_times_ticks():
    gen = DataOnlineGenerator(["in"], "in", Plain(), 40, MINUTE, 2 * 24 * 60, MONDAY, seed=1)
    gen.add_transition("stay", "in", "in", 1, event_sinks=[CountingSink()])
    gen.add_arrivals(2.3)
    outlook = population_outlook(gen)
    assert outlook.rows[-1]["tick"] == 2 * 24 * 60
    assert outlook.rows[-1]["arrived"] == pytest.approx(2.3 * 2 * 24 * 60, rel=1e-12)
    assert outlook.rows[-1]["live"] == pytest.approx(40 + 2.3 * 2 * 24 * 60, rel=1e-12)
    assert outlook.rows[-1]["departed"] == 0
    for row in outlook.rows:  # linear in between: rate x ticks so far
        assert row["arrived"] == pytest.approx(2.3 * row["tick"], rel=1e-12)
    assert len(outlook.rows) <= 14


def test_arrivals_with_a_profile_bring_the_sum_of_rate_times_multiplier():
    warsaw = ZoneInfo("Europe/Warsaw")
    gen = DataOnlineGenerator(["in"], "in", Plain(), 0, MINUTE, 3 * 24 * 60, MONDAY, seed=1)
    gen.add_transition("stay", "in", "in", 1, event_sinks=[CountingSink()])
    gen.add_arrivals(0.5, profile=daily(SAWTOOTH, tz="Europe/Warsaw") * weekly(WEEK, tz="Europe/Warsaw"))
    total = 0.0
    for t in range(3 * 24 * 60):
        local = dt.datetime.fromtimestamp((MONDAY + t * MINUTE) / 1000, warsaw)
        total += 0.5 * SAWTOOTH[local.hour] * WEEK[local.weekday()]
    analysis = analyze_generator(gen)
    assert analysis.population.rows[-1]["arrived"] == pytest.approx(total, rel=1e-12)
    assert analysis.population.rows[-1]["live"] == pytest.approx(total, rel=1e-12)


def test_capped_arrivals_expectation_is_e_min_n_limit():
    means = np.array([0.0, 3.0, 80.0, 95.0, 100.0, 105.0, 130.0, 400.0])
    got = capped_poisson_mean(means, 100)
    for mean, value in zip(means.tolist(), got.tolist()):  # E[min(N, 100)] summed directly
        pmf, total, k = math.exp(-mean), 0.0, 0
        while k < 2000:
            total += min(k, 100) * pmf
            k += 1
            pmf *= mean / k
        assert value == pytest.approx(total, abs=1e-9), mean
    assert capped_poisson_mean(means, None).tolist() == means.tolist()


def within_5_sd_of_the_mean(samples: dict[str, list[float]], expected: dict[str, float]) -> None:
    for name, values in samples.items():
        a = np.array(values, dtype=np.float64)
        sd = max(a.std(ddof=1), 1.0) / math.sqrt(a.size)
        assert abs(a.mean() - expected[name]) <= 5 * sd, f"{name}: mean {a.mean():.1f}, expected " \
            f"{expected[name]:.1f} (sd of the mean {sd:.1f})"


def test_the_expectation_agrees_with_simulation():
    """The mean over 20 seeds of each trigger's events, the arrivals and the departures lies within 5
    standard deviations (of the mean) of the derived expectation; the expectation of the same model
    without its arrival cap does not."""
    gen = churn_model(ticks=1500, limit=900)
    timeline = expected_timeline(gen, 100)
    expected = {k: float(v.sum()) for k, v in timeline.by_trigger().items()}
    expected.update(arrived=float(timeline.created.sum()), departed=float(timeline.departed.sum()))
    samples: dict[str, list[float]] = {name: [] for name in expected}
    for seed in range(20):
        result = gen.configure(seed=seed).start()
        for trigger in timeline.by_trigger():
            samples[trigger].append(result.events_by_trigger.get(trigger, 0))
        samples["arrived"].append(result.created - gen.subjects_num)
        samples["departed"].append(result.departed)
        assert result.created - gen.subjects_num <= 900
    within_5_sd_of_the_mean(samples, expected)
    uncapped = expected_timeline(churn_model(ticks=1500), 100)
    wrong = {k: float(v.sum()) for k, v in uncapped.by_trigger().items()}
    wrong.update(arrived=float(uncapped.created.sum()), departed=float(uncapped.departed.sum()))
    with pytest.raises(AssertionError, match="sd of the mean"):
        within_5_sd_of_the_mean(samples, wrong)


# -- inspect ---------------------------------------------------------------------------------------

MODEL = '''
from doge_dist import CountingSink, DataOnlineGenerator, SubjectFactory
from doge_dist.profiles import daily, weekly

SAWTOOTH = [0.2 + 0.15 * (h % 12) for h in range(24)]


class Plain(SubjectFactory):
    def create(self, index):
        return index


def looped(ticks=4320):
    gen = DataOnlineGenerator(["a"], "a", Plain(), 2000, 60000, ticks, 1704067200000)
    gen.add_transition("x", "a", "a", 1.0, event_sinks=[CountingSink()], profile=daily(SAWTOOTH))
    return gen


def growing(ticks=2880):
    gen = DataOnlineGenerator(["a", "gone"], "a", Plain(), 100, 60000, ticks, 1704067200000)
    gen.add_transition("x", "a", "a", 1.0, event_sinks=[CountingSink()])
    gen.add_transition("quit", "a", "gone", 0.1, event_sinks=[CountingSink()])
    gen.add_arrivals(0.25)
    return gen


def plain():
    gen = DataOnlineGenerator(["a"], "a", Plain(), 10, 1000, 100)
    gen.add_transition("x", "a", "a", 1.0, event_sinks=[CountingSink()])
    return gen
'''


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "dyn_models.py"
    path.write_text(MODEL)
    return path


def inspect(capsys, *args) -> tuple[int, str, str]:
    code = main(["inspect", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_inspect_shows_expected_events_per_hour_and_weekday(model_file, capsys):
    code, out, _ = inspect(capsys, f"{model_file}:looped")
    assert code == 0
    assert "expected events per hour of day (UTC) in one such hour, per trigger" in out
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.startswith("  ")
            and len(line.split()) == 2 and line.split()[0][:2].isdigit() and "-" in line.split()[0]}
    assert len(rows) == 24
    for h in range(24):  # N x ticks-per-hour x p x m_h / 100, as printed (4 significant digits)
        printed = float(rows[f"{h:02d}-{(h + 1) % 24:02d}"].replace(",", ""))
        assert printed == pytest.approx(2000 * 60 * 1.0 * SAWTOOTH[h] / 100, rel=1e-3)
    assert "expected events per day of the week in one such day, per trigger" in out
    code, out, _ = inspect(capsys, f"{model_file}:looped", "--json")
    data = json.loads(out)
    assert data["calendar"]["per_hour"]["x"] == pytest.approx([2000 * 60 * m / 100 for m in SAWTOOTH])
    assert data["calendar"]["per_weekday"]["x"][:3] == pytest.approx([2000 * 60 * sum(SAWTOOTH) / 100] * 3)
    assert data["by_trigger"]["x"]["expected_count"] == pytest.approx(3 * 2000 * 60 * sum(SAWTOOTH) / 100)
    assert data["population"] is None


def test_inspect_shows_the_expected_population_under_arrivals(model_file, capsys):
    code, out, _ = inspect(capsys, f"{model_file}:growing")
    assert code == 0
    assert "expected population over the run (departed = entered a final state)" in out
    assert "per hour of day" not in out  # no profile, no calendar
    code, out, _ = inspect(capsys, f"{model_file}:growing", "--json")
    rows = json.loads(out)["population"]["rows"]
    assert rows[-1]["tick"] == 2880 and rows[-1]["arrived"] == pytest.approx(0.25 * 2880)
    # each subject leaves at 0.1% per tick: live = 100 * 0.999^T + sum over arrivals of 0.999^(T-1-t)
    live = 100 * 0.999**2880 + 0.25 * sum(0.999 ** (2880 - 1 - t) for t in range(2880))
    assert rows[-1]["live"] == pytest.approx(live, rel=1e-9)
    assert rows[-1]["departed"] == pytest.approx(100 + 0.25 * 2880 - live, rel=1e-9)


def test_inspect_of_an_unbounded_profiled_model_analyses_one_week(model_file, capsys):
    code, out, _ = inspect(capsys, f"{model_file}:looped", "--ticks", "unbounded", "--json")
    assert code == 0
    calendar = json.loads(out)["calendar"]
    assert calendar["ticks"] == 7 * 24 * 60
    assert calendar["days_covered"] == pytest.approx([1.0] * 7)


def test_inspect_of_a_plain_model_has_no_time_sections(model_file, capsys):
    code, out, _ = inspect(capsys, f"{model_file}:plain")
    assert code == 0 and "per hour of day" not in out and "expected population" not in out


def test_constant_stretches_take_one_step_each_also_with_arrivals():
    """Two days of one-second ticks with an hourly profile and arrivals: one stretch per hour and bucket
    (matrix powers), not one per tick; with a cap, per-tick steps only where the cap is near."""
    from doge_dist.model._expected import _Chain

    for limit in (None, 10**9):
        gen = DataOnlineGenerator(["a", "b"], "a", Plain(), 100, 1000, 2 * 86_400, MONDAY, seed=1)
        gen.add_transition("go", "a", "b", 0.1, event_sinks=[CountingSink()], profile=daily(SAWTOOTH))
        gen.add_transition("back", "b", "a", 0.2, event_sinks=[CountingSink()])
        gen.add_arrivals(0.01, profile=daily(SAWTOOTH), limit=limit)
        segments = list(_Chain(gen).segments(2 * 86_400, lambda t0, t1: np.arange(-(-t0 // 3600) * 3600, t1,
                                                                                     3600)))
        assert 48 <= len(segments) <= 48 + 11, (limit, len(segments))  # + the cuts between chunks of 16,384
        assert sum(s.arrived for s in segments) == pytest.approx(0.01 * 3600 * 2 * sum(SAWTOOTH))
