"""``doge_datagen.kafka_avro_sink_factory``'s path, for doge-datagen compatibility (lazy re-exports)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .model._vocabulary import Subject, Transition

if TYPE_CHECKING:  # for type checkers and linters; at run time they load in __getattr__
    from .sinks._kafka import KafkaSink, KafkaSinkFactory
    from .sinks._kafka_avro import KafkaAvroSinkFactory

__all__ = ["Subject", "Transition", "KafkaSink", "KafkaSinkFactory", "KafkaAvroSinkFactory"]

_LAZY = ("KafkaSink", "KafkaSinkFactory", "KafkaAvroSinkFactory")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(".sinks", __package__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
