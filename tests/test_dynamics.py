"""Behaviour over time in one process: profiles on transitions, arrivals, churn (drop_final), the
timeline, stops and failures, and the validation of every new setting.

The statistical tests derive what to expect from the multipliers they pass in and from Python's own
calendar, never from the engine: a self-loop ``a -> a`` keeps the population in ``a`` constant, so the
events of N subjects over the ticks of one hour of day are Binomial(N * ticks, p * m / 100); arrivals
of a stream are Poisson with mean sum(rate * m(t)). Each check allows 4.5 standard deviations (a false
alarm has probability below 1e-4 over all the checks of this file, and the seeds are fixed anyway);
each statistical test also shows that its check fails against a slightly wrong expectation.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from doge_dist import (
    CountingSink,
    DataOnlineGenerator,
    EventSink,
    JsonLinesSink,
    ModelError,
    SimulationError,
    SubjectFactory,
    Transition,
)
from doge_dist.profiles import daily, piecewise, weekly

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR


@dataclass
class Person:
    index: int
    acts: int = 0


class IndexFactory(SubjectFactory):
    """create(index): the subject remembers its global index."""

    def create(self, index: int) -> Person:
        return Person(index)


class NumberingFactory(SubjectFactory):
    """create(): numbers subjects itself, as doge-datagen's factories do."""

    def __init__(self) -> None:
        self.made = 0

    def create(self) -> Person:
        self.made += 1
        return Person(self.made - 1)


class Recorder(EventSink):
    """Keeps (timestamp, subject index, trigger) of every event, in the order they come."""

    name = "recorder"

    def __init__(self) -> None:
        self.events: list[tuple[int, int, str]] = []
        self.closed = 0

    def collect(self, timestamp: int, subject: Person, transition: Transition) -> None:
        self.events.append((timestamp, subject.index, transition.trigger))

    def close(self) -> None:
        self.closed += 1


class Tally(EventSink):
    """Counts events by ``key(timestamp)``."""

    name = "tally"

    def __init__(self, key: Callable[[int], Hashable]) -> None:
        self.key = key
        self.counts: Counter = Counter()

    def collect(self, timestamp: int, subject: object, transition: Transition) -> None:
        self.counts[self.key(timestamp)] += 1

    def close(self) -> None:
        pass


def utc(ts_ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts_ms / 1000, dt.timezone.utc)


def check_within(observed: dict, mean: dict, variance: dict, sds: float = 4.5) -> None:
    """Every group's count within ``sds`` standard deviations of its expected mean."""
    assert set(observed) <= set(mean), f"counts in unexpected groups: {sorted(set(observed) - set(mean))}"
    worst = []
    for group, expected in mean.items():
        got = observed.get(group, 0)
        sd = math.sqrt(variance[group]) if variance[group] > 0 else 0.0
        if abs(got - expected) > sds * sd + 1e-9:
            worst.append((group, got, round(expected, 1), round(sd, 1)))
    assert not worst, f"(group, observed, expected, sd) beyond {sds} sd: {worst}"


def binomial(trials: dict, probability: dict) -> tuple[dict, dict]:
    mean = {g: trials[g] * probability[g] for g in trials}
    variance = {g: trials[g] * probability[g] * (1 - probability[g]) for g in trials}
    return mean, variance


def self_loop(subjects: int, ticks: int, tick_ms: int, probability: float, profile, sink: EventSink, *,
              timestamp_start: int = 0, seed: int = 2024) -> DataOnlineGenerator:
    gen = DataOnlineGenerator(["a"], "a", IndexFactory(), subjects, tick_ms, ticks, timestamp_start,
                              seed=seed)
    gen.add_transition("loop", "a", "a", probability, event_sinks=[sink], profile=profile)
    return gen


# -- profiles on transitions: statistics ------------------------------------------------------------

SAWTOOTH = [0.2 + 0.15 * (h % 12) for h in range(24)]  # neighbouring hours differ by 0.15 (or 1.65)


def hour_expectation(multipliers: list[float], subjects: int, days: int, ticks_per_hour: int,
                     percent: float) -> tuple[dict, dict]:
    trials = {h: subjects * days * ticks_per_hour for h in range(24)}
    return binomial(trials, {h: percent * multipliers[h] / 100 for h in range(24)})


