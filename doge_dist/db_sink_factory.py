"""``doge_datagen.db_sink_factory``'s path, for doge-datagen compatibility (lazy re-exports)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_getattr
from .model._vocabulary import EventSink, Subject, Transition

if TYPE_CHECKING:  # for type checkers and linters; at run time they load in __getattr__
    from .sinks._db import DbSink, DbSinkFactory

__all__ = ["Subject", "Transition", "EventSink", "DbSink", "DbSinkFactory"]

__getattr__ = lazy_getattr(__name__, frozenset(("DbSink", "DbSinkFactory")), globals())


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
