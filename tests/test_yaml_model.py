"""YAML models (format doge-dist/model-1): parsing with line numbers, load_model, dump_model, pickling."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap

import pytest

import doge_dist
from doge_dist import ModelError, load_model
from doge_dist.model._yaml_model import (
    EventRecord,
    IndexSubjectFactory,
    ModelSubject,
    is_model_file,
    parse_model,
    read_model,
)
from doge_dist.profiles import daily
from doge_dist.sinks._spec import build_sink

BANKING = textwrap.dedent("""\
    format: doge-dist/model-1
    tick_ms: 60000
    states: [offline, online, loan_screen]
    initial_state: offline
    transitions:
      - {trigger: login, from: offline, to: online, probability: 0.1}            # percent per tick
      - {trigger: logout, from: online, to: offline, probability: 70,
         profile: {daily: [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1.2, 1.2]}}
      - {trigger: open_loan_screen, from: online, to: loan_screen, probability: 20}
      - {trigger: close_loan_screen, from: loan_screen, to: online, probability: 40}
    arrivals: {rate: 5.0}
    """)


def write(tmp_path, text, name="model.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_the_issue_example_parses_into_a_generator(tmp_path):
    gen = load_model(write(tmp_path, BANKING), subjects_num=50, ticks_num=20, seed=1)
    assert gen.states == ["offline", "online", "loan_screen"] and gen.initial_state == "offline"
    assert [(t.trigger, t.from_state, t.to_state, t.probability) for t in gen.transitions] == [
        ("login", "offline", "online", 0.1), ("logout", "online", "offline", 70.0),
        ("open_loan_screen", "online", "loan_screen", 20.0),
        ("close_loan_screen", "loan_screen", "online", 40.0)]
    assert gen.transitions[1].profile == daily([1] * 22 + [1.2, 1.2])
    assert [a.rate_per_tick for a in gen.arrivals] == [5.0] and gen.arrivals[0].state == "offline"
    assert isinstance(gen.subject_factory, IndexSubjectFactory)
    assert gen.subjects_num == 50 and gen.ticks_num == 20 and gen.seed == 1 and gen.tick_ms == 60000


def test_load_model_builds_sinks_from_descriptions_with_the_event_record(tmp_path):
    model = write(tmp_path, """\
        format: doge-dist/model-1
        tick_ms: 1000
        states: [a, b]
        initial_state: a
        transitions:
          - {trigger: go, from: a, to: b, probability: 50}
          - {trigger: back, from: b, to: a, probability: 50}
        """)
    out = tmp_path / "events.jsonl"
    gen = load_model(model, sinks=[{"type": "jsonl", "path": str(out)}], subjects_num=20, ticks_num=30,
                     seed=3, timestamp_start=5_000)
    result = gen.start()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == result.total_events > 0
    assert set(rows[0]) == {"timestamp", "subject", "event", "from_state", "to_state"}
    assert {r["event"] for r in rows} == {"go", "back"}
    assert all(0 <= r["subject"] < 20 and (r["timestamp"] - 5_000) % 1000 == 0 for r in rows)
    moves = {"go": ("a", "b"), "back": ("b", "a")}
    assert all((r["from_state"], r["to_state"]) == moves[r["event"]] for r in rows)


def test_event_names_may_differ_from_triggers(tmp_path):
    model = read_model(write(tmp_path, """\
        format: doge-dist/model-1
        tick_ms: 1000
        states: [home, cart, product]
        initial_state: home
        transitions:
          - {trigger: click->cart, event: click, from: home, to: cart, probability: 10}
          - {trigger: click->product, event: click, from: home, to: product, probability: 20}
          - {trigger: back, from: cart, to: home, probability: 50}
          - {trigger: back, from: product, to: home, probability: 50}
        """))
    record = model.event_record()
    by_trigger = {t.trigger: t for t in model.build().transitions}
    assert record(7, ModelSubject(3), by_trigger["click->cart"]) == {
        "timestamp": 7, "subject": 3, "event": "click", "from_state": "home", "to_state": "cart"}
    assert record(7, ModelSubject(3), by_trigger["back"])["event"] == "back"
    assert "event: click" in doge_dist.dump_model(model)


def test_subjects_records_and_sinks_pickle(tmp_path):
    """Models travel to Ray workers: everything a YAML model's run needs must pickle by reference."""
    record = EventRecord({("a", "t"): "e"})
    sink = build_sink({"type": "jsonl", "path": str(tmp_path / "x-{shard}.jsonl")}, record=record,
                      for_model=True)
    for obj in (ModelSubject(4), IndexSubjectFactory(), record, sink,
                build_sink({"type": "print"}, record=record, for_model=True)):
        clone = pickle.loads(pickle.dumps(obj))
        assert type(clone) is type(obj)
    assert pickle.loads(pickle.dumps(record)) == record
    assert IndexSubjectFactory().create(9) == ModelSubject(9)


