"""Bad input fails early with ModelError (a ValueError) naming the offending item.

Every check runs at construction, add_transition or start() time, before any subject exists.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from doge_dist import DataOnlineGenerator, EventSink, ModelError, SubjectFactory


class RecordingFactory(SubjectFactory):
    def __init__(self) -> None:
        self.calls = 0

    def create(self):
        self.calls += 1
        return self.calls


class Sink(EventSink):
    name = "ok-sink"

    def collect(self, timestamp, subject, transition) -> None:
        pass


class NoCollect:
    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return "NoCollect()"


STATES = ["offline", "online", "loan_screen"]


@pytest.fixture
def factory() -> RecordingFactory:
    return RecordingFactory()


@pytest.fixture
def gen(factory) -> DataOnlineGenerator:
    return DataOnlineGenerator(STATES, "offline", factory, 5, 1000, 10, seed=1)


def expect_model_error(match: str):
    return pytest.raises(ModelError, match=match)


def test_model_error_is_a_value_error():
    assert issubclass(ModelError, ValueError)


# -- construction ------------------------------------------------------------------------------


def test_unknown_initial_state(factory):
    with expect_model_error("'nowhere'"):
        DataOnlineGenerator(STATES, "nowhere", factory, 5, 1000, 10)
    assert factory.calls == 0


def test_duplicate_state_names(factory):
    with expect_model_error("duplicate state name 'online'"):
        DataOnlineGenerator(["offline", "online", "online"], "offline", factory, 5, 1000, 10)


@pytest.mark.parametrize("states", [[], "offline", ["offline", ""], ["offline", 3]])
def test_bad_states_list(factory, states):
    with pytest.raises(ModelError, match="state"):
        DataOnlineGenerator(states, "offline", factory, 5, 1000, 10)


@pytest.mark.parametrize("name,value", [("subjects_num", -1), ("ticks_num", -5)])
def test_negative_counts(factory, name, value):
    kwargs = {"subjects_num": 5, "ticks_num": 10, name: value}
    with expect_model_error(f"{name} must be >= 0"):
        DataOnlineGenerator(STATES, "offline", factory, tick_ms=1000, **kwargs)


@pytest.mark.parametrize("value", [10.0, "10", True, None])
def test_non_integer_subjects_num(factory, value):
    with expect_model_error(f"subjects_num must be an integer, got {value!r}"):
        DataOnlineGenerator(STATES, "offline", factory, value, 1000, 10)


@pytest.mark.parametrize("value", [0, -1000, 1.5, "60000"])
def test_bad_tick_ms(factory, value):
    with expect_model_error("tick_ms"):
        DataOnlineGenerator(STATES, "offline", factory, 5, value, 10)


@pytest.mark.parametrize("value", ["42", 1.5, True, [1]])
def test_bad_seed_type(factory, value):
    with expect_model_error("seed must be an integer or None"):
        DataOnlineGenerator(STATES, "offline", factory, 5, 1000, 10, seed=value)


def test_factory_without_create():
    with expect_model_error("subject_factory must have a create"):
        DataOnlineGenerator(STATES, "offline", object(), 5, 1000, 10)


def test_valid_edge_values_are_accepted(factory):
    for seed in (None, 0, 2**64 - 1):
        DataOnlineGenerator(STATES, "offline", factory, 0, 1, 0, seed=seed)
    for seed in (-3, 2**64):  # the one seed rule, shared with job specs: 0 <= seed < 2**64
        with expect_model_error(r"seed must be between 0 and 2\*\*64-1"):
            DataOnlineGenerator(STATES, "offline", factory, 0, 1, 0, seed=seed)
    DataOnlineGenerator(STATES, "offline", factory, 5, 1000, None)  # unbounded ticks
    assert factory.calls == 0


# -- add_transition ----------------------------------------------------------------------------


def test_unknown_from_state(gen, factory):
    with expect_model_error("transition 'go': from_state 'mars'"):
        gen.add_transition("go", "mars", "online", 10)
    assert factory.calls == 0 and gen.transitions == []


def test_unknown_to_state(gen, factory):
    with expect_model_error("transition 'go': to_state 'mars'"):
        gen.add_transition("go", "offline", "mars", 10)
    assert factory.calls == 0


def test_probabilities_over_100_name_the_state(gen):
    gen.add_transition("login", "offline", "online", 60)
    with expect_model_error("state 'offline'.*'spending'"):
        gen.add_transition("spending", "offline", "offline", 40.5)
    assert [t.trigger for t in gen.transitions] == ["login"]  # the rejected one was not added
    gen.add_transition("spending", "offline", "offline", 40)  # exactly 100 is fine


def test_float_sums_to_100_are_accepted(gen):
    gen.add_transition("a", "offline", "online", 33.3)
    gen.add_transition("b", "offline", "loan_screen", 33.3)
    gen.add_transition("c", "offline", "offline", 33.4)
    for i in range(7):  # 7 x 100/7 sums to 100.00000000000001 in floating point
        gen.add_transition(f"t{i}", "online", "offline", 100 / 7)
    assert len(gen.transitions) == 10
    with expect_model_error("state 'online'"):
        gen.add_transition("more", "online", "offline", 1e-6)


@pytest.mark.parametrize("value,match", [
    (-0.1, "probability must be >= 0"),
    (math.nan, "probability must be finite"),
    (math.inf, "probability must be finite"),
    (-math.inf, "probability must be finite"),
    ("10", "probability must be a number"),
    (None, "probability must be a number"),
    (True, "probability must be a number"),
])
def test_bad_probability(gen, factory, value, match):
    with expect_model_error(f"transition 'login' from 'offline': {match}"):
        gen.add_transition("login", "offline", "online", value)
    assert factory.calls == 0


def test_numeric_types_accepted(gen):
    gen.add_transition("a", "offline", "online", 1)
    gen.add_transition("b", "offline", "online", Fraction(1, 3))
    gen.add_transition("c", "offline", "online", 0)
    gen.add_transition("d", "online", "offline", np.float64(2.5))
    assert [(t.trigger, t.probability) for t in gen.transitions] == [
        ("a", 1), ("b", Fraction(1, 3)), ("c", 0), ("d", 2.5)]


@pytest.mark.parametrize("certain", [100, 100.0, Fraction(100), np.int64(100), np.float64(100)])
def test_numeric_types_reach_the_engine(factory, certain):
    gen = DataOnlineGenerator(STATES, "offline", factory, 5, 1000, 3, seed=1)
    gen.add_transition("go", "offline", "online", certain)
    gen.add_transition("never", "online", "offline", Fraction(0))
    result = gen.start()
    assert result.events_by_trigger == {"go": 5, "never": 0}  # all at tick 0, none after


def test_duplicate_trigger_from_one_state(gen):
    gen.add_transition("login", "offline", "online", 10)
    with expect_model_error("trigger 'login' is already defined from state 'offline'"):
        gen.add_transition("login", "offline", "loan_screen", 10)
    gen.add_transition("login", "online", "online", 10)  # same trigger from another state is fine


@pytest.mark.parametrize("trigger", ["", None, 3])
def test_bad_trigger(gen, trigger):
    with expect_model_error("trigger must be a non-empty string"):
        gen.add_transition(trigger, "offline", "online", 10)


def test_non_callable_callback(gen):
    with expect_model_error("transition 'login': action_callback must be callable"):
        gen.add_transition("login", "offline", "online", 10, action_callback="not a function")


def test_sink_without_collect(gen):
    with expect_model_error("transition 'login': sink NoCollect\\(\\) has no collect"):
        gen.add_transition("login", "offline", "online", 10, event_sinks=[Sink(), NoCollect()])


def test_single_sink_not_in_a_list(gen):
    with expect_model_error("transition 'login': .*single sink.*wrap it in a list"):
        gen.add_transition("login", "offline", "online", 10, event_sinks=Sink())


def test_sinks_given_as_string(gen):
    with expect_model_error("transition 'login': event_sinks must be a list"):
        gen.add_transition("login", "offline", "online", 10, event_sinks="kafka")


def test_sinks_as_tuple_or_generator_are_accepted(gen):
    sink = Sink()
    gen.add_transition("login", "offline", "online", 10, event_sinks=(sink,))
    gen.add_transition("logout", "online", "offline", 10, event_sinks=(s for s in [sink]))
    assert gen.sinks == [sink]
    assert gen.transitions[1].event_sinks == (sink,)


# -- start() and configure() -------------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, -1, 1.5, "2", True, None])
def test_bad_workers(gen, factory, workers):
    gen.add_transition("login", "offline", "online", 10)
    with expect_model_error("workers must be an integer >= 1"):
        gen.start(workers=workers)
    assert factory.calls == 0


@pytest.mark.parametrize("window", [0, -10, 2.5, "100", True])
def test_bad_window(gen, factory, window):
    gen.add_transition("login", "offline", "online", 10)
    with expect_model_error("window must be an integer >= 1"):
        gen.start(window=window)
    assert factory.calls == 0


@pytest.mark.parametrize("speed", [0, -1.0, "fast"])
def test_bad_speed(gen, factory, speed):
    with expect_model_error("speed must be a number > 0"):
        gen.start(speed=speed)
    assert factory.calls == 0


def test_bad_backend(gen, factory):
    with expect_model_error("backend must be 'local' or 'ray'"):
        gen.start(backend="threads")
    assert factory.calls == 0


def test_unbounded_run_needs_a_way_to_stop(factory):
    gen = DataOnlineGenerator(STATES, "offline", factory, 5, 1000, None)
    with expect_model_error("ticks_num=None"):
        gen.start()
    assert factory.calls == 0


def test_configure_rejects_unknown_keys(gen):
    with expect_model_error("unknown setting.*'subject_num'"):
        gen.configure(subject_num=10)
    assert gen.subjects_num == 5


@pytest.mark.parametrize("settings,match", [
    ({"subjects_num": -1}, "subjects_num must be >= 0"),
    ({"ticks_num": 2.0}, "ticks_num must be an integer"),
    ({"tick_ms": 0}, "tick_ms must be > 0"),
    ({"seed": "x"}, "seed must be an integer"),
    ({"timestamp_start": 1.5}, "timestamp_start must be an integer"),
])
def test_configure_validates_values(gen, settings, match):
    with expect_model_error(match):
        gen.configure(**settings)


def test_configure_applies_valid_settings(gen):
    assert gen.configure(subjects_num=7, ticks_num=3, tick_ms=5, timestamp_start=100, seed=9) is gen
    assert (gen.subjects_num, gen.ticks_num, gen.tick_ms, gen.timestamp_start, gen.seed) == (7, 3, 5, 100, 9)
