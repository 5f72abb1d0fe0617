"""DbSinkFactory / DbSink against real PostgreSQL and MariaDB (conftest fixtures) and SQLite in tmp_path."""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from conftest import REPO_ROOT
from test_kafka_sink import run_bounded, silent_server

from doge_dist import ModelError, SinkError, Transition
from doge_dist.sinks import _db_url
from doge_dist.sinks._db import DbSink, DbSinkFactory, normalize_db_url

pytestmark = pytest.mark.services

LOGIN = Transition("login", "offline", "online", 0.1)
LOGOUT = Transition("logout", "online", "offline", 70)


@dataclass
class Account:
    user_id: int
    balance: int
    ratio: float | None
    note: str | None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def account_row(timestamp: int, subject: Account, transition: Transition) -> dict:
    return {"seq": timestamp, "user_id": subject.user_id, "balance": subject.balance, "ratio": subject.ratio,
            "note": subject.note, "event": transition.trigger}


# awkward text on purpose: COPY's text format must escape tabs, newlines, backslashes and \N
NOTES = [None, "plain", "tab\there", "new\nline", "back\\slash", "\\N", "quote ' \" ,", "ünïcødé ☃", ""]


def make_events(n: int, start: int = 0) -> list[tuple[int, Account, Transition]]:
    events = []
    for i in range(start, start + n):
        account = Account(i % 97, i * 1_000_003 - 5_000_000, None if i % 5 == 0 else i / 7,
                          NOTES[i % len(NOTES)])
        events.append((i, account, LOGIN if i % 2 else LOGOUT))
    return events


def expected_rows(events) -> list[tuple]:
    return [(ts, s.user_id, s.balance, s.ratio, s.note, t.trigger) for ts, s, t in events]


def define_table(name: str, metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        name, metadata,
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("balance", sa.BigInteger, nullable=False),
        sa.Column("ratio", sa.Float(precision=53), nullable=True),
        sa.Column("note", sa.String(64), nullable=True),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("source", sa.String(16), nullable=True, server_default="doge"),
    )


