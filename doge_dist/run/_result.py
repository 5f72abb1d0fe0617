"""What a run reports: counts per trigger and sink, timings, and per-shard detail."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["RunResult", "ShardResult", "Progress"]


@dataclass
class ShardResult:
    """One shard's share of a run."""

    shard: int
    start: int
    stop: int
    ticks: int
    total_events: int
    total_vetoed: int
    events_by_trigger: dict[str, int]
    vetoed_by_trigger: dict[str, int]
    events_by_sink: dict[str, int]
    sink_stats: dict[str, dict[str, int]]
    create_s: float
    engine_s: float
    close_s: float
    events_by_transition: dict[str, int] = field(default_factory=dict)

    @property
    def subjects(self) -> int:
        return self.stop - self.start


@dataclass
class RunResult:
    """The outcome of ``DataOnlineGenerator.start()``, aggregated over shards."""

    events_by_trigger: dict[str, int]
    vetoed_by_trigger: dict[str, int]
    events_by_sink: dict[str, int]
    events_by_transition: dict[str, int]
    total_events: int
    total_vetoed: int
    subjects: int
    ticks: int
    elapsed_s: float
    workers: int = 1
    window: int = 0
    seed: int | None = None
    stopped: bool = False
    max_lag_s: float = 0.0
    sink_stats: dict[str, dict[str, int]] = field(default_factory=dict)
    shards: list[ShardResult] = field(default_factory=list)

    @property
    def events_per_s(self) -> float:
        return self.total_events / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def subject_ticks_per_s(self) -> float:
        return self.subjects * self.ticks / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready), including the derived rates."""
        data = asdict(self)
        data["events_per_s"] = self.events_per_s
        data["subject_ticks_per_s"] = self.subject_ticks_per_s
        return data


@dataclass
class Progress:
    """Handed to a ``progress`` callback at every window boundary."""

    ticks_done: int
    ticks_total: int | None
    total_events: int
    events_by_sink: dict[str, int]
    elapsed_s: float
    lag_s: float = 0.0
    failed_by_sink: dict[str, int] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return self.total_events / self.elapsed_s if self.elapsed_s > 0 else 0.0
