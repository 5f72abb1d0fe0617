"""Job specs that name a YAML model and declare their sink (no Python needed), and YAML models as TARGETs."""

from __future__ import annotations

import csv
import gzip
import json
import re
import textwrap
import uuid

import pytest

from doge_dist.cli import main

MODEL = textwrap.dedent("""\
    format: doge-dist/model-1
    tick_ms: 60000
    states: [offline, online]
    initial_state: offline
    transitions:
      - {trigger: login, from: offline, to: online, probability: 5}
      - {trigger: logout, from: online, to: offline, probability: 40}
    """)
RECORD_FIELDS = {"timestamp", "subject", "event", "from_state", "to_state"}


@pytest.fixture
def model_dir(tmp_path, monkeypatch):
    (tmp_path / "fitted.yaml").write_text(MODEL)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def spec(directory, sink: str, extra: str = "", model: str = "fitted.yaml") -> str:
    path = directory / f"job-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(f"model: {model}\nsubjects: 200\nticks: 100\nseed: 1\n"
                    "timestamp_start: 2024-01-01T00:00:00Z\n" + sink + extra)
    return str(path)


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([*map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def report(path) -> dict:
    return json.loads(path.read_text())


def test_jsonl_sink_in_a_spec_writes_event_records(model_dir, capsys):
    job = spec(model_dir, 'sink: {type: jsonl, path: "out/ev-{shard}.jsonl.gz"}\n')
    code, _, err = run(capsys, "run", job, "-q", "--report", model_dir / "r.json")
    assert code == 0, err
    rows = [json.loads(line) for line in gzip.open(model_dir / "out/ev-0.jsonl.gz", "rt")]
    assert len(rows) == report(model_dir / "r.json")["total_events"] > 100
    assert set(rows[0]) == RECORD_FIELDS
    assert {r["event"] for r in rows} == {"login", "logout"}
    assert rows[0]["timestamp"] >= 1_704_067_200_000


def test_part_files_of_a_model_with_a_profile(model_dir, capsys):
    """Ticks where a profile thins every due subject away dispatch nothing (no part to select)."""
    quiet_mornings = "[" + ", ".join(["0.1"] * 12 + ["2"] * 12) + "]"
    (model_dir / "profiled.yaml").write_text(MODEL.replace("probability: 5}", "probability: 5, profile: "
                                                           f"{{daily: {quiet_mornings}}}}}"))
    job = spec(model_dir, 'sink: {type: jsonl, path: "out/p-{part}.jsonl", parts: 2}\n',
               model="profiled.yaml")
    code, _, err = run(capsys, "run", job, "-q", "--ticks", "1440", "--report", model_dir / "r.json")
    assert code == 0, err
    lines = sum(len((model_dir / f"out/p-{k}.jsonl").read_text().splitlines()) for k in (0, 1))
    assert lines == report(model_dir / "r.json")["total_events"] > 0


def test_csv_and_print_sinks(model_dir, capsys):
    job = spec(model_dir, "sink:\n  type: csv\n  path: out/ev.csv\n")
    assert run(capsys, "run", job, "-q")[0] == 0
    with open(model_dir / "out/ev.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert set(rows[0]) == RECORD_FIELDS and len(rows) > 100
    job = spec(model_dir, "sink: {type: print}\n")
    code, out, err = run(capsys, "run", job, "-q")
    assert code == 0, err
    printed = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(printed) == len(rows) and set(printed[0]) == RECORD_FIELDS  # same seed, same events


@pytest.mark.parametrize("sink, message", [
    ("sink:\n  type: jsonl\n  pth: x.jsonl\n",
     r"field 'sink.pth' \(line 8\): unknown key 'pth' for a jsonl sink; did you mean 'path'"),
    ("sink: {type: jsnl, path: x}\n",
     r"field 'sink.type' \(line 6\): type must be one of .* did you mean 'jsonl'"),
    ("sink: out.jsonl\n", r"field 'sink' \(line 6\): must be a mapping"),
    ("sink: {type: postgres, table: t}\n", r"field 'sink.url' \(line 6\): a postgres sink needs 'url'"),
    ("sink: {type: kafka}\n", "a kafka sink needs 'topic'"),
    ("sink: {type: jsonl, path: x.jsonl, compress: zip}\n", "compress must be gzip"),
    ('sink: {type: jsonl, path: "x-{part}.jsonl"}\n',
     r"field 'sink.parts' \(line 6\): a \{part\} path needs parts: P"),
    ("sink: {type: csv, path: x.csv, parts: 4}\n", r"field 'sink.path' \(line 6\): parts: P needs \{part\}"),
])
def test_bad_sinks_are_named_with_their_line(model_dir, capsys, sink, message):
    code, _, err = run(capsys, "run", spec(model_dir, sink), "-q")
    assert code == 2 and re.search(message, err), err
    assert len(err.strip().splitlines()) == 1


def test_a_yaml_model_is_a_target_for_run_inspect_and_graph(model_dir, capsys):
    code, out, err = run(capsys, "run", "fitted.yaml", "--subjects", "300", "--ticks", "50", "--seed", "2")
    assert code == 0, err
    assert "300 subjects x 50 ticks" in err and "login" in err  # the summary goes to stderr
    code, out, err = run(capsys, "inspect", "fitted.yaml", "--json")
    assert code == 0, err
    analysis = json.loads(out)
    assert analysis["tick_ms"] == 60000 and analysis["model"] == "fitted.yaml"
    code, out, err = run(capsys, "graph", "fitted.yaml", "-o", model_dir / "g.dot")
    assert code == 0, err
    assert "login" in (model_dir / "g.dot").read_text()


def test_a_bad_model_file_names_its_line(model_dir, capsys):
    (model_dir / "bad.yaml").write_text(MODEL.replace("probability: 40", "probability: 400"))
    code, _, err = run(capsys, "inspect", "bad.yaml")
    assert code == 2 and "transitions[1].probability (line 7)" in err, err
    code, _, err = run(capsys, "run", spec(model_dir, "", model="missing.yaml"), "-q")
    assert code == 2 and "model file not found" in err, err


def test_a_python_model_receives_the_spec_sink(tmp_path, capsys, monkeypatch):
    from conftest import REPO_ROOT

    monkeypatch.chdir(tmp_path)
    job = tmp_path / "job.yaml"
    job.write_text(f"model: {REPO_ROOT}/examples/banking.py:build_generator\n"
                   "subjects: 50\nticks: 200\nseed: 3\nsink: {type: jsonl, path: out/banking.jsonl}\n")
    code, _, err = run(capsys, "run", job, "-q")
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "out/banking.jsonl").read_text().splitlines()]
    assert rows and {"timestamp", "trigger", "from_state", "to_state", "user_id", "balance"} <= set(rows[0])
    job.write_text(job.read_text() + "params: {sink: print}\n")
    code, _, err = run(capsys, "run", job, "-q")
    assert code == 2 and "either as params.sink or as sink:" in err


def test_a_python_model_without_a_sink_parameter_is_refused(tmp_path, capsys):
    (tmp_path / "m.py").write_text(textwrap.dedent("""\
        from doge_dist import DataOnlineGenerator
        from doge_dist.model._yaml_model import IndexSubjectFactory

        def build():
            gen = DataOnlineGenerator(["a", "b"], "a", IndexSubjectFactory(), 10, 1000, 10)
            gen.add_transition("go", "a", "b", 50)
            return gen
        """))
    job = tmp_path / "job.yaml"
    job.write_text("model: m.py:build\nsink: {type: print}\n")
    code, _, err = run(capsys, "run", job, "-q")
    assert code == 2 and "has no 'sink' parameter" in err and "(line 2)" in err, err


def test_interpolated_sink_settings_are_masked_in_the_report(model_dir, capsys, monkeypatch):
    monkeypatch.setenv("OUT_SECRET_DIR", "hidden-place")
    job = spec(model_dir, 'sink: {type: jsonl, path: "${OUT_SECRET_DIR}/ev.jsonl"}\n')
    code, _, err = run(capsys, "run", job, "-q", "--report", model_dir / "r.json")
    assert code == 0, err
    text = (model_dir / "r.json").read_text()
    assert (model_dir / "hidden-place/ev.jsonl").exists()
    assert "hidden-place" not in text
    assert report(model_dir / "r.json")["spec"]["sink"]["path"] == "***/ev.jsonl"


@pytest.mark.services
def test_postgres_sink_creates_the_table_of_event_records(model_dir, capsys, postgres_url):
    import sqlalchemy as sa

    table = f"yaml_events_{uuid.uuid4().hex[:8]}"
    job = spec(model_dir, f"sink:\n  type: postgres\n  url: {postgres_url}\n  table: {table}\n")
    engine = sa.create_engine(postgres_url)
    try:
        code, _, err = run(capsys, "run", job, "-q", "--report", model_dir / "r.json")
        assert code == 0, err
        with engine.connect() as conn:
            query = f"SELECT timestamp, subject, event, from_state, to_state FROM {table}"
            rows = conn.execute(sa.text(query)).all()
        assert len(rows) == report(model_dir / "r.json")["total_events"] > 100
        assert {r.event for r in rows} == {"login", "logout"}
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


@pytest.mark.services
def test_kafka_sink_keys_events_by_subject(model_dir, capsys, kafka_broker):
    from test_kafka_sink import consume, new_topic

    topic = new_topic(kafka_broker)
    job = spec(model_dir, f"sink: {{type: kafka, topic: {topic}, "
                          f"bootstrap_servers: '{kafka_broker.bootstrap}'}}\n")
    code, _, err = run(capsys, "run", job, "-q", "--report", model_dir / "r.json")
    assert code == 0, err
    total = report(model_dir / "r.json")["total_events"]
    messages = consume(kafka_broker.bootstrap, topic, total)
    assert len(messages) == total > 0
    partition_of: dict[bytes, int] = {}
    for partition, key, value, timestamp in messages:
        record = json.loads(value)
        assert set(record) == RECORD_FIELDS and key == str(record["subject"]).encode()
        assert record["timestamp"] == timestamp
        assert partition_of.setdefault(key, partition) == partition  # one subject, one partition


@pytest.mark.services
def test_kafka_avro_sink_with_the_built_in_schema(model_dir, capsys, kafka_broker):
    from test_kafka_sink import new_topic

    topic = new_topic(kafka_broker)
    job = spec(model_dir, f"sink: {{type: kafka-avro, topic: {topic}, bootstrap_servers: "
                          f"'{kafka_broker.bootstrap}', schema_registry_url: 'mock://{topic}'}}\n")
    code, _, err = run(capsys, "run", job, "-q", "--report", model_dir / "r.json")
    assert code == 0, err
    data = report(model_dir / "r.json")
    (stats,) = data["sink_stats"].values()
    assert stats["delivered"] == data["total_events"] > 0
