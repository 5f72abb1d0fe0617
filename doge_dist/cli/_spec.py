"""Job specs: load a YAML file, interpolate ``${ENV}``, validate every field with its line number."""

from __future__ import annotations

import datetime as _dt
import difflib
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ._mask import MASK, NUMERIC_FIELDS, SECRET_KEY_RE, SECRET_VAR_RE, Masker, masked_paths
from ._sink_spec import is_yaml_model_ref, validate_sink

__all__ = [
    "FIELDS",
    "RUN_FIELDS",
    "GENERATOR_ATTRIBUTES",
    "SpecError",
    "JobSpec",
    "load_spec",
    "parse_spec_text",
    "interpolate",
    "typed_scalar",
    "validate_field",
    "resolve_timestamp",
]

#: Generator settings a spec can override, and the generator attribute each one sets.
GENERATOR_ATTRIBUTES = {
    "subjects": "subjects_num",
    "ticks": "ticks_num",
    "tick_ms": "tick_ms",
    "timestamp_start": "timestamp_start",
    "seed": "seed",
}
#: Settings passed to ``generator.start()``.
RUN_FIELDS = ("workers", "ray_address", "window", "realtime", "speed")
FIELDS = ("model", "params", *GENERATOR_ATTRIBUTES, *RUN_FIELDS, "sink", "description")

_VAR = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_VAR_BODY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$", re.DOTALL)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INT = re.compile(r"^[-+]?\d+$")
_FLOAT = re.compile(r"^[-+]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][-+]?\d+)$")
_URL_BEFORE_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:[^@/\s]*$")
_URL_AFTER_PASSWORD = re.compile(r"[^@/\s]*@")
_NUMERIC_PARAMS = frozenset(f"params.{name}" for name in NUMERIC_FIELDS)


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


class SpecError(ValueError):
    """A job spec (or a command-line override) is invalid; the message names the field."""

    def __init__(self, message: str, *, field: str | None = None, line: int | None = None,
                 source: str | None = None) -> None:
        self.reason = message
        self.field = field
        self.line = line
        self.source = source
        where = []
        if field:
            where.append(f"field '{field}'")
        if line is not None:
            where.append(f"(line {line})")
        text = f"{' '.join(where)}: {message}" if where else message
        super().__init__(f"{source}: {text}" if source else text)


@dataclass
class JobSpec:
    """A validated job: the model target, its params and the settings that were given.

    ``settings`` holds only the fields present in the spec or on the command line, so absent
    fields keep what the model function set (``ticks: None`` means unbounded). ``shown`` and
    ``shown_params`` hold how reports show the fields whose values came from ``${VAR}``.
    """

    model: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    path: Path | None = None
    lines: dict[str, int] = field(default_factory=dict)
    env_vars: list[str] = field(default_factory=list)
    secret_vars: list[str] = field(default_factory=list)
    masker: Masker = field(default_factory=Masker)
    shown: dict[str, Any] = field(default_factory=dict)
    shown_params: dict[str, Any] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        """Relative model paths in a spec are relative to the spec's directory."""
        return self.path.parent if self.path is not None else Path.cwd()

    def override(self, name: str, value: Any, origin: str) -> None:
        """Set a field from the command line (``origin`` names the flag in errors)."""
        try:
            validated = validate_field(name, value)
        except ValueError as exc:
            raise SpecError(str(exc), field=f"{name} ({origin})") from None
        if name == "params":
            self.params.update(validated)
            for key in validated:
                self.shown_params.pop(key, None)
            return
        self.shown.pop(name, None)
        if name == "model":
            self.model = validated
        else:
            self.settings[name] = validated

    def set_param(self, key: str, value: Any) -> None:
        """A ``--param`` value (shown as given unless its key is named like a secret)."""
        self.params[key] = value
        self.shown_params.pop(key, None)

    def _data(self, *, shown: bool) -> dict[str, Any]:
        params = dict(self.params)
        if shown:
            params.update(self.shown_params)
        data: dict[str, Any] = {"model": self.shown.get("model", self.model) if shown else self.model,
                                "params": params}
        for name in FIELDS:
            if name in self.settings:
                data[name] = self.shown.get(name, self.settings[name]) if shown else self.settings[name]
        if self.path is not None:
            data["spec_file"] = str(self.path)
        return data

    def resolved(self) -> dict[str, Any]:
        """The spec as it will run, secrets masked (see MASKING_RULE): for reports."""
        return self.masker.mask_data(self._data(shown=True), mask_keys=True)

    def masked_fields(self) -> list[str]:
        """The fields (``params.db_url``...) whose values ``resolved()`` shows (partly) masked."""
        return masked_paths(self._data(shown=False), self.resolved())


