"""The progress table of exactly-once SQL sinks: how many rows each (run, sink, part) has committed.

Every batch of a part is committed in one transaction together with its progress row, so the row
always says exactly how many of the part's events are in the table. A worker that takes over a lost
shard (or a run resumed from a checkpoint) reads the row, compares it with the count the checkpoint
recorded, and skips that many events while it replays: nothing is lost or written twice.

The row is updated with a compare-and-set (``... WHERE committed = <what this writer last wrote>``),
so a second writer on the same row (two sinks sharing a progress key, or a stale worker of the same
run that is still alive) makes the batch fail and roll back instead of corrupting the count.
Portable SQL only (INSERT for a part's first batch, UPDATE after): PostgreSQL, MySQL/MariaDB, SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy import Table
    from sqlalchemy.engine import Connection

__all__ = ["DEFAULT_PROGRESS_TABLE", "PROGRESS_COLUMNS", "ProgressConflict", "BatchProgress", "ProgressTable",
           "define_progress_table", "load_progress_table", "read_committed", "record_batch",
           "record_batch_psycopg", "committed_now"]

DEFAULT_PROGRESS_TABLE = "doge_dist_progress"
PROGRESS_COLUMNS = ("run_id", "sink", "part", "committed", "last_tick")


class ProgressConflict(Exception):
    """The progress row was not what this writer left it at: another writer records the same key."""


class ProgressTable:
    """The progress table with its two statements built once (a batch only binds parameters)."""

    def __init__(self, table: Table) -> None:
        import sqlalchemy as sa

        c = table.c
        self.table = table
        self.insert = table.insert().values(
            run_id=sa.bindparam("p_run"), sink=sa.bindparam("p_sink"), part=sa.bindparam("p_part"),
            committed=sa.bindparam("p_new"), last_tick=sa.bindparam("p_tick"))
        self.update = (table.update()
                       .where(c.run_id == sa.bindparam("p_run"), c.sink == sa.bindparam("p_sink"),
                              c.part == sa.bindparam("p_part"), c.committed == sa.bindparam("p_old"))
                       .values(committed=sa.bindparam("p_new"), last_tick=sa.bindparam("p_tick")))

        self._psycopg: tuple[Any, Any] | None = None

    @property
    def c(self) -> Any:
        return self.table.c

    def psycopg_statements(self) -> tuple[Any, Any]:
        """(insert, update) as psycopg ``sql`` objects, for the COPY path's own cursor."""
        if self._psycopg is None:
            from psycopg import sql

            names = (self.table.schema, self.table.name) if self.table.schema else (self.table.name,)
            target = sql.Identifier(*names)
            self._psycopg = (
                sql.SQL("INSERT INTO {} (run_id, sink, part, committed, last_tick) "
                        "VALUES (%s, %s, %s, %s, %s)").format(target),
                sql.SQL("UPDATE {} SET committed = %s, last_tick = %s "
                        "WHERE run_id = %s AND sink = %s AND part = %s AND committed = %s").format(target))
        return self._psycopg


@dataclass(frozen=True)
class BatchProgress:
    """What one batch does to its part's progress row: ``committed`` goes from ``old`` to ``new``.
    ``stored``: the row exists already (UPDATE); otherwise this batch creates it (INSERT)."""

    table: ProgressTable
    run_id: str
    sink: str
    part: int
    old: int
    new: int
    last_tick: int | None
    stored: bool

    def describe(self) -> str:
        return f"run {self.run_id}, sink {self.sink!r}, part {self.part}"


