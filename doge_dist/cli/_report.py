"""What a finished run prints (a summary table) and writes (``--report out.json``)."""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ..run._result import RunResult
from ._mask import Masker

__all__ = ["package_versions", "summary_table", "build_report", "write_report", "describe_counts",
           "run_timings", "rate_lines", "rate_section", "REPORT_FORMAT", "TIMING_PARTS"]

REPORT_FORMAT = 1
_PACKAGES = ("doge-dist", "numpy", "ray", "confluent-kafka", "sqlalchemy")


def package_versions() -> dict[str, str | None]:
    """Installed versions of doge-dist and the libraries that shape its output, plus Python."""
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    versions["python"] = platform.python_version()
    return versions


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = []
    for i, row in enumerate([header, *rows]):
        cells = [str(c).ljust(w) if j == 0 else str(c).rjust(w) for j, (c, w) in enumerate(zip(row, widths,
                                                                                                  strict=True))]
        lines.append("  " + "  ".join(cells).rstrip())
        if i == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return lines


def _same(text: str) -> str:
    return text


#: The parts of a run's wall time (``RunResult.timings``), in order, with their names in the summary.
TIMING_PARTS = (("ray_start_s", "Ray start"), ("actor_start_s", "actor start"),
                ("create_s", "subject creation"), ("simulate_s", "simulation"), ("close_s", "closing sinks"))


def run_timings(result: RunResult) -> dict[str, float]:
    """The run's wall-time parts (empty when the run does not report them)."""
    timings = getattr(result, "timings", None) or {}
    return {k: float(v) for k, v in dict(timings).items() if isinstance(v, (int, float))}


def _time_line(result: RunResult, wall_s: float | None) -> str:
    timings = run_timings(result)
    total = wall_s if wall_s is not None else timings.get("total_s", result.elapsed_s)
    parts = [f"{label} {timings[key]:.2f} s" for key, label in TIMING_PARTS if key in timings]
    if parts:
        return f"  time: {total:.2f} s wall = " + " + ".join(parts)
    if wall_s is not None and wall_s - result.elapsed_s > max(0.05, 0.1 * wall_s):
        return (f"  time: {total:.2f} s wall; {result.elapsed_s:.2f} s in the shards (creation, simulation, "
                "closing sinks), the rest starting and stopping workers")
    return f"  time: {total:.2f} s wall"


def describe_counts(result: RunResult) -> str:
    """``1,234 events in 3 ticks from 2 shard(s); sinks delivered 1,200, failed 34`` (for one-line errors)."""
    shards = len(result.shards) or result.workers
    text = f"{result.total_events:,} events in {result.ticks:,} ticks from {shards} shard(s)"
    totals: dict[str, int] = {}
    for stats in result.sink_stats.values():
        for key in ("delivered", "failed"):
            if isinstance(stats.get(key), (int, float)):
                totals[key] = totals.get(key, 0) + int(stats[key])
    if totals:
        text += "; sinks " + ", ".join(f"{key} {value:,}" for key, value in totals.items())
    return text


def summary_table(result: RunResult, *, status: str, tick_ms: int | None = None,
                  realtime: bool = False, speed: float = 1.0, mask: Callable[[str], str] = _same,
                  wall_s: float | None = None, workers_choice: str | None = None) -> str:
    """Events and vetoes per trigger, events and delivery stats per sink, rate and time.

    ``wall_s`` is the whole run's wall time as the caller measured it (Ray start included); the parts
    come from ``result.timings`` when the run reports them. ``mask`` is applied to the names
    (triggers, sinks), not to the table around them.
    """
    ticks = f"{result.ticks:,} ticks"
    total = wall_s if wall_s is not None else run_timings(result).get("total_s", result.elapsed_s)
    head = (f"doge-dist: run {status}: {result.subjects:,} subjects x {ticks} in {total:.2f} s "
            f"(workers {result.workers}, seed {result.seed})")
    lines = [head]
    if workers_choice:
        lines.append(f"  workers: {result.workers} ({workers_choice})")
    lines.append("")
    triggers = list(dict.fromkeys([*result.events_by_trigger, *result.vetoed_by_trigger]))
    rows = [[mask(t), f"{result.events_by_trigger.get(t, 0):,}", f"{result.vetoed_by_trigger.get(t, 0):,}"]
            for t in triggers]
    rows.append(["total", f"{result.total_events:,}", f"{result.total_vetoed:,}"])
    lines += _table(["trigger", "events", "vetoed"], rows)
    if result.events_by_sink:
        stat_keys = list(dict.fromkeys(k for stats in result.sink_stats.values() for k in stats))
        rows = [[mask(name), f"{count:,}",
                 *(_count(result.sink_stats.get(name, {}).get(k)) for k in stat_keys)]
                for name, count in result.events_by_sink.items()]
        lines.append("")
        lines += _table(["sink", "events", *stat_keys], rows)
    lines.append("")
    simulate = run_timings(result).get("simulate_s", result.elapsed_s)
    rate_events = result.total_events / simulate if simulate > 0 else 0.0
    rate_ticks = result.subjects * result.ticks / simulate if simulate > 0 else 0.0
    lines.append(f"  rate: {rate_events:,.0f} events/s, {rate_ticks:,.0f} subject-ticks/s "
                 f"(over {simulate:.3f} s)")
    lines.append(_time_line(result, wall_s))
    rate = getattr(result, "rate", None)
    if realtime and rate is None:
        pace = f"{tick_ms} ms per tick at speed {speed:g}" if tick_ms else f"speed {speed:g}"
        lines.append(f"  realtime: {pace}; max lag behind the wall clock {result.max_lag_s:.3f} s")
    if rate is not None:
        lines += rate_lines(rate)
    return "\n".join(lines)


