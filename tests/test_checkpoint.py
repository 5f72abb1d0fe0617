"""Continuing a run from a checkpoint: 600 ticks == 300 ticks + resume 300, for files, SQL and the values
that callbacks and factories draw; refused checkpoints; stopped and failed runs finished by a resume;
torn checkpoints never used. In-process runs (the Ray recoveries are in test_recovery.py)."""

from __future__ import annotations

import gzip
import json
import threading
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from checkpoint_model import EVENTS_DDL, TS0, Spend, build, file_bytes, row

from doge_dist import CsvSink, EventSink, JsonLinesSink, ModelError, SimulationError
from doge_dist.sinks._db import DbSinkFactory


def file_sinks(folder: Path) -> list:
    return [JsonLinesSink(folder / "events-{part}.jsonl", parts=3),
            CsvSink(folder / "events-{part}.csv.gz", parts=3)]


MODEL_OPTIONS = ("factory", "arrivals", "seed", "spend")


def run_files(folder: Path, ticks: int, checkpoints: Path, **options):
    """A run into JSON Lines and gzip CSV part files, checkpointed every 100 ticks."""
    model = {k: options.pop(k) for k in MODEL_OPTIONS if k in options}
    return build(file_sinks(folder), ticks=ticks, **model).start(checkpoint_dir=checkpoints,
                                                                 checkpoint_every=100, **options)


@pytest.mark.parametrize("factory", ["index", "counting"])
@pytest.mark.parametrize("arrivals", [False, True])
def test_600_ticks_are_300_then_a_resume_of_300_byte_for_byte(tmp_path, factory, arrivals):
    one = run_files(tmp_path / "one", 600, tmp_path / "ck-one", factory=factory, arrivals=arrivals)
    first = run_files(tmp_path / "two", 300, tmp_path / "ck-two", factory=factory, arrivals=arrivals)
    second = run_files(tmp_path / "two", 300, tmp_path / "ck-two", factory=factory, arrivals=arrivals,
                       resume_from=tmp_path / "ck-two")
    assert first.total_events + second.total_events == one.total_events > 10_000
    assert second.run_id == first.run_id  # a resumed run keeps its lineage
    expected = file_bytes(tmp_path / "one")
    assert len(expected) == 6 and file_bytes(tmp_path / "two") == expected
    lines = [json.loads(line) for line in (tmp_path / "one" / "events-0.jsonl").read_text().splitlines()]
    assert len({line["noise"] for line in lines}) > 100  # callback-drawn values are in the comparison
    if arrivals:  # subjects that arrived in the resumed half are in the comparison too
        assert any(line["id"] >= 300 and line["timestamp"] > TS0 + 300 * 60_000
                   for line in _all_lines(tmp_path / "one"))


def _all_lines(folder: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(folder.glob("*.jsonl"))
            for line in path.read_text().splitlines()]


def test_sql_600_ticks_are_300_then_a_resume_of_300(postgres_url, tmp_path):
    tables = [f"doge_resume_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        for table in tables:
            conn.execute(sa.text(EVENTS_DDL.format(table=table)))
    try:
        factory = DbSinkFactory(postgres_url)
        build([factory.create(tables[0], row, batch_size=700)], ticks=600).start(
            checkpoint_dir=tmp_path / "ck-one", checkpoint_every=100)
        build([factory.create(tables[1], row, batch_size=700)], ticks=300).start(
            checkpoint_dir=tmp_path / "ck-two", checkpoint_every=100)
        build([factory.create(tables[1], row, batch_size=700)], ticks=300).start(
            resume_from=tmp_path / "ck-two", checkpoint_dir=tmp_path / "ck-two", checkpoint_every=100)
        one, two = (_rows(engine, table) for table in tables)
        assert len(one) > 10_000 and two == one
    finally:
        with engine.begin() as conn:
            for table in tables:
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


def _rows(engine, table: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            f"SELECT ts, subject, event, balance, drawn, noise FROM {table} ORDER BY ts, subject, event"))]


