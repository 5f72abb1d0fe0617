"""SQL database sink (SQLAlchemy 2 Core): batched inserts, one transaction per batch.

Works with PostgreSQL (``postgresql+psycopg://``), SQLite and MySQL/MariaDB (``mysql+pymysql://``).
On PostgreSQL with psycopg 3, batches can go through ``COPY ... FROM STDIN`` instead of
multi-row INSERTs (``copy=``). This module imports SQLAlchemy lazily: ``import doge_dist`` never does.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._errors import ModelError, SinkError
from .._model import EventSink, Transition
from ._pickling import PicklesAsDescription

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy.engine import Connection, Engine

__all__ = ["DbSinkFactory", "DbSink"]

RowMapper = Callable[[int, Any, Transition], dict]

_COPY_CHOICES = (True, False, "auto")


def _masked(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a parseable URL: say so without echoing anything secret
        return "<unparseable database URL>"


class DbSinkFactory(PicklesAsDescription):
    """Creates :class:`DbSink` instances writing to tables of one database.

    ``DbSinkFactory(db_url, copy="auto", connect_timeout=10, **engine_options)``; ``engine_options``
    go to :func:`sqlalchemy.create_engine`. The factory is a picklable description: its Engine is
    created lazily, one per factory per process, and disposed when the last of its sinks closes.

    ``copy``: ``True`` writes batches with PostgreSQL ``COPY`` (psycopg 3 only), ``False`` with
    multi-row INSERTs (SQLAlchemy's insertmanyvalues / the driver's executemany), ``"auto"``
    uses COPY where it is available (postgresql+psycopg), which measured faster (benchmarks/sinks.py).
    """

    def __init__(self, db_url: Any, *, copy: bool | str = "auto", connect_timeout: float | None = 10,
                 **engine_options: Any) -> None:
        from sqlalchemy.engine import URL, make_url

        if isinstance(db_url, URL):
            db_url = db_url.render_as_string(hide_password=False)
        if not isinstance(db_url, str) or not db_url:
            raise ModelError(f"DbSinkFactory: db_url must be a database URL string, got {db_url!r}")
        try:
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
        self.engine_options = engine_options
        self._reset()

    def _reset(self) -> None:
        self._engine: Engine | None = None
        self._pid: int | None = None
        self._users = 0

    def __repr__(self) -> str:
        return f"DbSinkFactory({self.masked_url!r}, copy={self.copy!r})"

    # ------------------------------------------------------------------ engines

    def _new_engine(self, **overrides: Any) -> Engine:
        import sqlalchemy as sa

        options = dict(self.engine_options)
        if self.connect_timeout is not None and self.backend in ("postgresql", "mysql", "mariadb"):
            connect_args = dict(options.get("connect_args") or {})
            timeout = self.connect_timeout
            # libpq takes whole seconds (minimum 2); pymysql takes seconds
            connect_args.setdefault("connect_timeout",
                                    max(2, int(round(timeout))) if self.backend == "postgresql" else timeout)
            options["connect_args"] = connect_args
        options.update(overrides)
        try:
            return sa.create_engine(self.db_url, **options)
        except ImportError as exc:
            raise ModelError(f"DbSinkFactory: the database driver for {self.masked_url} is not installed "
                             f"({exc}); e.g. pip install 'doge-dist[postgres]' or 'doge-dist[mysql]'"
                             ) from exc

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
        try:
            with engine.connect() as conn:
                inspector = sa.inspect(conn)
                if not inspector.has_table(table_name, schema=schema):
                    where = f"{schema}.{table_name}" if schema else table_name
                    raise ModelError(f"Table {where} does not exist (database {self.masked_url})")
                return tuple(col["name"] for col in inspector.get_columns(table_name, schema=schema))
        except sa.exc.DBAPIError as exc:
            raise ConnectionError(f"DbSinkFactory: cannot reach or query the database at {self.masked_url}: "
                                  f"{self.connection_error(exc)}") from exc
        finally:
            engine.dispose()


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
        try:
            if not self._acquired:
                self.factory._acquire()
                self._acquired = True
            with self.factory.engine().begin() as conn:
                groups = [(tuple(self._keys), rows)] if uniform else _group_by_keys(rows)
                if self.factory.use_copy:
                    self._copy(conn, groups)
                else:
                    table = self._get_table(conn)
                    for _, group in groups:
                        conn.execute(table.insert(), group)
        except BaseException as exc:
            self._failed += len(rows)
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt and friends: counted, rolled back, passed on
            raise SinkError(
                f"{self.name}: a batch of {len(rows)} rows failed and was rolled back "
                f"({self._delivered} rows inserted, {self._failed} failed): "
                f"{type(exc).__name__}: {self.factory.connection_error(exc)}",
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
