"""The run report's charts (matplotlib figures, drawn without pyplot): events over simulated time per
trigger, observed against the model's expectation; live subjects over time; target vs achieved rate."""

from __future__ import annotations

import datetime as _dt
from typing import Any

import numpy as np

from ..run._result import RateReport, Timeline
from ._page import figure

__all__ = ["events_chart", "population_chart", "rate_chart", "observed_by_trigger", "observed_live",
           "bucket_label", "display_factor", "group_sum", "group_last", "MAX_PANELS", "MAX_POINTS", "PALETTE"]

MAX_PANELS = 12
MAX_POINTS = 240  # a chart line over simulated time has at most this many points (buckets are grouped)
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#393b79", "#637939")
_EXPECTED = "#111111"


def bucket_label(bucket_ticks: int, tick_ms: int) -> str:
    """``10 ticks = 10 min`` for axis labels (``events per 10 ticks = 10 min``)."""
    ms = bucket_ticks * tick_ms
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms >= size:
            amount = ms / size
            text = f"{amount:g} {unit}" if amount == int(amount) else f"{amount:.3g} {unit}"
            break
    else:
        text = f"{ms} ms"
    return f"{bucket_ticks:,} tick{'s' if bucket_ticks != 1 else ''} = {text}"


def display_factor(buckets: int, max_points: int = MAX_POINTS) -> int:
    """How many consecutive timeline buckets one point of a chart adds up (1: every bucket its own)."""
    return max(1, -(-buckets // max_points))


def group_sum(values: np.ndarray, factor: int) -> np.ndarray:
    """Sums over consecutive groups of ``factor`` values (the last group may be short)."""
    values = np.asarray(values, dtype=np.float64)
    if factor == 1:
        return values
    starts = np.arange(0, values.size, factor)
    return np.add.reduceat(values, starts) if values.size else values


def group_last(values: np.ndarray, factor: int) -> np.ndarray:
    """The last value of each group of ``factor`` (a level at the group's end, such as live subjects)."""
    values = np.asarray(values, dtype=np.float64)
    ends = np.minimum(np.arange(factor, values.size + factor, factor), values.size) - 1
    return values[ends] if values.size else values


def _times(timeline: Timeline, buckets: np.ndarray) -> list[_dt.datetime]:
    """Each bucket's start as a UTC datetime (simulated time)."""
    return [_dt.datetime.fromtimestamp(timeline.bucket_start_ms(int(b)) / 1000, _dt.timezone.utc)
            for b in buckets.tolist()]


def observed_by_trigger(timeline: Timeline, buckets: np.ndarray) -> dict[str, np.ndarray]:
    """Observed events per bucket for each trigger (transitions sharing a trigger added up)."""
    position = {int(b): k for k, b in enumerate(buckets.tolist())}
    out = {trigger: np.zeros(buckets.size) for trigger in dict.fromkeys(timeline.triggers)}
    for bucket, counts in timeline.events.items():
        k = position.get(int(bucket))
        if k is None:
            continue
        for trigger, count in zip(timeline.triggers, counts):
            out[trigger][k] += count
    return out


def observed_live(timeline: Timeline, buckets: np.ndarray) -> np.ndarray:
    """Live subjects at each bucket's end (carried over buckets without a change)."""
    changes = dict(timeline.live())
    live, out = timeline.initial, np.zeros(buckets.size)
    first = int(buckets[0]) if buckets.size else 0
    for bucket, value in sorted(changes.items()):  # changes before the first bucket shown
        if bucket < first:
            live = value
    for k, bucket in enumerate(buckets.tolist()):
        live = changes.get(int(bucket), live)
        out[k] = live
    return out


def _thousands(ax: Any) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}" if value == int(value)
                                               else f"{value:,.2g}"))