@pytest.mark.parametrize("change, message", [
    ({"seed": 12}, r"seed \(checkpoint 11, now 12\)"),
    ({"tick_ms": 1000}, r"tick_ms \(checkpoint 60000, now 1000\)"),
    ({"login": 6}, r"transitions \['idle:login'\]"),
])
def test_a_checkpoint_of_a_different_model_is_refused_naming_what_changed(tmp_path, change, message):
    build(file_sinks(tmp_path / "a"), ticks=100).start(checkpoint_dir=tmp_path / "ck", checkpoint_every=50)
    gen = build(file_sinks(tmp_path / "b"), ticks=100, seed=change.get("seed", 11),
                tick_ms=change.get("tick_ms", 60_000))
    if "login" in change:
        gen.transitions[0].probability = change["login"]
    with pytest.raises(ModelError, match=message):
        gen.start(resume_from=tmp_path / "ck")
    assert not (tmp_path / "b").exists()  # refused before anything was written


def test_a_stopped_run_leaves_a_checkpoint_that_a_resume_finishes(tmp_path):
    reference = run_files(tmp_path / "one", 600, tmp_path / "ck-one")
    stop = threading.Event()

    def progress(p) -> None:
        if p.ticks_done >= 250:
            stop.set()

    stopped = run_files(tmp_path / "two", 600, tmp_path / "ck-two", stop_event=stop, progress=progress)
    assert stopped.status == "stopped" and 250 <= stopped.ticks < 600
    assert stopped.checkpoint["latest_tick"] == stopped.ticks  # the stop wrote a checkpoint
    rest = run_files(tmp_path / "two", 600 - stopped.ticks, tmp_path / "ck-two",
                     resume_from=tmp_path / "ck-two")
    assert stopped.total_events + rest.total_events == reference.total_events
    _assert_same_content(tmp_path / "one", tmp_path / "two")


def _assert_same_content(one: Path, two: Path) -> None:
    """JSON Lines byte for byte; gzip CSV by content (a checkpoint at another tick starts a gzip member)."""
    a, b = file_bytes(one), file_bytes(two)
    assert sorted(a) == sorted(b)
    for name in a:
        if name.endswith(".gz"):
            assert gzip.decompress(a[name]) == gzip.decompress(b[name]), name
        else:
            assert a[name] == b[name], name


