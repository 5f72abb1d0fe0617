"""The public API: doge-datagen 1.0.4's model contract, run semantics, closing, errors and RunResult."""

from __future__ import annotations

import inspect
import json
import logging
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import TypeVar

import pytest

import doge_dist
from doge_dist import DataOnlineGenerator, EventSink, PrintingSink, SimulationError, SubjectFactory

REPO_ROOT = Path(__file__).resolve().parent.parent


# -- helpers -----------------------------------------------------------------------------------


class RecordingSink(EventSink):
    """Records every event and counts close() calls; optionally appends to a shared log."""

    def __init__(self, name: str | None = None, log: list | None = None) -> None:
        if name is not None:
            self.name = name
        self.events: list[tuple] = []
        self.closed = 0
        self.log = log

    def collect(self, timestamp, subject, transition) -> None:
        self.events.append((timestamp, subject, transition.trigger, transition.from_state,
                            transition.to_state))
        if self.log is not None:
            self.log.append(("collect", timestamp, subject, transition.trigger))

    def close(self) -> None:
        self.closed += 1


class IndexFactory(SubjectFactory):
    """create(self, index): the subject is its global index; records every call."""

    def __init__(self, log: list | None = None) -> None:
        self.indices: list[int] = []
        self.log = log

    def create(self, index):
        self.indices.append(index)
        if self.log is not None:
            self.log.append(("create", index))
        return index


class CountingFactory(SubjectFactory):
    """doge-datagen style zero-argument factory that numbers its subjects."""

    def __init__(self, log: list | None = None) -> None:
        self.made = 0
        self.log = log

    def create(self):
        n = self.made
        self.made += 1
        if self.log is not None:
            self.log.append(("create", n))
        return n


def make_gen(states, factory, subjects, ticks, *, tick_ms=1000, timestamp_start=0, seed=1, initial=None):
    return DataOnlineGenerator(states, initial or states[0], factory, subjects, tick_ms, ticks,
                               timestamp_start, seed=seed)


# -- package surface ---------------------------------------------------------------------------


def test_all_exports_the_model_api():
    classes = {"DataOnlineGenerator", "SubjectFactory", "Transition", "EventSink", "PrintingSink",
               "DataOnlineGeneratorGrapher", "KafkaSinkFactory", "KafkaSink", "KafkaAvroSinkFactory",
               "DbSinkFactory", "DbSink"}
    assert classes | {"Subject"} <= set(doge_dist.__all__)
    for name in doge_dist.__all__:  # every advertised name resolves, the lazy ones included
        getattr(doge_dist, name)
    for name in classes:
        assert isinstance(getattr(doge_dist, name), type), name
        assert getattr(doge_dist, name).__name__ == name
    assert isinstance(doge_dist.Subject, TypeVar)  # as in doge-datagen: Subject = TypeVar('Subject')
    for sink in ("PrintingSink", "KafkaSink", "DbSink"):
        assert issubclass(getattr(doge_dist, sink), doge_dist.EventSink), sink


