"""Streaming log readers: JSON Lines and CSV files (gzip too) and SQL queries, in column batches.

pyarrow parses the files on one thread, a block of ``BLOCK_BYTES`` at a time: JSON Lines are cut
into blocks at line ends and each block is parsed by ``read_json`` (one block in memory); CSV goes
through pyarrow's streaming ``open_csv`` (which reads a few blocks ahead; quoted fields may hold
line breaks). Memory therefore stays bounded whatever the log's length. Each batch gives the
subject, event and (optional) state columns as Arrow arrays and the time as int64 epoch
milliseconds. Input problems raise :class:`LogError` naming the file, the record and the field.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import json
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["LogError", "LogFields", "LogBatch", "read_log", "read_files", "read_query", "log_format",
           "BLOCK_BYTES", "SQL_ROWS"]

BLOCK_BYTES = 4 << 20  # bytes of input per parsed block (about 40,000 records of 100 bytes)
SQL_ROWS = 50_000  # rows fetched per round trip from a database


class LogError(ValueError):
    """The log cannot be read as asked (missing file or field, unparsable time, wrong format)."""


@dataclass(frozen=True)
class LogFields:
    """Which fields of a record hold the subject, the event, the time and (optionally) the new state."""

    subject: str
    event: str
    time: str
    state: str | None = None

    @property
    def names(self) -> list[str]:
        return [n for n in (self.subject, self.event, self.time, self.state) if n is not None]

    def roles(self) -> list[tuple[str, str]]:
        out = [("subject", self.subject), ("event", self.event), ("time", self.time)]
        return out + ([("state", self.state)] if self.state is not None else [])


@dataclass
class LogBatch:
    """One block of records: Arrow arrays for subject/event/state, numpy int64 ms for time."""

    subject: Any
    event: Any
    time_ms: np.ndarray
    state: Any | None
    source: str
    first_record: int  # 1-based number of this block's first record within ``source``

    def __len__(self) -> int:
        return len(self.time_ms)


def log_format(path: str) -> str:
    """``"jsonl"`` or ``"csv"`` from the file name (``.gz`` ignored), else from the first byte."""
    name = path.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith((".csv", ".tsv")):
        return "csv"
    head = _head(path, 4096).lstrip()
    if not head:
        return "jsonl"  # reported as empty later
    return "jsonl" if head[:1] == b"{" else "csv"


def _open_binary(path: str) -> Any:
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise LogError(f"{path}: no such file") from None
    except OSError as exc:
        raise LogError(f"{path}: cannot open: {exc.strerror or exc}") from None
    magic = fh.read(2)
    fh.seek(0)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=fh, mode="rb")
    return fh


def _arrow_stream(path: str) -> Any:
    """The file as an Arrow-native input stream (gunzipped when it starts with the gzip magic).

    Arrow reads a few blocks ahead on a background thread; an Arrow file (not a Python file
    object) keeps that thread away from the interpreter, also when a reader is abandoned on error.
    """
    import pyarrow as pa

    with _open_binary(path) as probe:
        gzipped = isinstance(probe, gzip.GzipFile)
    raw = pa.OSFile(path, "rb")
    return pa.CompressedInputStream(raw, "gzip") if gzipped else raw


def _head(path: str, size: int) -> bytes:
    with _open_binary(path) as fh:
        try:
            return fh.read(size)
        except (OSError, EOFError) as exc:
            raise LogError(f"{path}: cannot read: {exc}") from None


def read_files(paths: Sequence[str], fields: LogFields) -> Iterator[LogBatch]:
    """Every record of every file, in order, as batches."""
    for path in paths:
        if os.path.isdir(path):
            raise LogError(f"{path}: is a directory, expected a .jsonl or .csv file (optionally .gz)")
        if log_format(path) == "jsonl":
            yield from _read_jsonl(path, fields)
        else:
            yield from _read_csv(path, fields)


def read_log(paths: Sequence[str], fields: LogFields, *, db_url: str | None = None,
             query: str | None = None) -> Iterator[LogBatch]:
    """Batches from files, or from a SQL query when ``db_url`` and ``query`` are given."""
    if db_url is not None or query is not None:
        if not (db_url and query):
            raise LogError("a SQL source needs both --db-url and --query")
        if paths:
            raise LogError("give log files or --db-url/--query, not both")
        return read_query(db_url, query, fields)
    if not paths:
        raise LogError("no log given: name one or more .jsonl/.csv files (or --db-url and --query)")
    return read_files(paths, fields)


# -- JSON Lines --------------------------------------------------------------------------------------


def _first_json_record(path: str) -> dict | None:
    with _open_binary(path) as fh:
        try:
            for number, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise LogError(f"{path}: line {number} is not valid JSON ({exc.msg})") from None
                    if not isinstance(record, dict):
                        raise LogError(f"{path}: line {number} is not a JSON object")
                    return record
        except (OSError, EOFError) as exc:
            raise LogError(f"{path}: cannot read: {exc}") from None
    return None


def _json_type(path: str, value: Any, role: str, name: str) -> Any:
    import pyarrow as pa

    if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
        raise LogError(f"{path}: record 1: field {name!r} ({role}) must be a number or a string, got "
                       f"{json.dumps(value)}")
    if isinstance(value, int):
        return pa.int64()
    if isinstance(value, float):
        return pa.float64()
    return pa.string()


def _read_jsonl(path: str, fields: LogFields) -> Iterator[LogBatch]:
    import pyarrow as pa
    import pyarrow.json as pj

    first = _first_json_record(path)
    if first is None:
        raise LogError(f"{path}: the file is empty (no records)")
    for role, name in fields.roles():
        if name not in first:
            known = ", ".join(sorted(first)) or "none"
            raise LogError(f"{path}: record 1 has no field {name!r} for --{role} (its fields: {known})")
    types = {name: _json_type(path, first[name], role, name) for role, name in fields.roles()}
    schema = pa.schema(list(types.items()))
    parse = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    before = 0
    for chunk in _line_chunks(path):
        try:
            table = pj.read_json(pa.py_buffer(chunk), parse_options=parse,
                                 read_options=pj.ReadOptions(use_threads=False, block_size=len(chunk) + 1))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise _parse_error(path, "JSON", before, exc) from None
        if table.num_rows:
            yield _make_batch({name: table.column(name) for name in fields.names}, fields, path, before + 1)
            before += table.num_rows


def _line_chunks(path: str) -> Iterator[memoryview]:
    """The file (gunzipped) in pieces of about BLOCK_BYTES that end at a line end: one piece in memory.

    Each piece is a view of a fresh buffer (read into directly, nothing concatenated), valid until the
    next piece is asked for.
    """
    with _open_binary(path) as fh:
        rest = b""
        while True:
            buffer = bytearray(len(rest) + BLOCK_BYTES)
            buffer[:len(rest)] = rest
            try:
                count = fh.readinto(memoryview(buffer)[len(rest):])
            except (OSError, EOFError) as exc:
                raise LogError(f"{path}: cannot read: {exc}") from None
            end = len(rest) + count
            if count == 0:
                if rest.strip():
                    yield memoryview(buffer)[:end]
                return
            cut = buffer.rfind(b"\n", 0, end)
            if cut < 0:
                rest = bytes(buffer[:end])
                continue
            rest = bytes(buffer[cut + 1:end])
            yield memoryview(buffer)[:cut + 1]


def _arrow_text(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


_ROW = re.compile(r"\bin row (\d+)")


def _parse_error(path: str, what: str, before: int, exc: BaseException) -> LogError:
    """A LogError for a block that failed to parse, with the record number when Arrow gives the row."""
    text = _arrow_text(exc)
    row = _ROW.search(text)
    where = f"record {before + int(row.group(1)) + 1:,}" if row else f"a record after record {before:,}"
    hint = (" (a field must keep one type: all numbers or all strings)" if "changed from" in text
            else " (each line must be one JSON object)" if what == "JSON" else "")
    return LogError(f"{path}: cannot parse the {what} records at {where}: {text}{hint}")


def _batches(reader: Any, path: str, fields: LogFields, what: str) -> Iterator[LogBatch]:
    import pyarrow as pa

    before = 0
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise _parse_error(path, what, before, exc) from None
        if batch.num_rows == 0:
            continue
        yield _make_batch({name: batch.column(name) for name in fields.names}, fields, path, before + 1)
        before += batch.num_rows


# -- CSV ---------------------------------------------------------------------------------------------


def _read_csv(path: str, fields: LogFields) -> Iterator[LogBatch]:
    import csv

    import pyarrow as pa
    import pyarrow.csv as pcsv

    head = _head(path, 1 << 16)
    if not head.strip():
        raise LogError(f"{path}: the file is empty (no header, no records)")
    delimiter = "\t" if path.lower().removesuffix(".gz").endswith(".tsv") else ","
    header_line = head.splitlines()[0].decode("utf-8", errors="replace")
    header = next(csv.reader([header_line], delimiter=delimiter))
    for role, name in fields.roles():
        if name not in header:
            raise LogError(f"{path}: the CSV header has no column {name!r} for --{role} "
                           f"(its columns: {', '.join(header)})")
    text_columns = {name: pa.string() for role, name in fields.roles() if role != "time"}
    stream = _arrow_stream(path)
    try:
        reader = pcsv.open_csv(
            stream, read_options=pcsv.ReadOptions(use_threads=False, block_size=BLOCK_BYTES),
            parse_options=pcsv.ParseOptions(delimiter=delimiter),
            convert_options=pcsv.ConvertOptions(include_columns=list(dict.fromkeys(fields.names)),
                                                column_types=text_columns, strings_can_be_null=False))
        empty = True
        for batch in _batches(reader, path, fields, "CSV"):
            empty = False
            yield batch
        if empty:
            raise LogError(f"{path}: the file has a header but no records")
    except pa.ArrowInvalid as exc:  # in the first block
        raise _parse_error(path, "CSV", 0, exc) from None
    finally:
        stream.close()


# -- SQL ---------------------------------------------------------------------------------------------


def read_query(db_url: str, query: str, fields: LogFields, rows: int = SQL_ROWS) -> Iterator[LogBatch]:
    """The rows of ``query`` (streamed with server-side cursors where the driver has them)."""
    import sqlalchemy as sa

    from ..sinks._db_url import masked_url, normalize_db_url

    shown = masked_url(db_url)
    try:
        engine = sa.create_engine(normalize_db_url(db_url))
    except Exception as exc:
        raise LogError(f"--db-url {shown}: not a usable database URL ({type(exc).__name__}: {exc})") from None
    source = f"query on {shown}"
    try:
        with engine.connect() as conn:
            try:
                result = conn.execution_options(stream_results=True, yield_per=rows).execute(sa.text(query))
            except sa.exc.DBAPIError as exc:
                raise LogError(f"{source}: the query failed: {_arrow_text(exc.orig or exc)}") from None
            columns = list(result.keys())
            for role, name in fields.roles():
                if name not in columns:
                    raise LogError(f"{source}: the query has no column {name!r} for --{role} "
                                   f"(its columns: {', '.join(columns)})")
            positions = [columns.index(name) for name in fields.names]
            before = 0
            empty = True
            for part in result.partitions(rows):
                empty = False
                arrays = {}
                for name, position in zip(fields.names, positions):
                    arrays[name] = _sql_column([row[position] for row in part], name, source, before)
                yield _make_batch(arrays, fields, source, before + 1)
                before += len(part)
            if empty:
                raise LogError(f"{source}: the query returned no rows")
    except sa.exc.DBAPIError as exc:
        raise LogError(f"{source}: {_arrow_text(exc.orig or exc)}") from None
    finally:
        engine.dispose()


def _sql_column(values: list, name: str, source: str, before: int) -> Any:
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        kinds = sorted({type(v).__name__ for v in values})
        raise LogError(f"{source}: column {name!r} mixes value types {kinds} in rows {before + 1:,}.."
                       f"{before + len(values):,}") from None


# -- columns -----------------------------------------------------------------------------------------


def _make_batch(columns: dict[str, Any], fields: LogFields, source: str, first_record: int) -> LogBatch:
    import pyarrow as pa

    for role, name in fields.roles():
        column = columns[name]
        if isinstance(column, pa.ChunkedArray):
            column = columns[name] = column.combine_chunks()
        if column.null_count:
            index = int(np_first(column.is_null()))
            raise LogError(f"{source}: record {first_record + index:,} has no value for field {name!r} "
                           f"(--{role})")
    time_ms = to_epoch_ms(columns[fields.time], source, first_record, fields.time)
    return LogBatch(columns[fields.subject], columns[fields.event], time_ms,
                    columns[fields.state] if fields.state is not None else None, source, first_record)


def np_first(mask: Any) -> int:
    """Index of the first true value of a boolean Arrow array."""
    return int(np.flatnonzero(mask.to_numpy(zero_copy_only=False))[0])


_UNIT_MS = {"s": (1000, 1), "ms": (1, 1), "us": (1, 1000), "ns": (1, 1_000_000)}


def to_epoch_ms(column: Any, source: str, first_record: int, name: str) -> np.ndarray:
    """Epoch milliseconds (int64) from integers, floats, timestamps or ISO-8601 / digit strings."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_integer(kind):
        return column.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    if pa.types.is_floating(kind):
        values = column.to_numpy(zero_copy_only=False)
        bad = ~np.isfinite(values)
        if bad.any():
            index = int(np.flatnonzero(bad)[0])
            raise LogError(f"{source}: record {first_record + index:,}: field {name!r} is {values[index]}, "
                           "not a time")
        return np.floor(values).astype(np.int64)
    if pa.types.is_timestamp(kind):
        multiply, divide = _UNIT_MS[kind.unit]
        raw = pc.cast(column, pa.int64()).to_numpy(zero_copy_only=False)
        return raw * multiply if divide == 1 else np.floor_divide(raw, divide)
    if pa.types.is_date(kind):
        return _timestamp_ms(pc.cast(column, pa.timestamp("ms")))
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _strings_ms(column, source, first_record, name)
    raise LogError(f"{source}: field {name!r} has values of type {kind}; expected epoch milliseconds or "
                   "ISO-8601 text")


