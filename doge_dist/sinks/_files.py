"""File sinks: JSON Lines and CSV, one file per part (or per shard), optionally gzip-compressed.

For people without servers. The path may contain ``{part}`` (or ``{part:03d}``) with ``parts=P``:
the population is split into P fixed index ranges and each part's file holds its subjects' events
in (tick, subject) order, so the files and their bytes are the same whatever the number of
workers (each worker writes whole parts). ``{shard}`` (one file per worker) also works. Files are
opened lazily in the process that writes. Two open sinks never share a file in one process: the
second one to open a path is refused.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import decimal
import enum
import gzip
import io
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
from typing import IO, Any

from .._context import current_shard
from .._errors import ModelError, SinkError
from ..model._vocabulary import EventSink, Transition
from ._pickling import PicklesAsDescription

__all__ = ["JsonLinesSink", "CsvSink", "default_row"]

RowMapper = Callable[[int, Any, Transition], dict]

_SHARD_FIELD = re.compile(r"\{shard(?::([^{}]*))?\}")
_PART_FIELD = re.compile(r"\{part(?::([^{}]*))?\}")
_FLUSH_EVERY = 1 << 20  # bytes of the text buffer

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
    """Shared parts: path template, lazy open, gzip, counts, pickling."""

    _kind = "file"

    def __init__(self, path: str | os.PathLike, mapper: RowMapper | None = None, *,
                 compress: str | None = None, compresslevel: int = 6, encoding: str = "utf-8",
                 parts: int | None = None) -> None:
        self.path = os.fspath(path)
        if not self.path:
            raise ModelError(f"{type(self).__name__}: path must not be empty")
        has_part = _PART_FIELD.search(self.path) is not None
        if parts is not None and (isinstance(parts, bool) or not isinstance(parts, int) or parts < 1):
            raise ModelError(f"{type(self).__name__}: parts must be an integer >= 1, got {parts!r}")
        if has_part and parts is None:
            raise ModelError(f"{type(self).__name__}({self.path!r}): a {{part}} path needs parts=P, the "
                             "number of part files (fixed, whatever the number of workers)")
        if parts is not None and not has_part:
            raise ModelError(f"{type(self).__name__}({self.path!r}): parts={parts} needs {{part}} in the "
                             f"path, e.g. {_suggest(self.path, 'part')!r}")
        if has_part and _SHARD_FIELD.search(self.path) is not None:
            raise ModelError(f"{type(self).__name__}({self.path!r}): use {{part}} or {{shard}}, not both")
        self.parts = parts
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
        self._fh: IO[str] | None = None
        self._opened_path: str | None = None  # set once this instance opened a file in this process
        self._claimed: str | None = None  # the resolved path this instance holds while its file is open
        self._delivered = 0
        self._part: int | None = None  # the part whose file is current ({part} paths)
        self._other_parts: dict[int, dict[str, Any]] = {}  # the open state of the other parts' files

    # -- parts ---------------------------------------------------------------------------------

    @property
    def uses_parts(self) -> bool:
        """True for a ``{part}`` path: the engine tells the sink each event's part (``select_part``)."""
        return self.parts is not None

    #: the attributes that belong to one open file (swapped when the current part changes)
    _file_state: tuple[str, ...] = ("_fh", "_opened_path", "_claimed")

    def select_part(self, part: int) -> None:
        """Make ``part``'s file the current one (the engine calls this before the part's events)."""
        if part == self._part:
            return
        if self._part is not None:
            self._other_parts[self._part] = {name: getattr(self, name) for name in self._file_state}
        state = self._other_parts.pop(part, None)
        if state is None:
            state = {name: None for name in self._file_state}
            state.update(self._fresh_file_state())
        for name, value in state.items():
            setattr(self, name, value)
        self._part = part

    def _fresh_file_state(self) -> dict[str, Any]:
        """Values of ``_file_state`` for a part whose file is not open yet (subclasses add theirs)."""
        return {}

    # pickling (PicklesAsDescription): the open file and counts stay with the original
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

    def _open(self) -> IO[str]:
        path = self.resolved_path()
        # first open in this process truncates; reopening after close() appends (nothing is lost)
        mode = "a" if self._opened_path == path else "w"
        claimed = _claim_path(path, self)  # before opening: a refused sink truncates nothing
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            if self.compress == "gzip":
                # mtime=0: the same events give the same bytes (the header holds no clock time)
                raw = gzip.GzipFile(path, mode + "b", compresslevel=self.compresslevel, mtime=0)
                fh = io.TextIOWrapper(raw, encoding=self.encoding, newline=self._newline)
            else:
                fh = open(path, mode, encoding=self.encoding, newline=self._newline, buffering=_FLUSH_EVERY)
        except BaseException:
            _release_path(claimed, self)
            raise
        self._claimed = claimed
        self._opened_path = path
        self._fh = fh
        self._on_open(fh, appending=mode == "a")
        return fh

    _newline: str | None = "\n"

    def _on_open(self, fh: IO[str], appending: bool) -> None:
        """Hook for subclasses (CSV header)."""

    def close(self) -> None:
        """Open the file if nothing was written (so it exists), flush and close it. Idempotent.
        A ``{part}`` sink does this for every part of this shard, so each part's file exists."""
        if self.parts is None:
            self._close_current()
            return
        shard = current_shard()
        opened = {p for p, state in self._other_parts.items() if state.get("_opened_path") is not None}
        if self._part is not None and self._opened_path is not None:
            opened.add(self._part)
        parts = sorted(opened | set(range(shard.first_part, shard.stop_part)))
        errors = []
        for part in parts:
            try:
                self.select_part(part)
                self._close_current()
            except Exception as exc:  # noqa: BLE001 - close every part's file, then raise the first error
                errors.append(exc)
        if errors:
            raise errors[0]

    def _close_current(self) -> None:
        if self._fh is None:
            if self._opened_path is not None:
                return  # already closed
            self._open()
        fh, self._fh = self._fh, None
        claimed, self._claimed = self._claimed, None
        try:
            fh.close()
        finally:
            if claimed is not None:
                _release_path(claimed, self)

    def stats(self) -> dict[str, int]:
        return {"delivered": self._delivered}

    # -- checkpoints: exactly-once files -------------------------------------------------------

    def _position_keys(self) -> list[tuple[str, int | None]]:
        """(position key, part) of every file this sink writes in this process."""
        shard = current_shard()
        if self.parts is None:
            return [(f"shard:{shard.index}", None)]
        return [(f"part:{p}", p) for p in range(shard.first_part, shard.stop_part)]

    def checkpoint_positions(self) -> dict[str, dict[str, Any]]:
        """Flush every file of this process to disk and say how long each is (at a checkpoint). A gzip
        file ends its member here, so that cutting it back to this length leaves a valid file."""
        out: dict[str, dict[str, Any]] = {}
        for key, part in self._position_keys():
            if part is not None:
                self.select_part(part)
            path = self.resolved_path()
            if self._fh is not None:
                if self.compress == "gzip":
                    self._close_current()  # the next event opens a new member (appending)
                else:
                    self._fh.flush()
                    os.fsync(self._fh.fileno())
            size = os.path.getsize(path) if self._opened_path is not None and os.path.exists(path) else 0
            out[key] = {"path": path, "offset": size, **self._file_position_extra()}
        return out

    def _file_position_extra(self) -> dict[str, Any]:
        """What else a subclass needs to go on writing a file (CSV: its columns)."""
        return {}

    def resume(self, positions: dict[str, dict[str, Any]]) -> None:
        """Go on from a checkpoint: each file recorded at this sink's path is cut back to its recorded
        length and appended to; a file with no record (or another path) starts afresh."""
        (getattr(self, "begin_run", None) or self._reset)()  # this run's counts start at zero
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
                raise SinkError(f"{self.name}: cannot resume {path}: the checkpoint recorded {offset} bytes but "
                                f"the file has {max(size, 0)}; it was changed or lost since", sink=self.name)
            with open(path, "r+b") as fh:
                fh.truncate(offset)
            self._fh = None
            self._opened_path = path  # the next event appends
            self._resume_file_state(record)

    def _resume_file_state(self, record: dict[str, Any]) -> None:
        """Restore a subclass's per-file state from its recorded position (CSV: columns, header)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"


def _suggest(path: str, field: str = "shard") -> str:
    p = Path(path)
    suffixes = "".join(p.suffixes)
    stem = p.name[: len(p.name) - len(suffixes)] if suffixes else p.name
    return str(p.with_name(f"{stem}-{{{field}}}{suffixes}"))


# --------------------------------------------------------------------------- JSON Lines


class JsonLinesSink(_FileSink):
    """Writes one JSON object per event and line.

    ``mapper(timestamp, subject, transition) -> dict`` (default: :func:`default_row`).
    ``compress="gzip"`` or a path ending in ``.gz`` writes gzip. ``{shard}`` in the path is
    replaced by the shard index; without it, a run with several shards is refused.
    """

    _kind = "jsonl"

    def _reset(self) -> None:
        super()._reset()
        self._encode = _make_encoder()

    def collect(self, timestamp: int, subject: Any, transition: Transition) -> None:
        # the hot path: default_row without one call level, the C encoder called directly
        mapper = self.mapper or _ROW_FUNCTIONS.get(type(subject)) or _row_function(subject)
        fh = self._fh or self._open()
        fh.write(_join(self._encode(mapper(timestamp, subject, transition), 0)))
        fh.write("\n")
        self._delivered += 1


_join = "".join


# --------------------------------------------------------------------------- CSV


class CsvSink(_FileSink):
    """Writes events as CSV rows with a header line.

    ``fieldnames`` fixes the columns (default: the keys of the first row). A row with a key
    outside the columns is an error (nothing is dropped silently); a missing key is an empty cell.
    """

    _kind = "csv"
    _newline = ""  # the csv module writes its own line endings

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

    _file_state = (*_FileSink._file_state, "_writer", "_fields", "_keys", "_header_written")

    def _reset(self) -> None:
        super()._reset()
        self._writer: Any = None
        self._fields: tuple[str, ...] | None = None
        self._keys: frozenset[str] = frozenset()  # the columns, to name unknown keys
        self._header_written = False

    def _fresh_file_state(self) -> dict[str, Any]:
        return {"_fields": None, "_keys": frozenset(), "_header_written": False}

    def _file_position_extra(self) -> dict[str, Any]:
        return {"fields": list(self._fields) if self._fields is not None else None,
                "header": bool(self._header_written)}

    def _resume_file_state(self, record: dict[str, Any]) -> None:
        fields = record.get("fields")
        self._fields = tuple(fields) if fields else None
        self._keys = frozenset(fields or ())
        self._header_written = bool(record.get("header"))

    def _on_open(self, fh: IO[str], appending: bool) -> None:
        self._writer = csv.writer(fh, dialect=self.dialect)
        self._header_written = appending and self._header_written
        if self.fieldnames is not None:
            self._set_fields(self.fieldnames)

    def _set_fields(self, fields: list[str]) -> None:
        self._fields = tuple(fields)
        self._keys = frozenset(fields)
        if not self._header_written:
            self._writer.writerow(fields)
            self._header_written = True

    def collect(self, timestamp: int, subject: Any, transition: Transition) -> None:
        row = (self.mapper or _ROW_FUNCTIONS.get(type(subject)) or _row_function(subject))(
            timestamp, subject, transition)
        if self._fh is None:
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
        self._delivered += 1
