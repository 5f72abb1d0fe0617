"""File sinks: JSON Lines and CSV, one file per part (or per shard), optionally gzip-compressed.

For people without servers. The path may contain ``{part}`` (or ``{part:03d}``) with ``parts=P``:
the population is split into P fixed index ranges and each part's file holds its subjects' events
in (tick, subject) order, so the files and their bytes are the same whatever the number of workers
(each worker writes whole parts). ``{shard}`` (one file per worker) also works. Files are opened
lazily in the process that writes; two open sinks never share a file in one process.
Each run starts the files afresh (``begin_run()``); records go to a file in chunks of whole records
(``_record_file``), so a full disk never leaves a partial record behind. At a checkpoint every file
is written out and its length recorded; ``resume()`` cuts a file back to that length and appends,
so a run recovered or continued from a checkpoint writes exactly the bytes of an undisturbed run.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import decimal
import enum
import errno
import json
import keyword
import operator
import os
import re
import threading
import uuid
import weakref
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .._context import current_shard
from .._errors import ModelError, SinkError
from ..model._vocabulary import EventSink, Transition
from ._pickling import PicklesAsDescription
from ._record_file import RecordFile, UnencodablePart

__all__ = ["JsonLinesSink", "CsvSink", "default_row"]

RowMapper = Callable[[int, Any, Transition], dict]

_SHARD_FIELD = re.compile(r"\{shard(?::([^{}]*))?\}")
_PART_FIELD = re.compile(r"\{part(?::([^{}]*))?\}")

# resolved absolute path -> the sink that has it open in this process (weak: a sink dropped
# without close() lets go of its path when it is collected, as does its file)
_OPEN_PATHS: dict[str, weakref.ref] = {}
_OPEN_PATHS_LOCK = threading.Lock()


def _claim_path(path: str, sink: _FileSink) -> str:
    """Register ``sink`` as the writer of ``path`` in this process; ModelError if another open sink is."""
    key = os.path.realpath(path)
    with _OPEN_PATHS_LOCK:
        ref = _OPEN_PATHS.get(key)
        holder = ref() if ref is not None else None
        if holder is not None and holder is not sink:
            raise ModelError(
                f"{sink.name}: {key} is already open for writing by another sink in this process "
                f"({holder.name}); two sinks on one file would truncate and "
                "interleave each other's lines: give each sink its own path, or use one sink instance "
                "on every transition that should write there")
        _OPEN_PATHS[key] = weakref.ref(sink)
    return key


def _release_path(key: str, sink: _FileSink) -> None:
    with _OPEN_PATHS_LOCK:
        ref = _OPEN_PATHS.get(key)
        if ref is not None and ref() in (sink, None):
            del _OPEN_PATHS[key]


# --------------------------------------------------------------------------- default row

_EVENT_FIELDS = ("timestamp", "trigger", "from_state", "to_state")


def _slot_names(cls: type) -> list[str]:
    names: list[str] = []
    for klass in reversed(cls.__mro__):
        slots = klass.__dict__.get("__slots__", ())
        for name in [slots] if isinstance(slots, str) else slots:
            if name not in ("__dict__", "__weakref__") and name not in names:
                names.append(name)
    return names


def _vars_row(timestamp: int, subject: Any, transition: Transition) -> dict:
    attrs = subject if isinstance(subject, dict) else vars(subject)
    row = {"timestamp": timestamp, "trigger": transition.trigger, "from_state": transition.from_state,
           "to_state": transition.to_state, **attrs}
    if len(row) != 4 + len(attrs):  # an attribute shadowed an event field: the event's value wins
        row.update(timestamp=timestamp, trigger=transition.trigger, from_state=transition.from_state,
                   to_state=transition.to_state)
    return row


def _plain_row(timestamp: int, subject: Any, transition: Transition) -> dict:
    return {"timestamp": timestamp, "trigger": transition.trigger, "from_state": transition.from_state,
            "to_state": transition.to_state, "subject": subject}


def _build_row_function(subject: Any) -> RowMapper:
    """The default row for subjects of this class; slotted classes get a generated function."""
    if isinstance(subject, dict) or hasattr(subject, "__dict__"):
        return _vars_row
    cls = type(subject)
    if dataclasses.is_dataclass(cls):
        names = [f.name for f in dataclasses.fields(cls)]
    elif hasattr(cls, "__slots__"):
        names = _slot_names(cls)
    else:
        return _plain_row
    names = [n for n in names if n not in _EVENT_FIELDS]  # the event's own fields win
    if not all(n.isidentifier() and not keyword.iskeyword(n) for n in names):
        getters = [(n, operator.attrgetter(n)) for n in names]

        def row(timestamp: int, subject: Any, transition: Transition) -> dict:
            out = {"timestamp": timestamp, "trigger": transition.trigger,
                   "from_state": transition.from_state, "to_state": transition.to_state}
            for name, get in getters:
                out[name] = get(subject)
            return out

        return row
    body = "".join(f", {n!r}: s.{n}" for n in names)
    source = ("def row(ts, s, t):\n"
              "    return {'timestamp': ts, 'trigger': t.trigger, 'from_state': t.from_state, "
              f"'to_state': t.to_state{body}}}\n")
    namespace: dict[str, Any] = {}
    exec(source, namespace)  # names are checked identifiers: this is attribute access only
    return namespace["row"]


_ROW_FUNCTIONS: dict[type, RowMapper] = {}


def _row_function(subject: Any) -> RowMapper:
    cls = type(subject)
    fn = _ROW_FUNCTIONS.get(cls)
    if fn is None:
        fn = _ROW_FUNCTIONS[cls] = _build_row_function(subject)
    return fn


def default_row(timestamp: int, subject: Any, transition: Transition) -> dict:
    """``timestamp``, ``trigger``, ``from_state``, ``to_state``, then the subject's attributes.

    Attributes come from ``vars(subject)`` (a dict subject is used as is), or for slotted classes
    and slotted dataclasses from their fields (what ``dataclasses.asdict`` gives for flat fields;
    nested dataclasses are expanded by the JSON encoder). A subject without attributes becomes
    ``"subject"``. The event's own four fields win over same-named attributes.
    """
    return _row_function(subject)(timestamp, subject, transition)


# --------------------------------------------------------------------------- JSON encoding


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"JsonLinesSink cannot encode a value of type {type(value).__name__} ({value!r}); "
                    "pass mapper= returning JSON-friendly values")


def _make_encoder() -> Callable[[Any, int], list[str]]:
    """A compact JSON encoder (ASCII, like ``json.dumps``) built once, returning a list of chunks.

    The C encoder is made once per sink instead of once per ``json.dumps`` call.
    """
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if c_make_encoder is None:  # pragma: no cover - interpreters without the C accelerator
        encode = json.JSONEncoder(separators=(",", ":"), default=_json_default).encode
        return lambda value, _level: [encode(value)]
    return c_make_encoder(None, _json_default, json.encoder.encode_basestring_ascii, None, ":", ",",
                          False, False, True)


# --------------------------------------------------------------------------- base


class _FileSink(PicklesAsDescription, EventSink):
    """Shared parts: path template, lazy open, gzip, counts, write errors, pickling."""

    _kind = "file"
    _parts_per_record = 1  # text parts a record adds to the pending chunk

    def __init__(self, path: str | os.PathLike, mapper: RowMapper | None = None, *,
                 compress: str | None = None, compresslevel: int = 6, encoding: str = "utf-8",
                 parts: int | None = None) -> None:
        self.path = os.fspath(path)
        if not self.path:
            raise ModelError(f"{type(self).__name__}: path must not be empty")
        self.parts = _check_parts(type(self).__name__, self.path, parts)
        if mapper is not None and not callable(mapper):
            raise ModelError(f"{type(self).__name__}: mapper must be callable, got {mapper!r}")
        if compress not in (None, "gzip"):
            raise ModelError(f"{type(self).__name__}: compress must be None or 'gzip', got {compress!r}")
        self.mapper = mapper
        # a relative path means relative to where the sink was made, also in worker processes
        self.base_dir = None if os.path.isabs(self.path) else os.getcwd()
        self.compress = "gzip" if compress == "gzip" or self.path.endswith(".gz") else None
        self.compresslevel = compresslevel
        self.encoding = encoding
        self.name = f"{self._kind}:{self.path}"
        self._reset()

    def _reset(self) -> None:
        self._out: RecordFile | None = None
        self._parts: list[str] = []  # pending parts (the open file's list), appended to by collect()
        self._limit = 0  # collect() calls _chunk_full() when len(_parts) reaches it (0: not open)
        self._claimed: str | None = None  # the resolved path this instance holds while its file is open
        self._part: int | None = None  # the part whose file is current ({part} paths)
        self._other_parts: dict[int, dict[str, Any]] = {}  # the file state of the other parts
        self._opened_path: str | None = None
        self.begin_run()

    def begin_run(self) -> None:
        """Each run starts afresh: zero counts, and each file is truncated when it is next opened
        (in one process exactly as in a Ray worker)."""
        for part in [p for p, state in self._other_parts.items() if state["_out"] is not None]:
            self.select_part(part)  # files of other parts still open from a run that was not closed
            self._finish_file()
        if self._out is not None:  # still open from a run that was not closed
            self._finish_file()
        self._part = None
        self._other_parts = {}
        self._opened_path = None  # set once this instance opened the file in this run
        self._failure: str | None = None  # why writing stopped (the file was cut back and closed)
        self._delivered = 0  # records written to the file
        self._failed = 0  # records that could not be written

    # -- parts ---------------------------------------------------------------------------------

    @property
    def uses_parts(self) -> bool:
        """True for a ``{part}`` path: the engine tells the sink each event's part (``select_part``)."""
        return self.parts is not None

    #: the attributes that belong to one file (swapped when the current part changes)
    _file_state: tuple[str, ...] = ("_out", "_parts", "_limit", "_claimed", "_opened_path")

    def select_part(self, part: int) -> None:
        """Make ``part``'s file the current one (the engine calls this before the part's events)."""
        if part == self._part:
            return
        if self._part is not None:
            self._other_parts[self._part] = {name: getattr(self, name) for name in self._file_state}
        state = self._other_parts.pop(part, None)
        if state is None:
            state = self._fresh_file_state()
        for name, value in state.items():
            setattr(self, name, value)
        self._part = part

    def _fresh_file_state(self) -> dict[str, Any]:
        """The state of a part's file that is not open yet (subclasses add theirs)."""
        return {"_out": None, "_parts": [], "_limit": 0, "_claimed": None, "_opened_path": None}

    # pickling (PicklesAsDescription): the open file, pending records and counts stay with the original
    def check_plan(self, shard_count: int) -> None:
        """Refuse, before the run, a plan where several shards would write one file."""
        if self.parts is not None:
            if shard_count > self.parts:
                raise ModelError(f"{self.name}: {shard_count} workers but parts={self.parts}: each worker "
                                 f"writes whole parts, so use at most {self.parts} workers (or more parts)")
            return
        if shard_count > 1 and _SHARD_FIELD.search(self.path) is None:
            raise ModelError(
                f"{self.name}: the path has no {{shard}} placeholder but the run has {shard_count} shards; "
                "two processes must never append to one file: add {shard} to the path, e.g. "
                f"{_suggest(self.path)!r}")

    def resolved_path(self) -> str:
        """The path for the current shard (``{shard}`` replaced); errors if several shards would share it."""
        shard = current_shard()
        path = self.path if self.base_dir is None else os.path.join(self.base_dir, self.path)
        if self.parts is not None:
            part = self._part if self._part is not None else shard.first_part
            return _PART_FIELD.sub(lambda m: format(part, m.group(1) or ""), path)
        if _SHARD_FIELD.search(self.path) is None:
            self.check_plan(shard.count)
            return path
        return _SHARD_FIELD.sub(lambda m: format(shard.index, m.group(1) or ""), path)

    def _open(self) -> RecordFile:
        if self._failure is not None:
            self._failed += 1  # the record being collected
            raise SinkError(f"{self.name}: {self._failure} ({self._delivered} records written, "
                            f"{self._failed} failed)", sink=self.name, delivered=self._delivered,
                            failed=self._failed)
        path = self.resolved_path()
        # first open in a run truncates; reopening after close() appends (nothing is lost)
        appending = self._opened_path == path
        claimed = _claim_path(path, self)  # before opening: a refused sink truncates nothing
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            out = RecordFile(path, append=appending, encoding=self.encoding,
                             gzip_level=self.compresslevel if self.compress == "gzip" else None,
                             parts=self._parts)
        except OSError as exc:
            _release_path(claimed, self)
            raise SinkError(f"{self.name}: cannot open {path}: {_describe(exc)}", sink=self.name,
                            delivered=self._delivered, failed=self._failed) from exc
        except BaseException:
            _release_path(claimed, self)
            raise
        self._claimed = claimed
        self._opened_path = path
        self._out = out
        self._limit = out.limit
        self._on_open(out, appending=appending)
        return out

    def _chunk_full(self) -> None:
        """collect() reached ``_limit``: open the file (first record) or write the chunk."""
        if self._out is None:
            try:
                self._open()
            except BaseException:
                self._parts.clear()  # the record that was to open the file is not written
                raise
        if len(self._parts) >= self._out.limit:
            self._write()

    def _on_open(self, out: RecordFile, appending: bool) -> None:
        """Hook for subclasses (CSV header)."""

    def _write(self) -> None:
        """Write the pending records as one chunk; a write error cuts the file back to its whole
        records, closes it and raises ``SinkError`` naming the sink and the path, with counts."""
        out = self._out
        assert out is not None
        extra = out.extra
        records = (len(out.parts) - extra) // self._parts_per_record
        try:
            out.write()
        except UnencodablePart as exc:
            written = max(0, exc.index - extra) // self._parts_per_record
            self._delivered += written
            self._stop(records - written, f"record {self._delivered + 1} cannot be encoded as "
                                          f"{self.encoding}: {exc.__cause__}", exc.__cause__)
        except OSError as exc:
            self._stop(records, f"cannot write {out.path}: {_describe(exc)}; the file ends with its "
                                "last whole record", exc)
        self._delivered += records
        self._limit = out.limit

    def _stop(self, failed: int, reason: str, cause: BaseException | None) -> None:
        """Writing failed (the file is already cut back): count, close, and raise ``SinkError``."""
        self._failed += failed
        self._failure = reason
        self._release_file()
        raise SinkError(f"{self.name}: {reason} ({self._delivered} records written, {self._failed} failed)",
                        sink=self.name, delivered=self._delivered, failed=self._failed) from cause

    def _finish_file(self) -> None:
        """Write what is pending, then close the file."""
        out = self._out
        assert out is not None
        try:
            if out.parts:
                self._write()
            try:
                out.finish()
            except OSError as exc:
                self._stop(0, f"cannot write {out.path}: {_describe(exc)}", exc)
        finally:
            self._release_file()

    def _release_file(self) -> None:
        """Close the file (anything still pending is dropped) and let go of its path."""
        out, self._out = self._out, None
        self._parts.clear()
        self._limit = 0  # the next record opens the file again
        claimed, self._claimed = self._claimed, None
        try:
            if out is not None:
                out.close()
        finally:
            if claimed is not None:
                _release_path(claimed, self)

    def close(self) -> None:
        """Open the file if nothing was written (so it exists), write what is pending and close it.
        A ``{part}`` sink does this for every part of this shard, so each part's file exists.

        Idempotent; after a write error (already raised) it does nothing more.
        """
        if self.parts is None:
            self._close_current()
            return
        shard = current_shard()
        opened = {p for p, state in self._other_parts.items() if state["_opened_path"] is not None}
        if self._part is not None and self._opened_path is not None:
            opened.add(self._part)
        errors = []
        for part in sorted(opened | set(range(shard.first_part, shard.stop_part))):
            try:
                self.select_part(part)
                self._close_current()
            except Exception as exc:  # noqa: BLE001 - close every part's file, then raise the first error
                errors.append(exc)
        if errors:
            raise errors[0]

    def _close_current(self) -> None:
        if self._out is None:
            if self._opened_path is not None or self._failure is not None:
                return  # already closed, or stopped by a write error
            self._open()
        self._finish_file()

    def stats(self) -> dict[str, int]:
        """Records written to the file in this run, and records that could not be written."""
        return {"delivered": self._delivered, "failed": self._failed}

    # -- checkpoints: exactly-once files -------------------------------------------------------

    def _position_keys(self) -> list[tuple[str, int | None]]:
        """(position key, part) of every file this sink writes in this process."""
        shard = current_shard()
        if self.parts is None:
            return [(f"shard:{shard.index}", None)]
        return [(f"part:{p}", p) for p in range(shard.first_part, shard.stop_part)]

    def checkpoint_positions(self) -> dict[str, dict[str, Any]]:
        """At a checkpoint: write out and close every file of this process (the next record reopens it
        for appending, so chunks start afresh here in every run) and record each file's length."""
        out: dict[str, dict[str, Any]] = {}
        for key, part in self._position_keys():
            if part is not None:
                self.select_part(part)
            path = self.resolved_path()
            if self._out is not None:
                fd = self._out._fd
                extra = self._file_position_extra()
                self._finish_file()  # raises SinkError on a write error, like any write
                if fd is not None:
                    _fsync(path)
            else:
                extra = self._file_position_extra()
            size = os.path.getsize(path) if self._opened_path is not None and os.path.exists(path) else 0
            out[key] = {"path": path, "offset": size, **extra}
        return out

    def _file_position_extra(self) -> dict[str, Any]:
        """What else a subclass needs to go on writing a file (CSV: its columns)."""
        return {}

    def resume(self, positions: dict[str, dict[str, Any]]) -> None:
        """Go on from a checkpoint: each file recorded at this sink's path is cut back to its recorded
        length and appended to; a file with no record (or recorded at another path) starts afresh."""
        self.begin_run()
        for key, part in self._position_keys():
            if part is not None:
                self.select_part(part)
            record = positions.get(key)
            path = self.resolved_path()
            if not record or record.get("path") != path:
                continue
            offset = int(record["offset"])
            size = os.path.getsize(path) if os.path.exists(path) else -1
            if size < offset:
                raise SinkError(f"{self.name}: cannot resume {path}: the checkpoint recorded {offset} bytes "
                                f"but the file has {max(size, 0)}; it was changed or lost since", sink=self.name)
            os.truncate(path, offset)
            self._opened_path = path  # the next record appends
            self._resume_file_state(record)

    def _resume_file_state(self, record: dict[str, Any]) -> None:
        """Restore a subclass's per-file state from its recorded position (CSV: columns, header)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"


def _describe(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0)
    return f"{exc.strerror or exc} ({name})" if name else str(exc)


def _suggest(path: str, field: str = "shard") -> str:
    p = Path(path)
    suffixes = "".join(p.suffixes)
    stem = p.name[: len(p.name) - len(suffixes)] if suffixes else p.name
    return str(p.with_name(f"{stem}-{{{field}}}{suffixes}"))


def _check_parts(kind: str, path: str, parts: Any) -> int | None:
    """``parts`` for a ``{part}`` path (required there, refused elsewhere); ModelError naming the path."""
    has_part = _PART_FIELD.search(path) is not None
    if parts is not None and (isinstance(parts, bool) or not isinstance(parts, int) or parts < 1):
        raise ModelError(f"{kind}: parts must be an integer >= 1, got {parts!r}")
    if has_part and parts is None:
        raise ModelError(f"{kind}({path!r}): a {{part}} path needs parts=P, the number of part files "
                         "(fixed, whatever the number of workers)")
    if parts is not None and not has_part:
        raise ModelError(f"{kind}({path!r}): parts={parts} needs {{part}} in the path, "
                         f"e.g. {_suggest(path, 'part')!r}")
    if has_part and _SHARD_FIELD.search(path) is not None:
        raise ModelError(f"{kind}({path!r}): use {{part}} or {{shard}}, not both")
    return parts


def _fsync(path: str) -> None:
    """Make a file's written bytes durable (a checkpoint records its length)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- JSON Lines


