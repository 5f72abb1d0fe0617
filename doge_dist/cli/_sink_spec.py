"""Job specs with YAML models (``model: fitted.yaml``) and sinks declared in the spec (``sink:``).

A YAML model needs no Python: its subjects are ``ModelSubject(id)`` and its events are records
``{timestamp, subject, event, from_state, to_state}``. A Python model function that takes a
``sink`` parameter receives the spec's sink (its events are the file sinks' default rows).
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

from .._errors import ModelError
from ..sinks._spec import SinkSpecError, build_sink
from ._errors import SpecError
from ._target import Target

__all__ = ["is_yaml_model_ref", "load_yaml_target", "python_model_params", "spec_sink"]


def is_yaml_model_ref(text: str) -> bool:
    """A ``model:`` (or TARGET) naming a YAML model file rather than ``module:function``."""
    return text.strip().lower().endswith((".yaml", ".yml"))


def _spec_error(spec: Any, exc: SinkSpecError) -> ValueError:
    field = f"sink.{exc.key}" if exc.key else "sink"
    line = spec.lines.get(field, spec.lines.get("sink"))
    message = str(exc).removeprefix("sink: ")
    return SpecError(spec.masker.mask(message), field=field, line=line,
                     source=str(spec.path) if spec.path else None)


def spec_sink(spec: Any, *, record: Any, for_model: bool) -> Any:
    """The sink the spec declares (None when it declares none)."""
    data = spec.extras.get("sink")
    if data is None:
        return None
    try:
        return build_sink(data, record=record, for_model=for_model, base_dir=spec.base_dir)
    except SinkSpecError as exc:
        raise _spec_error(spec, exc) from exc


def _model_path(spec: Any) -> Path:
    path = Path(spec.model.strip())
    return path if path.is_absolute() else spec.base_dir / path


def load_yaml_target(spec: Any) -> tuple[Target, Any]:
    """The generator of a YAML model with the spec's sink on every transition."""
    from ..model import _yaml_model
    path = _model_path(spec)
    try:
        model = _yaml_model.read_model(path)
    except ModelError as exc:
        raise SpecError(str(exc), field="model", line=spec.lines.get("model")) from exc
    sink = spec_sink(spec, record=model.event_record(), for_model=True)
    generator = model.build(sinks=[sink] if sink is not None else [])
    return Target(text=spec.model, obj=generator, module=sys.modules[_yaml_model.__name__],
                  file=path.resolve(), loaded_from_file=False), generator


def python_model_params(spec: Any, target: Target) -> dict[str, Any]:
    """The model function's params plus ``sink=`` built from the spec's ``sink:``."""
    if "sink" in spec.params:
        raise SpecError("give the sink either as params.sink or as sink:, not both", field="sink",
                        line=spec.lines.get("sink"))
    try:
        accepted = inspect.signature(target.obj).parameters
    except (TypeError, ValueError):
        accepted = None
    if accepted is not None and "sink" not in accepted and not any(
            p.kind is p.VAR_KEYWORD for p in accepted.values()):
        raise SpecError(f"model function {target.text!r} has no 'sink' parameter, so the spec's sink: cannot "
                        "reach it (accept sink=..., or use a YAML model)", field="sink",
                        line=spec.lines.get("sink"))
    sink = spec_sink(spec, record=None, for_model=False)
    return {**spec.params, "sink": sink}
