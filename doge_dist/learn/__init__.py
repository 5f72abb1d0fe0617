"""Learn models from logs: ``fit`` (log -> YAML model) and ``compare`` (real log vs generated log).

Readers stream JSON Lines, CSV (gzip too) or a SQL query with pyarrow; scipy and matplotlib load
only when ``compare`` computes its statistics or draws its page. Needs the ``learn`` extra.
"""

from ._compare import CompareError, Comparison, LogStats, compare_logs, total_variation
from ._fit import PROFILE_KINDS, FitError, FitOptions, FitResult, LogFitter, fit_log
from ._html import render_html
from ._readers import LogBatch, LogError, LogFields, read_log

__all__ = [
    "LogFields", "LogBatch", "LogError", "read_log",
    "PROFILE_KINDS", "FitOptions", "FitResult", "FitError", "LogFitter", "fit_log",
    "LogStats", "Comparison", "CompareError", "compare_logs", "total_variation",
    "render_html",
]
