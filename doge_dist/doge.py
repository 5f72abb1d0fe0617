"""doge-datagen's ``doge_datagen.doge`` module path, kept for doge-datagen compatibility (re-exports only)."""

from __future__ import annotations

from .model._generator import DataOnlineGenerator
from .model._vocabulary import EventSink, Subject, SubjectFactory, Transition

__all__ = ["Subject", "SubjectFactory", "EventSink", "Transition", "DataOnlineGenerator"]
