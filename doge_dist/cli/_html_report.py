"""``doge-dist run --report-html out/report.html``: checked before the run, written after it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ._errors import UsageError
from ._mask import Masker

__all__ = ["check_report_html", "write_report_html"]


def check_report_html(path: str) -> None:
    """Refuse (exit 2) before the run: a path that cannot be written, or no matplotlib to draw with."""
    from ..report._page import check_matplotlib
    from ._commands import check_report_path

    if not path.lower().endswith((".html", ".htm")):
        raise UsageError(f"--report-html {path}: name an .html file, e.g. out/report.html")
    check_report_path(path, "--report-html")
    try:
        check_matplotlib(f"--report-html {path}")
    except ImportError as exc:
        raise UsageError(str(exc)) from None


def write_report_html(path: str, result: Any, generator: Any, *, spec: Any, masker: Masker) -> str | None:
    """Write the page (every secret masked); return an error message instead of raising."""
    from ..report._html import render_run_report

    details = [("model", spec.model or "")]
    if spec.path is not None:
        shown = os.path.relpath(spec.path)  # as the user would type it, when it is below the cwd
        details.append(("job spec", str(spec.path) if shown.startswith("..") else shown))
    if spec.description:
        details.append(("description", spec.description))
    title = f"doge-dist run: {spec.description or spec.model or 'report'}"
    try:
        text = render_run_report(result, generator, title=title, details=details)
    except Exception as exc:  # noqa: BLE001 - the run's data is written; say what failed
        return f"could not draw --report-html {path}: {type(exc).__name__}: {exc}"
    try:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(masker.mask(text), encoding="utf-8")
    except OSError as exc:
        return f"could not write --report-html {path}: {exc.strerror or exc}"
    return None