def _timestamp_ms(column: Any) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.cast(column, pa.int64()).to_numpy(zero_copy_only=False)


def _strings_ms(column: Any, source: str, first_record: int, name: str) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    for target in (pa.int64(), pa.timestamp("ns", tz="UTC"), pa.timestamp("ns")):
        try:
            converted = pc.cast(column, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        if target == pa.int64():
            return converted.to_numpy(zero_copy_only=False)
        return np.floor_divide(pc.cast(converted, pa.int64()).to_numpy(zero_copy_only=False), 1_000_000)
    return _strings_ms_slowly(column.to_pylist(), source, first_record, name)


def _strings_ms_slowly(values: list[str], source: str, first_record: int, name: str) -> np.ndarray:
    """Value by value (mixed forms in one block); names the first value that is not a time."""
    out = np.empty(len(values), dtype=np.int64)
    for i, text in enumerate(values):
        try:
            out[i] = parse_time_text(text)
        except ValueError:
            raise LogError(f"{source}: record {first_record + i:,}: cannot parse {name!r} value {text!r} as "
                           "a time (expected epoch milliseconds or ISO-8601 such as 2024-01-31T12:00:00Z)") \
                from None
    return out


def parse_time_text(text: str) -> int:
    """Epoch ms from digits or ISO-8601 (naive = UTC); ValueError otherwise."""
    stripped = text.strip()
    if stripped.lstrip("-").isdigit():
        return int(stripped)
    moment = _dt.datetime.fromisoformat(stripped.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    delta = moment - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
    return math.floor(delta / _dt.timedelta(milliseconds=1))
