"""doge-datagen's ``doge_datagen.graph`` module path, kept for doge-datagen compatibility (re-exports)."""

from __future__ import annotations

from .model._generator import DataOnlineGenerator
from .report._grapher import DataOnlineGeneratorGrapher

__all__ = ["DataOnlineGenerator", "DataOnlineGeneratorGrapher"]