def test_events_per_hour_of_day_follow_a_daily_profile():
    tally = Tally(lambda ts: utc(ts).hour)
    result = self_loop(2000, 3 * 24 * 60, MINUTE, 1.0, daily(SAWTOOTH), tally).start()
    assert result.total_events == sum(tally.counts.values())
    check_within(tally.counts, *hour_expectation(SAWTOOTH, 2000, 3, 60, 1.0))
    shifted = SAWTOOTH[1:] + SAWTOOTH[:1]  # the profile one hour off: the check must notice
    with pytest.raises(AssertionError, match="beyond 4.5 sd"):
        check_within(tally.counts, *hour_expectation(shifted, 2000, 3, 60, 1.0))
    flat = [sum(SAWTOOTH) / 24] * 24  # and so must a run that ignored the profile
    with pytest.raises(AssertionError, match="beyond 4.5 sd"):
        check_within(tally.counts, *hour_expectation(flat, 2000, 3, 60, 1.0))


def test_a_profiled_transition_beside_a_plain_one_keeps_both_rates():
    """State a: 'loop' (1% x daily profile) and 'plain' (2%, no profile), both back to a."""
    by_trigger: Counter = Counter()

    class ByTrigger(EventSink):
        def collect(self, timestamp, subject, transition):
            by_trigger[(transition.trigger, utc(timestamp).hour)] += 1

        def close(self):
            pass

    sink = ByTrigger()
    gen = DataOnlineGenerator(["a"], "a", IndexFactory(), 1500, MINUTE, 2 * 24 * 60, seed=5)
    gen.add_transition("loop", "a", "a", 1.0, event_sinks=[sink], profile=daily(SAWTOOTH))
    gen.add_transition("plain", "a", "a", 2.0, event_sinks=[sink])
    gen.start()
    loop_mean, loop_var = hour_expectation(SAWTOOTH, 1500, 2, 60, 1.0)
    plain_mean, plain_var = hour_expectation([1.0] * 24, 1500, 2, 60, 2.0)
    mean = {("loop", h): loop_mean[h] for h in range(24)} | {("plain", h): plain_mean[h] for h in range(24)}
    var = {("loop", h): loop_var[h] for h in range(24)} | {("plain", h): plain_var[h] for h in range(24)}
    check_within(by_trigger, mean, var)


def test_events_per_day_of_week_follow_a_weekly_profile():
    week = [1.0, 1.2, 1.4, 1.6, 1.8, 0.4, 0.2]  # Monday first
    tally = Tally(lambda ts: utc(ts).weekday())
    self_loop(3000, 3 * 7 * 24, HOUR, 2.0, weekly(week), tally).start()  # from Thursday 1970-01-01
    trials = {d: 3000 * 3 * 24 for d in range(7)}
    check_within(tally.counts, *binomial(trials, {d: 0.02 * week[d] for d in range(7)}))
    sunday_first = week[-1:] + week[:-1]
    with pytest.raises(AssertionError, match="beyond 4.5 sd"):
        check_within(tally.counts, *binomial(trials, {d: 0.02 * sunday_first[d] for d in range(7)}))


