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
    "check_callback", "check_sinks", "check_factory", "check_seed", "check_timestamp", "check_time_range",
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


SEED_MAX = 2**64 - 1
INT64_MAX = 2**63 - 1


def check_seed(value: Any) -> None:
    """The one seed rule (API, job specs and CLI): None, or an integer in 0..2**64-1."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ModelError(f"seed must be an integer or None, got {value!r}")
    if not 0 <= value <= SEED_MAX:
        raise ModelError(f"seed must be between 0 and 2**64-1, got {value}")


def check_time_range(timestamp_start: int, tick_ms: int, ticks: int | None) -> None:
    """Every tick's timestamp (epoch ms) must fit in a signed 64-bit integer."""
    last = timestamp_start + (ticks if ticks is not None else 0) * tick_ms
    for name, value in (("timestamp_start", timestamp_start), ("tick_ms", tick_ms)):
        if abs(value) > INT64_MAX:
            raise ModelError(f"{name} {value} does not fit in 64-bit epoch milliseconds")
    if not -INT64_MAX - 1 <= last <= INT64_MAX:
        raise ModelError(f"the run's last timestamp (timestamp_start {timestamp_start} + ticks {ticks} x "
                         f"tick_ms {tick_ms}) overflows 64-bit epoch milliseconds")


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
