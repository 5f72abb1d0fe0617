"""What a finished run prints (a summary table) and writes (``--report out.json``)."""

from __future__ import annotations

import datetime as _dt
import json
import platform
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ..run._result import RunResult
from ._mask import Masker

__all__ = ["package_versions", "summary_table", "build_report", "write_report", "REPORT_FORMAT"]

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


def summary_table(result: RunResult, *, status: str, tick_ms: int | None = None,
                  realtime: bool = False, speed: float = 1.0, mask: Callable[[str], str] = _same) -> str:
    """Events and vetoes per trigger, events and delivery stats per sink, rate and time.

    ``mask`` is applied to the names (triggers, sinks), not to the table around them.
    """
    ticks = f"{result.ticks:,} ticks"
    head = (f"doge-dist: run {status}: {result.subjects:,} subjects x {ticks} in {result.elapsed_s:.2f} s "
            f"(workers {result.workers}, seed {result.seed})")
    lines = [head, ""]
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
    lines.append(f"  rate: {result.events_per_s:,.0f} events/s, {result.subject_ticks_per_s:,.0f} "
                 f"subject-ticks/s; time {result.elapsed_s:.3f} s")
    if realtime:
        pace = f"{tick_ms} ms per tick at speed {speed:g}" if tick_ms else f"speed {speed:g}"
        lines.append(f"  realtime: {pace}; max lag behind the wall clock {result.max_lag_s:.3f} s")
    return "\n".join(lines)


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
    masking: str | None = None,
    stopped_by: str | None = None,
) -> dict[str, Any]:
    """The JSON report of a run (every string masked).

    ``masked`` lists the spec fields shown (partly) as ``***`` and ``masking`` states the rule;
    ``stopped_by`` names the signal that stopped the run, if one did.
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
        "masking": masking,
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
        "result": None,
    }
    if result is not None:
        report.update(
            events_by_trigger=result.events_by_trigger,
            vetoed_by_trigger=result.vetoed_by_trigger,
            events_by_sink=result.events_by_sink,
            events_by_transition=result.events_by_transition,
            total_events=result.total_events,
            sink_stats=result.sink_stats,
            result=result.to_dict(),
        )
    return masker.mask_data(report)


def write_report(path: str | Path, report: dict[str, Any]) -> Path:
    """Write the report as indented JSON (directories created)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    return target
