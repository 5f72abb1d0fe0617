"""The ``compare --html`` page: one self-contained file, charts drawn by matplotlib as inline SVG."""

from __future__ import annotations

import datetime as _dt
import html

import numpy as np

from ..report._page import figure as _figure
from ..report._page import page
from ..report._page import svg as _svg
from ._compare import Comparison

__all__ = ["render_html", "MAX_DWELL_PANELS"]

MAX_DWELL_PANELS = 12
MAX_BARS = 30
_REAL, _GEN = "#1f77b4", "#ff7f0e"


def _shares_chart(c: Comparison) -> str:
    names = list(c.by_event)[:MAX_BARS]
    real = [c.by_event[n]["real_share"] for n in names]
    gen = [c.by_event[n]["generated_share"] for n in names]
    fig = _figure(11, 4.2)
    ax = fig.add_subplot()
    x = np.arange(len(names))
    ax.bar(x - 0.2, real, 0.4, label="real", color=_REAL)
    ax.bar(x + 0.2, gen, 0.4, label="generated", color=_GEN)
    ax.set_xticks(x, names, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("share of events")
    ax.set_title(f"Event mix (TV distance {c.event_share_tv:.4f})")
    ax.legend()
    return _svg(fig)


def _hourly_chart(c: Comparison) -> str:
    fig = _figure(11, 3.6)
    ax = fig.add_subplot()
    hours = np.arange(24)
    ax.plot(hours, c.hourly["real"], marker="o", label="real", color=_REAL)
    ax.plot(hours, c.hourly["generated"], marker="s", label="generated", color=_GEN)
    ax.set_xticks(hours)
    ax.set_xlabel("hour of day (UTC)")
    ax.set_ylabel("share of events")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Events per hour of day (TV distance {c.hourly_tv:.4f})")
    ax.legend()
    return _svg(fig)


def _next_chart(c: Comparison) -> str:
    names = [n for n in c.by_event if "next_event_tv" in c.by_event[n]][:MAX_BARS]
    fig = _figure(11, 3.6)
    ax = fig.add_subplot()
    values = [c.by_event[n]["next_event_tv"] for n in names]
    bars = ax.bar(np.arange(len(names)), values, color="#2ca02c")
    ax.bar_label(bars, labels=[f"{v:.3f}" for v in values], fontsize=7)
    ax.set_xticks(np.arange(len(names)), names, rotation=40, ha="right", fontsize=8)
    ax.set_ylim(0, min(1.0, max([0.02, *values]) * 1.2))
    ax.set_ylabel("TV distance of the next event")
    ax.set_title(f"What follows each event (weighted mean {c.next_event_tv:.4f})")
    return _svg(fig)


def _ecdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.sort(values.astype(np.float64)) / 1000.0
    return x, np.arange(1, x.size + 1) / x.size


def _dwell_chart(c: Comparison) -> str:
    names = [n for n in c.by_event if "dwell_ks" in c.by_event[n]][:MAX_DWELL_PANELS]
    if not names:
        return "<p>No event is followed by another event of the same subject.</p>"
    cols = 3
    rows = -(-len(names) // cols)
    fig = _figure(11, 2.8 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(names):
            ax.set_visible(False)
            continue
        name = names[k]
        for label, color in (("real", _REAL), ("generated", _GEN)):
            sample = c.dwell_samples.get(name, {}).get(label)
            if sample is not None and sample.size:
                x, y = _ecdf(np.maximum(sample, 1))
                ax.step(x, y, where="post", label=label, color=color)
        ax.set_xscale("log")
        ax.set_ylim(0, 1)
        ax.set_title(f"{name}: KS {c.by_event[name]['dwell_ks']:.3f}", fontsize=9)
        ax.set_xlabel("seconds to the subject's next event", fontsize=8)
        ax.tick_params(labelsize=7)
        if k == 0:
            ax.legend(fontsize=8)
    return _svg(fig)


def _table(c: Comparison) -> str:
    rows = []
    for name, row in c.by_event.items():
        cells = [html.escape(str(name)), f"{row['real_share']:.4f}", f"{row['generated_share']:.4f}",
                 "-" if "next_event_tv" not in row else f"{row['next_event_tv']:.4f}",
                 "-" if "dwell_ks" not in row else f"{row['dwell_ks']:.4f}",
                 f"{row['real_count']:,}", f"{row['generated_count']:,}"]
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("event", "real share", "generated share", "next-event TV",
                                             "dwell KS", "real events", "generated events"))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render_html(c: Comparison, title: str = "doge-dist compare") -> str:
    """The whole page as text (no external resources)."""
    metrics = [("event_share_tv", c.event_share_tv, "event mix"),
               ("next_event_tv", c.next_event_tv, "what follows what"),
               ("dwell_ks (mean)", c.dwell_ks_mean, "time to the next event"),
               ("hourly_tv", c.hourly_tv, "events per hour of day")]
    cards = "".join(f"<div class='card'><div class='value'>{value:.4f}</div><div class='name'>{name}</div>"
                    f"<div class='what'>{what}</div></div>" for name, value, what in metrics)
    real, gen = c.real, c.generated
    made = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    sources = (f"<p><b>real</b>: {html.escape(', '.join(real['logs']))} &mdash; {real['events']:,} events, "
               f"{real['subjects']:,} subjects, {real['first']} .. {real['last']}<br>"
               f"<b>generated</b>: {html.escape(', '.join(gen['logs']))} &mdash; {gen['events']:,} events, "
               f"{gen['subjects']:,} subjects, {gen['first']} .. {gen['last']}</p>")
    body = f"""{sources}
<p>Distances are in [0, 1]; 0 means the generated log matches the real one. Made {made}.</p>
<div class="cards">{cards}</div>
<h2>Event mix</h2>{_shares_chart(c)}
<h2>Events per hour of day</h2>{_hourly_chart(c)}
<h2>Time to the same subject's next event</h2>{_dwell_chart(c)}
<h2>What follows each event</h2>{_next_chart(c)}
<h2>By event</h2>{_table(c)}"""
    return page(title, body)
