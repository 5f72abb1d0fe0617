"""Compare a real log with a generated one: event mix, what follows what, dwell times, time of day.

Each log is streamed once into counters: events per type, next-event pairs per subject, events per
hour of day (UTC), and for each event type a uniform reservoir sample (up to ``DWELL_SAMPLE``
values) of the time until the same subject's next event. Memory is per event type and per
subject (a cursor: last event, last time), not per event.

Metrics (all in [0, 1], 0 = identical):

- ``event_share_tv``: total variation distance between the event-type distributions;
- ``next_event_tv``: per event type, the TV distance between the distributions of the next
  event (same subject), averaged with the real log's counts as weights;
- ``dwell_ks``: per event type, the two-sample Kolmogorov-Smirnov statistic (scipy) between the
  times to the same subject's next event;
- ``hourly_tv``: TV distance between the events-per-hour-of-day distributions.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._names import Names, SubjectIndex, grow
from ._readers import LogBatch

__all__ = ["DWELL_SAMPLE", "Reservoir", "LogStats", "Comparison", "compare_logs", "total_variation",
           "CompareError"]

DWELL_SAMPLE = 100_000
HOUR_MS = 3_600_000
_NONE = -1
_BITS = 21


class CompareError(ValueError):
    """A log cannot be compared (empty, events out of time order)."""


class Reservoir:
    """A uniform random sample of at most ``capacity`` values of a stream (Algorithm R, vectorised)."""

    def __init__(self, capacity: int, rng: np.random.Generator) -> None:
        self.capacity = capacity
        self.values = np.empty(min(capacity, 1024), dtype=np.int64)
        self.size = 0
        self.seen = 0
        self.rng = rng

    def add(self, values: np.ndarray) -> None:
        room = self.capacity - self.size
        if room > 0:
            take = values[:room]
            if self.size + take.size > len(self.values):
                self.values = grow(self.values, min(self.capacity, self.size + take.size), 0)
            self.values[self.size:self.size + take.size] = take
            self.size += take.size
            self.seen += take.size
            values = values[take.size:]
        if values.size:
            index = self.seen + np.arange(1, values.size + 1)
            slot = self.rng.integers(0, index)
            keep = slot < self.capacity
            self.values[slot[keep]] = values[keep]
            self.seen += values.size

    def sample(self) -> np.ndarray:
        return self.values[:self.size]


class LogStats:
    """The counters of one log (fed batch by batch; each subject's events in time order)."""

    def __init__(self, label: str, sample: int = DWELL_SAMPLE, seed: int = 0) -> None:
        self.label = label
        self.sample_size = sample
        self.rng = np.random.default_rng(seed)
        self.subjects = SubjectIndex()
        self.events = Names()
        self.event_counts = np.zeros(0, dtype=np.int64)
        self.next_counts: dict[tuple[int, int], int] = {}
        self.dwell: dict[int, Reservoir] = {}
        self.hourly = np.zeros(24, dtype=np.int64)
        self.cur_event = np.full(1024, _NONE, dtype=np.int64)
        self.cur_time = np.zeros(1024, dtype=np.int64)
        self.n_events = 0
        self.first_ms: int | None = None
        self.last_ms: int | None = None
        self.sources: list[str] = []

    def add(self, batch: LogBatch) -> None:
        n = len(batch)
        if n == 0:
            return
        if batch.source not in self.sources:
            self.sources.append(batch.source)
        sid, _ = self.subjects.encode(batch.subject)
        ev, _ = self.events.encode(batch.event)
        t = batch.time_ms
        if len(self.subjects) > len(self.cur_event):
            self.cur_event = grow(self.cur_event, len(self.subjects), _NONE)
            self.cur_time = grow(self.cur_time, len(self.subjects), 0)
        self.event_counts = grow(self.event_counts, len(self.events), 0)
        self.event_counts[:len(self.events)] += np.bincount(ev, minlength=len(self.events))
        self.hourly += np.bincount((t // HOUR_MS) % 24, minlength=24)

        order = np.argsort(sid, kind="stable")
        sid, ev_s, t_s = sid[order], ev[order], t[order]
        starts = np.empty(n, dtype=bool)
        starts[0] = True
        np.not_equal(sid[1:], sid[:-1], out=starts[1:])
        prev_event = np.empty(n, dtype=np.int64)
        prev_time = np.empty(n, dtype=np.int64)
        prev_event[1:] = ev_s[:-1]
        prev_time[1:] = t_s[:-1]
        rows = np.flatnonzero(starts)
        prev_event[rows] = self.cur_event[sid[rows]]
        prev_time[rows] = self.cur_time[sid[rows]]
        has_prev = prev_event != _NONE
        dwell = t_s - prev_time
        backwards = has_prev & (dwell < 0)
        if backwards.any():
            row = int(np.flatnonzero(backwards)[0])
            key = self.subjects.key_of(int(sid[row]))
            record = batch.first_record + int(order[row])
            raise CompareError(f"{batch.source}: record {record:,}: subject {key!r} has an event earlier "
                               "than its previous one; each subject's events must be in time order (sort the "
                               "log by time)")
        a, b, d = prev_event[has_prev], ev_s[has_prev], dwell[has_prev]
        if a.size:
            unique, counts = np.unique((a << _BITS) | b, return_counts=True)
            table = self.next_counts
            for key, count in zip(unique.tolist(), counts.tolist()):
                pair = (key >> _BITS, key & ((1 << _BITS) - 1))
                table[pair] = table.get(pair, 0) + count
            by_event = np.argsort(a, kind="stable")
            a_sorted, d_sorted = a[by_event], d[by_event]
            cuts = np.flatnonzero(np.diff(a_sorted)) + 1
            for chunk_a, chunk_d in zip(np.split(a_sorted, cuts), np.split(d_sorted, cuts)):
                event = int(chunk_a[0])
                reservoir = self.dwell.get(event)
                if reservoir is None:
                    reservoir = self.dwell[event] = Reservoir(self.sample_size, self.rng)
                reservoir.add(chunk_d)
        ends = np.empty(n, dtype=bool)
        ends[-1] = True
        np.not_equal(sid[1:], sid[:-1], out=ends[:-1])
        self.cur_event[sid[ends]] = ev_s[ends]
        self.cur_time[sid[ends]] = t_s[ends]
        self.n_events += n
        low, high = int(t.min()), int(t.max())
        self.first_ms = low if self.first_ms is None else min(self.first_ms, low)
        self.last_ms = high if self.last_ms is None else max(self.last_ms, high)

    # -- views by event name --------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        return {name: int(self.event_counts[i]) for i, name in enumerate(self.events.names())}

    def next_distribution(self) -> dict[str, dict[str, int]]:
        names = self.events.names()
        out: dict[str, dict[str, int]] = {}
        for (a, b), count in self.next_counts.items():
            out.setdefault(names[a], {})[names[b]] = count
        return out

    def dwell_samples(self) -> dict[str, np.ndarray]:
        names = self.events.names()
        return {names[e]: r.sample() for e, r in self.dwell.items()}

    def summary(self) -> dict[str, Any]:
        return {"logs": list(self.sources), "events": self.n_events, "subjects": len(self.subjects),
                "first": _iso(self.first_ms), "last": _iso(self.last_ms)}


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return _dt.datetime.fromtimestamp(ms / 1000, _dt.timezone.utc).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


def total_variation(p: dict[Any, float] | np.ndarray, q: dict[Any, float] | np.ndarray) -> float:
    """Half the L1 distance between two distributions (counts are normalised first)."""
    if isinstance(p, dict):
        keys = sorted(set(p) | set(q), key=str)
        p = np.array([p.get(k, 0) for k in keys], dtype=np.float64)
        q = np.array([q.get(k, 0) for k in keys], dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        return 1.0 if p.sum() != q.sum() else 0.0
    return float(0.5 * np.abs(p / p.sum() - q / q.sum()).sum())


@dataclass
class Comparison:
    """The numbers of ``doge-dist compare`` (see the module docstring)."""

    event_share_tv: float
    next_event_tv: float
    dwell_ks: dict[str, float]
    dwell_ks_mean: float
    hourly_tv: float
    by_event: dict[str, dict[str, Any]]
    hourly: dict[str, list[float]]
    real: dict[str, Any]
    generated: dict[str, Any]
    dwell_samples: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"event_share_tv": self.event_share_tv, "next_event_tv": self.next_event_tv,
                "dwell_ks": self.dwell_ks, "dwell_ks_mean": self.dwell_ks_mean, "hourly_tv": self.hourly_tv,
                "by_event": self.by_event, "hourly": self.hourly, "real": self.real,
                "generated": self.generated}

    def table(self) -> str:
        """The metrics, then one row per event type (the real log's most frequent first)."""
        lines = [
            f"real: {self.real['events']:,} events of {self.real['subjects']:,} subjects; "
            f"generated: {self.generated['events']:,} events of {self.generated['subjects']:,} subjects",
            "",
            "  metric                               value",
            "  -----------------------------------  ------",
            f"  event_share_tv (event mix)           {self.event_share_tv:.4f}",
            f"  next_event_tv (what follows what)    {self.next_event_tv:.4f}",
            f"  dwell_ks (mean, weighted by counts)  {self.dwell_ks_mean:.4f}",
            f"  hourly_tv (events per hour of day)   {self.hourly_tv:.4f}",
            "",
        ]
        header = ["event", "real share", "gen share", "next TV", "dwell KS", "real n", "gen n"]
        rows = []
        for name, row in self.by_event.items():
            rows.append([name, f"{row['real_share']:.4f}", f"{row['generated_share']:.4f}",
                         _opt(row.get("next_event_tv")), _opt(row.get("dwell_ks")),
                         f"{row['real_count']:,}", f"{row['generated_count']:,}"])
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for k, row in enumerate([header, *rows]):
            lines.append("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                          for i, (c, w) in enumerate(zip(row, widths))))
            if k == 0:
                lines.append("  " + "  ".join("-" * w for w in widths))
        return "\n".join(lines)


def _opt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def compare_logs(real_batches: Iterable[LogBatch], generated_batches: Iterable[LogBatch], *,
                 sample: int = DWELL_SAMPLE, seed: int = 0) -> Comparison:
    """Stream both logs and compute the metrics."""
    real = LogStats("real", sample, seed)
    for batch in real_batches:
        real.add(batch)
    generated = LogStats("generated", sample, seed + 1)
    for batch in generated_batches:
        generated.add(batch)
    return compare_stats(real, generated)


def compare_stats(real: LogStats, generated: LogStats) -> Comparison:
    """The metrics of two logs' counters."""
    from scipy.stats import ks_2samp

    for stats in (real, generated):
        if stats.n_events == 0:
            raise CompareError(f"the {stats.label} log has no events")
    real_counts, gen_counts = real.counts(), generated.counts()
    real_next, gen_next = real.next_distribution(), generated.next_distribution()
    real_dwell, gen_dwell = real.dwell_samples(), generated.dwell_samples()
    real_total = max(sum(real_counts.values()), 1)
    gen_total = max(sum(gen_counts.values()), 1)

    weighted = weight = 0.0
    by_event: dict[str, dict[str, Any]] = {}
    names = sorted(real_counts, key=lambda e: (-real_counts[e], e)) + sorted(
        (e for e in gen_counts if e not in real_counts), key=lambda e: (-gen_counts[e], e))
    dwell_ks: dict[str, float] = {}
    ks_weighted = ks_weight = 0.0
    for name in names:
        row: dict[str, Any] = {"real_count": real_counts.get(name, 0),
                               "generated_count": gen_counts.get(name, 0),
                               "real_share": real_counts.get(name, 0) / real_total,
                               "generated_share": gen_counts.get(name, 0) / gen_total}
        followers = real_next.get(name)
        if followers:
            n_follow = sum(followers.values())
            tv = total_variation(followers, gen_next.get(name, {})) if gen_next.get(name) else 1.0
            row["next_event_tv"] = tv
            weighted += n_follow * tv
            weight += n_follow
        sample = real_dwell.get(name)
        if sample is not None and sample.size:
            other = gen_dwell.get(name)
            if other is not None and other.size:
                test = ks_2samp(sample, other)
                statistic, pvalue = float(test.statistic), float(test.pvalue)
            else:
                statistic, pvalue = 1.0, 0.0
            dwell_ks[name] = statistic
            row["dwell_ks"] = statistic
            row["dwell_pvalue"] = pvalue
            row["dwell_samples"] = {"real": int(sample.size),
                                    "generated": int(0 if other is None else other.size)}
            ks_weighted += real_counts.get(name, 0) * statistic
            ks_weight += real_counts.get(name, 0)
        by_event[name] = row
    real_hourly = real.hourly / max(real.hourly.sum(), 1)
    gen_hourly = generated.hourly / max(generated.hourly.sum(), 1)
    return Comparison(
        event_share_tv=total_variation(real_counts, gen_counts),
        next_event_tv=weighted / weight if weight else 0.0,
        dwell_ks=dwell_ks,
        dwell_ks_mean=ks_weighted / ks_weight if ks_weight else 0.0,
        hourly_tv=total_variation(real.hourly, generated.hourly),
        by_event=by_event,
        hourly={"real": real_hourly.tolist(), "generated": gen_hourly.tolist()},
        real=real.summary(), generated=generated.summary(),
        dwell_samples={name: {"real": real_dwell.get(name, np.empty(0, np.int64)),
                              "generated": gen_dwell.get(name, np.empty(0, np.int64))} for name in names},
    )
