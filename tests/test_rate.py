"""Rate pacing: ``start(rate=R)`` and load shapes, in one process and on 2 Ray workers.

Bounds are loose enough for a busy 2-core machine and tight enough to catch a pacer that runs ahead:

- over-emission is a bug whatever the load: no one-second interval after the first two may exceed its
  target by more than 10%, except by events the run owed from before (a late run catching up);
- independently of the run's own report, a sink stamps every event with the wall clock: the events
  emitted by any moment never exceed the target by then (counted from just before ``start()``, which is
  earlier than the pacer's start, so the bound errs on the loose side) plus 50 ms worth of events;
- the run reaches at least half its target (a busy machine may be slow, not that slow).

No assertion on wall time beyond these.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from doge_dist import DataOnlineGenerator, EventSink, SubjectFactory, Transition, current_shard
from doge_dist.run._result import RateReport

RATE_SLACK_S = 0.05  # the wall-clock check allows this much time's worth of events ahead of the target


class Plain(SubjectFactory):
    def create(self, index: int) -> int:
        return index


class WallClockSink(EventSink):
    """Stamps each event with time.monotonic() (system-wide on Linux, so comparable across processes).
    In a worker process the stamps go to a file per shard at close."""

    name = "clock"

    def __init__(self, directory: str | None = None) -> None:
        self.directory = directory
        self.stamps: list[float] = []

    def collect(self, timestamp: int, subject: int, transition: Transition) -> None:
        self.stamps.append(time.monotonic())

    def close(self) -> None:
        if self.directory is not None and not current_shard().in_driver:
            path = os.path.join(self.directory, f"stamps-{current_shard().index}-{os.getpid()}.npy")
            np.save(path, np.array(self.stamps))

    def __getstate__(self):
        return {"directory": self.directory, "stamps": []}

    def gathered(self) -> np.ndarray:
        if self.directory is None:
            return np.sort(np.array(self.stamps))
        parts = [np.load(path) for path in sorted(Path(self.directory).glob("stamps-*.npy"))]
        return np.sort(np.concatenate(parts)) if parts else np.empty(0)


def model(sink: EventSink, *, subjects: int = 20_000, percent: float = 5.0, ticks: int | None = None,
          callback: Callable | None = None) -> DataOnlineGenerator:
    """A self-loop: ``subjects * percent / 100`` events per tick, as many ticks as the pacer asks for."""
    gen = DataOnlineGenerator(["a"], "a", Plain(), subjects, 1000, ticks, seed=1)
    gen.add_transition("x", "a", "a", percent, event_sinks=[sink], action_callback=callback)
    return gen


def check_seconds(report, *, skip: int = 2) -> list[dict]:
    """No whole second after the first ``skip`` exceeds its target by more than 10%, beyond what the run
    owed at the start of that second. Returns the seconds checked."""
    rows = report.per_second
    owed = 0.0
    checked = []
    for k, row in enumerate(rows):
        last = k == len(rows) - 1
        if k >= skip and not last and row["target"] > 0:  # the last second may be cut short
            assert row["achieved"] <= 1.10 * row["target"] + max(owed, 0.0), \
                f"second {row['second']}: {row['achieved']:.0f} events for a target of {row['target']:.0f}"
            checked.append(row)
        owed += row["target"] - row["achieved"]
    return checked


def check_never_ahead(stamps: np.ndarray, started: float, target: Callable[[float], float],
                      rate: float) -> None:
    """Independently of the report: events emitted by each moment <= target by then + 50 ms of events."""
    assert stamps.size
    emitted = np.arange(1, stamps.size + 1)
    allowed = np.array([target(s) for s in (stamps - started).tolist()]) + rate * RATE_SLACK_S + 1
    ahead = np.flatnonzero(emitted > allowed)
    if ahead.size:
        first = ahead[0]
        pytest.fail(f"{ahead.size} events ahead of the target, the first at {stamps[first] - started:.3f} s: "
                    f"{emitted[first]} > {allowed[first]:.0f}")


def test_a_10_second_run_at_20000_events_per_s_in_one_process():
    sink = WallClockSink()
    progress = []
    started = time.monotonic()
    result = model(sink).start(load_shape=[{"rate": 20_000, "for": "10s"}], progress=progress.append)
    report = result.rate
    assert result.status == "completed" and result.ticks > 0
    assert result.total_events == report.achieved_events == len(sink.stamps)
    assert report.target_events == pytest.approx(200_000, rel=0.01)
    assert result.total_events >= 0.5 * 200_000
    checked = check_seconds(report)
    assert len(checked) >= 6
    assert [row["target"] for row in report.per_second[:10]] == [20_000.0] * 10
    stamps = sink.gathered()
    check_never_ahead(stamps, started, lambda s: 20_000 * min(s, 10.0), 20_000)
    # both checks can fail: a pacer running 15% fast would look like this against its target
    with pytest.raises(pytest.fail.Exception, match="events ahead of the target"):
        check_never_ahead(stamps, started, lambda s: 17_000 * min(s, 10.0), 17_000)
    fast = RateReport(per_second=[dict(row, target=0.85 * row["target"]) for row in report.per_second])
    with pytest.raises(AssertionError, match="events for a target of"):
        check_seconds(fast)
    assert report.steps[0]["target_events_per_s"] == pytest.approx(20_000)
    assert report.shortfall == pytest.approx(max(0.0, 1 - report.achieved_events / report.target_events))
    assert progress and all(p.target_rate == 20_000 for p in progress)
    assert any(p.achieved_rate is not None and p.achieved_rate > 0 for p in progress)


def test_rate_paces_a_bounded_run_until_its_ticks_are_done():
    """rate=5000 (realtime=True is implied, and allowed) with 20 ticks of 500 events: about 2 s, every
    event made, never ahead of the target."""
    sink = WallClockSink()
    started = time.monotonic()
    result = model(sink, subjects=10_000, ticks=20).start(realtime=True, rate=5000)
    assert result.status == "completed" and result.ticks == 20
    assert result.total_events == len(sink.stamps) == result.rate.achieved_events > 8000
    check_never_ahead(sink.gathered(), started, lambda s: 5000 * s, 5000)
    assert result.rate.steps[0]["rate"] == 5000.0


def shape_target(s: float) -> float:
    """5,000/s for 1 s, then a ramp 5,000 -> 15,000/s over 2 s, then nothing."""
    if s <= 1.0:
        return 5000 * max(s, 0.0)
    into = min(s, 3.0) - 1.0
    return 5000 + 5000 * into + 2500 * into**2


def test_a_load_shape_follows_its_steps_and_ends_with_the_last():
    sink = WallClockSink()
    started = time.monotonic()
    shape = [{"rate": 5000, "for": "1s"}, {"ramp": [5000, 15_000], "for": "2s"}]
    result = model(sink).start(load_shape=shape)
    report = result.rate
    assert result.status == "completed"
    assert report.target_events == pytest.approx(25_000, rel=0.01)
    assert 0.5 * 25_000 <= result.total_events <= 25_000 + 15_000 * RATE_SLACK_S + 1
    check_never_ahead(sink.gathered(), started, shape_target, 15_000)
    assert [step["step"] for step in report.steps] == [1, 2]
    assert report.steps[0]["target_events_per_s"] == pytest.approx(5000)
    assert report.steps[1]["ramp"] == [5000.0, 15_000.0]
    assert report.steps[1]["target_events_per_s"] == pytest.approx(10_000, rel=0.01)
    assert [round(row["target"]) for row in report.per_second[:3]] == [5000, 7500, 12_500]


def test_repeat_cycles_the_load_shape_until_stopped():
    stop = threading.Event()
    timer = threading.Timer(4.5, stop.set)
    timer.start()
    try:
        shape = [{"rate": 2000, "for": "1s"}, {"rate": 6000, "for": "1s"}]
        result = model(WallClockSink()).start(load_shape=shape, repeat=True, stop_event=stop)
    finally:
        timer.cancel()
    assert result.status == "stopped"
    targets = [row["target"] for row in result.rate.per_second[:4]]
    assert targets == [2000.0, 6000.0, 2000.0, 6000.0]
    check_seconds(result.rate)


def test_a_machine_that_cannot_keep_up_says_so():
    """Each event sleeps 0.2 ms (at most ~5,000/s) against a target of 20,000/s: the report and progress
    show the target, the lower achieved rate and the shortfall."""
    def slow(subject: int, transition: Transition) -> bool:
        time.sleep(0.0002)
        return True

    progress = []
    result = model(WallClockSink(), callback=slow).start(load_shape=[{"rate": 20_000, "for": "2s"}],
                                                         progress=progress.append)
    report = result.rate
    assert report.shortfall >= 0.5
    assert report.achieved_events == result.total_events < 0.5 * report.target_events
    assert report.steps[0]["target_events_per_s"] == pytest.approx(20_000)
    assert report.steps[0]["achieved_events_per_s"] < 10_000
    assert report.per_second[0]["target"] == 20_000.0 and report.per_second[0]["achieved"] < 10_000
    late = [p for p in progress if p.achieved_rate is not None]
    assert late and all(p.target_rate == 20_000 and p.achieved_rate < 10_000 for p in late)
    assert result.to_dict()["rate"]["shortfall"] == report.shortfall


def test_a_slow_machine_still_ends_the_load_shape_with_its_last_step():
    def slow(subject: int, transition: Transition) -> bool:
        time.sleep(0.002)
        return True

    result = model(WallClockSink(), callback=slow).start(load_shape=[{"rate": 20_000, "for": "1s"}])
    # ~500 events fit in the shape's second; a step in flight at its end may add a slice's worth (~10)
    after_end = sum(row["achieved"] for row in result.rate.per_second if row["target"] == 0)
    assert after_end <= 50 and result.total_events <= 1500


@pytest.mark.ray
def test_a_5_second_run_at_10000_events_per_s_on_2_ray_workers(ray_session, tmp_path):
    ray_session.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    sink = WallClockSink(str(tmp_path))
    started = time.monotonic()
    result = model(sink).start(workers=2, load_shape=[{"rate": 10_000, "for": "5s"}])
    report = result.rate
    assert result.status == "completed" and len(result.shards) == 2
    stamps = sink.gathered()
    assert stamps.size == result.total_events == report.achieved_events >= 0.5 * 50_000
    assert all(shard.total_events > 0 for shard in result.shards)
    check_seconds(report)
    check_never_ahead(stamps, started, lambda s: 10_000 * min(s, 5.0), 10_000)
    assert math.isclose(report.target_events, 50_000, rel_tol=0.01)
