"""Job specs: read a YAML file safely, interpolate ``${ENV}``, validate every field with its line number.

The fields live in :mod:`._schema`, interpolation in :mod:`._interpolate`, the masking rule in
:mod:`._mask`; this module ties them together into a :class:`JobSpec`.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ._errors import SpecError
from ._interpolate import Interpolator, typed_scalar
from ._mask import Masker, is_secret_key, masked_paths, url_passwords
from ._pacing import check_spec_pacing
from ._schema import GENERATOR_ATTRIBUTES, RUN_FIELDS, SCHEMA, field_names, resolve_timestamp, validate_field

__all__ = [
    "GENERATOR_ATTRIBUTES",
    "RUN_FIELDS",
    "MAX_SPEC_VALUES",
    "SpecError",
    "JobSpec",
    "load_spec",
    "parse_spec_text",
    "typed_scalar",
    "validate_field",
    "resolve_timestamp",
]

#: A job spec may hold at most this many values once YAML aliases are expanded: a few hundred bytes
#: of nested aliases would otherwise expand to billions (the "billion laughs").
MAX_SPEC_VALUES = 10_000


@dataclass
class JobSpec:
    """A validated job: the model target, its params and the settings that were given.

    ``settings`` holds only the generator and run fields present in the spec or on the command line,
    so absent fields keep what the model function set (``ticks: None`` means unbounded). ``extras``
    holds the values of fields registered with kind ``extra``. ``shown`` and ``shown_params`` hold how
    reports show the fields whose values hold secrets.
    """

    model: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    path: Path | None = None
    lines: dict[str, int] = field(default_factory=dict)
    env_vars: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
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
        """A ``--param`` value (shown as given unless its key names a secret setting)."""
        self.params[key] = value
        self.shown_params.pop(key, None)
        _register_literal_secrets(value, ("params", key), self.masker)

    def _data(self, *, shown: bool) -> dict[str, Any]:
        params = dict(self.params)
        if shown:
            params.update(self.shown_params)
        data: dict[str, Any] = {"model": self.shown.get("model", self.model) if shown else self.model,
                                "params": params}
        for name in SCHEMA:
            if name in self.settings:
                data[name] = self.shown.get(name, self.settings[name]) if shown else self.settings[name]
            elif name in self.extras:
                data[name] = self.shown.get(name, self.extras[name]) if shown else self.extras[name]
        if self.secrets:
            data["secrets"] = list(self.secrets)
        if self.path is not None:
            data["spec_file"] = str(self.path)
        return data

    def resolved(self) -> dict[str, Any]:
        """The spec as it will run, secrets masked (see MASKING_RULE): for reports."""
        return self.masker.mask_data(self._data(shown=True), mask_keys=True)

    def masked_fields(self) -> list[str]:
        """The fields (``params.db_url``...) whose values ``resolved()`` shows (partly) masked."""
        return masked_paths(self._data(shown=False), self.resolved())

    def masked_variables(self) -> list[str]:
        """The environment variables whose values are masked (names only)."""
        return sorted(self.secret_vars)


def _register_literal_secrets(value: Any, path: tuple[Any, ...], masker: Masker) -> None:
    """Secrets written into the spec itself: values of secret settings and URL passwords."""
    if isinstance(value, dict):
        for key, item in value.items():
            _register_literal_secrets(item, (*path, key), masker)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _register_literal_secrets(item, (*path, i), masker)
    elif isinstance(value, str):
        if any(is_secret_key(part) for part in path[1:]):
            masker.add(value)
        for password in url_passwords(value):
            masker.add(password)


# -- loading -----------------------------------------------------------------------------------


def load_spec(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None,
              masker: Masker | None = None) -> JobSpec:
    """Read and validate a YAML job spec (``masker`` learns the secret values to mask)."""
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


def _check_expansion(root: yaml.Node, source: str, limit: int = MAX_SPEC_VALUES) -> None:
    """Refuse recursive aliases and aliases that expand the spec beyond ``limit`` values, before
    anything walks the expanded data (the walk stops at the limit, so it costs at most that much)."""
    count = 0
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        if leaving:
            on_path.discard(id(node))
            continue
        if id(node) in on_path:
            raise SpecError(f"a YAML alias refers to a value that contains it (line "
                            f"{node.start_mark.line + 1}); recursive values are not allowed", source=source)
        count += 1
        if count > limit:
            raise SpecError(f"YAML aliases expand the job spec to more than {limit:,} values; write the "
                            "values out instead of nesting aliases", source=source)
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            continue
        on_path.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(children))


def _compose(text: str, source: str) -> tuple[dict[str, Any], dict[str, int]]:
    """The spec's top-level fields (constructed) and the line of each field and param."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise SpecError("the job spec is empty (expected a mapping with at least 'model')", source=source)
        if not isinstance(root, yaml.MappingNode):
            raise SpecError(f"the job spec must be a mapping of fields, got {_node_kind(root)}",
                            line=root.start_mark.line + 1, source=source)
        _check_expansion(root, source)
        names = field_names()
        raw: dict[str, Any] = {}
        lines: dict[str, int] = {}
        for key_node, value_node in root.value:
            line = key_node.start_mark.line + 1
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise SpecError(f"keys must be field names, got {key!r}", line=line, source=source)
            if key not in names:
                hint = difflib.get_close_matches(key, names, n=1)
                suggestion = f"; did you mean '{hint[0]}'?" if hint else f" (known: {', '.join(names)})"
                raise SpecError(f"unknown key '{key}' (line {line}){suggestion}", source=source)
            if key in raw:
                raise SpecError(f"duplicate key (lines {lines[key]} and {line})", field=key, line=line,
                                source=source)
            raw[key] = loader.construct_object(value_node, deep=True)
            lines[key] = value_node.start_mark.line + 1
            if isinstance(value_node, yaml.MappingNode):  # params, sink, checkpoint...: their keys' lines
                for pkey, pvalue in value_node.value:
                    lines[f"{key}.{pkey.value}"] = pvalue.start_mark.line + 1
            if key == "load" and isinstance(value_node, yaml.SequenceNode):  # load steps, numbered from 1
                for k, item in enumerate(value_node.value):
                    lines[f"load.{k + 1}"] = item.start_mark.line + 1
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"invalid YAML: {problem}", line=None if mark is None else mark.line + 1,
                        source=source) from None
    finally:
        loader.dispose()
    return raw, lines


