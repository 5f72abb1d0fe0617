"""Closing a shard's sinks: every sink gets its close(), errors are collected, stats read safely."""

from __future__ import annotations

from typing import Any

__all__ = ["close_all", "raise_collected", "sink_stats", "sink_failures", "earliest_error"]


def close_all(sinks: list[Any], names: list[str]) -> tuple[dict[str, dict[str, int]], list[BaseException]]:
    """Close every sink once; collect stats and errors instead of stopping at the first error."""
    errors: list[BaseException] = []
    stats: dict[str, dict[str, int]] = {}
    for sink, name in zip(sinks, names):
        try:
            sink.close()
        except BaseException as exc:  # noqa: BLE001 - every sink must get its close()
            errors.append(exc)
        numbers = sink_stats(sink)
        if numbers is not None:
            stats[name] = numbers
    return stats, errors


def raise_collected(errors: list[BaseException], what: str) -> None:
    """Raise the earliest error (by tick, then subject), with the others attached as notes."""
    if not errors:
        return
    first = earliest_error(errors)
    for extra in errors:
        if extra is not first and hasattr(first, "add_note"):
            first.add_note(f"{what}: {extra!r}")
    raise first


def earliest_error(errors: list[BaseException]) -> BaseException:
    """The error that happened first in simulated time (tick, then subject index); errors without a
    position (a sink's close, a dead worker) come after those with one, in arrival order."""
    def position(item: tuple[int, BaseException]) -> tuple:
        order, exc = item
        tick = getattr(exc, "tick", None)
        subject = getattr(exc, "subject_index", None)
        if tick is None:
            return (1, 0, 0, order)
        return (0, tick, subject if subject is not None else -1, order)

    return min(enumerate(errors), key=position)[1]


def sink_stats(sink: Any) -> dict[str, int] | None:
    """A sink's ``stats()`` as a dict of numbers, or None when it has none or it is not usable
    (a broken or foreign ``stats`` must not turn a finished run into a failure)."""
    stats_fn = getattr(sink, "stats", None)
    if not callable(stats_fn):
        return None
    try:
        raw = stats_fn()
        return {str(k): v for k, v in dict(raw).items() if isinstance(v, (int, float))}
    except Exception:  # noqa: BLE001
        return None


def sink_failures(sinks: list[Any], names: list[str]) -> dict[str, int]:
    """The ``failed`` count of each sink's stats() that has one above zero (in-flight messages
    are not failures yet), so progress shows delivery failures while a stream runs."""
    out: dict[str, int] = {}
    for sink, name in zip(sinks, names):
        numbers = sink_stats(sink)
        if numbers and numbers.get("failed"):
            out[name] = int(numbers["failed"])
    return out