def _date_axis(ax: Any) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(minticks=3, maxticks=7)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def events_chart(timeline: Timeline, buckets: np.ndarray, expected: dict[str, np.ndarray] | None,
                 factor: int | None = None, *, triggers: list[str] | None = None, width: float = 11) -> Any:
    """One panel per trigger (the busiest MAX_PANELS, or ``triggers``): observed events as a coloured
    line, the model's expectation for the same buckets as a dashed black line. Consecutive buckets are
    added up in groups of ``factor`` (default: enough for at most MAX_POINTS points), both lines alike."""
    factor = display_factor(buckets.size) if factor is None else factor
    observed = observed_by_trigger(timeline, buckets)
    if triggers is None:
        triggers = sorted(observed, key=lambda t: -float(observed[t].sum()))[:MAX_PANELS]
    cols = 1 if len(triggers) == 1 else 2 if len(triggers) <= 4 else 3
    rows = -(-len(triggers) // cols) if triggers else 1
    fig = figure(width, 0.6 + 2.5 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    times = _times(timeline, buckets[::factor])
    unit = bucket_label(timeline.bucket_ticks * factor, timeline.tick_ms)
    for k, ax in enumerate(axes.flat):
        if k >= len(triggers):
            ax.set_visible(False)
            continue
        trigger = triggers[k]
        colour = PALETTE[k % len(PALETTE)]
        ax.plot(times, group_sum(observed[trigger], factor), color=colour, linewidth=1.4)
        if expected is not None and trigger in expected:  # thinner, on top: the observed line shows around it
            ax.plot(times, group_sum(expected[trigger], factor), color=_EXPECTED, linestyle=(0, (4, 2)),
                    linewidth=0.9)
        ax.set_title(trigger, fontsize=10, color=colour, loc="left")
        ax.set_ylim(bottom=0)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.25)
        _date_axis(ax)
        if k % cols == 0:
            ax.set_ylabel(f"events per {unit}", fontsize=8)
        if k >= len(triggers) - cols:
            ax.set_xlabel("simulated time (UTC)", fontsize=8)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=PALETTE[0], linewidth=1.4, label="observed (one colour per trigger)")]
    if expected is not None:
        handles.append(Line2D([], [], color=_EXPECTED, linestyle=(0, (4, 2)), linewidth=0.9,
                              label="expected (model)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9, frameon=False)
    return fig


def population_chart(timeline: Timeline, buckets: np.ndarray, expected_live: np.ndarray | None,
                     factor: int | None = None) -> Any:
    """Live subjects over simulated time: observed (step at each group's end) and expected."""
    factor = display_factor(buckets.size) if factor is None else factor
    fig = figure(11, 3.4)
    ax = fig.add_subplot()
    times = _times(timeline, buckets[::factor])
    ax.step(times, group_last(observed_live(timeline, buckets), factor), where="post", color=PALETTE[2],
            linewidth=1.4, label="live subjects (observed)")
    if expected_live is not None:
        ax.plot(times, group_last(expected_live, factor), color=_EXPECTED, linestyle="--", linewidth=1.2,
                label="expected (model)")
    ax.set_ylabel("live subjects")
    ax.set_xlabel("simulated time (UTC)")
    ax.margins(y=0.15)  # not from zero: a population of 20,000 changing by 60 must show the change
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    _thousands(ax)
    ax.grid(alpha=0.25)
    _date_axis(ax)
    ax.legend(loc="best", fontsize=9)
    return fig


def rate_chart(rate: RateReport) -> Any:
    """Target and achieved events per wall-clock second, with the load steps shaded."""
    fig = figure(11, 3.6)
    ax = fig.add_subplot()
    seconds = np.array([row["second"] for row in rate.per_second], dtype=np.float64)
    target = np.array([row["target"] for row in rate.per_second])
    achieved = np.array([row["achieved"] for row in rate.per_second])
    start = 0.0
    for k, step in enumerate(rate.steps):
        length = float(step.get("seconds", 0.0))
        if k % 2 == 0:
            ax.axvspan(start, start + length, color="#eeeeee", zorder=0)
        shape = (f"ramp {step['ramp'][0]:,.0f} to {step['ramp'][1]:,.0f}/s" if "ramp" in step
                 else f"{step['rate']:,.0f}/s")
        ax.annotate(f"step {step['step']}: {shape}", (start + 0.02 * max(length, 1), 1.0),
                    xycoords=("data", "axes fraction"), va="top", fontsize=8, color="#444444")
        start += length
    ax.bar(seconds + 0.5, achieved, width=0.9, color=PALETTE[0], label="achieved events/s")
    if seconds.size:
        ax.step(np.append(seconds, seconds[-1] + 1), np.append(target, target[-1]), where="post",
                color=PALETTE[3], linewidth=1.8, label="target events/s")
    ax.set_xlabel("wall-clock seconds since the start of the run")
    ax.set_ylabel("events per second")
    ax.set_ylim(0, max([1.0, *target.tolist(), *achieved.tolist()]) * 1.15)
    _thousands(ax)
    ax.grid(alpha=0.25, axis="y")
    ax.legend(loc="lower right", fontsize=9)
    return fig