@pytest.fixture(params=["postgres", "mariadb", "sqlite"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    return request.getfixturevalue(f"{request.param}_url")


class Tables:
    """Creates uniquely named tables and drops them at the end of the test."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = sa.create_engine(url)
        self.metadata = sa.MetaData()

    def create(self, define=define_table) -> str:
        name = f"doge_test_{uuid.uuid4().hex[:12]}"
        table = define(name, self.metadata)
        table.create(self.engine)
        return name

    def rows(self, name: str, columns: str = "seq, user_id, balance, ratio, note, event") -> list[tuple]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(f"SELECT {columns} FROM {name} ORDER BY seq"))]

    def count(self, name: str) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(f"SELECT COUNT(*) FROM {name}")).scalar_one()

    def drop_all(self) -> None:
        self.metadata.drop_all(self.engine)
        self.engine.dispose()


@pytest.fixture
def tables(db_url):
    helper = Tables(db_url)
    yield helper
    helper.drop_all()


def write(sink: DbSink, events) -> None:
    for ts, subject, transition in events:
        sink.collect(ts, subject, transition)
    sink.close()


def normalise(rows: list[tuple]) -> list[tuple]:
    """Floats compared to 12 significant digits (every backend stores a double)."""
    return [tuple(round(v, 9) if isinstance(v, float) else v for v in row) for row in rows]


# ---------------------------------------------------------------------------- round trips


def test_every_row_and_column_arrives(tables):
    name = tables.create()
    factory = DbSinkFactory(tables.url)
    sink = factory.create(name, account_row, batch_size=64)
    events = make_events(1000)
    write(sink, events)

    assert sink.name == f"db:{name}"
    assert sink.stats() == {"delivered": 1000, "failed": 0}
    assert normalise(tables.rows(name)) == normalise(expected_rows(events))
    assert {r[0] for r in tables.rows(name, "source, seq")} == {"doge"}  # server default kept
    assert factory._engine is None  # last sink closed: pool disposed


@pytest.mark.parametrize("copy", [True, False])
def test_postgres_copy_and_insert_paths_give_identical_rows(postgres_url, copy):
    helper = Tables(postgres_url)
    try:
        name = helper.create()
        factory = DbSinkFactory(postgres_url, copy=copy)
        assert factory.use_copy is copy
        write(factory.create(name, account_row, batch_size=100), make_events(555))
        assert helper.rows(name) == expected_rows(make_events(555))
    finally:
        helper.drop_all()


def test_postgres_auto_uses_copy_and_json_columns_work_on_both_paths(postgres_url):
    from sqlalchemy.dialects.postgresql import JSONB

    def define(name, metadata):
        return sa.Table(name, metadata, sa.Column("seq", sa.BigInteger, primary_key=True),
                        sa.Column("payload", JSONB, nullable=True), sa.Column("tags", sa.JSON, nullable=True))

    def mapper(ts, subject, transition):
        return {"seq": ts, "payload": {"user": subject.user_id, "note": subject.note},
                "tags": [transition.trigger, ts]}

    assert DbSinkFactory(postgres_url).use_copy is True
    helper = Tables(postgres_url)
    try:
        results = []
        for copy in (True, False):
            name = helper.create(define)
            write(DbSinkFactory(postgres_url, copy=copy).create(name, mapper, batch_size=7), make_events(30))
            results.append(helper.rows(name, "seq, payload, tags"))
        assert results[0] == results[1]
        assert results[0][3] == (3, {"user": 3, "note": NOTES[3]}, ["login", 3])
    finally:
        helper.drop_all()


def test_rows_with_different_keys_are_all_inserted(tables):
    name = tables.create()

    def mapper(ts, subject, transition):
        row = account_row(ts, subject, transition)
        if ts % 3 == 0:
            del row["note"]  # column left to its default (NULL)
            row["source"] = "odd"
        return row

    write(DbSinkFactory(tables.url).create(name, mapper, batch_size=10), make_events(50))
    rows = tables.rows(name, "seq, note, source")
    assert len(rows) == 50
    assert all(r[1] is None and r[2] == "odd" for r in rows if r[0] % 3 == 0)
    assert all(r[2] == "doge" for r in rows if r[0] % 3)


# ---------------------------------------------------------------------------- errors before the run


def test_missing_table_is_a_value_error_naming_it(db_url):
    sink = DbSinkFactory(db_url).create("doge_no_such_table", account_row)  # no I/O yet
    with pytest.raises(ValueError, match="Table doge_no_such_table does not exist") as info:
        sink.prepare()  # what a run calls on the driver before any subject exists
    assert isinstance(info.value, ModelError)
    worker_copy = pickle.loads(pickle.dumps(sink))  # where it writes, the first event checks again
    with pytest.raises(ModelError, match="Table doge_no_such_table does not exist"):
        worker_copy.collect(1, make_events(1)[0][1], LOGIN)
    worker_copy.close()


@pytest.mark.parametrize("scheme", ["postgresql+psycopg", "mysql+pymysql"])
def test_unreachable_database_names_the_url_with_password_masked(scheme):
    url = f"{scheme}://someone:s3cret-pw@127.0.0.1:{free_port()}/test"
    sink = DbSinkFactory(url, connect_timeout=2).create("events", account_row)
    factory = sink.factory
    with pytest.raises(ConnectionError) as info:
        sink.prepare()
    message = str(info.value)
    assert f"{scheme}://someone:***@127.0.0.1:" in message
    assert "s3cret-pw" not in message
    assert "s3cret-pw" not in repr(factory)


def test_bad_arguments_are_model_errors(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(ModelError, match="copy=True needs PostgreSQL"):
        DbSinkFactory(url, copy=True)
    with pytest.raises(ModelError, match="copy must be"):
        DbSinkFactory(url, copy="yes")
    with pytest.raises(ModelError, match="not a valid SQLAlchemy database URL"):
        DbSinkFactory("not a url")
    factory = DbSinkFactory(url)
    with pytest.raises(ModelError, match="batch_size"):
        factory.create("t", account_row, batch_size=0)
    with pytest.raises(ModelError, match="callable"):
        factory.create("t", "not a function")


# ---------------------------------------------------------------------------- errors while writing


def test_unknown_column_is_reported_on_the_first_row(tables):
    name = tables.create()
    sink = DbSinkFactory(tables.url).create(name, lambda ts, s, t: {"seq": ts, "colour": "red", "user_id": 1})
    with pytest.raises(ModelError, match=r"\['colour'\].*" + name):
        sink.collect(1, None, LOGIN)
    sink.close()
    assert tables.count(name) == 0


def test_a_mapper_error_propagates(tables):
    name = tables.create()

    def broken(ts, subject, transition):
        raise KeyError("no such attribute")

    sink = DbSinkFactory(tables.url).create(name, broken)
    with pytest.raises(KeyError, match="no such attribute"):
        sink.collect(1, None, LOGIN)
    sink.close()


def _failing_batch_case(url: str, helper: Tables, copy: bool | str = "auto") -> None:
    name = helper.create()
    events = make_events(45)
    events[27] = (21, *events[27][1:])  # primary key 21 again: the third batch (rows 20..29) must fail
    sink = DbSinkFactory(url, copy=copy).create(name, account_row, batch_size=10)
    with pytest.raises(SinkError) as info:
        for ts, subject, transition in events:
            sink.collect(ts, subject, transition)
    error = info.value
    assert (error.delivered, error.failed) == (20, 10)
    assert "20 rows inserted, 10 failed" in str(error) and "rolled back" in str(error)
    assert error.sink == f"db:{name}"
    assert sink.stats() == {"delivered": 20, "failed": 10}
    sink.close()  # nothing pending: the failed batch is not retried
    sink.close()
    assert [r[0] for r in helper.rows(name)] == list(range(20))  # earlier batches committed, none of batch 3
    assert pickle.loads(pickle.dumps(error)).failed == 10


def test_a_failing_batch_is_rolled_back_whole_and_reported(tables):
    _failing_batch_case(tables.url, tables)


def test_a_failing_copy_batch_is_rolled_back_whole(postgres_url):
    helper = Tables(postgres_url)
    try:
        _failing_batch_case(postgres_url, helper, copy=True)
    finally:
        helper.drop_all()


def test_database_gone_after_create_is_a_sink_error_with_counts(postgres_url):
    helper = Tables(postgres_url)
    try:
        name = helper.create()
        factory = DbSinkFactory(postgres_url.replace("postgres@", "postgres:pw-x9@"), connect_timeout=2)
        sink = factory.create(name, account_row, batch_size=10)
        sink.prepare()  # the run checked the table ...
        gone = sa.engine.make_url(factory.db_url).set(port=free_port())
        factory.db_url = gone.render_as_string(hide_password=False)  # the server "went away"
        with pytest.raises(SinkError, match=r"0 rows inserted, 10 failed.*Connection refused") as info:
            write(sink, make_events(10))
        assert "pw-x9" not in str(info.value)
        assert (info.value.delivered, info.value.failed) == (0, 10)
        sink.close()
        assert factory._engine is None
    finally:
        helper.drop_all()


def test_a_failing_last_batch_is_reported_by_close(tables):
    name = tables.create()
    sink = DbSinkFactory(tables.url).create(name, account_row, batch_size=100)
    events = make_events(15)
    events[14] = (3, *events[14][1:])  # duplicate key in the only (final) batch
    for ts, subject, transition in events:
        sink.collect(ts, subject, transition)
    with pytest.raises(SinkError, match="0 rows inserted, 15 failed"):
        sink.close()
    sink.close()  # idempotent: nothing more to report
    assert tables.count(name) == 0
    assert sink.stats() == {"delivered": 0, "failed": 15}


def test_a_relative_sqlite_path_is_relative_to_where_the_factory_was_made(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    helper = Tables("sqlite:///rel.db")
    try:
        name = helper.create()
        factory = DbSinkFactory("sqlite:///rel.db")
        assert factory.db_url == f"sqlite:///{tmp_path / 'rel.db'}"
        sink = factory.create(name, account_row)
        (tmp_path / "elsewhere").mkdir()
        monkeypatch.chdir(tmp_path / "elsewhere")
        write(pickle.loads(pickle.dumps(sink)), make_events(5))
        monkeypatch.chdir(tmp_path)
        assert helper.count(name) == 5
    finally:
        helper.drop_all()


# ---------------------------------------------------------------------------- bounded waits


class FreezableProxy:
    """Forwards TCP connections to a server until ``freeze()``; from then on it keeps every
    connection open and swallows what arrives: a server that takes packets but never answers."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.frozen = threading.Event()
        self.stopped = threading.Event()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client = self.listener.accept()[0]
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                return
            upstream.settimeout(None)
            self.sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while True:
            try:
                data = src.recv(65536)
                if not data:
                    break
                if self.frozen.is_set():
                    self.stopped.wait()  # taken, never passed on
                    break
                dst.sendall(data)
            except OSError:
                break
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def freeze(self) -> None:
        self.frozen.set()

    def close(self) -> None:
        self.stopped.set()
        for sock in [self.listener, *self.sockets]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


def _collect_all(sink: DbSink, events) -> None:
    for ts, subject, transition in events:
        sink.collect(ts, subject, transition)


@pytest.mark.parametrize("copy", [True, False])
def test_postgres_locked_table_fails_the_batch_within_the_statement_timeout(postgres_url, copy):
    helper = Tables(postgres_url)
    try:
        name = helper.create()
        sink = DbSinkFactory(postgres_url, copy=copy, statement_timeout_s=1).create(
            name, account_row, batch_size=10)
        events = make_events(20)
        _collect_all(sink, events[:10])  # one batch in: the connection and the table are known
        with helper.engine.connect() as locker:  # another session holds the table
            locker.execute(sa.text(f"LOCK TABLE {name} IN ACCESS EXCLUSIVE MODE"))
            _, error = run_bounded(lambda: _collect_all(sink, events[10:]), 30)
            locker.rollback()
        assert isinstance(error, SinkError), error
        assert (error.delivered, error.failed) == (10, 10)
        assert "rolled back" in str(error) and "statement timeout" in str(error)
        assert "statement_timeout_s=1" in str(error)
        sink.close()
        assert [r[0] for r in helper.rows(name)] == list(range(10))
    finally:
        helper.drop_all()


def test_mariadb_locked_table_fails_the_batch_within_the_lock_wait_bound(mariadb_url):
    helper = Tables(mariadb_url)
    try:
        name = helper.create()
        sink = DbSinkFactory(mariadb_url, statement_timeout_s=1).create(name, account_row, batch_size=10)
        events = make_events(20)
        _collect_all(sink, events[:10])
        with helper.engine.connect() as locker:
            locker.exec_driver_sql(f"LOCK TABLES {name} WRITE")
            try:
                _, error = run_bounded(lambda: _collect_all(sink, events[10:]), 30)
            finally:
                locker.exec_driver_sql("UNLOCK TABLES")
        assert isinstance(error, SinkError), error
        assert (error.delivered, error.failed) == (10, 10)
        assert "Lock wait timeout exceeded" in str(error) and "statement_timeout_s=1" in str(error)
        sink.close()
        assert [r[0] for r in helper.rows(name)] == list(range(10))
    finally:
        helper.drop_all()


def test_sqlite_locked_database_fails_the_batch_within_the_statement_timeout(tmp_path):
    url = f"sqlite:///{tmp_path / 'locked.db'}"
    helper = Tables(url)
    try:
        name = helper.create()
        sink = DbSinkFactory(url, statement_timeout_s=0.5).create(name, account_row, batch_size=10)
        events = make_events(20)
        _collect_all(sink, events[:10])
        with helper.engine.connect() as locker:  # another writer holds the database
            locker.exec_driver_sql("BEGIN EXCLUSIVE")
            _, error = run_bounded(lambda: _collect_all(sink, events[10:]), 30)
            locker.rollback()
        assert isinstance(error, SinkError), error
        assert (error.delivered, error.failed) == (10, 10)
        assert "database is locked (statement_timeout_s=0.5)" in str(error)
        sink.close()
        assert helper.count(name) == 10
    finally:
        helper.drop_all()


@pytest.mark.parametrize("server", ["postgres", "mariadb"])
def test_a_database_that_stops_answering_fails_the_batch(request, server):
    url = sa.engine.make_url(request.getfixturevalue(f"{server}_url"))
    helper = Tables(url.render_as_string(hide_password=False))
    proxy = FreezableProxy(url.host, url.port)
    try:
        name = helper.create()
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        factory = DbSinkFactory(proxied, statement_timeout_s=1)
        sink = factory.create(name, account_row, batch_size=10)
        events = make_events(20)
        _collect_all(sink, events[:10])  # through the proxy, connection kept in the pool
        proxy.freeze()  # the server "hangs": TCP still up, no answer ever
        _, error = run_bounded(lambda: _collect_all(sink, events[10:]), 30)
        assert isinstance(error, SinkError), error
        assert (error.delivered, error.failed) == (10, 10)
        assert "statement_timeout_s=1" in str(error)
        if server == "postgres":  # the watchdog cut the connection
            assert "no answer from the database within" in str(error)
        run_bounded(sink.close, 30)
        assert factory._engine is None
        assert [r[0] for r in helper.rows(name)] == list(range(10))
    finally:
        proxy.close()
        helper.drop_all()


def test_bounding_connect_args_per_backend_and_yours_win(tmp_path):
    pg = DbSinkFactory("postgresql+psycopg://u:pw@db.example/x", statement_timeout_s=8, connect_timeout=3)
    args = pg.connect_args()
    assert args["options"] == "-c statement_timeout=8000" and args["connect_timeout"] == 3
    assert args["keepalives"] == 1 and args["keepalives_idle"] == 2 and args["keepalives_count"] == 3
    assert args["tcp_user_timeout"] == 8000
    mine = DbSinkFactory("postgresql+psycopg://u@db.example/x?options=-csearch_path%3Dmine",
                         connect_args={"keepalives_idle": 30}).connect_args()
    assert mine["options"] == "-csearch_path=mine -c statement_timeout=60000"
    assert mine["keepalives_idle"] == 30
    own_timeout = DbSinkFactory("postgresql+psycopg://u@db.example/x",
                                connect_args={"options": "-c statement_timeout=5"}).connect_args()
    assert own_timeout["options"] == "-c statement_timeout=5"
    off = DbSinkFactory("postgresql+psycopg://u@db.example/x", statement_timeout_s=None).connect_args()
    assert "options" not in off and "keepalives" not in off

    my = DbSinkFactory("mysql+pymysql://root@db.example/x", statement_timeout_s=2.5).connect_args()
    assert my["init_command"] == "SET SESSION lock_wait_timeout=3, innodb_lock_wait_timeout=3"
    assert my["read_timeout"] == my["write_timeout"] == 6
    lite = DbSinkFactory(f"sqlite:///{tmp_path / 'x.db'}", statement_timeout_s=7).connect_args()
    assert lite == {"timeout": 7.0}
    for bad in (0, -1, "5", True, float("inf")):
        with pytest.raises(ModelError, match="statement_timeout_s must be a positive number"):
            DbSinkFactory(f"sqlite:///{tmp_path / 'x.db'}", statement_timeout_s=bad)


# ---------------------------------------------------------------------------- doge-datagen style URLs


def test_normalize_db_url_picks_the_installed_driver():
    def only(*present):
        return lambda module: module in present

    ours = only("psycopg", "pymysql")
    assert normalize_db_url("postgresql://u:p%40ss@h:5432/db", ours) == "postgresql+psycopg://u:p%40ss@h:5432/db"
    assert normalize_db_url("mysql://root:@h/db", ours) == "mysql+pymysql://root:@h/db"
    assert normalize_db_url("mariadb://root@h/db", ours) == "mariadb+pymysql://root@h/db"
    # the SQLAlchemy default driver is installed, ours is not, or a driver is named: unchanged
    assert normalize_db_url("postgresql://u@h/db", only("psycopg2", "psycopg")) == "postgresql://u@h/db"
    assert normalize_db_url("postgresql://u@h/db", only()) == "postgresql://u@h/db"
    assert normalize_db_url("mysql://u@h/db", only("MySQLdb", "pymysql")) == "mysql://u@h/db"
    assert normalize_db_url("postgresql+psycopg2://u@h/db", ours) == "postgresql+psycopg2://u@h/db"
    assert normalize_db_url("sqlite:///x.db", ours) == "sqlite:///x.db"


@pytest.mark.parametrize("server, scheme, driver", [("postgres", "postgresql", "psycopg"),
                                                   ("mariadb", "mysql", "pymysql")])
def test_a_doge_datagen_style_url_writes_through_the_installed_driver(request, monkeypatch, server, scheme,
                                                                      driver):
    # as on SQLAlchemy 2.0 without psycopg2 / mysqlclient (what doge-dist's extras install)
    monkeypatch.setattr(_db_url, "_importable", lambda module: module in ("psycopg", "pymysql"))
    full = request.getfixturevalue(f"{server}_url")
    plain = f"{scheme}://" + full.split("://", 1)[1]
    helper = Tables(full)
    try:
        name = helper.create()
        factory = DbSinkFactory(plain)
        assert factory.db_url == f"{scheme}+{driver}://" + full.split("://", 1)[1]
        assert factory.driver == driver and factory.use_copy is (driver == "psycopg")
        write(factory.create(name, account_row, batch_size=7), make_events(20))
        assert helper.count(name) == 20
    finally:
        helper.drop_all()


# ---------------------------------------------------------------------------- the example's make_sink


def test_banking_make_sink_postgres_fails_fast_on_a_silent_server():
    from examples import banking

    with silent_server() as port:
        url = f"postgresql+psycopg://someone:s3cret-pw@127.0.0.1:{port}/test"
        sink = banking.make_sink("postgres", db_url=url, connect_timeout=2)  # builds, connects nowhere
        _, error = run_bounded(sink.prepare, 30)
    assert isinstance(error, ConnectionError), error
    assert f"postgresql+psycopg://someone:***@127.0.0.1:{port}/test" in str(error)
    assert "s3cret-pw" not in str(error)


# ---------------------------------------------------------------------------- pickling


def test_pickle_round_trip_before_and_after_use(tables):
    name = tables.create()
    factory = DbSinkFactory(tables.url, pool_pre_ping=True)
    sink = factory.create(name, account_row, batch_size=8)
    assert factory._engine is None  # create() checked the table and let go of its connection

    clone = pickle.loads(pickle.dumps(sink))  # before use (how sinks travel to workers)
    assert isinstance(clone, DbSink) and clone.factory is not factory
    assert (clone.name, clone.batch_size, clone.columns) == (sink.name, sink.batch_size, ())
    write(clone, make_events(20))
    assert clone.columns[:6] == ("seq", "user_id", "balance", "ratio", "note", "event")  # checked on use

    for ts, subject, transition in make_events(20, start=20):
        sink.collect(ts, subject, transition)  # mid-use: an engine is live and rows are pending
    assert factory._engine is not None
    copy_of_factory = pickle.loads(pickle.dumps(factory))
    assert copy_of_factory._engine is None and copy_of_factory.engine_options == {"pool_pre_ping": True}
    mid = pickle.loads(pickle.dumps(sink))
    assert mid.stats() == {"delivered": 0, "failed": 0}  # pending rows and counts stay with the original
    sink.close()
    assert sink.stats() == {"delivered": 20, "failed": 0}

    write(mid, make_events(10, start=40))  # a copy made mid-use writes on its own engine
    again = pickle.loads(pickle.dumps(sink))  # after use
    write(again, make_events(5, start=50))
    assert [r[0] for r in tables.rows(name)] == list(range(55))


# ---------------------------------------------------------------------------- the banking example


def banking_generator(sinks, subjects: int, ticks: int, seed: int):
    """The banking model of examples/banking.py with several sinks on every transition."""
    try:
        from doge_dist import DataOnlineGenerator
        from examples import banking
    except ImportError:
        pytest.skip("the engine is not available")
    gen = DataOnlineGenerator(["offline", "online", "loan_screen"], "offline", banking.UserFactory(),
                              subjects, 60000, ticks, seed=seed)
    gen.add_transition("income", "offline", "offline", 0.01,
                       action_callback=banking.income_callback, event_sinks=sinks)
    gen.add_transition("spending", "offline", "offline", 0.1,
                       action_callback=banking.spending_callback, event_sinks=sinks)
    gen.add_transition("login", "offline", "online", 0.1, event_sinks=sinks)
    gen.add_transition("logout", "online", "offline", 70, event_sinks=sinks)
    gen.add_transition("open_loan_screen", "online", "loan_screen", 30, event_sinks=sinks)
    gen.add_transition("close_loan_screen", "loan_screen", "online", 40, event_sinks=sinks)
    gen.add_transition("take_loan", "loan_screen", "online", 10,
                       action_callback=banking.take_loan_callback, event_sinks=sinks)
    return gen


def _run_banking_into_postgres_and_json_lines(postgres_url, tmp_path, **start_options) -> None:
    from doge_dist import JsonLinesSink
    from examples import banking

    table = f"doge_banking_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text(banking.EVENTS_TABLE_DDL.format(table=table)))
    try:
        db_sink = DbSinkFactory(postgres_url).create(table, banking.row_mapper, batch_size=500)
        jsonl = JsonLinesSink(tmp_path / "out" / "banking-{shard}.jsonl")
        result = banking_generator([db_sink, jsonl], 400, 1000, seed=11).start(**start_options)

        assert result.total_events > 500
        assert result.events_by_sink[db_sink.name] == result.total_events
        assert result.events_by_sink[jsonl.name] == result.total_events
        with engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT timestamp, user_id, event FROM {table} "
                                        "ORDER BY timestamp, user_id, event")).all()
        files = sorted((tmp_path / "out").glob("banking-*.jsonl"))
        assert [f.name for f in files] == [f"banking-{i}.jsonl" for i in range(len(result.shards) or 1)]
        lines = [line for f in files for line in f.read_text().splitlines()]
        assert len(rows) == len(lines) == result.total_events
        from_file = sorted((r["timestamp"], r["user_id"], r["trigger"]) for r in map(json.loads, lines))
        assert [tuple(r) for r in rows] == from_file
        by_trigger: dict[str, int] = {}
        for _, _, trigger in from_file:
            by_trigger[trigger] = by_trigger.get(trigger, 0) + 1
        assert by_trigger == {k: v for k, v in result.events_by_trigger.items() if v}
        stats = result.sink_stats[db_sink.name]
        assert (stats["delivered"], stats["failed"]) == (result.total_events, 0)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


