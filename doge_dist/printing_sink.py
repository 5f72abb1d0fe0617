"""doge-datagen's ``doge_datagen.printing_sink`` module path, kept for doge-datagen compatibility."""

from __future__ import annotations

from .model._vocabulary import EventSink, Subject, Transition
from .sinks._printing import PrintingSink

__all__ = ["Subject", "Transition", "EventSink", "PrintingSink"]
