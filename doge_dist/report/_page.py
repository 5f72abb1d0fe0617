"""The skeleton shared by doge-dist's HTML pages: one self-contained file, matplotlib charts inlined as SVG.

A leaf module (it imports nothing from doge_dist), so both the run report and ``compare --html`` build
on it. matplotlib is imported only when a chart is drawn, with the non-interactive Agg/SVG canvases
(never pyplot, so no GUI backend and no global figure registry).
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from typing import Any

__all__ = ["figure", "svg", "html_table", "page", "check_matplotlib", "BASE_CSS"]

BASE_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1150px; }
h1 { font-size: 26px; margin-bottom: 4px; } h2 { font-size: 20px; margin-top: 28px; }
.cards { display: flex; flex-wrap: wrap; gap: 16px; margin: 16px 0; }
.card { border: 1px solid #ccc; border-radius: 6px; padding: 12px 18px; min-width: 200px; }
.value { font-size: 28px; font-weight: 600; } .name { font-family: monospace; } .what { color: #666; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
td, th { border: 1px solid #ddd; padding: 3px 8px; } th { background: #f4f4f4; }
td:not(:first-child) { text-align: right; } svg { max-width: 100%; height: auto; }
.note { color: #555; font-size: 13px; }
"""


def check_matplotlib(what: str) -> None:
    """ImportError naming ``what`` and the install command when matplotlib is missing."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise ImportError(f"{what} needs matplotlib: pip install 'doge-dist[report]' (or matplotlib)")


def figure(width: float, height: float) -> Any:
    """A matplotlib Figure (inches) with constrained layout, outside pyplot."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def svg(fig: Any) -> str:
    """The figure as an inline ``<svg>`` element (text kept as text: small, selectable, crisp)."""
    import matplotlib
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "doge-dist"}):
        FigureCanvasSVG(fig).print_svg(buffer)
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # drop the XML declaration and DOCTYPE


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A table; cells are escaped (pass numbers already formatted)."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page(title: str, body: str, css: str = "") -> str:
    """The whole page: no external resources, so it opens anywhere (and offline)."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{BASE_CSS}{css}</style></head><body>
<h1>{html.escape(title)}</h1>
{body}
</body></html>
"""