def test_import_is_light_and_configures_no_logging():
    code = (
        "import json, logging, sys\n"
        "import doge_dist\n"
        "heavy = [m for m in ('ray', 'confluent_kafka', 'sqlalchemy', 'fastavro') if m in sys.modules]\n"
        "root = [repr(h) for h in logging.getLogger().handlers]\n"
        "level = logging.getLogger().level\n"
        "print(json.dumps({'heavy': heavy, 'root_handlers': root, 'root_level': level}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT,
                         timeout=60, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["heavy"] == [], f"import doge_dist pulled in {report['heavy']}"
    assert report["root_handlers"] == []
    assert report["root_level"] == logging.WARNING  # untouched default
    assert out.stderr == ""


def test_constructor_signature_matches_doge_datagen():
    params = list(inspect.signature(DataOnlineGenerator.__init__).parameters.values())[1:]
    positional = [p for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert [p.name for p in positional] == ["states", "initial_state", "subject_factory", "subjects_num",
                                            "tick_ms", "ticks_num", "timestamp_start", "seed"]
    defaults = {p.name: p.default for p in positional}
    assert defaults["timestamp_start"] == 0
    assert defaults["seed"] is None
    for name in ("states", "initial_state", "subject_factory", "subjects_num", "tick_ms", "ticks_num"):
        assert defaults[name] is inspect.Parameter.empty
    # anything beyond doge-datagen's parameters must have a default
    assert all(p.default is not inspect.Parameter.empty for p in params if p not in positional[:6])


def test_add_transition_signature_matches_doge_datagen():
    params = [p for p in list(inspect.signature(DataOnlineGenerator.add_transition).parameters.values())[1:]
              if p.kind is p.POSITIONAL_OR_KEYWORD]  # doge-dist's additions are keyword-only
    assert [p.name for p in params] == ["trigger", "from_state", "to_state", "probability",
                                        "action_callback", "event_sinks"]
    assert params[4].default is None and params[5].default is None


def test_doge_datagen_positional_call_still_works():
    sink = RecordingSink()
    gen = DataOnlineGenerator(["a", "b"], "a", CountingFactory(), 2, 1000, 3, 5000)
    gen.add_transition("go", "a", "b", 100, None, [sink])
    gen.start()
    assert [(ts, s) for ts, s, *_ in sink.events] == [(5000, 0), (5000, 1)]


# -- tick semantics ----------------------------------------------------------------------------


def test_each_subject_moves_at_most_one_state_per_tick():
    sink = RecordingSink()
    gen = make_gen(["a", "b", "c", "d"], IndexFactory(), 3, 6, tick_ms=10)
    gen.add_transition("ab", "a", "b", 100, event_sinks=[sink])
    gen.add_transition("bc", "b", "c", 100, event_sinks=[sink])
    gen.add_transition("cd", "c", "d", 100, event_sinks=[sink])
    result = gen.start()
    expected = [(tick * 10, subject, trig, trig[0], trig[1])
                for tick, trig in enumerate(["ab", "bc", "cd"]) for subject in range(3)]
    assert sink.events == expected
    assert result.events_by_trigger == {"ab": 3, "bc": 3, "cd": 3}


def test_transition_object_passed_to_callbacks_and_sinks():
    seen = []

    class Sink(EventSink):
        def collect(self, timestamp, subject, transition):
            seen.append(("sink", transition.trigger, transition.from_state, transition.to_state,
                         transition.probability))

    def callback(subject, transition):
        seen.append(("cb", transition.trigger, transition.from_state, transition.to_state,
                     transition.probability))
        return True

    gen = make_gen(["a", "b"], IndexFactory(), 1, 1)
    gen.add_transition("go", "a", "b", 100, callback, [Sink()])
    gen.start()
    assert seen == [("cb", "go", "a", "b", 100), ("sink", "go", "a", "b", 100)]


def test_callback_returning_false_vetoes_the_transition():
    sink = RecordingSink()
    calls = Counter()

    def veto_twice(subject, transition):
        calls[subject] += 1
        return calls[subject] > 2  # False on the first two calls

    gen = make_gen(["a", "b"], IndexFactory(), 2, 5, tick_ms=100, timestamp_start=7)
    gen.add_transition("go", "a", "b", 100, veto_twice, [sink])
    result = gen.start()
    # ticks 0 and 1 vetoed (no state change, no sink call), tick 2 succeeds; b is final afterwards
    assert sink.events == [(207, 0, "go", "a", "b"), (207, 1, "go", "a", "b")]
    assert calls == {0: 3, 1: 3}
    assert result.vetoed_by_trigger == {"go": 4}
    assert result.events_by_trigger == {"go": 2}
    assert result.total_vetoed == 4


def test_falsy_callback_result_vetoes_like_doge_datagen():
    sink = RecordingSink()
    gen = make_gen(["a", "b"], IndexFactory(), 3, 4)
    gen.add_transition("go", "a", "b", 100, lambda s, t: None, [sink])
    result = gen.start()
    assert sink.events == []
    assert result.vetoed_by_trigger == {"go": 12}
    assert result.events_by_trigger == {"go": 0}


def test_truthy_callback_result_accepts():
    sink = RecordingSink()
    gen = make_gen(["a", "b"], IndexFactory(), 2, 2)
    gen.add_transition("go", "a", "b", 100, lambda s, t: 1, [sink])
    gen.start()
    assert len(sink.events) == 2


def test_timestamps_follow_ticks():
    sink = RecordingSink()
    gen = make_gen(["a"], IndexFactory(), 2, 5, tick_ms=250, timestamp_start=1_700_000_000_000)
    gen.add_transition("tick", "a", "a", 100, event_sinks=[sink])
    gen.start()
    assert [ts for ts, *_ in sink.events] == [1_700_000_000_000 + k * 250 for k in range(5) for _ in range(2)]


def test_factory_called_once_per_subject_in_order_before_tick_zero():
    log: list = []
    sink = RecordingSink(log=log)
    gen = make_gen(["a"], CountingFactory(log), 5, 2)
    gen.add_transition("loop", "a", "a", 100, event_sinks=[sink])
    gen.start()
    assert log[:5] == [("create", i) for i in range(5)]
    assert [entry[0] for entry in log[5:]] == ["collect"] * 10
    assert log[5] == ("collect", 0, 0, "loop")


def test_subjects_processed_in_creation_order_within_a_tick():
    log: list = []
    sink = RecordingSink(log=log)

    def callback(subject, transition):
        log.append(("cb", subject))
        return True

    gen = make_gen(["a"], IndexFactory(), 4, 3, tick_ms=10)
    gen.add_transition("loop", "a", "a", 100, callback, [sink])
    gen.start()
    expected = []
    for tick in range(3):
        for subject in range(4):
            expected += [("cb", subject), ("collect", tick * 10, subject, "loop")]
    assert log == expected


def test_index_factory_receives_global_indices():
    factory = IndexFactory()
    gen = make_gen(["a"], factory, 7, 1)
    gen.add_transition("loop", "a", "a", 10)
    gen.start()
    assert factory.indices == list(range(7))


def test_zero_argument_factory_works():
    sink = RecordingSink()
    factory = CountingFactory()
    gen = make_gen(["a"], factory, 4, 1)
    gen.add_transition("loop", "a", "a", 100, event_sinks=[sink])
    gen.start()
    assert factory.made == 4
    assert [s for _, s, *_ in sink.events] == [0, 1, 2, 3]


def test_subjects_need_no_hash():
    class Unhashable:
        __hash__ = None

        def __init__(self, n):
            self.n = n

        def __eq__(self, other):  # equal objects: a dict keyed by subject would merge them
            return isinstance(other, Unhashable)

    class Factory(SubjectFactory):
        def create(self):
            return Unhashable(0)

    sink = RecordingSink()
    gen = make_gen(["a", "b"], Factory(), 3, 2)
    gen.add_transition("go", "a", "b", 100, event_sinks=[sink])
    result = gen.start()
    assert result.total_events == 3
    assert len({id(s) for _, s, *_ in sink.events}) == 3


def test_zero_subjects_and_zero_ticks_produce_nothing():
    for subjects, ticks in ((0, 10), (10, 0), (0, 0)):
        sink = RecordingSink()
        factory = IndexFactory()
        gen = make_gen(["a"], factory, subjects, ticks)
        gen.add_transition("loop", "a", "a", 100, event_sinks=[sink])
        result = gen.start()
        assert sink.events == []
        assert result.total_events == 0
        assert result.ticks == ticks
        assert result.subjects == subjects
        assert sink.closed == 1


# -- closing and errors ------------------------------------------------------------------------


def test_every_sink_closed_exactly_once():
    shared, other = RecordingSink("shared"), RecordingSink("other")
    gen = make_gen(["a", "b"], IndexFactory(), 3, 10)
    gen.add_transition("go", "a", "b", 50, event_sinks=[shared])
    gen.add_transition("back", "b", "a", 50, event_sinks=[shared, other])
    gen.start()
    assert shared.closed == 1
    assert other.closed == 1


def test_callback_error_becomes_simulation_error_and_sinks_are_closed():
    first, second = RecordingSink("first"), RecordingSink("second")
    original = ValueError("boom")

    def callback(subject, transition):
        if subject == 2 and len(first.events) >= 3 * 5:  # subject 2 at tick 3
            raise original
        return True

    gen = make_gen(["a", "b"], IndexFactory(), 5, 10)
    gen.add_transition("stepping", "a", "a", 100, callback, [first])
    gen.add_transition("unused", "b", "b", 100, event_sinks=[second])
    with pytest.raises(SimulationError) as info:
        gen.start()
    err = info.value
    assert err.__cause__ is original
    assert (err.tick, err.subject_index, err.trigger) == (3, 2, "stepping")
    message = str(err)
    assert "tick 3" in message and "subject 2" in message and "'stepping'" in message
    assert first.closed == 1 and second.closed == 1
    assert len(first.events) == 3 * 5 + 2  # everything before the failing call was delivered


def test_sink_collect_error_becomes_simulation_error_and_all_sinks_are_closed():
    class Failing(RecordingSink):
        def collect(self, timestamp, subject, transition):
            if timestamp == 2000 and subject == 1:
                raise OSError("disk full")
            super().collect(timestamp, subject, transition)

    good, bad = RecordingSink("good"), Failing("bad")
    gen = make_gen(["a"], IndexFactory(), 3, 5)
    gen.add_transition("loop", "a", "a", 100, event_sinks=[good, bad])
    with pytest.raises(SimulationError) as info:
        gen.start()
    assert isinstance(info.value.__cause__, OSError)
    assert (info.value.tick, info.value.subject_index, info.value.trigger) == (2, 1, "loop")
    assert good.closed == 1 and bad.closed == 1


@pytest.mark.parametrize("failing_first", [True, False])
def test_close_error_propagates_after_other_sinks_closed(failing_first):
    class BadClose(RecordingSink):
        def close(self):
            super().close()
            raise RuntimeError("close failed")

    bad, good = BadClose("bad"), RecordingSink("good")
    sinks = [bad, good] if failing_first else [good, bad]
    gen = make_gen(["a"], IndexFactory(), 2, 3)
    gen.add_transition("loop", "a", "a", 100, event_sinks=sinks)
    with pytest.raises(RuntimeError, match="close failed"):
        gen.start()
    assert bad.closed == 1 and good.closed == 1


def test_final_state_warning_logged_once_per_state_and_nothing_printed(caplog, capsys):
    gen = make_gen(["a", "b", "c"], IndexFactory(), 2, 5)
    gen.add_transition("go", "a", "b", 100)
    with caplog.at_level(logging.DEBUG, logger="doge_dist"):
        gen.start()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "doge_dist"]
    assert len(warnings) == 2
    assert "b" in warnings[0].getMessage().split() and "c" in warnings[1].getMessage().split()
    assert all("final state" in r.getMessage() for r in warnings)
    assert [r for r in caplog.records if r.levelno > logging.WARNING] == []
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


# -- RunResult ---------------------------------------------------------------------------------


def test_run_result_matches_what_sinks_received(capsys):
    rec1, rec2 = RecordingSink("rec"), RecordingSink("rec")
    printer = PrintingSink(lambda ts, s, t: f"{ts} {s} {t.trigger}")
    gen = make_gen(["a", "b"], IndexFactory(), 50, 40, seed=3)
    gen.add_transition("go", "a", "b", 20, event_sinks=[rec1, printer])
    gen.add_transition("back", "b", "a", 30, event_sinks=[rec2])
    result = gen.start()
    printed = capsys.readouterr().out.splitlines()
    n_go, n_back = len(rec1.events), len(rec2.events)
    assert n_go > 0 and n_back > 0
    assert len(printed) == n_go
    assert result.events_by_trigger == {"go": n_go, "back": n_back}
    assert result.vetoed_by_trigger == {"go": 0, "back": 0}
    assert result.events_by_sink == {"rec": n_go, "print": n_go, "rec#2": n_back}
    assert list(result.events_by_sink) == ["rec", "print", "rec#2"]
    assert result.events_by_transition == {"a:go": n_go, "b:back": n_back}
    assert result.total_events == n_go + n_back
    assert result.subjects == 50 and result.ticks == 40
    assert result.seed == 3 and result.stopped is False
    assert result.elapsed_s > 0
    assert result.events_per_s == pytest.approx(result.total_events / result.elapsed_s)
    assert result.sink_stats["print"] == {"delivered": n_go}
    data = result.to_dict()
    assert json.loads(json.dumps(data))["total_events"] == n_go + n_back


def test_stop_event_from_progress_stops_at_window_boundary():
    sink = RecordingSink()
    stop = threading.Event()
    seen = []

    def progress(p):
        seen.append(p.ticks_done)
        stop.set()

    gen = make_gen(["a"], IndexFactory(), 3, 1000, tick_ms=1)
    gen.add_transition("loop", "a", "a", 100, event_sinks=[sink])
    result = gen.start(window=10, progress=progress, stop_event=stop)
    assert result.stopped is True
    assert seen == [10]
    assert result.ticks == 10
    assert result.total_events == 30 == len(sink.events)
    assert max(ts for ts, *_ in sink.events) == 9
    assert sink.closed == 1


def test_generator_stop_from_progress_stops_too():
    sink = RecordingSink()
    gen = make_gen(["a"], IndexFactory(), 2, 100)
    gen.add_transition("loop", "a", "a", 100, event_sinks=[sink])
    result = gen.start(window=5, progress=lambda p: gen.stop() if p.ticks_done >= 15 else None)
    assert result.stopped is True and result.ticks == 15
    assert sink.closed == 1
    # a later start() is not affected by the earlier stop request
    again = gen.start(window=5)
    assert again.stopped is False and again.ticks == 100


def test_progress_reports_increasing_ticks():
    reports = []
    gen = make_gen(["a", "b"], IndexFactory(), 20, 95, seed=5)
    gen.add_transition("go", "a", "b", 30, event_sinks=[RecordingSink()])
    gen.add_transition("back", "b", "a", 30, event_sinks=[RecordingSink()])
    result = gen.start(window=10, progress=reports.append)
    ticks = [p.ticks_done for p in reports]
    assert ticks == list(range(10, 95, 10)) + [95]
    assert all(p.ticks_total == 95 for p in reports)
    totals = [p.total_events for p in reports]
    assert totals == sorted(totals)
    assert totals[-1] == result.total_events


def test_mock_sink_as_in_doge_datagen_tests():
    """doge-datagen's own tests pass ``unittest.mock.Mock()`` as a sink: every attribute exists and
    returns another Mock (so ``stats()`` is not a dict). The run must still work and close it once."""
    from unittest.mock import Mock

    sink = Mock()
    gen = make_gen(["a"], IndexFactory(), 2, 3)
    gen.add_transition("loop", "a", "a", 100, event_sinks=[sink])
    result = gen.start()
    assert sink.collect.call_count == 6
    assert sink.close.call_count == 1
    assert result.events_by_sink == {"Mock": 6}


def test_progress_shows_delivery_failures_while_the_run_goes():
    from doge_dist import EventSink
    from doge_dist.cli._progress import format_progress

    class Lossy(EventSink):
        name = "lossy"

        def __init__(self):
            self.seen = 0

        def collect(self, timestamp, subject, transition):
            self.seen += 1

        def stats(self):
            return {"delivered": self.seen - self.seen // 2, "failed": self.seen // 2}

    class Factory(doge_dist.SubjectFactory):
        def create(self, index):
            return index

    sink = Lossy()
    gen = doge_dist.DataOnlineGenerator(["a", "b"], "a", Factory(), 50, 1000, 20, seed=1)
    gen.add_transition("go", "a", "b", 100, event_sinks=[sink])
    gen.add_transition("back", "b", "a", 100, event_sinks=[sink])
    seen = []
    gen.start(window=5, progress=seen.append)
    assert [p.failed_by_sink.get("lossy", 0) for p in seen] == [125, 250, 375, 500]
    assert "FAILED lossy: 500" in format_progress(seen[-1])