def test_dump_and_parse_round_trip(tmp_path):
    model = read_model(write(tmp_path, BANKING))
    text = doge_dist.dump_model(model, tmp_path / "again.yaml", header="fitted\nby hand")
    assert text.startswith("# fitted\n# by hand\nformat: doge-dist/model-1\n")
    again = read_model(tmp_path / "again.yaml")
    assert again.transitions == model.transitions and again.arrivals == model.arrivals
    assert again.states == model.states and again.tick_ms == model.tick_ms


def test_dump_model_takes_a_generator_without_callbacks_and_refuses_one_with(tmp_path):
    gen = doge_dist.DataOnlineGenerator(["a", "b"], "a", IndexSubjectFactory(), 5, 1000, 10)
    gen.add_transition("go", "a", "b", 10, profile=daily([2] * 24))
    gen.add_transition("back", "b", "a", 20)
    gen.add_arrivals(0.5, limit=100)
    again = parse_model(doge_dist.dump_model(gen))
    assert [(t.trigger, t.probability, t.profile) for t in again.transitions] == [
        ("go", 10.0, daily([2] * 24)), ("back", 20.0, None)]
    assert again.arrivals[0].limit == 100
    gen.add_transition("veto", "b", "b", 1, action_callback=lambda s, t: True)
    with pytest.raises(ModelError, match="action callbacks"):
        doge_dist.dump_model(gen)