def parse_spec_text(text: str, source: str = "<spec>", environ: Mapping[str, str] | None = None,
                    masker: Masker | None = None) -> JobSpec:
    """Parse and validate YAML text (``source`` names it in errors)."""
    environ = os.environ if environ is None else environ
    raw, lines = _compose(text, source)
    spec = JobSpec(lines=lines, masker=masker if masker is not None else Masker())
    if "secrets" in raw:  # first: it decides what the other fields mask
        try:
            spec.secrets = validate_field("secrets", raw.pop("secrets"))
        except ValueError as exc:
            raise SpecError(str(exc), field="secrets", line=lines["secrets"], source=source) from None
    for key, value in raw.items():
        interpolator = Interpolator(environ, spec.env_vars, spec.secrets)
        try:
            value, shown = interpolator.run(value, (key,))
        except SpecError as exc:
            where = exc.field or key
            line = lines.get(where, lines[key])
            raise SpecError(exc.reason, field=where, line=line, source=source) from None
        for secret in interpolator.secret_values():
            spec.masker.add(secret)
        _register_literal_secrets(value, (key,), spec.masker)
        for name in interpolator.secret_vars():
            if name not in spec.secret_vars:
                spec.secret_vars.append(name)
        try:
            validated = validate_field(key, value)
        except ValueError as exc:
            where = f"{key}.{exc.key}" if getattr(exc, "key", None) else key  # SinkSpecError names its key
            raise SpecError(spec.masker.mask(str(exc)), field=where, line=lines.get(where, lines[key]),
                            source=source) from None
        if key == "params":
            spec.shown_params = {k: shown[k] for k in validated
                                 if shown[k] is not validated[k] and shown[k] != validated[k]}
        elif shown != value:
            spec.shown[key] = shown
        kind = SCHEMA[key].kind
        if kind == "model":
            spec.model = validated
        elif kind == "params":
            spec.params = validated
        elif kind == "description":
            spec.description = validated
        elif kind == "extra":
            spec.extras[key] = validated
        else:
            spec.settings[key] = validated
    for name in spec.secrets:  # declared secrets are masked even where the spec does not use them
        if environ.get(name):
            spec.masker.add(environ[name])
            if name not in spec.secret_vars:
                spec.secret_vars.append(name)
    if spec.model is None:
        raise SpecError("is required: the model target 'package.module:function' or "
                        "'path/to/file.py:function'", field="model", source=source)
    check_spec_pacing(spec.settings, lines, source)
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
