"""SQL database sink (SQLAlchemy 2 Core): batched inserts, one transaction per batch, exactly once.

Works with PostgreSQL (``postgresql+psycopg://``), SQLite and MySQL/MariaDB (``mysql+pymysql://``);
doge-datagen style ``postgresql://`` and ``mysql://`` URLs use those drivers when the
SQLAlchemy defaults (psycopg2, mysqlclient) are not installed (``_db_url``). On PostgreSQL with
psycopg 3, batches can go through ``COPY ... FROM STDIN`` instead of multi-row INSERTs (``copy=``).
Every wait on the database is bounded (``_db_timeouts``). Building a sink does no I/O: the table is
checked (and created when ``create_table=`` says how) by ``prepare()`` on the driver before any
subject exists, and again lazily where the sink writes.
In a run, each batch is committed together with its part's row in a small progress table
(``_db_progress``), so a worker that replaces a lost one, or a run resumed from a checkpoint, skips
exactly the events that are already in the table while it replays (``resume``).
This module imports SQLAlchemy lazily: ``import doge_dist`` never does.
"""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._context import current_shard
from .._errors import ModelError, SinkError
from ..model._vocabulary import EventSink, Transition
from ._db_progress import (
    DEFAULT_PROGRESS_TABLE,
    BatchProgress,
    committed_now,
    load_progress_table,
    read_committed,
    record_batch,
    record_batch_psycopg,
)
from ._db_timeouts import (
    DEFAULT_STATEMENT_TIMEOUT_S,
    Watchdog,
    bound_hit,
    bounding_connect_args,
    watchdog_seconds,
)
from ._db_url import mask_password, masked_url, normalize_db_url
from ._pickling import PicklesAsDescription

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy.engine import Connection, Engine

__all__ = ["DbSinkFactory", "DbSink", "normalize_db_url", "DEFAULT_STATEMENT_TIMEOUT_S",
           "DEFAULT_PROGRESS_TABLE"]

RowMapper = Callable[[int, Any, Transition], dict]
#: What ``create_table=`` takes: DDL text, a SQLAlchemy ``Table``, or ``callable(connection)``.
TableCreator = Any

