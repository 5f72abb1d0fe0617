"""Sinks that need no server: printing (as in doge-datagen) and counting (for benchmarks and tests)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from ..model._vocabulary import EventSink, Transition

__all__ = ["PrintingSink", "CountingSink"]


class PrintingSink(EventSink):
    """Prints ``format_function(timestamp, subject, transition)`` for every event."""

    name = "print"

    def __init__(self, format_function: Callable[[int, Any, Transition], str]) -> None:
        self.format_function = format_function
        self.printed = 0

    def collect(self, timestamp: int, subject: Any, transition: Transition) -> None:
        print(self.format_function(timestamp, subject, transition))
        self.printed += 1

    def close(self) -> None:
        sys.stdout.flush()

    def stats(self) -> dict[str, int]:
        return {"delivered": self.printed}


class CountingSink(EventSink):
    """Counts events and does nothing else: the cheapest possible sink."""

    def __init__(self, name: str = "count") -> None:
        self.name = name
        self.count = 0
        self.closed = 0

    def collect(self, timestamp: int, subject: Any, transition: Transition) -> None:
        self.count += 1

    def close(self) -> None:
        self.closed += 1

    def stats(self) -> dict[str, int]:
        return {"delivered": self.count}
