"""The Markov-chain analysis behind ``doge-dist inspect``, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from doge_dist import CountingSink, ModelError, Transition
from doge_dist.model._analysis import analyze, analyze_generator, propagate, transition_matrix


def tr(trigger, src, dst, p, sinks=(), callback=None):
    return Transition(trigger, src, dst, p, action_callback=callback, event_sinks=list(sinks))


def test_two_state_chain_hand_computed():
    # A -> B 10 %, B -> A 30 %: pi = (0.75, 0.25); stays 10 and 1/0.3 ticks.
    a = analyze(["A", "B"], "A", [tr("go", "A", "B", 10), tr("back", "B", "A", 30)], subjects=100, ticks=2)
    assert a.stationary == pytest.approx({"A": 0.75, "B": 0.25})
    assert a.stationary_note == "unique"
    assert a.period == 1
    assert a.expected_stay == pytest.approx({"A": 10.0, "B": 1 / 0.3})
    assert a.unreachable == [] and a.final_states == []
    # stationary rates: 100 * 0.75 * 0.1 = 7.5 and 100 * 0.25 * 0.3 = 7.5 per tick
    assert a.by_trigger["go"].rate_per_tick == pytest.approx(7.5)
    assert a.by_trigger["back"].rate_per_tick == pytest.approx(7.5)
    # tick 0: everyone in A -> 10 "go"; tick 1: d = (0.9, 0.1) -> 9 "go" and 3 "back"
    assert a.by_trigger["go"].expected_count == pytest.approx(19.0)
    assert a.by_trigger["back"].expected_count == pytest.approx(3.0)
    assert a.distribution_at_end == pytest.approx({"A": 0.9 * 0.9 + 0.1 * 0.3, "B": 0.9 * 0.1 + 0.1 * 0.7})
    assert a.by_transition["A:go"].expected_count == pytest.approx(19.0)


def test_absorbing_state_is_final_and_the_unique_long_run_state():
    # A -> B 50 %, B has no way out: after T ticks a subject has left A with 1 - 0.5^T.
    a = analyze(["A", "B"], "A", [tr("leave", "A", "B", 50)], subjects=8, ticks=3)
    assert a.final_states == ["B"]
    assert a.expected_stay["A"] == pytest.approx(2.0)
    assert math.isinf(a.expected_stay["B"])
    assert a.stationary == pytest.approx({"A": 0.0, "B": 1.0})
    assert a.by_trigger["leave"].rate_per_tick == pytest.approx(0.0)
    assert a.by_trigger["leave"].expected_count == pytest.approx(8 * (1 - 0.5 ** 3))
    assert a.to_dict()["expected_stay_ticks"]["B"] is None


def test_unreachable_states_and_two_closed_classes():
    # A -> B 20 %, A -> C 30 %; B and C absorb; D is never reached.
    transitions = [tr("b", "A", "B", 20), tr("c", "A", "C", 30), tr("d_out", "D", "A", 5)]
    a = analyze(["A", "B", "C", "D"], "A", transitions, subjects=10, ticks=None)
    assert a.unreachable == ["D"]
    assert a.final_states == ["B", "C"]
    assert a.stationary is None and a.period is None
    assert "not unique" in a.stationary_note and "2 closed classes" in a.stationary_note
    # absorbed into B with 0.2 / 0.5, into C with 0.3 / 0.5
    assert a.long_run_from_initial == pytest.approx({"A": 0.0, "B": 0.4, "C": 0.6, "D": 0.0})
    assert a.by_trigger["b"].rate_per_tick is None
    assert a.by_trigger["b"].expected_count is None  # unbounded
    assert a.distribution_at_end is None


def test_periodic_chain_is_reported():
    a = analyze(["A", "B"], "A", [tr("ab", "A", "B", 100), tr("ba", "B", "A", 100)], subjects=4, ticks=3)
    assert a.period == 2
    assert a.stationary == pytest.approx({"A": 0.5, "B": 0.5})
    assert "periodic" in a.stationary_note
    # ticks 0 and 2 everyone is in A, tick 1 in B
    assert a.by_trigger["ab"].expected_count == pytest.approx(8.0)
    assert a.by_trigger["ba"].expected_count == pytest.approx(4.0)


def test_self_loops_do_not_end_a_stay():
    # A -> A "ping" 10 % (an event, no move), A -> B 10 %, B -> A 50 %: pi_A * 0.1 = pi_B * 0.5.
    transitions = [tr("ping", "A", "A", 10), tr("go", "A", "B", 10), tr("back", "B", "A", 50)]
    a = analyze(["A", "B"], "A", transitions, subjects=60, ticks=1)
    assert a.expected_stay == pytest.approx({"A": 10.0, "B": 2.0})
    assert a.stationary == pytest.approx({"A": 5 / 6, "B": 1 / 6})
    assert a.by_trigger["ping"].rate_per_tick == pytest.approx(60 * 5 / 6 * 0.1)
    assert a.by_trigger["ping"].expected_count == pytest.approx(6.0)


def test_only_self_loops_make_a_dead_end():
    a = analyze(["A", "B"], "A", [tr("go", "A", "B", 100), tr("tick", "B", "B", 40)], subjects=1, ticks=10)
    assert a.final_states == ["B"]
    assert a.by_trigger["tick"].rate_per_tick == pytest.approx(0.4)
    assert a.by_trigger["tick"].expected_count == pytest.approx(9 * 0.4)


def test_sinks_and_triggers_shared_by_transitions():
    one, two, other = CountingSink("s"), CountingSink("s"), CountingSink("x")
    transitions = [tr("go", "A", "B", 10, [one, other]), tr("back", "B", "A", 30, [two]),
                   tr("go", "B", "B", 20, [one])]
    a = analyze(["A", "B"], "A", transitions, subjects=1, ticks=1)
    assert list(a.by_sink) == ["s", "x", "s#2"]  # as RunResult names them
    assert list(a.by_trigger) == ["go", "back"]
    pi_a, pi_b = a.stationary["A"], a.stationary["B"]
    assert a.by_trigger["go"].rate_per_tick == pytest.approx(pi_a * 0.1 + pi_b * 0.2)
    assert a.by_sink["s"].rate_per_tick == pytest.approx(pi_a * 0.1 + pi_b * 0.2)
    assert a.by_sink["x"].rate_per_tick == pytest.approx(pi_a * 0.1)
    assert a.by_sink["s#2"].rate_per_tick == pytest.approx(pi_b * 0.3)
    assert set(a.by_transition) == {"A:go", "B:back", "B:go"}


def test_veto_note_only_with_callbacks():
    plain = analyze(["A"], "A", [tr("t", "A", "A", 1)], subjects=1, ticks=1)
    assert plain.notes == []
    vetoing = analyze(["A"], "A", [tr("t", "A", "A", 1, callback=lambda s, t: False)], subjects=1, ticks=1)
    assert any("not modelled" in note for note in vetoing.notes)


def test_doubling_matches_tick_by_tick_propagation():
    rng = np.random.default_rng(3)
    raw = rng.random((5, 5))
    matrix = raw / raw.sum(axis=1, keepdims=True)
    start = np.array([1.0, 0, 0, 0, 0])
    for ticks in (0, 1, 2, 7, 1000, 1023):
        total, d = np.zeros(5), start.copy()
        for _ in range(ticks):
            total += d
            d = d @ matrix
        got_total, got_end = propagate(matrix, start, ticks)
        assert got_total == pytest.approx(total, rel=1e-9, abs=1e-12)
        assert got_end == pytest.approx(d, rel=1e-9, abs=1e-12)


def test_transition_matrix_rows_sum_to_one_and_errors_name_the_state():
    m = transition_matrix(["A", "B"], [tr("go", "A", "B", 25)])
    assert m.tolist() == [[0.75, 0.25], [0.0, 1.0]]
    with pytest.raises(ModelError, match="'A'.*sum to 120%"):
        transition_matrix(["A", "B"], [tr("x", "A", "B", 70), tr("y", "A", "A", 50)])
    with pytest.raises(ModelError, match="'Z'"):
        transition_matrix(["A"], [tr("x", "A", "Z", 1)])
    with pytest.raises(ModelError, match="initial state 'Q'"):
        analyze(["A"], "Q", [], subjects=1, ticks=1)


def test_banking_reference_values():
    from examples.banking import build_generator

    gen = build_generator(CountingSink(), subjects=10_000, ticks=1000)
    a = analyze_generator(gen)
    assert round(a.by_trigger["login"].expected_count) == 9977
    assert round(a.by_trigger["take_loan"].expected_count) == 852
    total = sum(e.expected_count for e in a.by_trigger.values())
    assert a.by_sink["count"].expected_count == pytest.approx(total)
    assert a.expected_stay["offline"] == pytest.approx(1000.0)
    assert a.stationary["offline"] == pytest.approx(1 / (1 + 0.001 / 0.7 * (1 + 0.3 / 0.5)), rel=1e-9)
