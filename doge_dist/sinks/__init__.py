"""Event sinks. Each is a picklable description that opens its resource lazily where it writes.

Heavy client libraries (confluent_kafka, sqlalchemy, fastavro) are imported only when a sink
is created or used, never by ``import doge_dist``.
"""

from __future__ import annotations

from .._lazy import lazy_getattr

__all__ = [
    "KafkaSinkFactory",
    "KafkaSink",
    "KafkaAvroSinkFactory",
    "DbSinkFactory",
    "DbSink",
    "JsonLinesSink",
    "CsvSink",
]

__getattr__ = lazy_getattr(__name__, frozenset(__all__), globals())


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
