"""SQL database sink (SQLAlchemy 2 Core): batched inserts, one transaction per batch.

Works with PostgreSQL (``postgresql+psycopg://``), SQLite and MySQL/MariaDB (``mysql+pymysql://``);
doge-datagen style ``postgresql://`` and ``mysql://`` URLs use those drivers when the
SQLAlchemy defaults (psycopg2, mysqlclient) are not installed. On PostgreSQL with psycopg 3,
batches can go through ``COPY ... FROM STDIN`` instead of multi-row INSERTs (``copy=``).
Every wait on the database is bounded (``connect_timeout``, ``statement_timeout_s``).
This module imports SQLAlchemy lazily: ``import doge_dist`` never does.
"""

from __future__ import annotations

import importlib.util
import math
import operator
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._errors import ModelError, SinkError
from ..model._vocabulary import EventSink, Transition
from ._pickling import PicklesAsDescription

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy.engine import Connection, Engine

__all__ = ["DbSinkFactory", "DbSink", "normalize_db_url", "DEFAULT_STATEMENT_TIMEOUT_S"]

RowMapper = Callable[[int, Any, Transition], dict]

_COPY_CHOICES = (True, False, "auto")

#: The default bound on one statement (INSERT, COPY, COMMIT, reflection), in seconds.
DEFAULT_STATEMENT_TIMEOUT_S = 60.0

# error texts of a statement that hit its bound: PostgreSQL, MySQL/MariaDB server, pymysql
# read timeout, SQLite busy timeout
_STATEMENT_BOUND_HIT = ("statement timeout", "lock wait timeout", "during query (timed out)",
                        "database is locked")

# drivername without a driver -> (SQLAlchemy's default DBAPI module, the one doge-dist's extras
# install, the drivername to use instead when only the latter is importable)
_DEFAULT_DRIVERS = {
    "postgresql": ("psycopg2", "psycopg", "postgresql+psycopg"),
    "mysql": ("MySQLdb", "pymysql", "mysql+pymysql"),
    "mariadb": ("MySQLdb", "pymysql", "mariadb+pymysql"),
}