def test_banking_example_into_postgres_and_json_lines(postgres_url, tmp_path):
    _run_banking_into_postgres_and_json_lines(postgres_url, tmp_path)


@pytest.mark.ray
def test_banking_on_two_ray_workers_into_postgres_and_json_lines(postgres_url, tmp_path, ray_session):
    _run_banking_into_postgres_and_json_lines(postgres_url, tmp_path, workers=2)


# ---------------------------------------------------------------------------- building does no I/O


class CountingListener:
    """A TCP listener that accepts and counts connections (and never answers): any connect shows."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self._held.append(self.listener.accept()[0])
            except OSError:
                return
            self.accepted += 1

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        for sock in self._held:
            sock.close()


@pytest.fixture
def listener():
    server = CountingListener()
    yield server
    server.close()


def test_create_connects_nowhere(listener):
    url = f"postgresql+psycopg://u:pw@127.0.0.1:{listener.port}/x"
    sink = DbSinkFactory(url, connect_timeout=2).create("events", account_row, batch_size=5,
                                                         create_table="CREATE TABLE events (seq BIGINT)")
    pickle.loads(pickle.dumps(sink))
    time.sleep(0.3)  # a connect attempt would have been accepted by now
    assert listener.accepted == 0
    _, error = run_bounded(sink.prepare, 30)  # the run's check is the first I/O
    assert isinstance(error, ConnectionError) and "u:***@" in str(error), error
    assert listener.accepted >= 1


@pytest.mark.parametrize("command", ["inspect", "graph"])
def test_inspect_and_graph_of_the_banking_example_do_not_connect(listener, tmp_path, command):
    url = f"postgresql+psycopg://u:pw@127.0.0.1:{listener.port}/x"
    args = [sys.executable, "-m", "doge_dist", command, "examples/banking.py:build_generator",
            "-p", "sink=postgres", "-p", f"db_url={url}", "-p", "table=banking_events"]
    if command == "graph":
        args += ["-o", str(tmp_path / "model.dot")]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert listener.accepted == 0
    if command == "graph":
        assert "digraph" in (tmp_path / "model.dot").read_text()
    else:
        assert "take_loan" in proc.stdout


# ---------------------------------------------------------------------------- create_table=


def _new_name() -> str:
    return f"doge_test_{uuid.uuid4().hex[:12]}"


def _drop(url: str, name: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
    engine.dispose()


DDL = ("CREATE TABLE {name} (seq BIGINT PRIMARY KEY, user_id INTEGER NOT NULL, balance BIGINT NOT NULL, "
       "ratio DOUBLE PRECISION, note VARCHAR(64), event VARCHAR(32) NOT NULL)")


def test_create_table_ddl_creates_a_missing_table_in_prepare(db_url):
    name = _new_name()
    try:
        sink = DbSinkFactory(db_url).create(name, account_row, batch_size=7,
                                            create_table=DDL.format(name=name))
        sink.prepare()
        assert sa.inspect(sa.create_engine(db_url)).has_table(name)
        write(sink, make_events(20))
        assert Tables(db_url).count(name) == 20
        again = DbSinkFactory(db_url).create(name, account_row, create_table=DDL.format(name=name))
        again.prepare()  # it exists now: the DDL is not run again (it would fail: no IF NOT EXISTS)
    finally:
        _drop(db_url, name)


def test_create_table_as_a_table_or_a_callable_and_lazily_where_it_writes(postgres_url):
    table_name, callable_name = _new_name(), _new_name()

    def create(conn):
        conn.exec_driver_sql(DDL.format(name=callable_name))

    try:
        as_table = DbSinkFactory(postgres_url).create(
            table_name, account_row, create_table=define_table(table_name, sa.MetaData()))
        as_callable = DbSinkFactory(postgres_url).create(callable_name, account_row, create_table=create)
        for sink in (as_table, as_callable):  # no prepare(): the first event creates and checks it
            write(pickle.loads(pickle.dumps(sink)) if sink is as_table else sink, make_events(12))
        assert Tables(postgres_url).count(table_name) == Tables(postgres_url).count(callable_name) == 12
    finally:
        _drop(postgres_url, table_name)
        _drop(postgres_url, callable_name)


def test_bad_create_table_arguments(tmp_path):
    factory = DbSinkFactory(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(ModelError, match="create_table is Table 'other'"):
        factory.create("events", account_row, create_table=sa.Table("other", sa.MetaData()))
    with pytest.raises(ModelError, match="DDL text is empty"):
        factory.create("events", account_row, create_table="  ")
    with pytest.raises(ModelError, match="create_table must be DDL text"):
        factory.create("events", account_row, create_table=42)


def test_a_run_into_a_missing_table_fails_before_any_subject_is_created(postgres_url):
    from doge_dist import DataOnlineGenerator

    created: list[int] = []

    class Factory:
        def create(self, index=0):
            created.append(index)
            return Account(index, 0, None, None)

    table = _new_name()
    gen = DataOnlineGenerator(["a", "b"], "a", Factory(), 10, 1000, 10)
    sink = DbSinkFactory(postgres_url).create(table, account_row)
    gen.add_transition("go", "a", "b", 50, event_sinks=[sink])
    with pytest.raises(ModelError, match=f"Table {table} does not exist"):
        gen.start()
    assert created == []


# ---------------------------------------------------------------------------- a dropped connection


def _session_id(factory: DbSinkFactory) -> int:
    """The id of the sink's pooled connection (the one checked in after its last batch)."""
    query = "SELECT pg_backend_pid()" if factory.backend == "postgresql" else "SELECT CONNECTION_ID()"
    with factory.engine().connect() as conn:
        return conn.exec_driver_sql(query).scalar_one()


