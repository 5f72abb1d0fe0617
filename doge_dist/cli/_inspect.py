"""Text output of ``doge-dist inspect``."""

from __future__ import annotations

import math

from ..model._analysis import ModelAnalysis
from ..model._dynamics import format_timestamp
from ..model._expected import WEEKDAYS

__all__ = ["format_analysis", "format_calendar", "format_population"]

_COLUMNS = 8  # triggers per table: wider models get several tables


def _num(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "infinite"
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.1f}"
    return f"{value:.{digits}g}"


def _rows(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(c) for c in column) for column in zip(header, *rows, strict=True)]
    out = []
    for i, row in enumerate([header, *rows]):
        out.append("  " + "  ".join(c.ljust(w) if j == 0 else c.rjust(w)
                                    for j, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip())
        if i == 0:
            out.append("  " + "  ".join("-" * w for w in widths))
    return out


def format_analysis(a: ModelAnalysis, *, target: str, tick_ms: int, fingerprint: str) -> str:
    """A readable report: reachability, long-run shares, stays, expected events."""
    ticks_text = "unbounded ticks" if a.ticks is None else f"{a.ticks:,} ticks"
    lines = [
        f"model {target}: valid",
        f"  fingerprint {fingerprint[:16]}",
        f"  {len(a.states)} states, {sum(1 for _ in a.by_transition)} transitions, {len(a.by_sink)} sink(s); "
        f"initial state {a.initial_state!r}",
        f"  population {a.subjects:,} subjects x {ticks_text} of {tick_ms:,} ms",
        "",
        "reachability (from the initial state)",
        f"  unreachable states: {', '.join(a.unreachable) or 'none'}",
        f"  final (dead-end) states: {', '.join(a.final_states) or 'none'}",
        "",
        f"long-run share of subjects (stationary distribution of the per-tick chain): {a.stationary_note}",
    ]
    share = a.stationary if a.stationary is not None else a.long_run_from_initial
    share_title = "stationary share" if a.stationary is not None else "long-run share from initial"
    header = ["state", share_title]
    if a.distribution_at_end is not None:
        header.append(f"share after {a.ticks:,} ticks")
    header.append("expected stay (ticks)")
    rows = []
    for state in a.states:
        row = [state, f"{100 * share[state]:.4f}%"]
        if a.distribution_at_end is not None:
            row.append(f"{100 * a.distribution_at_end[state]:.4f}%")
        row.append(_num(a.expected_stay[state]))
        rows.append(row)
    lines += _rows(header, rows)
    lines.append("  (expected stay = 1/q, q = per-tick probability of moving to another state; "
                 "self-loop transitions do not end a stay)")
    lines.append("")
    lines.append(f"expected events at {a.subjects:,} subjects, all starting in {a.initial_state!r}")
    count_title = "expected count" if a.ticks is None else f"expected over {a.ticks:,} ticks"
    for title, estimates in (("trigger", a.by_trigger), ("sink", a.by_sink)):
        if not estimates:
            lines.append(f"  (no {title}s)")
            continue
        rows = [[name, _num(e.rate_per_tick), _num(e.expected_count)] for name, e in estimates.items()]
        lines += _rows([title, "per tick (stationary)", count_title], rows)
        lines.append("")
    if a.calendar is not None:
        lines += format_calendar(a.calendar)
    if a.population is not None:
        lines += format_population(a.population)
    if a.stationary is None:
        lines.append("  per-tick rates are not given: the stationary distribution is not unique")
    if a.ticks is None:
        lines.append("  expected counts are not given: the run is unbounded")
    for note in a.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines).rstrip() + "\n"


def _wide(first: str, labels: list[str], columns: dict[str, list[float | None]]) -> list[str]:
    """One row per label, one column per trigger, in tables of at most _COLUMNS triggers."""
    names = list(columns)
    out: list[str] = []
    for lo in range(0, len(names), _COLUMNS):
        group = names[lo:lo + _COLUMNS]
        rows = [[label, *(_num(columns[name][i]) for name in group)] for i, label in enumerate(labels)]
        out += _rows([first, *group], rows)
        out.append("")
    return out


def format_calendar(calendar) -> list[str]:
    """Expected events per hour of day and per weekday, per trigger (profiled models)."""
    span = (f"{calendar.ticks:,} ticks from {format_timestamp(calendar.timestamp_start)}")
    lines = [f"expected events per hour of day ({calendar.tz}) in one such hour, per trigger "
             f"(average over {span})"]
    labels = [f"{h:02d}-{(h + 1) % 24:02d}" for h in range(24)]
    lines += _wide("hour", labels, calendar.per_hour)
    lines.append("expected events per day of the week in one such day, per trigger")
    lines += _wide("day", list(WEEKDAYS), calendar.per_weekday)
    if any(v <= 0 for v in calendar.hours_covered) or any(v <= 0 for v in calendar.days_covered):
        lines.append("  (-: the analysed ticks do not cover that hour or day)")
        lines.append("")
    return lines


def format_population(outlook) -> list[str]:
    """Expected arrivals, departures and live subjects over the run (models with arrivals)."""
    what = "over the run" if outlook.bounded else "over the first week of the unbounded run"
    lines = [f"expected population {what} (departed = entered a final state)"]
    rows = [["0", "start", "0", "0", _num(float(outlook.initial))]]
    rows += [[f"{row['tick']:,}", row["time"], _num(row["arrived"]), _num(row["departed"]), _num(row["live"])]
             for row in outlook.rows]
    lines += _rows(["tick", "time", "arrived", "departed", "live"], rows)
    lines.append("")
    return lines
