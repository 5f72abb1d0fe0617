"""Sinks from plain descriptions (a job spec's ``sink:``), so that no Python is needed to pick one.

``{type: jsonl, path: "out/ev-{part}.jsonl", parts: 8}``, ``{type: csv, ...}``, ``{type: print}``,
``{type: kafka, topic: ..., bootstrap_servers: ...}``, ``{type: kafka-avro, ...}`` and
``{type: postgres|sql, url: ..., table: ...}``. Every event becomes the record given as
``record(timestamp, subject, transition) -> dict``. The classes here are module-level, so the
sinks pickle to Ray workers. Heavy clients load only when such a sink is built.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .._errors import ModelError
from ..model._vocabulary import EventSink, Transition

__all__ = ["SINK_TYPES", "SINK_KEYS", "SinkSpecError", "check_sink_keys", "build_sink", "JsonRecordFormat",
           "JsonRecordValue", "SubjectKey", "MODEL_VALUE_SCHEMA", "MODEL_KEY_SCHEMA", "model_table"]

_COMMON = ("type",)
SINK_KEYS: dict[str, tuple[str, ...]] = {
    "print": _COMMON,
    "jsonl": _COMMON + ("path", "parts", "compress"),
    "csv": _COMMON + ("path", "parts", "compress"),
    "kafka": _COMMON + ("topic", "bootstrap_servers", "client_id", "conf", "key_field", "transactional"),
    "kafka-avro": _COMMON + ("topic", "bootstrap_servers", "schema_registry_url", "client_id", "conf",
                             "registry_conf", "key_field", "value_schema", "transactional"),
    "postgres": _COMMON + ("url", "table", "batch_size", "create", "progress_table"),
    "sql": _COMMON + ("url", "table", "batch_size", "create", "progress_table"),
}
SINK_TYPES = tuple(SINK_KEYS)

#: The Avro value schema of a YAML model's event records.
MODEL_VALUE_SCHEMA = {
    "type": "record", "name": "DogeEvent", "namespace": "doge_dist",
    "fields": [{"name": "timestamp", "type": "long"}, {"name": "subject", "type": "long"},
               {"name": "event", "type": "string"}, {"name": "from_state", "type": "string"},
               {"name": "to_state", "type": "string"}],
}
MODEL_KEY_SCHEMA = '"string"'


class SinkSpecError(ModelError):
    """A sink description is invalid; ``key`` names the offending key (for the spec's line number)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def check_sink_keys(data: Any) -> dict[str, Any]:
    """The description as a dict with a known ``type`` and only that type's keys; SinkSpecError otherwise."""
    if not isinstance(data, Mapping):
        raise SinkSpecError(f"must be a mapping such as {{type: jsonl, path: out/events.jsonl}}, "
                            f"got {data!r}")
    kind = data.get("type")
    if kind not in SINK_KEYS:
        hint = difflib.get_close_matches(str(kind), SINK_TYPES, n=1) if isinstance(kind, str) else []
        extra = f"; did you mean '{hint[0]}'?" if hint else ""
        raise SinkSpecError(f"type must be one of {', '.join(SINK_TYPES)}, got {kind!r}{extra}", "type")
    allowed = SINK_KEYS[kind]
    for key in data:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            extra = (f"; did you mean '{hint[0]}'?" if hint
                     else f" (a {kind} sink takes: {', '.join(allowed)})")
            raise SinkSpecError(f"unknown key '{key}' for a {kind} sink{extra}", str(key))
    return dict(data)


# -- picklable event formatting --------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    from ._files import _json_default as files_default

    return files_default(value)


class JsonRecordFormat:
    """``record`` as one line of JSON (for the print sink)."""

    def __init__(self, record: Callable[[int, Any, Transition], dict]) -> None:
        self.record = record

    def __call__(self, timestamp: int, subject: Any, transition: Transition) -> str:
        return json.dumps(self.record(timestamp, subject, transition), separators=(",", ":"),
                          default=_json_default)


class JsonRecordValue(JsonRecordFormat):
    """``record`` as a JSON Kafka value."""


class SubjectKey:
    """The Kafka key: ``str(subject.<field>)`` (one subject's events on one partition, in order)."""

    def __init__(self, field: str) -> None:
        self.field = field

    def __call__(self, subject: Any, transition: Transition) -> str:
        try:
            return str(getattr(subject, self.field))
        except AttributeError:
            raise ModelError(f"kafka sink: the subject ({type(subject).__name__}) has no attribute "
                             f"{self.field!r} for the message key; set key_field in the sink") from None


def _null_key(subject: Any, transition: Transition) -> None:
    return None


# -- building --------------------------------------------------------------------------------------


def _required_text(data: dict, key: str, kind: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise SinkSpecError(f"a {kind} sink needs '{key}' (a non-empty string), got {value!r}", key)
    return value


def _optional_mapping(data: dict, key: str) -> dict | None:
    value = data.get(key)
    if value is not None and not isinstance(value, Mapping):
        raise SinkSpecError(f"'{key}' must be a mapping, got {value!r}", key)
    return dict(value) if value is not None else None


def model_table(table: str) -> Any:
    """The SQLAlchemy table of YAML-model event records (created when a spec's sql sink says create)."""
    import sqlalchemy as sa

    return sa.Table(table, sa.MetaData(), sa.Column("timestamp", sa.BigInteger, nullable=False),
                    sa.Column("subject", sa.BigInteger, nullable=False),
                    sa.Column("event", sa.String(255), nullable=False),
                    sa.Column("from_state", sa.String(255), nullable=False),
                    sa.Column("to_state", sa.String(255), nullable=False))


def build_sink(data: Any, *, record: Callable[[int, Any, Transition], dict] | None, for_model: bool,
               base_dir: str | os.PathLike[str] | None = None, where: str = "sink") -> EventSink:
    """Build the sink a description names.

    ``record``: the event record (a YAML model's :class:`EventRecord`); ``None`` means the file
    sinks' default row (timestamp, trigger, from_state, to_state and the subject's attributes),
    used for Python models. ``for_model``: events come from a YAML model (subjects have ``id``;
    Avro and SQL know the record's columns). ``base_dir``: where relative schema files are.
    Output paths are relative to the working directory, as for ``JsonLinesSink``.
    """
    try:
        return _build(check_sink_keys(data), record, for_model, Path(base_dir) if base_dir else Path.cwd())
    except SinkSpecError as exc:
        raise SinkSpecError(f"{where}: {exc}", exc.key) from None
    except ModelError as exc:
        raise SinkSpecError(f"{where}: {exc}") from exc


def _build(data: dict, record: Any, for_model: bool, base_dir: Path) -> EventSink:
    kind = data["type"]
    if kind == "print":
        from ._files import default_row
        from ._printing import PrintingSink

        return PrintingSink(JsonRecordFormat(record or default_row))
    if kind in ("jsonl", "csv"):
        from ._files import CsvSink, JsonLinesSink

        path = _required_text(data, "path", kind)
        compress = data.get("compress")
        if compress not in (None, "gzip"):
            raise SinkSpecError(f"compress must be gzip (or left out), got {compress!r}", "compress")
        parts = data.get("parts")
        if parts is not None and (isinstance(parts, bool) or not isinstance(parts, int) or parts < 1):
            raise SinkSpecError(f"parts must be a positive integer, got {parts!r}", "parts")
        has_part = re.search(r"\{part(:[^{}]*)?\}", path) is not None
        if has_part and parts is None:
            raise SinkSpecError("a {part} path needs parts: P, the number of part files (fixed whatever the "
                                "number of workers; each worker writes whole parts)", "parts")
        if parts is not None and not has_part:
            raise SinkSpecError("parts: P needs {part} in the path, e.g. out/events-{part}.jsonl", "path")
        cls = JsonLinesSink if kind == "jsonl" else CsvSink
        return cls(path, mapper=record, compress=compress, parts=parts)
    if kind in ("kafka", "kafka-avro"):
        return _kafka(data, kind, record, for_model, base_dir)
    return _sql(data, kind, record, for_model)


def _key_function(data: dict, for_model: bool) -> Callable[[Any, Transition], Any]:
    field = data.get("key_field", "id" if for_model else None)
    if field is None:
        return _null_key
    if not isinstance(field, str) or not field.isidentifier():
        raise SinkSpecError(f"key_field must name a subject attribute, got {field!r}", "key_field")
    return SubjectKey(field)


def _kafka(data: dict, kind: str, record: Any, for_model: bool, base_dir: Path) -> EventSink:
    from ._files import default_row

    topic = _required_text(data, "topic", kind)
    servers = data.get("bootstrap_servers")
    client_id = data.get("client_id")
    conf = _optional_mapping(data, "conf")
    key_function = _key_function(data, for_model)
    transactional = data.get("transactional", False)
    if not isinstance(transactional, bool):
        raise SinkSpecError(f"transactional must be true or false, got {transactional!r}", "transactional")
    if kind == "kafka":
        from ._kafka import KafkaSinkFactory

        factory = KafkaSinkFactory(servers, client_id, conf, transactional=transactional)
        return factory.create(topic, key_function, JsonRecordValue(record or default_row))
    from ._kafka_avro import KafkaAvroSinkFactory

    value_schema: Any = data.get("value_schema")
    if value_schema is None:
        if not for_model:
            raise SinkSpecError("a kafka-avro sink for a Python model needs value_schema (an .avsc file "
                                "describing the model's records)", "value_schema")
        value_schema = MODEL_VALUE_SCHEMA
    elif isinstance(value_schema, str) and value_schema.strip().endswith(".avsc"):
        schema_path = Path(value_schema)
        schema_path = schema_path if schema_path.is_absolute() else base_dir / schema_path
        try:
            value_schema = schema_path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SinkSpecError(f"cannot read value_schema {schema_path}: {exc.strerror or exc}",
                                "value_schema") from None
    factory = KafkaAvroSinkFactory(servers, data.get("schema_registry_url"), client_id, conf,
                                   registry_conf=_optional_mapping(data, "registry_conf"),
                                   transactional=transactional)
    return factory.create(topic, key_function, MODEL_KEY_SCHEMA, record or default_row, value_schema)


def _sql(data: dict, kind: str, record: Any, for_model: bool) -> EventSink:
    from ._db import DEFAULT_PROGRESS_TABLE, DbSinkFactory
    from ._files import default_row

    url = _required_text(data, "url", kind)
    table = _required_text(data, "table", kind)
    batch_size = data.get("batch_size", 1000)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise SinkSpecError(f"batch_size must be a positive integer, got {batch_size!r}", "batch_size")
    create = data.get("create", for_model)
    if not isinstance(create, bool):
        raise SinkSpecError(f"create must be true or false, got {create!r}", "create")
    if create and not for_model:
        raise SinkSpecError("create: true needs a YAML model (a Python model's columns are not known); "
                            "create the table yourself", "create")
    progress_table = data.get("progress_table", DEFAULT_PROGRESS_TABLE)
    if progress_table is not None and (not isinstance(progress_table, str) or not progress_table.strip()):
        raise SinkSpecError(f"progress_table must be a table name, or null for none (at-least-once after a "
                            f"recovery), got {progress_table!r}", "progress_table")
    factory = DbSinkFactory(url, progress_table=progress_table)
    # the table is checked (and created when missing) by the sink's prepare(), before the run
    return factory.create(table, record or default_row, batch_size,
                          create_table=model_table(table) if create else None)