def test_a_failed_run_is_finished_by_a_resume_with_exactly_once_files_and_rows(postgres_url, tmp_path):
    tables = [f"doge_failed_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        for table in tables:
            conn.execute(sa.text(EVENTS_DDL.format(table=table)))
    try:
        factory = DbSinkFactory(postgres_url)

        def sinks(folder: Path, table: str) -> list:
            return [*file_sinks(folder), factory.create(table, row, batch_size=300)]

        build(sinks(tmp_path / "one", tables[0]), ticks=600).start(checkpoint_dir=tmp_path / "ck-one",
                                                                    checkpoint_every=100)
        with pytest.raises(SimulationError, match="on purpose") as info:
            build(sinks(tmp_path / "two", tables[1]), ticks=600, spend=Spend(fail_at=5000)).start(
                checkpoint_dir=tmp_path / "ck-two", checkpoint_every=100)
        failed = info.value.result
        latest = failed.checkpoint["latest_tick"]
        assert latest is not None and latest < failed.ticks  # rows past the checkpoint are in the table
        status = json.loads((tmp_path / "ck-two" / "RUN.json").read_text())
        assert status["status"] == "failed" and status["latest_checkpoint"] == latest
        assert len(_rows(engine, tables[1])) > _events_until(tmp_path / "one", latest)
        build(sinks(tmp_path / "two", tables[1]), ticks=600 - latest).start(
            resume_from=tmp_path / "ck-two", checkpoint_dir=tmp_path / "ck-two", checkpoint_every=100)
        assert file_bytes(tmp_path / "two") == file_bytes(tmp_path / "one")
        assert _rows(engine, tables[1]) == _rows(engine, tables[0])
    finally:
        with engine.begin() as conn:
            for table in tables:
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


def _events_until(folder: Path, tick: int) -> int:
    return sum(1 for line in _all_lines(folder) if line["timestamp"] < TS0 + tick * 60_000)


def test_a_torn_checkpoint_is_never_used(tmp_path):
    reference = run_files(tmp_path / "one", 600, tmp_path / "ck-one")
    run_files(tmp_path / "two", 300, tmp_path / "ck-two")
    ck = tmp_path / "ck-two"
    torn = ck / "tick-000000000400"  # a checkpoint being written when its run stopped: no MANIFEST.json
    torn.mkdir()
    (torn / "part-00000.npz.tmp-0badc0de").write_bytes(b"PK\x03\x04 truncated")
    (torn / "shard-00000.pkl.tmp-0badc0de").write_bytes(b"\x80\x05 truncated")
    with pytest.raises(ModelError, match="incomplete"):
        build(file_sinks(tmp_path / "x"), ticks=300).start(resume_from=torn)
    (ck / "LATEST.json").write_text(json.dumps({"format": "doge-dist/checkpoint-1", "tick": 400,
                                                "folder": torn.name}))  # even if LATEST named it
    rest = run_files(tmp_path / "two", 300, ck, resume_from=ck)
    assert rest.first_tick == 300  # from the newest complete checkpoint
    assert file_bytes(tmp_path / "two") == file_bytes(tmp_path / "one")
    assert reference.total_events > 0


def test_transactional_kafka_after_a_failed_run_and_a_resume_has_every_event_once(kafka_broker, tmp_path):
    """The failed run commits its open transaction at close; the resume skips everything committed
    after the checkpoint, so even Tansu (which shows aborted transactions) has each event once."""
    from checkpoint_model import kafka_key, kafka_value
    from test_kafka_sink import consume, new_topic

    from doge_dist import KafkaSinkFactory

    topic = new_topic(kafka_broker)
    factory = KafkaSinkFactory(kafka_broker.bootstrap, "doge-resume", transactional=True)

    def sinks(folder: Path) -> list:
        return [JsonLinesSink(folder / "events-{part}.jsonl", parts=3), factory.create(topic, kafka_key,
                                                                                       kafka_value)]

    with pytest.raises(SimulationError, match="on purpose") as info:
        build(sinks(tmp_path / "run"), ticks=400, spend=Spend(fail_at=5000)).start(
            checkpoint_dir=tmp_path / "ck", checkpoint_every=100)
    latest = info.value.result.checkpoint["latest_tick"]
    assert latest is not None and latest < info.value.result.ticks
    rest = build(sinks(tmp_path / "run"), ticks=400 - latest).start(resume_from=tmp_path / "ck")
    assert rest.sink_stats[f"kafka:{topic}"]["skipped"] > 0
    lines = _all_lines(tmp_path / "run")
    expected = sorted((line["timestamp"], line["id"], line["trigger"]) for line in lines)
    records = [json.loads(value) for _, _, value, _ in consume(kafka_broker.bootstrap, topic, len(expected))]
    got = sorted((r["ts"], r["subject"], r["event"]) for r in records)
    assert got == expected


class Remember(EventSink):
    """A user sink without ``resume``: at-least-once after a resume."""

    name = "remember"

    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def collect(self, timestamp, subject, transition) -> None:
        self.seen.append((timestamp, subject.id, transition.trigger))


def test_a_resume_after_a_failed_run_reports_possible_duplicates_of_sinks_without_resume(tmp_path):
    sink = Remember()
    with pytest.raises(SimulationError):
        build([sink], ticks=400, spend=Spend(fail_at=5000)).start(checkpoint_dir=tmp_path / "ck",
                                                                  checkpoint_every=100)
    latest = json.loads((tmp_path / "ck" / "RUN.json").read_text())["latest_checkpoint"]
    rest = build([sink], ticks=400 - latest).start(resume_from=tmp_path / "ck")
    sent_twice = len(sink.seen) - len(set(sink.seen))
    assert sent_twice > 0
    assert rest.possible_duplicates.get("remember", 0) >= sent_twice


def test_a_run_failing_in_the_window_after_a_checkpoint_still_leaves_that_checkpoint(tmp_path):
    with pytest.raises(SimulationError) as info:
        build(file_sinks(tmp_path / "run"), ticks=400, spend=Spend(fail_at=3000)).start(
            checkpoint_dir=tmp_path / "ck", checkpoint_every=100)
    assert 100 < info.value.result.ticks < 200 or info.value.result.ticks == 100
    assert (tmp_path / "ck" / "tick-000000000100" / "shard-00000.pkl").exists()  # its files are there
    assert info.value.result.checkpoint["latest_tick"] == 100
