"""The HTML report of a run (``doge-dist run --report-html``, or ``write_run_report`` from Python).

One self-contained page: a summary table, observed vs expected events per trigger, and charts drawn by
matplotlib as inline SVG -- events per timeline bucket per trigger (observed, and the model's
expectation for the same buckets as a line), live subjects over time, and for rate-paced runs the
target vs achieved events per second. The expectation is derived from the model
(:func:`doge_dist.model._expected.expected_timeline`), never from the run.
"""

from __future__ import annotations

import datetime as _dt
import html
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..model._dynamics import format_timestamp
from ..run._result import RunResult
from ._page import check_matplotlib, html_table, page, svg

__all__ = ["render_run_report", "write_run_report", "rate_rows", "RATE_HEADER"]

LOGGER = logging.getLogger("doge_dist")
RATE_HEADER = ("step", "shape", "seconds", "target events/s", "achieved events/s", "achieved / target")
_VETO_NOTE = ("The expectation counts every drawn transition; action callbacks that veto transitions "
              "(and the stays they cause) are not modelled, so vetoed triggers come out below it.")


def _buckets(result: RunResult) -> np.ndarray:
    timeline = result.timeline
    size = timeline.bucket_ticks
    first = result.first_tick // size
    stop = result.first_tick + result.ticks
    last = max([-(-stop // size) - 1, *timeline.events, *timeline.created, *timeline.departed, first])
    return np.arange(first, last + 1, dtype=np.int64)


def _expected(result: RunResult, generator: Any, notes: list[str]) -> Any:
    """The model's expected timeline for the run's buckets, or None (with a note saying why)."""
    if generator is None:
        notes.append("No model was given, so the charts show no expectation.")
        return None
    try:
        from ..model._expected import expected_timeline

        return expected_timeline(generator, result.timeline.bucket_ticks, ticks=result.ticks,
                                 first_tick=result.first_tick)
    except Exception as exc:  # the page is still worth having without the expected line
        LOGGER.warning("run report: no expected line: %s", exc)
        notes.append(f"The expected line could not be computed: {exc}")
        return None


def rate_rows(rate: Any) -> list[list[str]]:
    """Per load step: shape, seconds, target and achieved events/s (the summary and the page)."""
    rows = []
    for step in rate.steps:
        shape = (f"ramp {step['ramp'][0]:,.0f} -> {step['ramp'][1]:,.0f}" if "ramp" in step
                 else f"rate {step['rate']:,.0f}")
        target, achieved = step["target_events_per_s"], step["achieved_events_per_s"]
        ratio = f"{achieved / target:.1%}" if target > 0 else "-"
        rows.append([str(step["step"]), shape, f"{step.get('seconds', 0.0):.1f}", f"{target:,.0f}",
                     f"{achieved:,.0f}", ratio])
    return rows


def _summary_rows(result: RunResult, extra: Sequence[tuple[str, Any]]) -> list[list[str]]:
    timeline = result.timeline
    rows: list[list[str]] = [[name, str(value)] for name, value in extra]
    rows += [["status", result.status],
             ["subjects (initial)", f"{result.subjects:,}"],
             ["ticks", f"{result.ticks:,}" + (f" (from tick {result.first_tick:,})"
                                              if result.first_tick else "")]]
    if timeline is not None:
        start = timeline.timestamp_start + result.first_tick * timeline.tick_ms
        end = start + result.ticks * timeline.tick_ms
        rows += [["tick", f"{timeline.tick_ms:,} ms"],
                 ["simulated time", f"{format_timestamp(start)} to {format_timestamp(end)}"]]
    rows += [["seed", str(result.seed)], ["workers", str(result.workers)],
             ["events", f"{result.total_events:,}"], ["vetoed", f"{result.total_vetoed:,}"],
             ["wall time", f"{result.elapsed_s:.2f} s"], ["events per second", f"{result.events_per_s:,.0f}"],
             ["subjects created / departed / live",
              f"{result.created:,} / {result.departed:,} / {result.live:,}"]]
    if result.rate is not None:
        rows += [["rate: target events", f"{result.rate.target_events:,.0f}"],
                 ["rate: achieved events", f"{result.rate.achieved_events:,}"],
                 ["rate: shortfall", f"{result.rate.shortfall:.1%}"]]
    return rows


def _trigger_rows(result: RunResult, expected: Any) -> list[list[str]]:
    totals = {}
    if expected is not None:
        totals = {k: float(v.sum()) for k, v in expected.by_trigger().items()}
    rows = []
    for trigger in dict.fromkeys([*result.events_by_trigger, *totals]):
        observed = result.events_by_trigger.get(trigger, 0)
        exp = totals.get(trigger)
        ratio = "-" if not exp else f"{observed / exp:.3f}"
        rows.append([trigger, f"{observed:,}", "-" if exp is None else f"{exp:,.1f}", ratio,
                     f"{result.vetoed_by_trigger.get(trigger, 0):,}"])
    return rows


def _card(value: str, name: str, what: str) -> str:
    return (f"<div class='card'><div class='value'>{html.escape(value)}</div>"
            f"<div class='name'>{html.escape(name)}</div><div class='what'>{html.escape(what)}</div></div>")


def _timeline_parts(result: RunResult, generator: Any, expected: Any, notes: list[str]) -> list[str]:
    """The charts over simulated time."""
    from ._charts import bucket_label, display_factor, events_chart, population_chart

    timeline = result.timeline
    parts: list[str] = []
    if generator is not None and any(getattr(t, "action_callback", None) for t in generator.transitions):
        notes.append(_VETO_NOTE)
    buckets = expected.buckets if expected is not None else _buckets(result)
    if not buckets.size:
        return parts
    factor = display_factor(buckets.size)
    bucket = bucket_label(timeline.bucket_ticks, timeline.tick_ms)
    shown = bucket_label(timeline.bucket_ticks * factor, timeline.tick_ms)
    grouping = "" if factor == 1 else f" (the run's timeline buckets of {bucket}, in groups of {factor})"
    by_trigger = None if expected is None else expected.by_trigger()
    parts += ["<h2>Events over simulated time</h2>",
              f"<p class='note'>Events per {html.escape(shown)}{html.escape(grouping)} for each trigger: the "
              "coloured line is what the run made, the dashed line what the model expects for the same "
              "buckets.</p>",
              svg(events_chart(timeline, buckets, by_trigger, factor))]
    arrivals = bool(generator is not None and getattr(generator, "arrivals", None))
    if arrivals or result.created != result.subjects or result.departed > 0:
        parts += ["<h2>Live subjects over simulated time</h2>",
                  "<p class='note'>Subjects created (initial and arrivals) minus those that entered a final "
                  f"state, at the end of each {html.escape(shown)}.</p>",
                  svg(population_chart(timeline, buckets, None if expected is None else expected.live,
                                       factor))]
    return parts


def render_run_report(result: RunResult, generator: Any = None, *, title: str | None = None,
                      details: Sequence[tuple[str, Any]] = ()) -> str:
    """The report page of ``result`` as text. ``generator`` (the model that ran) gives the expected
    lines; ``details`` are extra (name, value) rows for the summary table (model, spec ...)."""
    check_matplotlib("the HTML run report")
    from ._charts import rate_chart

    notes: list[str] = []
    title = title or "doge-dist run report"
    made = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    cards = [_card(f"{result.total_events:,}", "events", f"{result.status} in {result.elapsed_s:.1f} s"),
             _card(f"{result.events_per_s:,.0f}", "events/s", "over the whole run")]
    if result.rate is not None:
        cards.append(_card(f"{result.rate.shortfall:.1%}", "shortfall", "of the target events not reached"))
    expected = _expected(result, generator, notes) if result.timeline is not None else None
    tables = [f"<div><h2>Summary</h2>{html_table(['', 'value'], _summary_rows(result, details))}</div>"]
    if result.timeline is not None:
        tables.append("<div><h2>Events per trigger</h2>" + html_table(
            ["trigger", "observed", "expected (model)", "observed / expected", "vetoed"],
            _trigger_rows(result, expected)) + "</div>")
    parts = [f"<p class='note'>Made {made}.</p>", f"<div class='cards'>{''.join(cards)}</div>",
             f"<div class='side'>{''.join(tables)}</div>"]
    if result.rate is not None:  # a load test: the rate first
        parts += ["<h2>Target and achieved event rate</h2>",
                  html_table(list(RATE_HEADER), rate_rows(result.rate))]
        if result.rate.per_second:
            parts.append(svg(rate_chart(result.rate)))
    if result.timeline is not None:
        parts += _timeline_parts(result, generator, expected, notes)
    if notes:
        parts.append("<h2>Notes</h2>" + "".join(f"<p class='note'>{html.escape(n)}</p>" for n in notes))
    return page(title, "\n".join(parts), css=".side { display: flex; flex-wrap: wrap; gap: 0 32px; }")


def write_run_report(path: str | os.PathLike[str], result: RunResult, generator: Any = None, *,
                     title: str | None = None, details: Sequence[tuple[str, Any]] = ()) -> Path:
    """Write :func:`render_run_report` to ``path`` (directories created); return the path."""
    text = render_run_report(result, generator, title=title, details=details)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target
