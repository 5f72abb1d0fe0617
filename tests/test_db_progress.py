"""Exactly-once SQL sinks: batches per part committed with a progress row; resume skips what is stored.

These tests drive a sink the way a shard does (inside a shard scope with a run id, ``select_part``,
``checkpoint_positions``, a worker that dies without closing, a copy that ``resume``s and replays),
against real PostgreSQL (COPY and INSERT), MariaDB and SQLite. Whole runs with a killed Ray actor are
in test_recovery.py.
"""

from __future__ import annotations

import pickle
import uuid

import pytest
import sqlalchemy as sa
from test_db_sink import Tables, account_row, make_events

from doge_dist import ModelError, SinkError
from doge_dist._context import ShardInfo, shard_scope
from doge_dist.sinks._db import DbSinkFactory

pytestmark = pytest.mark.services


@pytest.fixture(params=["postgres-copy", "postgres-insert", "mariadb", "sqlite"])
def backend(request, tmp_path):
    """(url, copy) for each database and write path."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}", "auto"
    if request.param.startswith("postgres"):
        return request.getfixturevalue("postgres_url"), request.param == "postgres-copy"
    return request.getfixturevalue("mariadb_url"), "auto"


def shard(run_id: str, first: int = 0, stop: int = 2, parts: int = 2) -> ShardInfo:
    return ShardInfo(index=0, count=1, start=0, stop=100, parts=parts, first_part=first, stop_part=stop,
                     in_driver=True, run_id=run_id, tick_ms=1, timestamp_start=0)


def feed(sink, events) -> None:
    """Events alternate between parts 0 and 1 in runs of 7, as the engine routes them."""
    for i, (ts, subject, transition) in enumerate(events):
        sink.select_part((i // 7) % 2)
        sink.collect(ts, subject, transition)


def progress_rows(url: str, table: str, run_id: str, key: str) -> dict[int, int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            query = sa.text(f"SELECT part, committed FROM {table} WHERE run_id = :r AND sink = :s")
            rows = conn.execute(query, {"r": run_id, "s": key})
            return {int(p): int(c) for p, c in rows}
    finally:
        engine.dispose()


def test_a_replacement_skips_what_the_lost_worker_committed_after_the_checkpoint(backend):
    url, copy = backend
    helper = Tables(url)
    progress = f"doge_progress_{uuid.uuid4().hex[:8]}"
    try:
        name = helper.create()
        factory = DbSinkFactory(url, copy=copy, progress_table=progress)
        sink = factory.create(name, account_row, batch_size=10)
        assert sink.uses_parts and callable(sink.resume)
        events = make_events(200)
        run_id = uuid.uuid4().hex[:16]
        with shard_scope(shard(run_id)):
            sink.begin_run()
            feed(sink, events[:60])
            positions = sink.checkpoint_positions()  # commits what is pending
            assert positions == {"part:0": {"committed": 32, "last_tick": 59, "sink": name},
                                 "part:1": {"committed": 28, "last_tick": 55, "sink": name}}
            assert helper.count(name) == 60
            feed(sink, events[60:140])  # some full batches committed, some pending: then the worker dies
        committed_before_death = helper.count(name)
        assert 60 < committed_before_death < 140
        replacement = pickle.loads(pickle.dumps(sink))
        with shard_scope(shard(run_id)):
            replacement.resume(positions)
            feed(replacement, events[60:])  # the replay from the checkpoint, then new events
            replacement.close()
        assert [r[0] for r in helper.rows(name)] == list(range(200))  # each event once, none lost
        stats = replacement.stats()
        assert stats["skipped"] == committed_before_death - 60
        assert stats["delivered"] == 200 - committed_before_death
        assert progress_rows(url, progress, run_id, name) == {0: 102, 1: 98}
    finally:
        helper.drop_all()
        _drop(url, progress)


def test_a_kill_before_any_checkpoint_skips_everything_this_run_committed(backend):
    url, copy = backend
    helper = Tables(url)
    progress = f"doge_progress_{uuid.uuid4().hex[:8]}"
    try:
        name = helper.create()
        sink = DbSinkFactory(url, copy=copy, progress_table=progress).create(name, account_row, batch_size=10)
        events = make_events(100)
        run_id = uuid.uuid4().hex[:16]
        with shard_scope(shard(run_id)):
            sink.begin_run()
            feed(sink, events[:75])  # dies here, with rows pending in both parts
        replacement = pickle.loads(pickle.dumps(sink))
        with shard_scope(shard(run_id)):
            replacement.resume({})  # no checkpoint yet: from the start of this run
            feed(replacement, events)
            replacement.close()
        assert [r[0] for r in helper.rows(name)] == list(range(100))
    finally:
        helper.drop_all()
        _drop(url, progress)


def test_two_sinks_on_one_progress_key_fail_instead_of_miscounting(tmp_path):
    url = f"sqlite:///{tmp_path / 'events.db'}"
    helper = Tables(url)
    name = helper.create()
    factory = DbSinkFactory(url)
    first, second = (factory.create(name, account_row, batch_size=5) for _ in range(2))
    events = make_events(20)
    with shard_scope(shard("run-a", 0, 1, 1)):
        for sink in (first, second):
            sink.begin_run()
            sink.select_part(0)
        for ts, subject, transition in events[:5]:
            first.collect(ts, subject, transition)
        with pytest.raises(SinkError, match="progress_key="):
            for ts, subject, transition in events[5:10]:
                second.collect(ts, subject, transition)
        assert helper.count(name) == 5  # the refused batch was rolled back with its progress row
        third = factory.create(name, account_row, batch_size=5, progress_key="logins")
        third.begin_run()
        third.select_part(0)
        for ts, subject, transition in events[10:15]:
            third.collect(ts, subject, transition)
        third.close()
    assert helper.count(name) == 10


def test_a_stale_writer_cannot_move_the_progress_row_behind_its_replacement(tmp_path):
    """The lost worker was not dead after all: its next batch fails (compare-and-set) and rolls back."""
    url = f"sqlite:///{tmp_path / 'events.db'}"
    helper = Tables(url)
    name = helper.create()
    sink = DbSinkFactory(url).create(name, account_row, batch_size=5)
    events = make_events(30)
    with shard_scope(shard("run-b", 0, 1, 1)):
        sink.begin_run()
        sink.select_part(0)
        for ts, subject, transition in events[:5]:
            sink.collect(ts, subject, transition)
        positions = sink.checkpoint_positions()
        replacement = pickle.loads(pickle.dumps(sink))
        replacement.resume(positions)
        replacement.select_part(0)
        for ts, subject, transition in events[5:10]:
            replacement.collect(ts, subject, transition)
        with pytest.raises(SinkError, match="no longer says 5 committed rows"):
            for ts, subject, transition in events[10:15]:
                sink.collect(ts, subject, transition)
    assert [r[0] for r in helper.rows(name)] == list(range(10))  # its rows were rolled back with it


def test_without_a_progress_table_there_is_no_resume_and_no_parts(tmp_path):
    url = f"sqlite:///{tmp_path / 'events.db'}"
    helper = Tables(url)
    name = helper.create()
    sink = DbSinkFactory(url, progress_table=None).create(name, account_row, batch_size=10)
    assert sink.resume is None and not sink.uses_parts
    with shard_scope(shard("run-c", 0, 1, 1)):
        sink.begin_run()
        for ts, subject, transition in make_events(15):
            sink.collect(ts, subject, transition)
        assert sink.checkpoint_positions() == {}  # still commits what is pending (nothing lost)
        assert helper.count(name) == 15
        sink.close()
    assert not sa.inspect(helper.engine).has_table("doge_dist_progress")


def test_outside_a_run_no_progress_is_written(tmp_path):
    url = f"sqlite:///{tmp_path / 'events.db'}"
    helper = Tables(url)
    name = helper.create()
    sink = DbSinkFactory(url).create(name, account_row, batch_size=4)
    for ts, subject, transition in make_events(10):
        sink.collect(ts, subject, transition)
    sink.close()
    assert helper.count(name) == 10
    assert not sa.inspect(helper.engine).has_table("doge_dist_progress")


def test_prepare_creates_the_progress_table_and_refuses_a_wrong_one(tmp_path):
    url = f"sqlite:///{tmp_path / 'events.db'}"
    helper = Tables(url)
    name = helper.create()
    DbSinkFactory(url).create(name, account_row).prepare()
    columns = [c["name"] for c in sa.inspect(helper.engine).get_columns("doge_dist_progress")]
    assert columns == ["run_id", "sink", "part", "committed", "last_tick"]
    with helper.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE other_progress (run_id TEXT, part INTEGER)")
    with pytest.raises(ModelError, match=r"other_progress exists but lacks column\(s\) \['sink', 'commit"):
        DbSinkFactory(url, progress_table="other_progress").create(name, account_row).prepare()


@pytest.mark.parametrize("bad", ["", "  ", 3])
def test_bad_progress_settings_are_model_errors(tmp_path, bad):
    url = f"sqlite:///{tmp_path / 'events.db'}"
    with pytest.raises(ModelError, match="progress_table"):
        DbSinkFactory(url, progress_table=bad)
    with pytest.raises(ModelError, match="progress_key"):
        DbSinkFactory(url).create("t", account_row, progress_key=bad or 5)


def test_a_resume_against_a_progress_table_behind_the_checkpoint_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'events.db'}"
    helper = Tables(url)
    name = helper.create()
    sink = DbSinkFactory(url).create(name, account_row, batch_size=5)
    with shard_scope(shard("run-d", 0, 1, 1)), pytest.raises(SinkError, match="recorded 40 committed rows"):
        sink.resume({"part:0": {"committed": 40}})


def _drop(url: str, table: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
    finally:
        engine.dispose()


@pytest.mark.parametrize("committed", [True, False])
def test_a_commit_lost_with_its_connection_is_resolved_from_the_progress_row(backend, committed):
    """The connection dies during COMMIT: the progress row tells whether the batch is stored (then it is
    counted as delivered) or not (then it is written again), instead of failing the run."""
    from doge_dist.sinks import _db

    url, copy = backend
    helper = Tables(url)
    progress = f"doge_progress_{uuid.uuid4().hex[:8]}"
    try:
        name = helper.create()
        sink = DbSinkFactory(url, copy=copy, progress_table=progress).create(name, account_row, batch_size=10)
        events = make_events(30)
        real_write = sink._write
        calls = []

        def write_then_lose_the_commit(groups, guards, batch_progress=None):
            calls.append(len(calls))
            if len(calls) == 2:  # the second batch: its COMMIT's answer never arrives
                if committed:
                    real_write(groups, guards, batch_progress)
                raise _db._CommitLost() from ConnectionResetError("connection lost during COMMIT")
            real_write(groups, guards, batch_progress)

        sink._write = write_then_lose_the_commit
        with shard_scope(shard(uuid.uuid4().hex[:16], 0, 1, 1)):
            sink.begin_run()
            sink.select_part(0)
            for ts, subject, transition in events:
                sink.collect(ts, subject, transition)
            sink.close()
        assert [r[0] for r in helper.rows(name)] == list(range(30))
        assert sink.stats() == {"delivered": 30, "failed": 0}
        assert len(calls) == (3 if committed else 4)  # written again only when it was not stored
    finally:
        helper.drop_all()
        _drop(url, progress)


def test_a_job_spec_sql_sink_takes_progress_table(tmp_path):
    from doge_dist.sinks._spec import SinkSpecError, build_sink

    url = f"sqlite:///{tmp_path / 'events.db'}"

    def sql_sink(**extra):
        return build_sink({"type": "sql", "url": url, "table": "t", **extra}, record=None, for_model=False)

    default = sql_sink()
    assert default.factory.progress_table == "doge_dist_progress" and callable(default.resume)
    assert sql_sink(progress_table="my_progress").factory.progress_table == "my_progress"
    assert sql_sink(progress_table=None).resume is None
    with pytest.raises(SinkSpecError, match="progress_table must be"):
        sql_sink(progress_table=5)
