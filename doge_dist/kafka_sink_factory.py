"""``doge_datagen.kafka_sink_factory``'s path, for doge-datagen compatibility (lazy re-exports)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .model._vocabulary import EventSink, Subject, Transition

if TYPE_CHECKING:  # for type checkers and linters; at run time they load in __getattr__
    from .sinks._kafka import KafkaSink, KafkaSinkFactory

__all__ = ["Subject", "Transition", "EventSink", "KafkaSink", "KafkaSinkFactory"]

_LAZY = ("KafkaSink", "KafkaSinkFactory")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(".sinks", __package__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
