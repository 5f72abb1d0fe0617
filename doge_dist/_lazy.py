"""The one list of names that load on first use, and the module ``__getattr__`` that loads them.

Heavy libraries (confluent_kafka, sqlalchemy, fastavro, ray, PyYAML) come in only with the names
that need them, so ``import doge_dist`` stays light. Every lazy name anywhere in the package —
the top level, ``doge_dist.sinks`` and the doge-datagen module paths — is listed here once.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["LAZY", "lazy_getattr"]

#: public name -> the module (absolute) that defines it
LAZY: dict[str, str] = {
    "KafkaSinkFactory": "doge_dist.sinks._kafka",
    "KafkaSink": "doge_dist.sinks._kafka",
    "KafkaAvroSinkFactory": "doge_dist.sinks._kafka_avro",
    "DbSinkFactory": "doge_dist.sinks._db",
    "DbSink": "doge_dist.sinks._db",
    "JsonLinesSink": "doge_dist.sinks._files",
    "CsvSink": "doge_dist.sinks._files",
    "load_model": "doge_dist.model._yaml_model",
    "dump_model": "doge_dist.model._yaml_model",
    "release_workers": "doge_dist.run._ray_backend",
}


def lazy_getattr(module: str, names: set[str] | frozenset[str],
                 namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``module`` that loads ``names`` (all in LAZY) on first use
    and keeps them in the module's ``namespace``."""
    unknown = sorted(set(names) - set(LAZY))
    if unknown:  # pragma: no cover - a programming error caught by the tests
        raise RuntimeError(f"{module}: {unknown} are not in doge_dist._lazy.LAZY")

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(LAZY[name]), name)
        namespace[name] = value
        return value

    return __getattr__
