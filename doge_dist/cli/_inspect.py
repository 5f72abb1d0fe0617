"""Text output of ``doge-dist inspect``."""

from __future__ import annotations

import math

from ..model._analysis import ModelAnalysis

__all__ = ["format_analysis"]


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
    if a.stationary is None:
        lines.append("  per-tick rates are not given: the stationary distribution is not unique")
    if a.ticks is None:
        lines.append("  expected counts are not given: the run is unbounded")
    for note in a.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines).rstrip() + "\n"