class JsonLinesSink(_FileSink):
    """Writes one JSON object per event and line.

    ``mapper(timestamp, subject, transition) -> dict`` (default: :func:`default_row`).
    ``compress="gzip"`` or a path ending in ``.gz`` writes gzip. ``{shard}`` in the path is
    replaced by the shard index; without it, a run with several shards is refused.
    """

    _kind = "jsonl"
    _parts_per_record = 2  # the object, then "\n"

    def _reset(self) -> None:
        super()._reset()
        self._encode = _make_encoder()

    def collect(self, timestamp: int, subject: Any, transition: Transition) -> None:
        # the hot path: default_row without one call level, the C encoder called directly
        mapper = self.mapper or _ROW_FUNCTIONS.get(type(subject)) or _row_function(subject)
        parts = self._parts
        parts.append(_join(self._encode(mapper(timestamp, subject, transition), 0)))
        parts.append("\n")
        if len(parts) >= self._limit:  # the first record (opens the file), or a full chunk
            self._chunk_full()


_join = "".join


# --------------------------------------------------------------------------- CSV


class CsvSink(_FileSink):
    """Writes events as CSV rows with a header line.

    ``fieldnames`` fixes the columns (default: the keys of the first row). A row with a key
    outside the columns is an error (nothing is dropped silently); a missing key is an empty cell.
    """

    _kind = "csv"

    def __init__(self, path: str | os.PathLike, mapper: RowMapper | None = None,
                 fieldnames: list[str] | tuple[str, ...] | None = None, *, compress: str | None = None,
                 compresslevel: int = 6, encoding: str = "utf-8", dialect: str = "excel",
                 parts: int | None = None) -> None:
        super().__init__(path, mapper, compress=compress, compresslevel=compresslevel, encoding=encoding,
                         parts=parts)
        if fieldnames is not None:
            fieldnames = list(fieldnames)
            if not fieldnames or not all(isinstance(f, str) for f in fieldnames):
                raise ModelError(f"{self.name}: fieldnames must be a non-empty list of strings")
            if len(set(fieldnames)) != len(fieldnames):
                raise ModelError(f"{self.name}: fieldnames has duplicates: {fieldnames}")
        self.fieldnames = fieldnames
        self.dialect = dialect

    def _reset(self) -> None:
        super()._reset()
        self._writer: Any = None

    _file_state = (*_FileSink._file_state, "_writer", "_fields", "_keys", "_header_written")

    def begin_run(self) -> None:
        super().begin_run()
        self._fields: tuple[str, ...] | None = None
        self._keys: frozenset[str] = frozenset()  # the columns, to name unknown keys
        self._header_written = False

    def _fresh_file_state(self) -> dict[str, Any]:
        return {**super()._fresh_file_state(), "_writer": None, "_fields": None, "_keys": frozenset(),
                "_header_written": False}

    def _file_position_extra(self) -> dict[str, Any]:
        return {"fields": list(self._fields) if self._fields is not None else None,
                "header": bool(self._header_written)}

    def _resume_file_state(self, record: dict[str, Any]) -> None:
        fields = record.get("fields")
        self._fields = tuple(fields) if fields else None
        self._keys = frozenset(fields or ())
        self._header_written = bool(record.get("header"))

    def _on_open(self, out: RecordFile, appending: bool) -> None:
        # the csv module writes one line per writerow(), with its own line endings
        self._writer = csv.writer(SimpleNamespace(write=out.parts.append), dialect=self.dialect)
        self._header_written = appending and self._header_written
        if self.fieldnames is not None:
            self._set_fields(self.fieldnames)

    def _set_fields(self, fields: list[str]) -> None:
        self._fields = tuple(fields)
        self._keys = frozenset(fields)
        if not self._header_written:
            self._writer.writerow(fields)
            self._out.extra += 1  # the header is no record
            self._header_written = True

    def collect(self, timestamp: int, subject: Any, transition: Transition) -> None:
        row = (self.mapper or _ROW_FUNCTIONS.get(type(subject)) or _row_function(subject))(
            timestamp, subject, transition)
        if self._out is None:
            self._open()
        if self._fields is None:
            if not isinstance(row, dict):
                raise ModelError(f"{self.name}: the mapper must return a dict, got {type(row).__name__}")
            self._set_fields(list(row))
        if tuple(row) == self._fields:  # the usual case: the columns in order
            self._writer.writerow(row.values())
        else:
            unknown = [k for k in row if k not in self._keys]
            if unknown:
                raise ModelError(f"{self.name}: row has column(s) {unknown} that are not in the CSV columns "
                                 f"{list(self._fields)}; pass fieldnames= listing every column")
            self._writer.writerow([row.get(f, "") for f in self._fields])
        if len(self._parts) >= self._limit:
            self._write()
