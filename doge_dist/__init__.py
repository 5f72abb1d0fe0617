"""doge-dist: simulate subjects walking a probabilistic state machine and emit their events.

A drop-in successor of doge-datagen 1.0.4 (change ``doge_datagen`` to ``doge_dist``) with an
event-driven engine, seeded reproducibility and sharded runs on Ray.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ._context import ShardInfo, current_shard
from ._errors import ModelError, RunInterrupted, SimulationError, SinkError
from ._lazy import lazy_getattr
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

__getattr__ = lazy_getattr(__name__, frozenset({
    "KafkaSinkFactory", "KafkaSink", "KafkaAvroSinkFactory", "DbSinkFactory", "DbSink", "JsonLinesSink",
    "CsvSink", "load_model", "dump_model", "release_workers"}), globals())
