"""Pickling sinks and factories as descriptions: what travels is configuration, never live state."""

from __future__ import annotations

from typing import Any

__all__ = ["PicklesAsDescription"]


class PicklesAsDescription:
    """Drops every ``_``-prefixed attribute (open files, engines, counters) when pickled and calls
    ``_reset()`` on the copy, so a sink or factory arrives in a Ray worker unopened."""

    def _reset(self) -> None:  # pragma: no cover - every user defines it
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if not key.startswith("_")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()