_COPY_CHOICES = (True, False, "auto")


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

    A pooled connection the database dropped between batches (a restart, an idle timeout, a
    killed session) is replaced: the batch that finds it dead is retried once on a new connection,
    in its own transaction. A batch is retried only when the connection died before its COMMIT was
    sent (so it was rolled back), or, with a progress table, when the progress row shows that a COMMIT
    lost with its connection did not happen; it is never half-written or written twice.

    ``progress_table`` (default ``"doge_dist_progress"``, created when missing, in the sinks' schema):
    in a run every batch is committed together with an update of its row ``(run_id, sink, part,
    committed, last_tick)``, which makes the sinks exactly-once after a lost worker is replaced or a run
    is resumed from a checkpoint. ``None`` writes no progress (for users who cannot create tables):
    the sinks are then at-least-once after a recovery (the run reports possible duplicates).
    """

    def __init__(self, db_url: Any, *, copy: bool | str = "auto", connect_timeout: float | None = 10,
                 statement_timeout_s: float | None = DEFAULT_STATEMENT_TIMEOUT_S,
                 progress_table: str | None = DEFAULT_PROGRESS_TABLE, **engine_options: Any) -> None:
        from sqlalchemy.engine import URL, make_url

        if isinstance(db_url, URL):
            db_url = db_url.render_as_string(hide_password=False)
        if not isinstance(db_url, str) or not db_url:
            raise ModelError(f"DbSinkFactory: db_url must be a database URL string, got {db_url!r}")
        try:
            db_url = normalize_db_url(db_url)
            url = make_url(db_url)
        except Exception as exc:
            raise ModelError(f"DbSinkFactory: {masked_url(db_url)} is not a valid SQLAlchemy database URL "
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
        if progress_table is not None and (not isinstance(progress_table, str) or not progress_table.strip()):
            raise ModelError(f"DbSinkFactory: progress_table must be a table name or None (no progress "
                             f"table: at-least-once after a recovery), got {progress_table!r}")
        self.progress_table = progress_table
        self.db_url = db_url
        self.masked_url = masked_url(db_url)
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
        return bounding_connect_args(self.backend, self.driver, self.connect_timeout,
                                     self.statement_timeout_s)

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

    def new_engine(self, **overrides: Any) -> Engine:
        """A new Engine with the bounding connect arguments (``overrides`` win over ``engine_options``)."""
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
        return watchdog_seconds(self.statement_timeout_s, statements)

    def engine(self) -> Engine:
        """This process's Engine for the factory, created on first use."""
        pid = os.getpid()
        if self._engine is None or self._pid != pid:
            if self._engine is not None:  # inherited through fork: never share pooled connections
                self._engine.dispose(close=False)
            self._engine = self.new_engine()
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
        text = str(getattr(exc, "orig", None) or exc).strip()
        text = text.splitlines()[0] if text else type(exc).__name__
        return mask_password(text, self.db_url)

    def describe_failure(self, exc: BaseException, guard: Watchdog | None = None) -> str:
        """``connection_error(exc)``, saying so when a bound on waiting was what ended it."""
        text = self.connection_error(exc)
        if guard is not None and guard.fired:
            return (f"no answer from the database within {guard.seconds:g} s (statement_timeout_s="
                    f"{self.statement_timeout_s:g} per statement), connection cut: {text}")
        if self.statement_timeout_s is not None and bound_hit(text):
            return f"{text} (statement_timeout_s={self.statement_timeout_s:g})"
        return text

    # ------------------------------------------------------------------ sinks

    def create(self, table_name: str, row_mapper_function: RowMapper, batch_size: int = 1000,
               create_table: TableCreator = None, *, schema: str | None = None,
               progress_key: str | None = None) -> DbSink:
        """A sink inserting ``row_mapper_function(timestamp, subject, transition)`` rows into ``table_name``.

        Does no I/O. The run checks the table before any subject exists (``DbSink.prepare()``):
        a missing table is a ``ModelError`` naming it, an unreachable database a
        ``ConnectionError`` naming the URL (password masked). With ``create_table=`` a missing
        table is created first: DDL text (run as given), a SQLAlchemy ``Table`` named
        ``table_name``, or ``callable(connection)`` (a SQLAlchemy Connection, committed after).

        ``progress_key`` names the sink in the progress table (default: ``[schema.]table_name``); two
        sinks of one model writing the same table need distinct keys (a shared key fails the run).
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
        _check_creator(create_table, table_name, schema)
        if progress_key is not None and (not isinstance(progress_key, str) or not progress_key.strip()
                                         or len(progress_key) > 200):
            raise ModelError(f"DbSinkFactory.create: progress_key must be a non-empty string of at most 200 "
                             f"characters, got {progress_key!r}")
        return DbSink(self, table_name, row_mapper_function, batch_size, create_table, schema=schema,
                      progress_key=progress_key)


def _check_creator(create_table: Any, table_name: str, schema: str | None) -> None:
    import sqlalchemy as sa

    if create_table is None or callable(create_table) and not isinstance(create_table, sa.Table):
        return
    if isinstance(create_table, str):
        if not create_table.strip():
            raise ModelError("DbSinkFactory.create: create_table DDL text is empty")
        return
    if isinstance(create_table, sa.Table):
        if (create_table.name, create_table.schema) != (table_name, schema):
            raise ModelError(f"DbSinkFactory.create: create_table is Table {create_table.fullname!r}, "
                             f"but the sink writes to {_where(table_name, schema)!r}")
        return
    raise ModelError(f"DbSinkFactory.create: create_table must be DDL text, a SQLAlchemy Table or "
                     f"callable(connection), got {type(create_table).__name__}")


def _where(table_name: str, schema: str | None) -> str:
    return f"{schema}.{table_name}" if schema else table_name


class _Disconnected(Exception):
    """The connection died before the batch's COMMIT was sent: the batch was rolled back, retry it."""


class _CommitLost(Exception):
    """The connection died during COMMIT: the database may or may not have stored the batch."""


class _CommittedAfterAll(Exception):
    """A COMMIT lost with its connection did happen (the progress row says so): the batch is stored."""


class _Part:
    """The state of one part's output in this process: its pending batch and its progress."""

    __slots__ = ("batch", "uniform", "skip", "last_ts", "committed", "stored", "last_tick")

    def __init__(self, committed: int = 0, stored: bool = False, skip: int = 0) -> None:
        self.batch: list[dict] = []
        self.uniform = True      # every pending row has the sink's first row's keys
        self.skip = skip         # events still to skip while replaying (already in the table)
        self.last_ts: int | None = None  # timestamp of the newest pending event
        self.committed = committed  # rows of this part in the table for this run (as the progress row says)
        self.stored = stored     # the progress row exists
        self.last_tick: int | None = None


class DbSink(PicklesAsDescription, EventSink):
    """Inserts one row per event into a table, ``batch_size`` rows per transaction.

    A failed batch is rolled back as a whole and raises :class:`doge_dist.SinkError` with the
    counts; earlier batches stay committed. ``close()`` flushes the last batch. Made by
    :meth:`DbSinkFactory.create`.

    In a run with a progress table (the default) rows are batched per part of the population, and
    every batch commits together with its part's progress row; ``checkpoint_positions()`` commits
    what is pending and records each part's count, ``resume(positions)`` skips, per part, the events
    committed since then while the shard replays. Without a progress table the sink has no
    ``resume``: it is at-least-once after a recovery.
    """

    def __init__(self, factory: DbSinkFactory, table_name: str, row_mapper_function: RowMapper,
                 batch_size: int = 1000, create_table: TableCreator = None, *,
                 schema: str | None = None, progress_key: str | None = None) -> None:
        self.factory = factory
        self.table_name = table_name
        self.schema = schema
        self.row_mapper_function = row_mapper_function
        self.batch_size = batch_size
        self.create_table = create_table
        self.name = f"db:{table_name}"
        self.progress_key = progress_key or _where(table_name, schema)
        self._reset()

    def _reset(self) -> None:
        self._table: Any = None  # the reflected table, once checked in this process
        self._progress: Any = None  # the progress table, once checked in this process
        self._column_set: frozenset[str] = frozenset()
        self._acquired = False
        self.begin_run()

    def begin_run(self) -> None:
        """Counts start at zero for each run (a second ``start()`` reports only its own rows)."""
        self._parts: dict[int | None, _Part] = {}
        self._part: int | None = None
        self._current = self._parts[None] = _Part()  # events before any select_part (outside a run)
        self._load(self._current)
        self._keys: Any = None  # key view of the first row: rows with the same keys skip the check
        self._delivered = 0
        self._failed = 0
        self._skipped = 0  # replayed events that were already in the table

    # -- parts and progress ----------------------------------------------------------------------

    @property
    def uses_parts(self) -> bool:
        """With a progress table, the engine tells the sink each event's part (``select_part``)."""
        return self.factory.progress_table is not None

    @property
    def resume(self) -> Callable[[dict[str, Any]], None] | None:
        """``resume(positions)`` with a progress table; None without (at-least-once after a recovery)."""
        return self._resume if self.factory.progress_table is not None else None

    def _load(self, part: _Part) -> None:
        """Make ``part`` the current one: the per-event path reads these attributes."""
        self._batch = part.batch
        self._uniform = part.uniform
        self._skip = part.skip
        self._last_ts = part.last_ts

    def _save(self) -> None:
        part = self._current
        part.batch, part.uniform = self._batch, self._uniform
        part.skip, part.last_ts = self._skip, self._last_ts

    def select_part(self, part: int) -> None:
        """The events that follow belong to ``part`` (the engine calls this; each part has its batch)."""
        if part == self._part:
            return
        self._save()
        state = self._parts.get(part)
        if state is None:
            state = self._parts[part] = _Part()
        self._current, self._part = state, part
        self._load(state)

    def _owned_parts(self) -> list[int]:
        shard = current_shard()
        return list(range(shard.first_part, shard.stop_part))

    def checkpoint_positions(self) -> dict[str, dict[str, Any]]:
        """At a checkpoint: commit every pending batch and return each part's committed count
        (``{"part:<p>": {"committed": n, "last_tick": t}}``; ``{}`` without a progress table)."""
        for part in sorted((p for p in self._parts if p is not None), key=int) + [None]:
            if part is None:
                self._save()
                state = self._parts[None]
                if state.batch:  # rows collected outside any part (not in a run with parts)
                    self._current, self._part = state, None
                    self._load(state)
                    self._flush()
                continue
            self.select_part(part)
            if self._batch:
                self._flush()
        if self.factory.progress_table is None:
            return {}
        out = {}
        for part in self._owned_parts():
            state = self._parts.get(part) or _Part()
            out[f"part:{part}"] = {"committed": state.committed, "last_tick": state.last_tick,
                                   "sink": self.progress_key}
        return out

    def _resume(self, positions: dict[str, dict[str, Any]]) -> None:
        """Go on from a checkpoint (``{}``: from the start of this run): read this run's progress rows
        and skip, per part, the events committed since the checkpoint as the shard replays them."""
        self.begin_run()
        run_id = current_shard().run_id
        if not run_id:
            return
        parts = self._owned_parts()
        self._open_table()
        import sqlalchemy as sa

        factory = self.factory
        try:
            with factory.engine().connect() as conn:
                now = read_committed(conn, self._progress, run_id, self.progress_key, parts)
        except sa.exc.DBAPIError as exc:
            raise SinkError(f"{self.name}: cannot read the progress table {factory.progress_table} at "
                            f"{factory.masked_url}: {factory.describe_failure(exc)}", sink=self.name) from exc
        for part in parts:
            record = positions.get(f"part:{part}") or {}
            at = int(record.get("committed", 0))
            committed = now.get(part)
            if (committed or 0) < at:
                raise SinkError(
                    f"{self.name}: cannot resume part {part}: the checkpoint recorded {at} committed rows "
                    f"but the progress table {factory.progress_table} has {committed or 0} for run "
                    f"{run_id}; the table or the progress table was changed since (or this is another "
                    "database)",
                    sink=self.name)
            state = self._parts[part] = _Part(committed or 0, committed is not None, (committed or 0) - at)
            state.last_tick = record.get("last_tick")

    def _batch_progress(self, rows: int) -> BatchProgress | None:
        """What the batch of the current part does to its progress row (None: no progress kept)."""
        if self.factory.progress_table is None:
            return None
        shard = current_shard()
        if not shard.run_id:
            return None  # collect() called outside a run: plain batches
        if self._progress is None:
            self._open_table()
        part = self._part if self._part is not None else shard.first_part
        state = self._current
        last_tick = None
        if self._last_ts is not None:
            last_tick = (self._last_ts - shard.timestamp_start) // max(shard.tick_ms, 1)
        return BatchProgress(self._progress, shard.run_id, self.progress_key, part, state.committed,
                             state.committed + rows, last_tick, state.stored)

    @property
    def columns(self) -> tuple[str, ...]:
        """The table's column names, once ``prepare()`` or the first event checked the table."""
        return tuple(self._table.c.keys()) if self._table is not None else ()

    # pickling (PicklesAsDescription): pending rows, counts, the table and the engine stay behind
    def __repr__(self) -> str:
        return f"DbSink({self.table_name!r}, {self.factory.masked_url!r}, batch_size={self.batch_size})"

    # ------------------------------------------------------------------ the table

    def prepare(self) -> None:
        """Check the table on the driver, before any subject exists; create it if ``create_table=``;
        create the progress table when it is missing.

        One short connection (closed again). Raises ``ModelError`` naming a missing table and
        ``ConnectionError`` naming the URL (password masked) when the database cannot be reached.
        """
        import sqlalchemy as sa
        from sqlalchemy.pool import NullPool

        factory = self.factory
        engine = factory.new_engine(poolclass=NullPool)
        guard: Watchdog | None = None
        try:
            with engine.connect() as conn:
                guard = Watchdog(conn, factory.watchdog_s(8))
                try:
                    self._load_table(conn)
                finally:
                    guard.cancel()
        except sa.exc.DBAPIError as exc:
            raise ConnectionError(f"{self.name}: cannot reach or query the database at {factory.masked_url}: "
                                  f"{factory.describe_failure(exc, guard)}") from exc
        finally:
            engine.dispose()

    def _open_table(self) -> None:
        """First event in this process: check (or create) the table through the pooled engine."""
        import sqlalchemy as sa

        factory = self.factory
        guard: Watchdog | None = None
        try:
            if not self._acquired:
                factory._acquire()
                self._acquired = True
            progress = factory.progress_table is not None and bool(current_shard().run_id)
            if self._table is not None and (self._progress is not None or not progress):
                return
            with factory.engine().connect() as conn:
                guard = Watchdog(conn, factory.watchdog_s(8))
                try:
                    self._load_table(conn, progress=progress)
                finally:
                    guard.cancel()
        except sa.exc.DBAPIError as exc:
            raise SinkError(f"{self.name}: cannot reach or query the database at {factory.masked_url}: "
                            f"{factory.describe_failure(exc, guard)}", sink=self.name,
                            delivered=self._delivered, failed=self._failed) from exc

    def _load_table(self, conn: Connection, *, progress: bool = True) -> None:
        """Reflect the table (creating it with ``create_table=``) and, with ``progress``, the progress
        table (created when missing)."""
        import sqlalchemy as sa

        where = _where(self.table_name, self.schema)
        exists = sa.inspect(conn).has_table(self.table_name, schema=self.schema)
        conn.rollback()  # end the inspection's transaction
        if not exists:
            if self.create_table is None:
                raise ModelError(f"Table {where} does not exist (database {self.factory.masked_url}); "
                                 "create it first, or pass create_table= to DbSinkFactory.create()")
            try:
                self._create(conn)
                conn.commit()
            except sa.exc.DBAPIError:
                conn.rollback()
                if not sa.inspect(conn).has_table(self.table_name, schema=self.schema):
                    raise  # not a race with another process creating it: a real failure
        table = sa.Table(self.table_name, sa.MetaData(), schema=self.schema, autoload_with=conn)
        conn.rollback()
        self._table = table
        self._column_set = frozenset(table.c.keys())
        name = self.factory.progress_table
        if progress and name is not None and self._progress is None:
            try:
                self._progress = load_progress_table(conn, name, self.schema)
            except ValueError as exc:
                raise ModelError(f"{self.name}: {exc}") from None
            except sa.exc.DBAPIError as exc:
                if exc.connection_invalidated:
                    raise
                raise ModelError(
                    f"{self.name}: cannot create the progress table {_where(name, self.schema)} "
                    f"({self.factory.connection_error(exc)}); create it yourself or pass progress_table=None "
                    "to DbSinkFactory (the sink is then at-least-once after a recovery)") from exc

    def _create(self, conn: Connection) -> None:
        import sqlalchemy as sa

        creator = self.create_table
        if isinstance(creator, str):
            conn.exec_driver_sql(creator)
        elif isinstance(creator, sa.Table):
            creator.create(conn, checkfirst=True)
        else:
            creator(conn)

    # ------------------------------------------------------------------ collect

    def collect(self, timestamp: int, subject: Any, transition: Transition) -> None:
        if self._skip:  # replaying events a lost worker already committed
            self._skip -= 1
            self._skipped += 1
            return
        row = self.row_mapper_function(timestamp, subject, transition)
        if type(row) is not dict or row.keys() != self._keys:
            self._check_row(row)
        batch = self._batch
        batch.append(row)
        self._last_ts = timestamp
        if len(batch) >= self.batch_size:
            self._flush()

    def _check_row(self, row: Any) -> None:
        if self._table is None:
            self._open_table()
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
        """Rows this process inserted in this run, rows that failed, and (after a recovery or resume)
        ``skipped``: replayed events whose rows were already in the table."""
        stats = {"delivered": self._delivered, "failed": self._failed}
        if self._skipped:
            stats["skipped"] = self._skipped
        return stats

    def close(self) -> None:
        """Insert every part's last batch and release the connection pool. Idempotent."""
        try:
            self._save()
            for part, state in list(self._parts.items()):
                if state.batch:
                    if part is None:
                        self._current, self._part = state, None
                        self._load(state)
                    else:
                        self.select_part(part)
                    self._flush()
        finally:
            if self._acquired:
                self._acquired = False
                self.factory._release()

    # ------------------------------------------------------------------ writing

    def _flush(self) -> None:
        rows = self._batch
        self._batch = self._current.batch = []
        uniform = self._uniform
        self._uniform = True
        factory = self.factory
        groups = [(tuple(self._keys), rows)] if uniform else _group_by_keys(rows)
        guards: list[Watchdog] = []
        retried = ""
        progress: BatchProgress | None = None
        try:
            if not self._acquired:
                factory._acquire()
                self._acquired = True
            progress = self._batch_progress(len(rows))
            try:
                self._write(groups, guards, progress)
            except _Disconnected:
                factory.engine().dispose()  # every pooled connection may be dead (a restart)
                retried = " (retried once on a new connection after the first one was dropped)"
                self._write(groups, guards, progress)
            except _CommitLost:
                if progress is None or not self._commit_did_not_happen(progress):
                    raise
                factory.engine().dispose()
                retried = (" (retried once on a new connection: the progress row showed that the COMMIT "
                           "lost with the first one did not happen)")
                self._write(groups, guards, progress)
        except _CommittedAfterAll:
            pass
        except BaseException as exc:
            self._failed += len(rows)
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt and friends: counted, rolled back, passed on
            cause = exc.__cause__ if isinstance(exc, (_Disconnected, _CommitLost)) else exc
            outcome = ("was lost with the connection during COMMIT (the database may or may not have "
                       "stored it; counted as failed)") if isinstance(exc, _CommitLost) else "was rolled back"
            raise SinkError(
                f"{self.name}: a batch of {len(rows)} rows failed and {outcome}{retried} "
                f"({self._delivered} rows inserted, {self._failed} failed): "
                f"{type(cause).__name__}: {factory.describe_failure(cause, guards[-1] if guards else None)}",
                sink=self.name, delivered=self._delivered, failed=self._failed) from cause
        self._delivered += len(rows)
        if progress is not None:
            state = self._current
            state.committed, state.stored, state.last_tick = progress.new, True, progress.last_tick

    def _commit_did_not_happen(self, progress: BatchProgress) -> bool:
        """After a COMMIT lost with its connection: read the progress row on a new connection. True when
        it still says ``old`` (the batch was not stored: write it again); ``_CommittedAfterAll`` when it
        says ``new``; False when it cannot be read or says something else (the batch counts as failed)."""
        import sqlalchemy as sa

        factory = self.factory
        try:
            factory.engine().dispose()
            with factory.engine().connect() as conn:
                guard = Watchdog(conn, factory.watchdog_s(2))
                try:
                    value = committed_now(conn, progress)
                finally:
                    guard.cancel()
        except sa.exc.DBAPIError:
            return False
        if value == progress.new:
            raise _CommittedAfterAll()
        return value == (progress.old if progress.stored else None)

    def _write(self, groups: list[tuple[tuple[str, ...], list[dict]]], guards: list[Watchdog],
               progress: BatchProgress | None = None) -> None:
        """One transaction for the batch (and its progress row); ``_Disconnected`` when the connection
        died before COMMIT, ``_CommitLost`` when it died during COMMIT."""
        factory = self.factory
        with factory.engine().connect() as conn:
            statements = len(groups) + (1 if progress is not None else 0)
            guard = Watchdog(conn, factory.watchdog_s(statements + 2))  # statements, COMMIT, a grace
            guards.append(guard)
            try:
                transaction = conn.begin()
                try:
                    if factory.use_copy:
                        self._copy(conn, groups, progress)
                    else:
                        for _, group in groups:
                            conn.execute(self._table.insert(), group)
                        if progress is not None:
                            record_batch(conn, progress)
                except Exception as exc:
                    if not guard.fired and _is_disconnect(conn, exc):
                        conn.invalidate(exc)  # never back into the pool; the server rolled it back
                        raise _Disconnected() from exc
                    _rollback_quietly(transaction)
                    raise
                try:
                    transaction.commit()
                except Exception as exc:
                    if not guard.fired and _is_disconnect(conn, exc):
                        raise _CommitLost() from exc  # it may or may not have committed
                    raise
            finally:
                guard.cancel()

    def _copy(self, conn: Connection, groups: list[tuple[tuple[str, ...], list[dict]]],
              progress: BatchProgress | None = None) -> None:
        from psycopg import sql

        table = self._table
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
            if progress is not None:
                record_batch_psycopg(cursor, progress)


def _rollback_quietly(transaction: Any) -> None:
    """Roll back after a failed statement; the statement's error is the one worth reporting."""
    try:
        transaction.rollback()
    except Exception:  # noqa: BLE001 - e.g. the connection is gone; the server rolls back then
        pass


def _is_disconnect(conn: Connection, exc: BaseException) -> bool:
    """Whether ``exc`` says the connection is gone (SQLAlchemy's verdict, or the dialect's for a
    driver error raised outside SQLAlchemy, such as psycopg's COPY)."""
    import sqlalchemy as sa

    if isinstance(exc, sa.exc.DBAPIError):
        return bool(exc.connection_invalidated)
    dbapi = conn.dialect.loaded_dbapi
    if dbapi is None or not isinstance(exc, dbapi.Error):
        return False
    try:
        return bool(conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, None))
    except Exception:  # noqa: BLE001 - a dialect that cannot tell: not a disconnect
        return False


def _group_by_keys(rows: list[dict]) -> list[tuple[tuple[str, ...], list[dict]]]:
    """Rows grouped by their set of keys (first appearance order), one INSERT/COPY per group."""
    groups: dict[frozenset, tuple[tuple[str, ...], list[dict]]] = {}
    for row in rows:
        key = frozenset(row)
        if key not in groups:
            groups[key] = (tuple(row), [])
        groups[key][1].append(row)
    return list(groups.values())
