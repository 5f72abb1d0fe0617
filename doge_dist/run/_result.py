"""What a run reports: counts per trigger and sink, timings, the timeline, and per-shard detail."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["RunResult", "ShardResult", "Progress", "Timeline", "RateReport", "merge_shards", "add_counts"]


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
    created: int = 0
    departed: int = 0

    @property
    def subjects(self) -> int:
        return self.stop - self.start


@dataclass
class Timeline:
    """Events per trigger and population changes per bucket of ``bucket_ticks`` ticks.

    Buckets are fixed by the run's settings (never by its windows), so the timeline is the same at
    any worker count. ``events[b]`` lists counts per trigger in ``triggers`` order.
    """

    bucket_ticks: int
    tick_ms: int
    timestamp_start: int
    triggers: list[str]
    events: dict[int, list[int]] = field(default_factory=dict)
    created: dict[int, int] = field(default_factory=dict)
    departed: dict[int, int] = field(default_factory=dict)
    initial: int = 0

    def bucket_start_ms(self, bucket: int) -> int:
        return self.timestamp_start + bucket * self.bucket_ticks * self.tick_ms

    def live(self) -> list[tuple[int, int]]:
        """(bucket, live subjects at the bucket's end) for every bucket with a change."""
        live, out = self.initial, []
        for bucket in sorted(set(self.created) | set(self.departed)):
            live += self.created.get(bucket, 0) - self.departed.get(bucket, 0)
            out.append((bucket, live))
        return out


@dataclass
class RateReport:
    """Target and achieved event rates of a paced run (``start(rate=...)`` or a load shape)."""

    steps: list[dict[str, Any]] = field(default_factory=list)       # per load step: target, achieved
    per_second: list[dict[str, float]] = field(default_factory=list)  # second, target, achieved
    target_events: float = 0.0
    achieved_events: int = 0

    @property
    def shortfall(self) -> float:
        """Fraction of the target not reached (0 when on target or ahead)."""
        if self.target_events <= 0:
            return 0.0
        return max(0.0, 1.0 - self.achieved_events / self.target_events)


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
    status: str = "completed"          # completed | stopped | failed
    timings: dict[str, float] = field(default_factory=dict)
    created: int = 0                   # subjects created (initial population and arrivals)
    departed: int = 0                  # subjects that entered a final state
    timeline: Timeline | None = None
    rate: RateReport | None = None
    restarts: int = 0                  # shards recovered after their worker was lost
    notes: list[str] = field(default_factory=list)
    first_tick: int = 0                # a resumed run goes on from its checkpoint's tick
    run_id: str = ""
    checkpoint: dict[str, Any] | None = None       # folder, latest tick, what was written
    possible_duplicates: dict[str, int] = field(default_factory=dict)  # by sink, after recoveries

    @property
    def live(self) -> int:
        """Subjects still in the run at its end."""
        return self.created - self.departed

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
        data["live"] = self.live
        if self.timeline is not None:
            data["timeline"]["events"] = {str(k): v for k, v in sorted(self.timeline.events.items())}
            data["timeline"]["created"] = {str(k): v for k, v in sorted(self.timeline.created.items())}
            data["timeline"]["departed"] = {str(k): v for k, v in sorted(self.timeline.departed.items())}
        if self.rate is not None:
            data["rate"]["shortfall"] = self.rate.shortfall
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
    live: int | None = None
    target_rate: float | None = None     # events/s asked for (rate-paced runs)
    achieved_rate: float | None = None   # events/s over the last second (rate-paced runs)

    @property
    def events_per_s(self) -> float:
        return self.total_events / self.elapsed_s if self.elapsed_s > 0 else 0.0


def add_counts(dicts: list[dict[str, int]]) -> dict[str, int]:
    """Key-wise sum of count dicts (shards' counts into one)."""
    out: dict[str, int] = {}
    for d in dicts:
        for key, value in d.items():
            out[key] = out.get(key, 0) + value
    return out


def merge_shards(shards: list[ShardResult], *, subjects: int, ticks: int, elapsed_s: float,
                 workers: int, window: int, seed: int | None, stopped: bool, max_lag_s: float,
                 **extra: Any) -> RunResult:
    """Sum per-shard counts into one RunResult."""
    stats: dict[str, dict[str, int]] = {}
    for shard in shards:
        for name, numbers in shard.sink_stats.items():
            slot = stats.setdefault(name, {})
            for key, value in numbers.items():
                if isinstance(value, (int, float)):
                    slot[key] = slot.get(key, 0) + value
    return RunResult(
        events_by_trigger=add_counts([s.events_by_trigger for s in shards]),
        vetoed_by_trigger=add_counts([s.vetoed_by_trigger for s in shards]),
        events_by_sink=add_counts([s.events_by_sink for s in shards]),
        events_by_transition=add_counts([s.events_by_transition for s in shards]),
        total_events=sum(s.total_events for s in shards),
        total_vetoed=sum(s.total_vetoed for s in shards),
        subjects=subjects,
        ticks=ticks,
        elapsed_s=elapsed_s,
        workers=workers,
        window=window,
        seed=seed,
        stopped=stopped,
        max_lag_s=max_lag_s,
        sink_stats=stats,
        shards=sorted(shards, key=lambda s: s.shard),
        created=sum(s.created for s in shards),
        departed=sum(s.departed for s in shards),
        **extra,
    )