def _masked(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a parseable URL: say so without echoing anything secret
        return "<unparseable database URL>"


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _libpq_version(driver: str) -> int:
    try:
        if driver == "psycopg":
            from psycopg import pq

            return pq.version()
        from psycopg2 import extensions

        return extensions.libpq_version()
    except Exception:  # driver missing (the engine will say so) or too old to tell
        return 0


def _grace(statement_timeout_s: float) -> int:
    """Extra seconds client-side bounds wait beyond the server's, so the server's clear error wins."""
    return max(1, min(5, math.ceil(statement_timeout_s)))


class _Watchdog:
    """Cuts a database connection (``shutdown()`` on its socket) that is still busy after ``seconds``.

    For drivers that expose the socket (psycopg 3, psycopg2: ``fileno()``); the blocked call then
    fails with a connection error. Works on a duplicate of the descriptor, so it never touches a
    socket the driver has already closed and the descriptor number reused. One thread per process
    (:class:`_WatchdogThread`) watches every armed guard.
    """

    __slots__ = ("seconds", "fired", "deadline", "_sock")

    def __init__(self, conn: Connection, seconds: float | None) -> None:
        self.seconds = seconds
        self.fired = False
        self.deadline = 0.0
        self._sock: socket.socket | None = None
        fileno = getattr(conn.connection.driver_connection, "fileno", None)
        if seconds is None or fileno is None:
            return
        try:
            self._sock = socket.socket(fileno=os.dup(fileno()))
        except (OSError, ValueError):
            return
        self.deadline = time.monotonic() + seconds
        _WATCHDOG.arm(self)

    def fire(self) -> None:
        """Called by the watchdog thread, holding its lock."""
        if self._sock is not None:
            self.fired = True
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        if self._sock is not None:
            _WATCHDOG.disarm(self)  # after this the thread no longer fires it
            self._sock.close()
            self._sock = None


class _WatchdogThread:
    """The process's watchdog: a daemon thread firing guards whose deadline passed."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        """Fresh state; also in a forked child, where the thread (and maybe the lock) did not survive."""
        self._cond = threading.Condition()
        self._guards: set[_Watchdog] = set()
        self._started = False
        self._wake: float | None = None  # when the thread wakes next (None: when notified)

    def arm(self, guard: _Watchdog) -> None:
        with self._cond:
            if not self._started:
                self._started = True
                threading.Thread(target=self._run, name="doge-dist-db-watchdog", daemon=True).start()
            self._guards.add(guard)
            if self._wake is None or guard.deadline < self._wake:  # else the thread wakes in time
                self._cond.notify()

    def disarm(self, guard: _Watchdog) -> None:
        with self._cond:
            self._guards.discard(guard)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for guard in [g for g in self._guards if g.deadline <= now]:
                    self._guards.discard(guard)
                    guard.fire()
                self._wake = wake = min((g.deadline for g in self._guards), default=None)
                self._cond.wait(None if wake is None else wake - now)


_WATCHDOG = _WatchdogThread()
if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_WATCHDOG._reset)


def normalize_db_url(db_url: str, importable: Callable[[str], bool] | None = None) -> str:
    """A doge-datagen style URL with the driver that is installed.

    On SQLAlchemy 2.0 ``postgresql://`` means psycopg2 and ``mysql://`` / ``mariadb://`` mean
    mysqlclient (``MySQLdb``), which doge-dist does not install (its extras install psycopg 3 and
    pymysql). When the default driver is not importable and doge-dist's is, the URL gets
    ``+psycopg`` / ``+pymysql``; any other URL is returned unchanged. ``importable(module_name)``
    defaults to a ``find_spec`` check (nothing is imported).
    """
    from sqlalchemy.engine import make_url

    importable = importable or _importable
    url = make_url(db_url)
    choice = _DEFAULT_DRIVERS.get(url.drivername)
    if choice is None:
        return db_url
    default_module, ours, drivername = choice
    if importable(default_module) or not importable(ours):
        return db_url
    return url.set(drivername=drivername).render_as_string(hide_password=False)


class DbSinkFactory(PicklesAsDescription):
    """Creates :class:`DbSink` instances writing to tables of one database.

    ``DbSinkFactory(db_url, copy="auto", connect_timeout=10, statement_timeout_s=60, **engine_options)``;
    ``engine_options`` go to :func:`sqlalchemy.create_engine`. The factory is a picklable
    description: its Engine is created lazily, one per factory per process, and disposed when the
    last of its sinks closes.

    ``copy``: ``True`` writes batches with PostgreSQL ``COPY`` (psycopg 3 only), ``False`` with
    multi-row INSERTs (SQLAlchemy's insertmanyvalues / the driver's executemany), ``"auto"``
    uses COPY where it is available (postgresql+psycopg), which measured faster (benchmarks/sinks.py).

    ``connect_timeout`` (s) bounds opening a connection. ``statement_timeout_s`` bounds each
    statement, so a locked table or a database that stops answering fails the batch with a
    :class:`doge_dist.SinkError` (rolled back, with counts) instead of hanging the run:

    * PostgreSQL (psycopg 3 / psycopg2): server ``statement_timeout`` (covers lock waits), TCP
      keepalives and ``tcp_user_timeout`` (a dead host or network), and a client-side watchdog that
      cuts the connection of a batch still waiting ``statement_timeout_s`` per statement + a grace
      later (a server that accepts packets but never answers);
    * MySQL/MariaDB (pymysql / mysqlclient): ``lock_wait_timeout`` and ``innodb_lock_wait_timeout``
      for the session, ``read_timeout`` / ``write_timeout`` (a few seconds longer) on the client;
    * SQLite: the ``timeout`` connect argument (waiting for another writer's lock).

    Your own ``connect_args`` (or URL query parameters) win over these. ``None`` turns a bound off
    (e.g. ``statement_timeout_s=None`` behind PgBouncer in transaction mode, which refuses startup
    ``options``).
    """

    def __init__(self, db_url: Any, *, copy: bool | str = "auto", connect_timeout: float | None = 10,
                 statement_timeout_s: float | None = DEFAULT_STATEMENT_TIMEOUT_S,
                 **engine_options: Any) -> None:
        from sqlalchemy.engine import URL, make_url

        if isinstance(db_url, URL):
            db_url = db_url.render_as_string(hide_password=False)
        if not isinstance(db_url, str) or not db_url:
            raise ModelError(f"DbSinkFactory: db_url must be a database URL string, got {db_url!r}")
        try:
            db_url = normalize_db_url(db_url)
            url = make_url(db_url)
        except Exception as exc:
            raise ModelError(f"DbSinkFactory: {_masked(db_url)} is not a valid SQLAlchemy database URL "
                             f"({type(exc).__name__})") from None
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:" \
                and not url.database.startswith("file:") and not os.path.isabs(url.database):
            # a relative SQLite file means relative to where the factory was made, also in workers
            url = url.set(database=os.path.abspath(url.database))
            db_url = url.render_as_string(hide_password=False)
        if copy not in _COPY_CHOICES or isinstance(copy, int) and not isinstance(copy, bool):
            raise ModelError(f"DbSinkFactory: copy must be True, False or 'auto', got {copy!r}")
        bounds = (("connect_timeout", connect_timeout), ("statement_timeout_s", statement_timeout_s))
        for label, value in bounds:
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not value > 0 or value == math.inf):
                raise ModelError(f"DbSinkFactory: {label} must be a positive number of seconds or None, "
                                 f"got {value!r}")
        self.db_url = db_url
        self.masked_url = _masked(db_url)
        self.backend = url.get_backend_name()
        self.driver = url.get_driver_name()
        copy_possible = self.backend == "postgresql" and self.driver == "psycopg"
        if copy is True and not copy_possible:
            raise ModelError(f"DbSinkFactory: copy=True needs PostgreSQL through psycopg 3 "
                             f"(postgresql+psycopg://...), not {self.masked_url}")
        self.copy = copy
        self.use_copy = copy_possible if copy == "auto" else bool(copy)
        self.connect_timeout = connect_timeout
        self.statement_timeout_s = statement_timeout_s
        self.engine_options = engine_options
        self._reset()

    def _reset(self) -> None:
        self._engine: Engine | None = None
        self._pid: int | None = None
        self._users = 0

    def __repr__(self) -> str:
        return f"DbSinkFactory({self.masked_url!r}, copy={self.copy!r})"

    # ------------------------------------------------------------------ engines

    def bounding_connect_args(self) -> dict[str, Any]:
        """The driver connect arguments that bound waits (see the class docstring), before your own."""
        args: dict[str, Any] = {}
        backend, driver = self.backend, self.driver
        timeout, statement = self.connect_timeout, self.statement_timeout_s
        if backend == "postgresql":
            if timeout is not None:
                args["connect_timeout"] = max(2, int(round(timeout)))  # libpq: whole seconds, minimum 2
            if statement is not None and driver in ("psycopg", "psycopg2"):
                ms = max(1, int(statement * 1000))
                probe = max(1, int(statement // 4))  # a dead peer is noticed after ~statement s
                args.update(options=f"-c statement_timeout={ms}", keepalives=1, keepalives_idle=probe,
                            keepalives_interval=probe, keepalives_count=3)
                if _libpq_version(driver) >= 120000:  # libpq 12 added tcp_user_timeout
                    args["tcp_user_timeout"] = ms
        elif backend in ("mysql", "mariadb"):
            if timeout is not None:
                args["connect_timeout"] = timeout if driver == "pymysql" else max(1, math.ceil(timeout))
            if statement is not None and driver in ("pymysql", "mysqldb"):
                seconds = max(1, math.ceil(statement))
                client = seconds + _grace(statement)
                # the server gives up on a lock first (a clear error); the client read/write bound
                # catches a server that stopped answering altogether
                args.update(init_command=f"SET SESSION lock_wait_timeout={seconds}, "
                                         f"innodb_lock_wait_timeout={seconds}",
                            read_timeout=client, write_timeout=client)
        elif backend == "sqlite" and statement is not None:
            args["timeout"] = float(statement)
        return args

    def connect_args(self) -> dict[str, Any]:
        """``engine_options['connect_args']`` plus the bounding ones it (or the URL query) does not set.

        PostgreSQL ``options`` given elsewhere get ``-c statement_timeout=...`` appended unless they
        set a statement_timeout themselves.
        """
        from sqlalchemy.engine import make_url

        connect_args = dict(self.engine_options.get("connect_args") or {})
        given = {**make_url(self.db_url).query, **connect_args}
        for key, value in self.bounding_connect_args().items():
            if key == "options" and "options" in given:
                if "statement_timeout" not in str(given["options"]):
                    connect_args["options"] = f"{given['options']} {value}"
            elif key not in given:
                connect_args[key] = value
        return connect_args

    def _new_engine(self, **overrides: Any) -> Engine:
        import sqlalchemy as sa

        options = dict(self.engine_options)
        connect_args = self.connect_args()
        if connect_args:
            options["connect_args"] = connect_args
        options.update(overrides)
        try:
            return sa.create_engine(self.db_url, **options)
        except ImportError as exc:
            raise ModelError(f"DbSinkFactory: the database driver for {self.masked_url} is not installed "
                             f"({exc}); e.g. pip install 'doge-dist[postgres]' or 'doge-dist[mysql]'"
                             ) from exc

    def watchdog_s(self, statements: int) -> float | None:
        """How long a unit of ``statements`` may wait before the watchdog cuts its connection."""
        if self.statement_timeout_s is None:
            return None
        return self.statement_timeout_s * statements + _grace(self.statement_timeout_s)

    def engine(self) -> Engine:
        """This process's Engine for the factory, created on first use."""
        pid = os.getpid()
        if self._engine is None or self._pid != pid:
            if self._engine is not None:  # inherited through fork: never share pooled connections
                self._engine.dispose(close=False)
            self._engine = self._new_engine()
            self._pid = pid
        return self._engine

    def _acquire(self) -> Engine:
        self._users += 1
        return self.engine()

    def _release(self) -> None:
        self._users = max(0, self._users - 1)
        if self._users == 0:
            self.dispose()

    def dispose(self) -> None:
        """Close this process's pooled connections (a later write opens new ones)."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()

    def connection_error(self, exc: BaseException) -> str:
        """A one-line description of ``exc`` with the password (if any) masked."""
        from sqlalchemy.engine import make_url

        text = str(getattr(exc, "orig", None) or exc).strip()
        text = text.splitlines()[0] if text else type(exc).__name__
        password = make_url(self.db_url).password
        if password:
            text = text.replace(str(password), "***")
        return text

    # ------------------------------------------------------------------ sinks

    def create(self, table_name: str, row_mapper_function: RowMapper, batch_size: int = 1000, *,
               schema: str | None = None) -> DbSink:
        """A sink inserting ``row_mapper_function(timestamp, subject, transition)`` rows into ``table_name``.

        The table must exist: checked now with one short connection (then closed), which also
        reads the column names used to check the first row.
        """
        if not isinstance(table_name, str) or not table_name:
            raise ModelError(f"DbSinkFactory.create: table_name must be a non-empty string, "
                             f"got {table_name!r}")
        if not callable(row_mapper_function):
            raise ModelError(f"DbSinkFactory.create: row_mapper_function must be callable, "
                             f"got {row_mapper_function!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ModelError(f"DbSinkFactory.create: batch_size must be a positive integer, "
                             f"got {batch_size!r}")
        columns = self._table_columns(table_name, schema)
        return DbSink(self, table_name, row_mapper_function, batch_size, schema=schema, columns=columns)

    def _table_columns(self, table_name: str, schema: str | None) -> tuple[str, ...]:
        import sqlalchemy as sa
        from sqlalchemy.pool import NullPool

        engine = self._new_engine(poolclass=NullPool)
        guard: _Watchdog | None = None
        try:
            with engine.connect() as conn:
                guard = _Watchdog(conn, self.watchdog_s(2))
                try:
                    inspector = sa.inspect(conn)
                    if not inspector.has_table(table_name, schema=schema):
                        where = f"{schema}.{table_name}" if schema else table_name
                        raise ModelError(f"Table {where} does not exist (database {self.masked_url})")
                    return tuple(col["name"] for col in inspector.get_columns(table_name, schema=schema))
                finally:
                    guard.cancel()
        except sa.exc.DBAPIError as exc:
            raise ConnectionError(f"DbSinkFactory: cannot reach or query the database at {self.masked_url}: "
                                  f"{self.describe_failure(exc, guard)}") from exc
        finally:
            engine.dispose()

    def describe_failure(self, exc: BaseException, guard: _Watchdog | None = None) -> str:
        """``connection_error(exc)``, saying so when a bound on waiting was what ended it."""
        text = self.connection_error(exc)
        if guard is not None and guard.fired:
            return (f"no answer from the database within {guard.seconds:g} s (statement_timeout_s="
                    f"{self.statement_timeout_s:g} per statement), connection cut: {text}")
        lowered = text.lower()
        if self.statement_timeout_s is not None and any(mark in lowered for mark in _STATEMENT_BOUND_HIT):
            return f"{text} (statement_timeout_s={self.statement_timeout_s:g})"
        return text


class DbSink(PicklesAsDescription, EventSink):
    """Inserts one row per event into a table, ``batch_size`` rows per transaction.

    A failed batch is rolled back as a whole and raises :class:`doge_dist.SinkError` with the
    counts; earlier batches stay committed. ``close()`` flushes the last batch. Made by
    :meth:`DbSinkFactory.create`.
    """

    def __init__(self, factory: DbSinkFactory, table_name: str, row_mapper_function: RowMapper,
                 batch_size: int = 1000, *, schema: str | None = None,
                 columns: tuple[str, ...] = ()) -> None:
        self.factory = factory
        self.table_name = table_name
        self.schema = schema
        self.row_mapper_function = row_mapper_function
        self.batch_size = batch_size
        self.columns = tuple(columns)
        self.name = f"db:{table_name}"
        self._reset()

    def _reset(self) -> None:
        self._batch: list[dict] = []
        self._keys: Any = None  # key view of the first row: rows with the same keys skip the check
        self._uniform = True  # every row of the pending batch has the first row's keys
        self._column_set = frozenset(self.columns)
        self._table: Any = None
        self._acquired = False
        self._delivered = 0
        self._failed = 0

    # pickling (PicklesAsDescription): pending rows, counts and the engine stay with the original
    def __repr__(self) -> str:
        return f"DbSink({self.table_name!r}, {self.factory.masked_url!r}, batch_size={self.batch_size})"

    # ------------------------------------------------------------------ collect

    def collect(self, timestamp: int, subject: Any, transition: Transition) -> None:
        row = self.row_mapper_function(timestamp, subject, transition)
        if type(row) is not dict or row.keys() != self._keys:
            self._check_row(row)
        batch = self._batch
        batch.append(row)
        if len(batch) >= self.batch_size:
            self._flush()

    def _check_row(self, row: Any) -> None:
        if not isinstance(row, dict):
            raise ModelError(f"{self.name}: row_mapper_function must return a dict, got {type(row).__name__}")
        if self._keys is not None and row.keys() == self._keys:
            return  # a dict subclass with the usual keys
        unknown = [key for key in row if key not in self._column_set]
        if unknown:
            raise ModelError(f"{self.name}: row has column(s) {unknown} that table {self.table_name!r} "
                             f"does not have; its columns are {list(self.columns)}")
        if not row:
            raise ModelError(f"{self.name}: row_mapper_function returned an empty row")
        if self._keys is None:
            self._keys = dict.fromkeys(row).keys()
        else:
            self._uniform = False

    def stats(self) -> dict[str, int]:
        return {"delivered": self._delivered, "failed": self._failed}

    def close(self) -> None:
        """Insert the last batch and release the connection pool. Idempotent."""
        try:
            if self._batch:
                self._flush()
        finally:
            if self._acquired:
                self._acquired = False
                self.factory._release()

    # ------------------------------------------------------------------ writing

    def _flush(self) -> None:
        rows, self._batch = self._batch, []
        uniform, self._uniform = self._uniform, True
        factory = self.factory
        guard: _Watchdog | None = None
        try:
            if not self._acquired:
                factory._acquire()
                self._acquired = True
            groups = [(tuple(self._keys), rows)] if uniform else _group_by_keys(rows)
            with factory.engine().connect() as conn:
                # statements: reflection (first batch), one per group, COMMIT
                guard = _Watchdog(conn, factory.watchdog_s(len(groups) + 2))
                try:
                    with conn.begin():
                        if factory.use_copy:
                            self._copy(conn, groups)
                        else:
                            table = self._get_table(conn)
                            for _, group in groups:
                                conn.execute(table.insert(), group)
                finally:
                    guard.cancel()
        except BaseException as exc:
            self._failed += len(rows)
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt and friends: counted, rolled back, passed on
            raise SinkError(
                f"{self.name}: a batch of {len(rows)} rows failed and was rolled back "
                f"({self._delivered} rows inserted, {self._failed} failed): "
                f"{type(exc).__name__}: {factory.describe_failure(exc, guard)}",
                sink=self.name, delivered=self._delivered, failed=self._failed) from exc
        self._delivered += len(rows)

    def _get_table(self, conn: Connection) -> Any:
        if self._table is None:
            import sqlalchemy as sa

            self._table = sa.Table(self.table_name, sa.MetaData(), schema=self.schema, autoload_with=conn)
        return self._table

    def _copy(self, conn: Connection, groups: list[tuple[tuple[str, ...], list[dict]]]) -> None:
        from psycopg import sql

        table = self._get_table(conn)
        dialect = conn.dialect
        names = (self.schema, self.table_name) if self.schema else (self.table_name,)
        target = sql.Identifier(*names)
        raw = conn.connection.driver_connection
        with raw.cursor() as cursor:
            for keys, group in groups:
                # the same per-type conversion the INSERT path applies (e.g. dict -> JSON for json columns)
                processors = [(i, p) for i, p in enumerate(
                    table.c[key].type.dialect_impl(dialect).bind_processor(dialect) for key in keys)
                    if p is not None]
                statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
                    target, sql.SQL(", ").join(sql.Identifier(key) for key in keys))
                get = operator.itemgetter(*keys) if len(keys) > 1 else (lambda row, _k=keys[0]: (row[_k],))
                with cursor.copy(statement) as copy:
                    write_row = copy.write_row
                    if processors:
                        for row in group:
                            values = list(get(row))
                            for i, process in processors:
                                values[i] = process(values[i])
                            write_row(values)
                    else:
                        for row in group:
                            write_row(get(row))


def _group_by_keys(rows: list[dict]) -> list[tuple[tuple[str, ...], list[dict]]]:
    """Rows grouped by their set of keys (first appearance order), one INSERT/COPY per group."""
    groups: dict[frozenset, tuple[tuple[str, ...], list[dict]]] = {}
    for row in rows:
        key = frozenset(row)
        if key not in groups:
            groups[key] = (tuple(row), [])
        groups[key][1].append(row)
    return list(groups.values())
