"""doge-dist: simulate subjects walking a probabilistic state machine and emit their events.

A drop-in successor of doge-datagen 1.0.4 (change ``doge_datagen`` to ``doge_dist``) with an
event-driven engine, seeded reproducibility and sharded runs on Ray.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ._context import ShardInfo, current_shard
from ._errors import ModelError, RunInterrupted, SimulationError, SinkError
from .model._generator import DataOnlineGenerator
from .model._vocabulary import EventSink, Subject, SubjectFactory, Transition
from .report._grapher import DataOnlineGeneratorGrapher
from .run._result import Progress, RunResult, ShardResult
from .sinks._printing import CountingSink, PrintingSink

try:
    __version__ = version("doge-dist")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+local"

__all__ = [
    "DataOnlineGenerator",
    "DataOnlineGeneratorGrapher",
    "Subject",
    "SubjectFactory",
    "Transition",
    "EventSink",
    "PrintingSink",
    "CountingSink",
    "KafkaSinkFactory",
    "KafkaSink",
    "KafkaAvroSinkFactory",
    "DbSinkFactory",
    "DbSink",
    "JsonLinesSink",
    "CsvSink",
    "RunResult",
    "ShardResult",
    "Progress",
    "ModelError",
    "SimulationError",
    "SinkError",
    "RunInterrupted",
    "ShardInfo",
    "current_shard",
    "release_workers",
    "load_model",
    "dump_model",
    "__version__",
]

_LAZY_SINKS = {"KafkaSinkFactory", "KafkaSink", "KafkaAvroSinkFactory", "DbSinkFactory", "DbSink",
               "JsonLinesSink", "CsvSink"}


def __getattr__(name: str) -> Any:
    if name in _LAZY_SINKS:
        value = getattr(importlib.import_module(".sinks", __name__), name)
        globals()[name] = value
        return value
    if name in ("load_model", "dump_model"):  # PyYAML loads with the first model
        from .model import _yaml_model

        return getattr(_yaml_model, name)
    if name == "release_workers":
        from .run._ray_backend import release_workers

        return release_workers
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