@pytest.mark.parametrize("body, message", [
    ("tick_ms: 1000\nstates: [a]\ninitial_state: a\ntransitions: []\n", "format"),
    ("format: doge-dist/model-1\ntick_ms: 0\nstates: [a]\ninitial_state: a\ntransitions: []\n",
     r"tick_ms \(line 2\): tick_ms must be a positive integer"),
    ("format: doge-dist/model-1\ntick_ms: 1000\nstates: [a, a]\ninitial_state: a\ntransitions: []\n",
     r"states\[1\] \(line 3\): duplicate state 'a'"),
    ("format: doge-dist/model-1\ntick_ms: 1000\nstates: [a]\ninitial_state: b\ntransitions: []\n",
     r"initial_state \(line 4\)"),
    ("format: doge-dist/model-1\ntick_ms: 1000\nstates: [a]\ninitial_state: a\ntransitions: []\nstate: [a]\n",
     r"unknown key 'state' in a model; did you mean 'states'"),
    ("format: doge-dist/model-1\ntick_ms: 1000\nstates: [a, b]\ninitial_state: a\ntransitions:\n"
     "  - {trigger: go, from: a, to: b, probabilty: 5}\n",
     r"transitions\[0\].probabilty \(line 6\): unknown key 'probabilty' in a transition; did you mean "
     "'probability'"),
    ("format: doge-dist/model-1\ntick_ms: 1000\nstates: [a, b]\ninitial_state: a\ntransitions:\n"
     "  - {trigger: go, from: a, to: c, probability: 5}\n", r"transitions\[0\].to \(line 6\): state 'c'"),
    ("format: doge-dist/model-1\ntick_ms: 1000\nstates: [a, b]\ninitial_state: a\ntransitions:\n"
     "  - {trigger: go, from: a, to: b, probability: 60}\n"
     "  - {trigger: stay, from: a, to: a, probability: 50}\n",
     r"transitions\[1\].probability \(line 7\): the probabilities out of state 'a' add up to 110%"),
    ("format: doge-dist/model-1\ntick_ms: 1000\nstates: [a, b]\ninitial_state: a\ntransitions:\n"
     "  - {trigger: go, from: a, to: b, probability: 5, profile: {daily: [1, 2]}}\n",
     r"transitions\[0\].profile \(line 6\): profile: daily profile: expected 24 multipliers, got 2"),
    ("format: doge-dist/model-1\ntick_ms: 1000\nstates: [a, b]\ninitial_state: a\ntransitions: []\n"
     "arrivals: {rate: -1}\n", r"arrivals.rate \(line 6\): rate_per_tick must be a finite number >= 0"),
    ("format: doge-dist/model-1\ntick_ms: 1000\nstates: [a, b]\ninitial_state: a\ntransitions:\n"
     "  - {trigger: go, from: a, to: b, probability: yes}\n", r"transitions\[0\].probability \(line 6\)"),
])
def test_bad_models_name_the_key_and_line(tmp_path, body, message):
    with pytest.raises(ModelError, match=message):
        read_model(write(tmp_path, body))


def test_model_files_are_told_apart_from_job_specs(tmp_path):
    assert is_model_file(write(tmp_path, BANKING))
    assert not is_model_file(write(tmp_path, "model: x.py:build\nsubjects: 3\n", "spec.yaml"))
    assert not is_model_file(tmp_path / "missing.yaml")


def test_importing_doge_dist_and_load_model_stays_light():
    code = ("import sys, doge_dist; from doge_dist import load_model\n"
            "print([m for m in ('pyarrow', 'polars', 'scipy', 'matplotlib', 'ray', 'sqlalchemy',"
            " 'confluent_kafka', 'fastavro') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_window_where_a_profile_thins_every_candidate_away_runs(tmp_path):
    """Engine regression found by fitted models: windows with due subjects that all stay (thinned by a
    near-zero profile) used to fail counting the window (IndexError on an empty array)."""
    night = ", ".join(["0.001"] * 12 + ["1"] * 12)
    path = write(tmp_path, f"""\
        format: doge-dist/model-1
        tick_ms: 60000
        states: [a, b]
        initial_state: a
        transitions:
          - {{trigger: go, from: a, to: b, probability: 10, profile: {{daily: [{night}]}}}}
          - {{trigger: back, from: b, to: a, probability: 10}}
        """)
    result = load_model(path, subjects_num=1, ticks_num=1440, seed=1).start()
    assert result.events_by_trigger["go"] > 0
    assert result.events_by_trigger["go"] - result.events_by_trigger["back"] in (0, 1)


def test_the_documented_model_example_parses(tmp_path):
    from conftest import REPO_ROOT

    text = (REPO_ROOT / "docs" / "learn.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```yaml\n")[1:]]
    model = next(b for b in blocks if b.startswith("format: doge-dist/model-1"))
    gen = load_model(write(tmp_path, model), subjects_num=10, ticks_num=10)
    assert [t.trigger for t in gen.transitions] == ["login", "logout"]
    assert gen.arrivals[0].rate_per_tick == 5.0
    from doge_dist.cli._spec import parse_spec_text

    spec = parse_spec_text(next(b for b in blocks if b.startswith("model: fitted.yaml")))
    assert spec.model == "fitted.yaml" and spec.extras["sink"]["parts"] == 8
