"""A target event rate and load shapes on the command line: ``--rate R``, and ``rate:``, ``load:``,
``repeat:`` in job specs (validated with their line numbers), and how they reach ``start()``.

``rate`` or ``load`` imply realtime; they exclude each other and ``speed`` (the event rate sets the
pace, not the tick clock), ``repeat`` needs ``load``. A ``--rate`` flag replaces the spec's ``rate``
or ``load`` (flags override the spec).
"""

from __future__ import annotations

import math
from typing import Any

from .._errors import ModelError
from ..run._pacer import parse_load_shape
from ._errors import SpecError, UsageError
from ._interpolate import typed_scalar

__all__ = ["LoadStepError", "validate_rate", "validate_load", "validate_repeat", "check_spec_pacing",
           "apply_rate_flag", "pacing_options", "peak_rate", "rate_workers_choice", "PACING_RULE",
           "LOAD_EXAMPLE"]

LOAD_EXAMPLE = "[{rate: 1000, for: 30s}, {ramp: [1000, 50000], for: 5m}, {rate: 50000, for: 10m}]"
PACING_RULE = ("rate (events per wall-clock second) or load (a list of steps " + LOAD_EXAMPLE
               + "; the run ends after the last step unless repeat: true) paces the run to a target event "
               "rate; either implies realtime and excludes speed")


class LoadStepError(ValueError):
    """A bad ``load:`` step; ``key`` is its number (1-based), for the line number of the spec."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def _scalar(value: Any) -> Any:
    """Text from a flag or from interpolation ("5000", "true") typed as the spec's own scalars."""
    return typed_scalar(value) if isinstance(value, str) else value


def validate_rate(value: Any) -> float:
    """A target rate: a number of events per second > 0."""
    value = _scalar(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < math.inf):
        raise ValueError(f"must be a number of events per second > 0, got {value!r}")
    return float(value)


def validate_load(value: Any) -> list[dict[str, Any]]:
    """A load shape: a non-empty list of ``{rate: R, for: D}`` / ``{ramp: [R0, R1], for: D}`` steps."""
    if not isinstance(value, list) or not value:
        raise ValueError(f"must be a non-empty list of steps such as {LOAD_EXAMPLE}, got {value!r}")
    for k, step in enumerate(value):
        try:
            parse_load_shape([step])
        except ModelError as exc:
            reason = str(exc).removeprefix("load shape step 1: ")
            raise LoadStepError(reason, key=str(k + 1)) from None  # the field names the step: load.2
    return [dict(step) for step in value]


def validate_repeat(value: Any) -> bool:
    """``repeat: true`` cycles the load shape until the run is stopped."""
    value = _scalar(value)
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def check_spec_pacing(settings: dict[str, Any], lines: dict[str, int], source: str | None) -> None:
    """The combinations a job spec may not hold (SpecError naming the field and its line)."""
    def fail(name: str, message: str) -> None:
        raise SpecError(message, field=name, line=lines.get(name), source=source)

    paced = "rate" in settings or "load" in settings
    if "rate" in settings and "load" in settings:
        fail("load", "give rate or load, not both (a constant rate is a one-step load)")
    if settings.get("repeat") and "load" not in settings:
        fail("repeat", "repeats a load shape: add load (or remove repeat)")
    if paced and "speed" in settings:
        fail("speed", "paces ticks to the clock; with rate or load the event rate sets the pace: "
             "remove speed")
    if paced and settings.get("realtime") is False:
        name = "rate" if "rate" in settings else "load"
        fail(name, "a target event rate is realtime: remove 'realtime: false'")


def apply_rate_flag(spec: Any, rate: str | None, speed: str | None, realtime: bool | None) -> None:
    """``--rate R``: replaces the spec's rate or load, implies realtime, excludes ``--speed``."""
    if rate is None:
        return
    if speed is not None:
        raise UsageError("--rate and --speed exclude each other: the event rate sets the pace (drop --speed)")
    if realtime is False:
        raise UsageError("--rate is realtime: drop --no-realtime")
    for name in ("load", "repeat", "speed"):
        spec.settings.pop(name, None)
    spec.override("rate", rate, "--rate")


def pacing_options(settings: dict[str, Any]) -> dict[str, Any]:
    """``start()`` keyword arguments for the spec's pacing (empty when the run is not rate-paced)."""
    if "rate" in settings:
        return {"realtime": True, "rate": settings["rate"]}
    if "load" in settings:
        return {"realtime": True, "load_shape": settings["load"], "repeat": bool(settings.get("repeat"))}
    return {}


def peak_rate(settings: dict[str, Any]) -> float | None:
    """The highest target rate of the spec's pacing (None when it is not rate-paced)."""
    if "rate" in settings:
        return float(settings["rate"])
    if "load" in settings:
        return max(max(step.start_rate, step.end_rate) for step in parse_load_shape(settings["load"]))
    return None


def rate_workers_choice(settings: dict[str, Any], cores: int | None = None) -> Any:
    """``workers: auto`` for a rate-paced run: one process while the peak target rate needs less than
    half a core, else every core (None when the run is not rate-paced)."""
    peak = peak_rate(settings)
    if peak is None:
        return None
    from ._auto import EVENTS_PER_S, WorkersChoice, local_cores

    cores = local_cores() if cores is None else cores
    load = peak / EVENTS_PER_S
    what = f"auto: a peak target of {peak:,.0f} events/s needs about {100 * load:.0f}% of one core"
    if cores <= 1 or load < 0.5:
        return WorkersChoice(1, what)
    return WorkersChoice(cores, f"{what}, so all {cores} cores")
