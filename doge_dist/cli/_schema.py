"""The fields of a job spec: one :class:`Field` each, with its validator and where its value goes.

To add a field, :func:`register_field` it (the spec loader, the report and the unknown-key hints all
read :data:`SCHEMA`). Counts, seeds and timestamps follow the model's own rules
(:mod:`doge_dist.model._validate`), stated once in :data:`SETTINGS_RULE`.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from .._errors import ModelError
from ..model import _validate as model_rules
from ._checkpoint_spec import checkpoint_section, max_restarts
from ._pacing import validate_load, validate_rate, validate_repeat

__all__ = ["Field", "SCHEMA", "register_field", "field_names", "validate_field", "resolve_timestamp",
           "GENERATOR_ATTRIBUTES", "RUN_FIELDS", "SETTINGS_RULE", "AUTO"]

AUTO = "auto"
SETTINGS_RULE = (
    "subjects and ticks are integers >= 0 (ticks may be 'unbounded'); seed is null (a fresh run each time) "
    "or an integer from 0 to 2**64-1; tick_ms is an integer > 0; timestamp_start is epoch milliseconds, an "
    "ISO-8601 date-time or 'now'; every timestamp of the run (timestamp_start + ticks x tick_ms) must fit "
    "in 64-bit epoch milliseconds")

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Field:
    """One spec field.

    ``kind``: ``model`` / ``params`` / ``secrets`` / ``description`` (handled by the loader), ``generator``
    (set on the generator as ``attribute``), ``run`` (passed to ``start()``) or ``extra`` (kept in
    ``JobSpec.extras`` for whoever registered it).
    """

    name: str
    validate: Callable[[Any], Any]
    kind: str
    attribute: str | None = None


SCHEMA: dict[str, Field] = {}


def register_field(field: Field) -> Field:
    """Add (or replace) a spec field."""
    SCHEMA[field.name] = field
    return field


def field_names() -> tuple[str, ...]:
    return tuple(SCHEMA)


def validate_field(name: str, value: Any) -> Any:
    """The normalised value of one field; ValueError with the reason when it is invalid."""
    return SCHEMA[name].validate(value)


# -- validators --------------------------------------------------------------------------------


def _scalar(value: Any) -> Any:
    """Strings coming from interpolation or flags ("10", "true") read as YAML scalars."""
    if isinstance(value, str):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if isinstance(parsed, (int, float, bool)) or parsed is None:
            return parsed
    return value


def _integral(value: Any) -> Any:
    value = _scalar(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _model_rule(check: Callable[[Any], None], value: Any) -> Any:
    """Apply one of the model's checks; its message becomes the field's reason."""
    try:
        check(value)
    except ModelError as exc:
        raise ValueError(str(exc)) from None
    return value


def _count(name: str) -> Callable[[Any], int]:
    def validate(value: Any) -> int:
        return _model_rule(lambda v: model_rules.check_count(name, v), _integral(value))
    return validate


def _ticks(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("unbounded", "null", "none")):
        return None
    return _model_rule(lambda v: model_rules.check_count("ticks", v), _integral(value))


def _tick_ms(value: Any) -> int:
    value = _model_rule(model_rules.check_tick_ms, _integral(value))
    return _model_rule(lambda v: model_rules.check_time_range(0, v, None), value)


def _seed(value: Any) -> int | None:
    return _model_rule(model_rules.check_seed, _integral(value))


_TIMESTAMP_WHAT = "must be a number (ms since the epoch), an ISO-8601 date-time or 'now'"


def _timestamp(value: Any) -> int | str:
    value = _scalar(value)
    if isinstance(value, bool):
        raise ValueError(f"{_TIMESTAMP_WHAT}, got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value!r}")
        return _model_rule(lambda v: model_rules.check_time_range(v, 1, None), int(value))
    if isinstance(value, _dt.datetime):
        return _datetime_ms(value)
    if isinstance(value, _dt.date):
        return _datetime_ms(_dt.datetime(value.year, value.month, value.day))
    if isinstance(value, str):
        text = value.strip()
        if text.lower() == "now":
            return "now"
        try:
            return _datetime_ms(_dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
        except ValueError:
            pass
    raise ValueError(f"{_TIMESTAMP_WHAT}, got {value!r}")


def _datetime_ms(moment: _dt.datetime) -> int:
    if moment.tzinfo is None:  # naive date-times are UTC
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return int(round(moment.timestamp() * 1000))


def resolve_timestamp(value: int | str) -> int:
    """``'now'`` -> the current time in ms; numbers unchanged."""
    return int(time.time() * 1000) if value == "now" else int(value)


def _positive(what: str) -> Callable[[Any], int]:
    def validate(value: Any) -> int:
        value = _integral(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"must be {what}, got {value!r}")
        return value
    return validate


def _workers(value: Any) -> int | str:
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    return _positive("a positive integer or 'auto'")(value)


def _window(value: Any) -> int | None:
    value = _scalar(value)
    if value is None:
        return None
    return _positive("a positive integer (ticks per window) or null")(value)


def _model(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a target 'package.module:function' or 'path/to/file.py:function', "
                         f"got {value!r}")
    if value.strip().lower().endswith((".yaml", ".yml")):  # a YAML model file (format: doge-dist/model-1)
        return value.strip()
    module, sep, attr = value.strip().rpartition(":")
    if not sep or not module or not attr:
        raise ValueError(f"must be 'package.module:function' or 'path/to/file.py:function' "
                         f"(missing ':function'), got {value!r}")
    return value.strip()


def _params(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping of keyword parameters, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str) or not _IDENTIFIER.match(key):
            raise ValueError(f"parameter names must be Python identifiers, got {key!r}")
    return dict(value)


def _secrets(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"must be a list of environment variable names, got {type(value).__name__}")
    for name in value:
        if not isinstance(name, str) or not _IDENTIFIER.match(name):
            raise ValueError(f"must list environment variable names (e.g. [DB_URL, KAFKA_TOPIC]), "
                             f"got {name!r}")
    return list(dict.fromkeys(value))


def _address(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a Ray address such as 'auto', 'local' or 'ray://HEAD:10001', "
                         f"got {value!r}")
    return value.strip()


def _bool(value: Any) -> bool:
    value = _scalar(value)
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def _speed(value: Any) -> float:
    value = _scalar(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= 0:
        raise ValueError(f"must be a positive number (1 = wall-clock pace), got {value!r}")
    return float(value)


def _sink(value: Any) -> dict[str, Any]:
    """A sink description (``{type: jsonl, path: ...}``): its type and keys (SinkSpecError names the key)."""
    from ..sinks._spec import check_sink_keys

    return check_sink_keys(value)


def _description(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"must be text, got {type(value).__name__}")
    return value


for _field in (
    Field("model", _model, "model"),
    Field("params", _params, "params"),
    Field("subjects", _count("subjects"), "generator", "subjects_num"),
    Field("ticks", _ticks, "generator", "ticks_num"),
    Field("tick_ms", _tick_ms, "generator", "tick_ms"),
    Field("timestamp_start", _timestamp, "generator", "timestamp_start"),
    Field("seed", _seed, "generator", "seed"),
    Field("workers", _workers, "run"),
    Field("ray_address", _address, "run"),
    Field("window", _window, "run"),
    Field("realtime", _bool, "run"),
    Field("speed", _speed, "run"),
    Field("rate", validate_rate, "run"),       # a target event rate (cli/_pacing.py)
    Field("load", validate_load, "run"),       # a load shape: steps and ramps
    Field("repeat", validate_repeat, "run"),   # cycle the load shape until stopped
    Field("max_restarts", max_restarts, "run"),
    Field("checkpoint", checkpoint_section, "extra"),  # checkpoints and resume: cli/_checkpoint_spec.py
    Field("secrets", _secrets, "secrets"),
    Field("sink", _sink, "extra"),  # built by cli/_sink_spec.py for YAML models and sink-taking functions
    Field("description", _description, "description"),
):
    register_field(_field)

#: Generator settings a spec can set, and the generator attribute each one sets.
GENERATOR_ATTRIBUTES = {f.name: f.attribute for f in SCHEMA.values() if f.kind == "generator"}
#: Settings passed to ``generator.start()``.
RUN_FIELDS = tuple(f.name for f in SCHEMA.values() if f.kind == "run")