def _kill(url: str, session: int) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                assert conn.exec_driver_sql(f"SELECT pg_terminate_backend({session})").scalar_one()
            else:
                conn.exec_driver_sql(f"KILL {session}")
    finally:
        engine.dispose()


@pytest.mark.parametrize("server, copy", [("postgres", True), ("postgres", False), ("mariadb", "auto")])
def test_a_connection_dropped_between_batches_is_replaced(request, server, copy):
    url = request.getfixturevalue(f"{server}_url")
    helper = Tables(url)
    try:
        name = helper.create()
        factory = DbSinkFactory(url, copy=copy)
        sink = factory.create(name, account_row, batch_size=10)
        events = make_events(30)
        _collect_all(sink, events[:10])  # batch 1 through a pooled connection
        _kill(url, _session_id(factory))  # the database drops it while the sink is between batches
        _, error = run_bounded(lambda: _collect_all(sink, events[10:20]), 60)
        assert error is None, error
        _kill(url, _session_id(factory))  # and once more, before the last batch (flushed by close)
        _collect_all(sink, events[20:])
        _, error = run_bounded(sink.close, 60)
        assert error is None, error
        assert sink.stats() == {"delivered": 30, "failed": 0}
        assert [r[0] for r in helper.rows(name)] == list(range(30))  # each row once, none lost
    finally:
        helper.drop_all()


