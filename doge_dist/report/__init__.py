"""What a person sees of a model and a run: the model graph (Graphviz) and the HTML run report.

``write_run_report(path, result, generator)`` writes a self-contained page with charts (matplotlib,
imported only then): events over simulated time per trigger, observed and expected from the model,
live subjects, and for rate-paced runs target vs achieved events per second. ``expected_timeline``
is the model's expectation for a run's timeline buckets.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DataOnlineGeneratorGrapher", "render_run_report", "write_run_report", "expected_timeline"]


def __getattr__(name: str) -> Any:
    if name in ("render_run_report", "write_run_report"):
        from . import _html

        return getattr(_html, name)
    if name == "expected_timeline":
        from ..model._expected import expected_timeline

        return expected_timeline
    if name == "DataOnlineGeneratorGrapher":
        from ._grapher import DataOnlineGeneratorGrapher

        return DataOnlineGeneratorGrapher
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
