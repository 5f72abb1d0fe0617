"""Event sinks. Each is a picklable description that opens its resource lazily where it writes.

Heavy client libraries (confluent_kafka, sqlalchemy, fastavro) are imported only when a sink
is created or used, never by ``import doge_dist``.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "KafkaSinkFactory",
    "KafkaSink",
    "KafkaAvroSinkFactory",
    "DbSinkFactory",
    "DbSink",
    "JsonLinesSink",
    "CsvSink",
]

_HOMES = {
    "KafkaSinkFactory": "._kafka",
    "KafkaSink": "._kafka",
    "KafkaAvroSinkFactory": "._kafka_avro",
    "DbSinkFactory": "._db",
    "DbSink": "._db",
    "JsonLinesSink": "._files",
    "CsvSink": "._files",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