def test_a_piecewise_step_takes_effect_at_the_first_tick_at_or_after_its_breakpoint():
    """Exact: 100% x 0 before the breakpoint, 100% x 1 from the first tick at or after it."""
    for breakpoint in (30_000, 30_500):  # on a tick, between ticks (tick_ms = 1000)
        tally = Tally(lambda ts: ts)
        self_loop(50, 60, 1000, 100.0, piecewise([(0, 0.0), (breakpoint, 1.0)]), tally).start()
        first = -(-breakpoint // 1000)
        assert tally.counts == {t * 1000: 50 for t in range(first, 60)}


def test_a_piecewise_step_changes_the_event_rate_statistically():
    tally = Tally(lambda ts: ts >= 600 * MINUTE)
    self_loop(3000, 1200, MINUTE, 1.0, piecewise([(0, 0.4), (600 * MINUTE, 2.5)]), tally).start()
    trials = {False: 3000 * 600, True: 3000 * 600}
    check_within(tally.counts, *binomial(trials, {False: 0.004, True: 0.025}))
    late = {False: 3000 * 630, True: 3000 * 570}  # the step half an hour late: the check must notice
    with pytest.raises(AssertionError, match="beyond 4.5 sd"):
        check_within(tally.counts, *binomial(late, {False: 0.004, True: 0.025}))


def test_a_linear_ramp_raises_the_rate_tick_by_tick():
    """m(t) goes from 0 at tick 0 to 2 at tick 1000 (linearly); per quarter of the run the events are a
    sum of Bernoulli draws with p(t) = 2% * m(t): expectation and variance summed here tick by tick."""
    ticks, subjects, percent = 1000, 2000, 2.0
    tally = Tally(lambda ts: min(ts // (250 * 1000), 3))
    ramp = piecewise([(0, 0.0), (ticks * 1000, 2.0)], interpolation="linear")
    self_loop(subjects, ticks, 1000, percent, ramp, tally).start()

    def expectation(slope_end: float) -> tuple[dict, dict]:
        p = percent / 100 * slope_end * np.arange(ticks) / ticks
        quarter = np.arange(ticks) // 250
        mean = {q: float(subjects * p[quarter == q].sum()) for q in range(4)}
        var = {q: float(subjects * (p * (1 - p))[quarter == q].sum()) for q in range(4)}
        return mean, var

    check_within(tally.counts, *expectation(2.0))
    with pytest.raises(AssertionError, match="beyond 4.5 sd"):
        check_within(tally.counts, *expectation(2.1))


def test_a_time_zone_profile_counts_local_hours():
    """America/New_York in July (UTC-4, no DST change in the run): local hour = UTC hour - 4."""
    start = int(dt.datetime(2024, 7, 8, tzinfo=dt.timezone.utc).timestamp() * 1000)
    tally = Tally(lambda ts: utc(ts).astimezone(ZoneInfo("America/New_York")).hour)
    self_loop(2000, 2 * 24 * 60, MINUTE, 1.0, daily(SAWTOOTH, tz="America/New_York"), tally,
              timestamp_start=start).start()
    check_within(tally.counts, *hour_expectation(SAWTOOTH, 2000, 2, 60, 1.0))
    utc_read = {h: SAWTOOTH[(h + 4) % 24] for h in range(24)}  # the profile read in UTC instead
    with pytest.raises(AssertionError, match="beyond 4.5 sd"):
        check_within(tally.counts, *hour_expectation([utc_read[h] for h in range(24)], 2000, 2, 60, 1.0))




def test_a_profile_at_zero_for_whole_windows():
    """Nights off: a daily profile of 0 from 00:00 to 06:00 spans whole windows of one-minute ticks."""
    night_off = [0.0] * 6 + [1.0] * 18
    tally = Tally(lambda ts: utc(ts).hour)
    result = self_loop(1000, 2 * 24 * 60, MINUTE, 5.0, daily(night_off), tally).start(window=100)
    assert all(tally.counts[h] == 0 for h in range(6))
    check_within(tally.counts, *hour_expectation(night_off, 1000, 2, 60, 5.0))
    assert result.total_events == sum(tally.counts.values())


def test_part_files_with_a_profiled_transition(tmp_path):
    """100 subjects, 2% x (0.5 or 1) per minute: many ticks have one candidate, thinned half the time."""
    half_day = daily([0.5] * 12 + [1.0] * 12)
    sink = JsonLinesSink(tmp_path / "part-{part}.jsonl", parts=2)
    result = self_loop(100, 24 * 60, MINUTE, 2.0, half_day, sink).start()
    lines = [line for path in sorted(tmp_path.glob("part-*.jsonl")) for line in path.read_text().splitlines()]
    assert len(lines) == result.total_events > 1000




@pytest.mark.parametrize("month, hour_two_ticks", [(3, 0), (10, 8)])
def test_a_run_across_a_dst_change_follows_local_time(month, hour_two_ticks):
    """Exact: 100% x 1 during local hour 02:00-03:00 in Warsaw, 0 otherwise, quarter-hour ticks. The
    spring day has no 02:xx (no events), the autumn day has it twice (8 ticks)."""
    zone = ZoneInfo("Europe/Warsaw")
    sunday = 31 if month == 3 else 27
    start = int(dt.datetime(2024, month, sunday - 2, tzinfo=zone).timestamp() * 1000)
    ticks = 5 * 24 * 4
    only_two = [0.0] * 24
    only_two[2] = 1.0
    tally = Tally(lambda ts: utc(ts).astimezone(zone).date())
    gen = self_loop(40, ticks, 15 * MINUTE, 100.0, daily(only_two, tz="Europe/Warsaw"), tally,
                    timestamp_start=start)
    gen.start(window=ticks)  # one window: a window without events is another bug (below)
    expected: Counter = Counter()
    for t in range(ticks):
        moment = utc(start + t * 15 * MINUTE).astimezone(zone)
        if moment.hour == 2:
            expected[moment.date()] += 40
    assert expected[dt.date(2024, month, sunday)] == 40 * hour_two_ticks
    assert tally.counts == expected


# -- arrivals ---------------------------------------------------------------------------------------


def arrivals_model(subjects: int, ticks: int, tick_ms: int, rate: float, *, profile=None, limit=None,
                   factory: SubjectFactory | None = None, seed: int = 77,
                   sink: EventSink | None = None) -> tuple[DataOnlineGenerator, Recorder]:
    """Arrivals enter 'new' and leave at once (100%) for the final state 'gone': each arrival makes
    exactly one 'leave' event, in the tick after it arrived."""
    recorder = sink or Recorder()
    gen = DataOnlineGenerator(["new", "gone"], "new", factory or IndexFactory(), subjects, tick_ms, ticks,
                              seed=seed)
    gen.add_transition("leave", "new", "gone", 100.0, event_sinks=[recorder])
    gen.add_arrivals(rate, profile=profile, limit=limit)
    return gen, recorder


def poisson_check(observed: dict, mean: dict) -> None:
    check_within(observed, mean, mean)


def test_arrivals_count_is_poisson_with_rate_times_ticks():
    gen, recorder = arrivals_model(10, 3000, 1000, 2.3)
    result = gen.start()
    arrived = result.created - 10
    poisson_check({"arrivals": arrived}, {"arrivals": 2.3 * 3000})
    with pytest.raises(AssertionError, match="beyond 4.5 sd"):
        poisson_check({"arrivals": arrived}, {"arrivals": 2.5 * 3000})
    # every subject, initial or arrived, leaves exactly once (the last tick's arrivals have no next tick)
    assert result.departed == len(recorder.events) == result.events_by_trigger["leave"]
    assert result.created - result.departed == result.live <= 20
    assert result.subjects == 10


def test_arrivals_per_hour_of_day_follow_their_profile():
    """Rate 0.5 per one-minute tick times a daily profile, over 4 days: arrivals per hour of day
    (seen as their 'leave' event one tick later) are Poisson(0.5 * m_h * 60 * 4)."""
    gen, recorder = arrivals_model(0, 4 * 24 * 60 + 1, MINUTE, 0.5, profile=daily(SAWTOOTH))
    gen.start()
    observed = Counter(utc(ts - MINUTE).hour for ts, _, _ in recorder.events)
    poisson_check(observed, {h: 0.5 * SAWTOOTH[h] * 60 * 4 for h in range(24)})
    with pytest.raises(AssertionError, match="beyond 4.5 sd"):
        poisson_check(observed, {h: 0.5 * SAWTOOTH[(h + 1) % 24] * 60 * 4 for h in range(24)})


def test_arrivals_take_the_next_indices_and_act_from_the_next_tick():
    gen, recorder = arrivals_model(25, 400, 1000, 1.7)
    result = gen.start()
    arrivals = [(ts, index) for ts, index, _ in recorder.events if index >= 25]
    initial = [(ts, index) for ts, index, _ in recorder.events if index < 25]
    assert initial == [(0, i) for i in range(25)]  # 100%: every initial subject leaves in tick 0
    # global indices 25, 26, ... in arrival order (index-taking factories got them)
    assert sorted(index for _, index in arrivals) == list(range(25, 25 + len(arrivals)))
    assert [index for _, index in sorted(arrivals)] == sorted(index for _, index in arrivals)
    # an arrival of tick t acts at t + 1: the timeline's created counts, one tick later, are the events
    assert result.timeline.bucket_ticks == 1
    left = Counter(ts // 1000 for ts, _ in arrivals)
    arrived = {t + 1: n for t, n in result.timeline.created.items() if t + 1 < 400}
    assert left == arrived
    assert min(left) >= 1


def test_a_limit_caps_arrivals_exactly():
    gen, recorder = arrivals_model(5, 500, 1000, 3.0, limit=120)
    result = gen.start()
    assert result.created == 125
    assert sorted(i for _, i, _ in recorder.events) == list(range(125))


def test_arrivals_enter_the_state_they_name():
    recorder = Recorder()
    gen = DataOnlineGenerator(["a", "b", "gone"], "a", IndexFactory(), 10, 1000, 100, seed=3)
    gen.add_transition("from_a", "a", "gone", 100.0, event_sinks=[recorder])
    gen.add_transition("from_b", "b", "gone", 100.0, event_sinks=[recorder])
    gen.add_arrivals(2.0, state="b")
    result = gen.start()
    triggers = Counter((trigger, index >= 10) for _, index, trigger in recorder.events)
    last_tick = result.timeline.created.get(99, 0)  # arrivals of the last tick have no tick to act in
    assert triggers[("from_a", False)] == 10 and triggers[("from_b", True)] == result.created - 10 - last_tick
    assert result.created - 10 > 100
    assert set(triggers) == {("from_a", False), ("from_b", True)}


def test_a_numbering_factory_gives_arrival_k_the_object_number_initial_plus_k():
    gen, recorder = arrivals_model(30, 200, 1000, 1.0, factory=NumberingFactory())
    gen.start()
    arrivals = sorted((ts, index) for ts, index, _ in recorder.events if index >= 30)
    assert [index for _, index in arrivals] == list(range(30, 30 + len(arrivals)))


def test_the_same_seed_gives_the_same_arrivals_and_another_seed_others():
    def run(seed: int) -> list:
        gen, recorder = arrivals_model(5, 300, 1000, 1.3, profile=daily(SAWTOOTH), seed=seed)
        gen.start()
        return recorder.events

    assert run(1) == run(1) != run(2)


# -- churn: drop_final frees departed subjects ------------------------------------------------------


class TrackedFactory(SubjectFactory):
    """Keeps a weak reference to every subject it made: alive ones are those the engine still holds."""

    def __init__(self) -> None:
        self.refs: list[weakref.ref] = []

    def create(self, index: int) -> Person:
        subject = Person(index)
        self.refs.append(weakref.ref(subject))
        return subject

    def alive(self) -> int:
        return sum(1 for ref in self.refs if ref() is not None)


def churn_model(drop_final: bool, subjects: int = 500, ticks: int = 200) -> tuple[DataOnlineGenerator,
                                                                                   TrackedFactory, Recorder]:
    factory, recorder = TrackedFactory(), Recorder()
    gen = DataOnlineGenerator(["a", "gone"], "a", factory, subjects, 1000, ticks, seed=3,
                              drop_final=drop_final)
    gen.add_transition("stay", "a", "a", 3.0, event_sinks=[recorder])
    gen.add_transition("leave", "a", "gone", 2.0, event_sinks=[recorder])
    gen.add_arrivals(1.5)
    return gen, factory, recorder


@pytest.mark.parametrize("drop_final", [False, True])
def test_drop_final_frees_departed_subjects_during_the_run(drop_final):
    gen, factory, _ = churn_model(drop_final)
    seen = []
    gen.start(window=20, progress=lambda p: seen.append((p.live, factory.alive(), len(factory.refs))))
    assert len(seen) == 10
    for live, alive, made in seen:
        assert alive == (live if drop_final else made)
    assert seen[-1][0] < seen[-1][2] - 100  # many have left


def test_drop_final_changes_no_event_even_when_the_arrays_are_compacted():
    """70,000 subjects, most leaving at once: the engine compacts its arrays (>= 65,536 departed slots)
    mid-run, then arrivals keep coming; the events are those of the same run without drop_final."""
    def run(drop: bool) -> tuple[list, object]:
        recorder = Recorder()
        gen = DataOnlineGenerator(["a", "gone"], "a", IndexFactory(), 70_000, 1000, 30, seed=9,
                                  drop_final=drop)
        gen.add_transition("leave", "a", "gone", 90.0, event_sinks=[recorder])
        gen.add_transition("stay", "a", "a", 5.0, event_sinks=[recorder])
        gen.add_arrivals(40.0)
        result = gen.start(window=3)
        return recorder.events, result

    kept, kept_result = run(False)
    dropped, dropped_result = run(True)
    assert dropped == kept and len(kept) > 70_000
    assert (dropped_result.created, dropped_result.departed) == (kept_result.created, kept_result.departed)


def test_the_timeline_adds_up_to_the_result():
    gen, _, _ = churn_model(True, ticks=2500)
    result = gen.start()
    timeline = result.timeline
    assert timeline.bucket_ticks == 3 and timeline.triggers == ["stay", "leave"]
    assert max(timeline.events) <= 2500 // 3
    totals = np.sum(list(timeline.events.values()), axis=0).tolist()
    assert totals == [result.events_by_trigger["stay"], result.events_by_trigger["leave"]]
    assert sum(timeline.created.values()) == result.created - 500
    assert sum(timeline.departed.values()) == result.departed
    assert timeline.live()[-1][1] == result.live


# -- stops and failures ------------------------------------------------------------------------------


def test_a_stop_during_subject_creation_stops_the_run_before_any_tick():
    stop = threading.Event()

    class StoppingFactory(SubjectFactory):
        def __init__(self) -> None:
            self.made = 0

        def create(self, index: int) -> Person:
            self.made += 1
            if index == 1500:
                stop.set()
            return Person(index)

    factory, counter = StoppingFactory(), CountingSink()
    gen = DataOnlineGenerator(["a"], "a", factory, 100_000, 1000, 50, seed=1)
    gen.add_transition("x", "a", "a", 50.0, event_sinks=[counter])
    result = gen.start(stop_event=stop)
    assert (result.status, result.stopped, result.ticks, result.total_events) == ("stopped", True, 0, 0)
    assert factory.made < 100_000 and counter.closed == 1


def failing_model(fail_at: dict[int, int], sink: EventSink, subjects: int = 2000,
                  ticks: int = 30) -> DataOnlineGenerator:
    """100% self-loop (every subject acts every tick from tick 0); subject i raises in tick fail_at[i]."""
    def act(subject: Person, transition: Transition) -> bool:
        subject.acts += 1
        if fail_at.get(subject.index) == subject.acts - 1:
            raise ValueError(f"boom {subject.index}")
        return True

    gen = DataOnlineGenerator(["a"], "a", IndexFactory(), subjects, 1000, ticks, seed=1)
    gen.add_transition("x", "a", "a", 100.0, action_callback=act, event_sinks=[sink])
    return gen


def test_a_failed_run_names_the_event_and_carries_the_partial_result():
    counter = CountingSink()
    message = r"tick 3, subject 1500, trigger 'x' \(a -> a\): ValueError: boom 1500"
    with pytest.raises(SimulationError, match=message) as info:
        failing_model({1500: 3}, counter).start()
    error = info.value
    assert (error.tick, error.subject_index, error.trigger) == (3, 1500, "x")
    assert isinstance(error.__cause__, ValueError)
    result = error.result
    assert result.status == "failed" and len(result.shards) == 1 and counter.closed == 1
    assert result.total_events >= 3 * 2000




def test_a_failed_run_counts_every_event_its_sinks_got():
    counter = CountingSink()
    with pytest.raises(SimulationError) as info:
        failing_model({1500: 3}, counter).start()
    assert counter.count == 3 * 2000 + 1500
    assert info.value.result.total_events == counter.count
    assert info.value.result.events_by_sink["count"] == counter.count


# -- bad input: every new rule, with its message ------------------------------------------------------


def small_gen(**kwargs) -> DataOnlineGenerator:
    gen = DataOnlineGenerator(["a", "b"], "a", IndexFactory(), 10, 1000, kwargs.pop("ticks", 10), seed=1,
                              **kwargs)
    gen.add_transition("x", "a", "b", 10.0)
    gen.add_transition("y", "b", "a", 10.0)
    return gen


BAD_ARRIVALS = [
    (dict(rate_per_tick="5"), r"add_arrivals: rate_per_tick must be a number \(subjects per tick\), got '5'"),
    (dict(rate_per_tick=True),
     r"add_arrivals: rate_per_tick must be a number \(subjects per tick\), got True"),
    (dict(rate_per_tick=-0.5), r"add_arrivals: rate_per_tick must be a finite number >= 0, got -0.5"),
    (dict(rate_per_tick=math.nan), r"add_arrivals: rate_per_tick must be a finite number >= 0, got nan"),
    (dict(rate_per_tick=math.inf), r"add_arrivals: rate_per_tick must be a finite number >= 0, got inf"),
    (dict(rate_per_tick=1, limit=-1), r"add_arrivals: limit must be an integer >= 0 or None, got -1"),
    (dict(rate_per_tick=1, limit=2.5), r"add_arrivals: limit must be an integer >= 0 or None, got 2.5"),
    (dict(rate_per_tick=1, limit=True), r"add_arrivals: limit must be an integer >= 0 or None, got True"),
    (dict(rate_per_tick=1, state="c"),
     r"add_arrivals: state 'c' is not present in machine states \['a', 'b'\]"),
    (dict(rate_per_tick=1, profile={"daily": [1] * 23}),
     r"add_arrivals: profile: daily profile: expected 24 multipliers, got 23"),
    (dict(rate_per_tick=1, profile=[1] * 24), r"add_arrivals: profile: expected a mapping such as"),
]


@pytest.mark.parametrize("kwargs, message", BAD_ARRIVALS, ids=[m for _, m in BAD_ARRIVALS])
def test_bad_arrivals_are_refused(kwargs, message):
    gen = small_gen()
    with pytest.raises(ModelError, match=message):
        gen.add_arrivals(**kwargs)
    assert gen.arrivals == []


def test_arrivals_accept_a_profile_as_plain_data_and_describe_themselves():
    stream = small_gen().add_arrivals(2, profile={"weekly": [1] * 7}, limit=5, state="b")
    assert stream.profile == weekly([1] * 7)
    assert stream.to_dict() == {"rate": 2.0, "profile": {"weekly": [1.0] * 7}, "limit": 5, "state": "b"}


BAD_STARTS = [
    (dict(rate=1000, load_shape=[{"rate": 5, "for": "1s"}]), r"give rate= or load_shape=, not both"),
    (dict(rate=1000, speed=2.0),
     r"speed= paces ticks to the clock; with rate= or load_shape= the event rate sets the pace: drop speed="),
    (dict(load_shape=[{"rate": 5, "for": "1s"}], speed=2.0), r"speed= paces ticks to the clock"),
    (dict(rate=0), r"rate must be a number of events per second > 0, got 0"),
    (dict(rate=-5), r"rate must be a number of events per second > 0, got -5"),
    (dict(rate=math.inf), r"rate must be a number of events per second > 0, got inf"),
    (dict(rate="fast"), r"rate must be a number of events per second > 0, got 'fast'"),
    (dict(rate=True), r"rate must be a number of events per second > 0, got True"),
    (dict(repeat=True), r"repeat=True repeats a load_shape; give load_shape= too"),
    (dict(load_shape=[]), r"load shape: expected a non-empty list of steps"),
    (dict(load_shape=[{"rate": 5}]), r"load shape step 1: missing 'for'"),
    (dict(parts=0), r"parts must be an integer >= 1, got 0"),
    (dict(parts=True), r"parts must be an integer >= 1, got True"),
    (dict(workers=3, parts=2),
     r"3 workers but the output has 2 parts: each worker writes whole parts, so use at most 2 workers "
     r"\(or more parts\)"),
]


@pytest.mark.parametrize("kwargs, message", BAD_STARTS, ids=[m for _, m in BAD_STARTS])
def test_bad_run_settings_are_refused_before_any_subject_exists(kwargs, message):
    factory = TrackedFactory()
    gen = DataOnlineGenerator(["a", "b"], "a", factory, 10, 1000, 10, seed=1)
    gen.add_transition("x", "a", "b", 10.0)
    with pytest.raises(ModelError, match=message):
        gen.start(**kwargs)
    assert factory.refs == []


def test_more_workers_than_part_files_is_refused_before_the_run(tmp_path):
    factory = TrackedFactory()
    gen = DataOnlineGenerator(["a", "b"], "a", factory, 10, 1000, 10, seed=1)
    two = JsonLinesSink(tmp_path / "ev-{part}.jsonl", parts=2)
    gen.add_transition("x", "a", "b", 10.0, event_sinks=[two])
    with pytest.raises(ModelError, match=r"workers but .*parts"):
        gen.start(workers=3)
    other = JsonLinesSink(tmp_path / "other-{part}.jsonl", parts=3)
    gen.add_transition("y", "b", "a", 10.0, event_sinks=[other])
    with pytest.raises(ModelError, match=r"the sinks split the population into different numbers of parts"):
        gen.start()
    assert factory.refs == [] and not list(tmp_path.iterdir())


def test_an_unbounded_run_needs_a_way_to_end():
    gen = small_gen(ticks=None)
    with pytest.raises(ModelError, match=r"ticks_num=None \(unbounded\) needs realtime=True or a stop_event"):
        gen.start()
