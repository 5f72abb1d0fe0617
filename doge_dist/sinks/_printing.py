"""Sinks that need no server: printing (as in doge-datagen) and counting (for benchmarks and tests)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from ..model._vocabulary import EventSink, Transition
from ._pickling import PicklesAsDescription

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

    def begin_run(self) -> None:
        """Counts start at zero for each run."""
        self.printed = 0

    def close(self) -> None:
        sys.stdout.flush()

    def stats(self) -> dict[str, int]:
        return {"delivered": self.printed}


class CountingSink(PicklesAsDescription, EventSink):
    """Counts events and does nothing else: the cheapest possible sink.

    ``count`` is the events of the current run in this process; ``closed`` how often it was closed.
    """

    def __init__(self, name: str = "count") -> None:
        self.name = name
        self._reset()

    def _reset(self) -> None:
        self._count = 0
        self._closed = 0

    @property
    def count(self) -> int:
        return self._count

    @property
    def closed(self) -> int:
        return self._closed

    def begin_run(self) -> None:
        """Counts start at zero for each run."""
        self._count = 0

    def collect(self, timestamp: int, subject: Any, transition: Transition) -> None:
        self._count += 1

    def close(self) -> None:
        self._closed += 1

    def stats(self) -> dict[str, int]:
        return {"delivered": self._count}
