"""Model validation: every check names the offending item and runs before any subject exists."""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import Decimal
from numbers import Integral, Real
from typing import Any

from .._errors import ModelError

__all__ = [
    "check_states", "check_state", "check_count", "check_tick_ms", "check_probability",
    "check_callback", "check_sinks", "check_factory", "check_seed", "check_timestamp",
]

_TOLERANCE = 1e-9


def check_states(states: Any) -> list[str]:
    if isinstance(states, str) or not isinstance(states, Iterable):
        raise ModelError(f"states must be a list of state names, got {states!r}")
    names = list(states)
    if not names:
        raise ModelError("states must not be empty")
    seen: set[str] = set()
    for name in names:
        if not isinstance(name, str) or not name:
            raise ModelError(f"state names must be non-empty strings, got {name!r}")
        if name in seen:
            raise ModelError(f"duplicate state name {name!r} in states {names}")
        seen.add(name)
    return names


def check_state(role: str, state: Any, states: list[str]) -> None:
    if state not in states:
        raise ModelError(f"{role} {state!r} is not present in machine states {states}")


def check_count(name: str, value: Any, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ModelError(f"{name} must be an integer, got {value!r}")
    if value < 0:
        raise ModelError(f"{name} must be >= 0, got {value}")


def check_tick_ms(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ModelError(f"tick_ms must be an integer number of milliseconds, got {value!r}")
    if value <= 0:
        raise ModelError(f"tick_ms must be > 0, got {value}")


def check_timestamp(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ModelError(f"timestamp_start must be an integer (epoch milliseconds), got {value!r}")


def check_seed(value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ModelError(f"seed must be an integer or None, got {value!r}")


def check_probability(trigger: str, from_state: str, probability: Any, current_sum: float) -> float:
    """Validate one transition's probability (percent per tick); return the state's new sum."""
    if isinstance(probability, bool) or not isinstance(probability, (Real, Decimal)):
        raise ModelError(f"transition {trigger!r} from {from_state!r}: probability must be a number "
                         f"(percent per tick), got {probability!r}")
    value = float(probability)
    if math.isnan(value) or math.isinf(value):
        raise ModelError(f"transition {trigger!r} from {from_state!r}: probability must be finite, "
                         f"got {value}")
    if value < 0:
        raise ModelError(f"transition {trigger!r} from {from_state!r}: probability must be >= 0, got {value}")
    total = current_sum + value
    if total > 100 + _TOLERANCE:
        raise ModelError(f"sum of probabilities for state {from_state!r} would be {total:g}% "
                         f"(over 100%) after adding transition {trigger!r}")
    return total


def check_callback(trigger: str, callback: Any) -> None:
    if callback is not None and not callable(callback):
        raise ModelError(f"transition {trigger!r}: action_callback must be callable, got {callback!r}")


def check_sinks(trigger: str, sinks: Any) -> tuple:
    if sinks is None:
        return ()
    if isinstance(sinks, (str, bytes)) or not isinstance(sinks, Iterable):
        if callable(getattr(sinks, "collect", None)):
            raise ModelError(f"transition {trigger!r}: event_sinks must be a list of sinks, "
                             f"got a single sink {sinks!r} (wrap it in a list)")
        raise ModelError(f"transition {trigger!r}: event_sinks must be a list of sinks, got {sinks!r}")
    result = tuple(sinks)
    for sink in result:
        if not callable(getattr(sink, "collect", None)):
            raise ModelError(f"transition {trigger!r}: sink {sink!r} has no collect(timestamp, subject, "
                             f"transition) method")
    return result


def check_factory(factory: Any) -> None:
    if not callable(getattr(factory, "create", None)):
        raise ModelError(f"subject_factory must have a create() method, got {factory!r}")