def define_progress_table(name: str, schema: str | None) -> Table:
    import sqlalchemy as sa

    return sa.Table(
        name, sa.MetaData(),
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("sink", sa.String(200), primary_key=True),
        sa.Column("part", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("committed", sa.BigInteger, nullable=False),
        sa.Column("last_tick", sa.BigInteger, nullable=True),
        schema=schema,
    )


def load_progress_table(conn: Connection, name: str, schema: str | None) -> ProgressTable:
    """The progress table, created when missing (another process creating it at the same moment is
    fine); ``ValueError`` naming the table when it exists without the expected columns."""
    import sqlalchemy as sa

    table = define_progress_table(name, schema)
    exists = sa.inspect(conn).has_table(name, schema=schema)
    conn.rollback()
    if not exists:
        try:
            table.create(conn, checkfirst=True)
            conn.commit()
        except sa.exc.DBAPIError:
            conn.rollback()
            if not sa.inspect(conn).has_table(name, schema=schema):
                raise
    columns = {c["name"] for c in sa.inspect(conn).get_columns(name, schema=schema)}
    conn.rollback()
    missing = [c for c in PROGRESS_COLUMNS if c not in columns]
    if missing:
        where = f"{schema}.{name}" if schema else name
        raise ValueError(f"progress table {where} exists but lacks column(s) {missing}; it needs "
                         f"{list(PROGRESS_COLUMNS)} (drop it to let the sink create it, or choose "
                         "another progress_table=)")
    return ProgressTable(table)


def read_committed(conn: Connection, table: ProgressTable, run_id: str, sink: str,
                   parts: list[int]) -> dict[int, int]:
    """``{part: committed}`` of the rows that exist, read under a row lock where the database has one
    (``FOR UPDATE``: a commit of a worker that just died is waited for, never read half-way)."""
    import sqlalchemy as sa

    c = table.c
    query = (sa.select(c.part, c.committed)
             .where(c.run_id == run_id, c.sink == sink, c.part.in_(parts)).with_for_update())
    with conn.begin():
        return {int(part): int(committed) for part, committed in conn.execute(query)}


def committed_now(conn: Connection, progress: BatchProgress) -> int | None:
    """The part's committed count as stored now (None: no row)."""
    import sqlalchemy as sa

    c = progress.table.c
    query = sa.select(c.committed).where(c.run_id == progress.run_id, c.sink == progress.sink,
                                         c.part == progress.part)
    with conn.begin():
        value = conn.execute(query).scalar_one_or_none()
    return None if value is None else int(value)


def _already_there(progress: BatchProgress) -> str:
    return (f"the progress row ({progress.describe()}) already exists although this writer has not "
            "written it: another sink of this run records progress under the same key (two sinks "
            "writing one table need distinct progress_key=), or a stale worker of this run is still "
            "writing")


def _moved(progress: BatchProgress) -> str:
    return (f"the progress row ({progress.describe()}) no longer says {progress.old} committed rows: "
            "another writer changed it (two sinks writing one table need distinct progress_key=, or a "
            "stale worker of this run is still writing)")


def record_batch_psycopg(cursor: Any, progress: BatchProgress) -> None:
    """``record_batch`` on a psycopg 3 cursor of the batch's transaction (the COPY path): the same
    statements without SQLAlchemy's per-execution work."""
    from psycopg import errors

    insert, update = progress.table.psycopg_statements()
    if not progress.stored:
        try:
            cursor.execute(insert, (progress.run_id, progress.sink, progress.part, progress.new,
                                    progress.last_tick))
        except errors.UniqueViolation as exc:
            raise ProgressConflict(_already_there(progress)) from exc
        return
    cursor.execute(update, (progress.new, progress.last_tick, progress.run_id, progress.sink, progress.part,
                            progress.old))
    if cursor.rowcount != 1:
        raise ProgressConflict(_moved(progress))


def record_batch(conn: Connection, progress: BatchProgress) -> None:
    """Inside the batch's transaction: move the part's row from ``old`` to ``new`` committed rows;
    ``ProgressConflict`` when the row is not where this writer left it (the caller rolls back)."""
    import sqlalchemy as sa

    statements = progress.table
    params = {"p_run": progress.run_id, "p_sink": progress.sink, "p_part": progress.part,
              "p_new": progress.new, "p_tick": progress.last_tick}
    if not progress.stored:
        try:  # a conflict fails the statement; the caller rolls the whole batch back
            conn.execute(statements.insert, params)
        except sa.exc.IntegrityError as exc:
            raise ProgressConflict(_already_there(progress)) from exc
        return
    params["p_old"] = progress.old
    result = conn.execute(statements.update, params)
    if result.rowcount != 1:
        raise ProgressConflict(_moved(progress))