# -- interpolation -----------------------------------------------------------------------------


def typed_scalar(text: str) -> Any:
    """Decimal integers and floats, true/false and null/none are typed; anything else stays text.

    The rule of ``--param key=value`` and of a scalar that is one whole ``${VAR}``.
    """
    stripped = text.strip()
    lowered = stripped.lower()
    if _INT.match(stripped):
        return int(stripped)
    if _FLOAT.match(stripped):
        return float(stripped)
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none"):
        return None
    return text


@dataclass(frozen=True)
class _Substitution:
    """One ``${VAR}`` replaced by ``value``; ``strict`` when it is certainly a secret."""

    var: str
    value: str
    strict: bool


def _last_key(where: str) -> str:
    return re.sub(r"\[\d+\]$", "", where).rpartition(".")[2]


def _in_url_password(text: str, match: re.Match[str]) -> bool:
    """The reference stands where ``scheme://user:PASSWORD@host`` has its password."""
    return bool(_URL_BEFORE_PASSWORD.search(text[:match.start()])
                and _URL_AFTER_PASSWORD.match(text[match.end():]))


class _Interpolator:
    """Substitutes ``${VAR}`` / ``${VAR:-default}`` in a value, keeping what to mask.

    ``run()`` returns the value and the value as reports show it (every substituted part ``***``).
    A param scalar that is exactly one ``${...}`` is typed with :func:`typed_scalar`, quoted or not
    (flow mappings need the quotes); top-level fields are typed by their validators. A param named
    like a numeric run setting that gets a number, boolean or null this way is shown as it is.
    """

    def __init__(self, environ: Mapping[str, str], used: list[str]) -> None:
        self.environ = environ
        self.used = used
        self.substitutions: list[_Substitution] = []
        self.glued: list[str] = []  # whole strings in which a value touches word characters

    def run(self, value: Any, where: str) -> tuple[Any, Any]:
        if isinstance(value, str):
            return self._text(value, where)
        if isinstance(value, dict):
            result, shown = {}, {}
            for key, item in value.items():
                result[key], shown[key] = self.run(item, f"{where}.{key}")
            return result, shown
        if isinstance(value, list):
            pairs = [self.run(item, f"{where}[{i}]") for i, item in enumerate(value)]
            return [p[0] for p in pairs], [p[1] for p in pairs]
        return value, value

    def _text(self, text: str, where: str) -> tuple[Any, Any]:
        matches = list(_VAR.finditer(text))
        if not matches:
            return text, text
        key = _last_key(where)
        parts: list[str] = []
        shown: list[str] = []
        found: list[_Substitution] = []
        glued = False
        pos = 0
        for match in matches:
            parts.append(text[pos:match.start()])
            shown.append(text[pos:match.start()])
            pos = match.end()
            if match.group(0) == "$${":
                parts.append("${")
                shown.append("${")
                continue
            name, value = self._resolve(match, where)
            strict = bool(SECRET_VAR_RE.search(name) or SECRET_KEY_RE.search(key)
                          or _in_url_password(text, match))
            found.append(_Substitution(name, value, strict))
            glued = glued or (match.start() > 0 and _is_word(text[match.start() - 1])) \
                or (match.end() < len(text) and _is_word(text[match.end()]))
            parts.append(value)
            shown.append(MASK if value else "")
        parts.append(text[pos:])
        shown.append(text[pos:])
        result: Any = "".join(parts)
        shown_text = "".join(shown)
        whole = len(matches) == 1 and matches[0].span() == (0, len(text)) and matches[0].group(0) != "$${"
        if whole and where.startswith("params."):  # top-level fields have validators
            typed = typed_scalar(result)
            if not isinstance(typed, str):
                if where in _NUMERIC_PARAMS:  # e.g. params.subjects: ${N:-50}
                    return typed, typed
                result = typed
        if glued:
            self.glued.append("".join(parts))
        self.substitutions += found
        return result, shown_text

    def _resolve(self, match: re.Match[str], where: str) -> tuple[str, str]:
        body = match.group(1)
        parsed = _VAR_BODY.match(body) if body is not None else None
        if parsed is None:
            raise SpecError(f"malformed variable reference {match.group(0)!r}: use ${{NAME}} or "
                            f"${{NAME:-default}}", field=where)
        name, default = parsed.group(1), parsed.group(2)
        if name not in self.used:
            self.used.append(name)
        current = self.environ.get(name)
        if current is None or (current == "" and default is not None):
            if default is None:
                raise SpecError(f"environment variable {name} is not set (use ${{{name}:-default}} "
                                "for a default)", field=where)
            current = default
        return name, current

    def register(self, masker: Masker, secret_vars: list[str]) -> None:
        """Tell ``masker`` every substituted value (secrets everywhere, the rest as whole tokens)."""
        for sub in self.substitutions:
            if sub.strict:
                masker.add(sub.value)
                if sub.var not in secret_vars:
                    secret_vars.append(sub.var)
            else:
                masker.add_token(sub.value)
        for text in self.glued:
            masker.add_token(text)