def rate_lines(rate: Any) -> list[str]:
    """The target event rate of a paced run: totals, shortfall, and per step target vs achieved."""
    from ..report._html import RATE_HEADER, rate_rows

    lines = [f"  target rate: {rate.target_events:,.0f} events targeted, {rate.achieved_events:,} achieved, "
             f"shortfall {rate.shortfall:.1%}"]
    if rate.steps:
        lines += _table(list(RATE_HEADER), rate_rows(rate))
    return lines


def rate_section(rate: Any) -> dict[str, Any] | None:
    """The report's ``rate``: per step target and achieved events/s, totals and the shortfall."""
    if rate is None:
        return None
    return {"target_events": rate.target_events, "achieved_events": rate.achieved_events,
            "shortfall": rate.shortfall, "steps": list(rate.steps)}


def _count(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, (int, float)) else str(value)


def build_report(
    *,
    status: str,
    masker: Masker,
    spec: dict[str, Any],
    fingerprint: str | None,
    seed: int | None,
    result: RunResult | None,
    started_at: _dt.datetime,
    finished_at: _dt.datetime,
    build_s: float,
    run_s: float | None,
    error: str | None = None,
    generator: dict[str, Any] | None = None,
    masked: list[str] | None = None,
    masked_variables: list[str] | None = None,
    masking: str | None = None,
    stopped_by: str | None = None,
    workers_choice: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON report of a run (every string masked).

    ``masked`` lists the spec fields shown (partly) as ``***``, ``masked_variables`` the environment
    variables whose values are masked (names, never values), and ``masking`` states the rule;
    ``stopped_by`` names the signal that stopped the run, if one did. A failed run's partial result
    (every shard's counts so far) is reported like a finished one's. ``timings`` holds the wall-time
    parts of the run when it reports them (``ray_start_s``, ``actor_start_s``, ``create_s``,
    ``simulate_s``, ``close_s``, ``total_s``).
    """
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "status": status,
        "error": error,
        "stopped_by": stopped_by,
        "model_fingerprint": fingerprint,
        "seed": seed,
        "spec": spec,
        "masked": list(masked or []),
        "masked_variables": list(masked_variables or []),
        "masking": masking,
        "workers_choice": workers_choice,
        "generator": generator,
        "versions": package_versions(),
        "timings": {
            "started_at": started_at.isoformat(),
            "finished_at": finished_at.isoformat(),
            "build_s": build_s,
            "run_s": run_s,
        },
        "events_by_trigger": None,
        "vetoed_by_trigger": None,
        "events_by_sink": None,
        "events_by_transition": None,
        "total_events": None,
        "sink_stats": None,
        "rate": None,
        "result": None,
    }
    if result is not None:
        report["timings"].update(run_timings(result))
        report.update(
            events_by_trigger=result.events_by_trigger,
            vetoed_by_trigger=result.vetoed_by_trigger,
            events_by_sink=result.events_by_sink,
            events_by_transition=result.events_by_transition,
            total_events=result.total_events,
            sink_stats=result.sink_stats,
            rate=rate_section(getattr(result, "rate", None)),
            result=result.to_dict(),
        )
    return _json_safe(masker.mask_data(report))


def _json_safe(value: Any) -> Any:
    """Non-finite floats (an unbounded step's ``for_s``) as null: the report stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_report(path: str | Path, report: dict[str, Any]) -> Path:
    """Write the report as indented JSON (directories created)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    return target