def test_a_batch_that_fails_on_a_live_connection_is_not_retried(postgres_url):
    helper = Tables(postgres_url)
    try:
        name = helper.create()
        sink = DbSinkFactory(postgres_url).create(name, account_row, batch_size=10)
        events = make_events(10)
        events[5] = (3, *events[5][1:])  # duplicate key: the server refuses the batch
        with pytest.raises(SinkError) as info:
            _collect_all(sink, events)
        assert "retried" not in str(info.value) and (info.value.delivered, info.value.failed) == (0, 10)
        sink.close()
        assert helper.count(name) == 0
    finally:
        helper.drop_all()


# ---------------------------------------------------------------------------- one run's counts


def test_a_second_start_reports_only_its_own_rows(postgres_url):
    from examples import banking

    table = _new_name()
    try:
        gen = banking.build_generator("postgres", subjects=20, ticks=200, seed=5, db_url=postgres_url,
                                      table=table)
        first = gen.start()
        name = f"db:{table}"
        assert first.sink_stats[name]["delivered"] == first.total_events > 0
        gen.configure(ticks_num=50)
        second = gen.start()
        assert second.sink_stats[name] == {"delivered": second.total_events, "failed": 0}
        assert Tables(postgres_url).count(table) == first.total_events + second.total_events
    finally:
        _drop(postgres_url, table)