def interpolate(value: Any, where: str, environ: Mapping[str, str], masker: Masker,
                used: list[str]) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of ``value`` (``$${`` is a literal ``${``).

    Every substituted value is registered with ``masker`` (see :data:`MASKING_RULE`).
    """
    interpolator = _Interpolator(environ, used)
    result, _ = interpolator.run(value, where)
    interpolator.register(masker, [])
    return result


# -- field validation --------------------------------------------------------------------------


def _scalar(value: Any) -> Any:
    """Strings coming from interpolation ("10", "true") read as YAML scalars."""
    if isinstance(value, str):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if isinstance(parsed, (int, float, bool)) or parsed is None:
            return parsed
    return value


def _int(value: Any, minimum: int, what: str) -> int:
    value = _scalar(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be {what}, got {value!r}")
    if value < minimum:
        raise ValueError(f"must be {what}, got {value}")
    return value


def _model(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a target 'package.module:function' or 'path/to/file.py:function', "
                         f"got {value!r}")
    if is_yaml_model_ref(value):  # a YAML model file (format: doge-dist/model-1)
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


def _ticks(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("unbounded", "null", "none")):
        return None
    return _int(value, 1, "a positive integer, or null / 'unbounded' for streaming")


_TIMESTAMP_WHAT = "must be a number (ms since the epoch), an ISO-8601 date-time or 'now'"


def _timestamp(value: Any) -> int | str:
    value = _scalar(value)
    if isinstance(value, bool):
        raise ValueError(f"{_TIMESTAMP_WHAT}, got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value!r}")
        return int(value)
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


def _seed(value: Any) -> int | None:
    value = _scalar(value)
    if value is None:
        return None
    return _int(value, 0, "a non-negative integer or null")


def _window(value: Any) -> int | None:
    value = _scalar(value)
    if value is None:
        return None
    return _int(value, 1, "a positive integer (ticks per window) or null")


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


def _description(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"must be text, got {type(value).__name__}")
    return value


_VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "model": _model,
    "params": _params,
    "subjects": lambda v: _int(v, 1, "a positive integer"),
    "ticks": _ticks,
    "tick_ms": lambda v: _int(v, 1, "a positive integer (milliseconds per tick)"),
    "timestamp_start": _timestamp,
    "seed": _seed,
    "workers": lambda v: _int(v, 1, "a positive integer"),
    "ray_address": _address,
    "window": _window,
    "realtime": _bool,
    "speed": _speed,
    "sink": validate_sink,
    "description": _description,
}


def validate_field(name: str, value: Any) -> Any:
    """The normalised value of one field; ValueError with the reason when it is invalid."""
    return _VALIDATORS[name](value)


def resolve_timestamp(value: int | str) -> int:
    """``'now'`` -> the current time in ms; numbers unchanged."""
    return int(time.time() * 1000) if value == "now" else int(value)


# -- loading -----------------------------------------------------------------------------------


def load_spec(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None,
              masker: Masker | None = None) -> JobSpec:
    """Read and validate a YAML job spec (``masker`` learns the interpolated values to mask)."""
    spec_path = Path(path)
    try:
        text = spec_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"job spec not found: {spec_path}") from None
    except OSError as exc:
        raise SpecError(f"cannot read job spec {spec_path}: {exc.strerror or exc}") from None
    spec = parse_spec_text(text, source=str(spec_path), environ=environ, masker=masker)
    spec.path = spec_path.resolve()
    return spec


def parse_spec_text(text: str, source: str = "<spec>", environ: Mapping[str, str] | None = None,
                    masker: Masker | None = None) -> JobSpec:
    """Parse and validate YAML text (``source`` names it in errors)."""
    environ = os.environ if environ is None else environ
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise SpecError("the job spec is empty (expected a mapping with at least 'model')", source=source)
        if not isinstance(root, yaml.MappingNode):
            raise SpecError(f"the job spec must be a mapping of fields, got {_node_kind(root)}",
                            line=root.start_mark.line + 1, source=source)
        raw: dict[str, Any] = {}
        lines: dict[str, int] = {}
        for key_node, value_node in root.value:
            line = key_node.start_mark.line + 1
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise SpecError(f"keys must be field names, got {key!r}", line=line, source=source)
            if key not in FIELDS:
                hint = difflib.get_close_matches(key, FIELDS, n=1)
                suggestion = f"; did you mean '{hint[0]}'?" if hint else f" (known: {', '.join(FIELDS)})"
                raise SpecError(f"unknown key '{key}' (line {line}){suggestion}", source=source)
            if key in raw:
                raise SpecError(f"duplicate key (lines {lines[key]} and {line})", field=key, line=line,
                                source=source)
            raw[key] = loader.construct_object(value_node, deep=True)
            lines[key] = value_node.start_mark.line + 1
            if key in ("params", "sink") and isinstance(value_node, yaml.MappingNode):
                for pkey, pvalue in value_node.value:
                    lines[f"{key}.{pkey.value}"] = pvalue.start_mark.line + 1
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"invalid YAML: {problem}", line=None if mark is None else mark.line + 1,
                        source=source) from None
    finally:
        loader.dispose()

    spec = JobSpec(lines=lines, masker=masker if masker is not None else Masker())
    for key, value in raw.items():
        interpolator = _Interpolator(environ, spec.env_vars)
        try:
            value, shown = interpolator.run(value, key)
        except SpecError as exc:
            where = exc.field or key
            line = lines.get(where, lines[key])
            raise SpecError(exc.reason, field=where, line=line, source=source) from None
        try:
            validated = validate_field(key, value)
        except ValueError as exc:
            interpolator.register(spec.masker, spec.secret_vars)
            where = f"{key}.{exc.key}" if getattr(exc, "key", None) else key  # SinkSpecError names its key
            raise SpecError(spec.masker.mask(str(exc)), field=where, line=lines.get(where, lines[key]),
                            source=source) from None
        if key not in NUMERIC_FIELDS:  # valid numeric run settings are shown as they are
            interpolator.register(spec.masker, spec.secret_vars)
            if key == "params":
                spec.shown_params = {k: shown[k] for k in validated
                                     if shown[k] is not validated[k] and shown[k] != validated[k]}
            elif shown != value:
                spec.shown[key] = shown
        if key == "model":
            spec.model = validated
        elif key == "params":
            spec.params = validated
        elif key == "description":
            spec.description = validated
        else:
            spec.settings[key] = validated
    if spec.model is None:
        raise SpecError("is required: the model target 'package.module:function' or "
                        "'path/to/file.py:function'", field="model", source=source)
    if "speed" in spec.settings and spec.settings.get("realtime") is not True:
        raise SpecError("needs 'realtime: true': speed only paces realtime runs (remove it, or add "
                        "realtime: true)", field="speed", line=lines.get("speed"), source=source)
    return spec


def _node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.ScalarNode):
        return f"the scalar {node.value!r}"
    return type(node).__name__
