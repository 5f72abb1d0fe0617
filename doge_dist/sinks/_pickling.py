"""Pickling sinks and factories as descriptions: what travels is configuration, never live state.

Every sink and sink factory of this package pickles through :class:`PicklesAsDescription`, so a
copy shipped to a Ray worker (or made by ``pickle`` in one process) arrives unopened, with zero
counts, and opens its own file, producer or engine lazily where it writes.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PicklesAsDescription"]


class PicklesAsDescription:
    """Drops every ``_``-prefixed attribute (open files, clients, counters) when pickled and calls
    ``_reset()`` on the copy, which sets up fresh live state.

    ``_DESCRIPTION`` names private attributes that are part of the description after all (such
    as the token under which copies in one process share one client); they travel too.
    """

    _DESCRIPTION: tuple[str, ...] = ()

    def _reset(self) -> None:  # pragma: no cover - every user defines it
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:
        keep = self._DESCRIPTION
        return {key: value for key, value in self.__dict__.items() if not key.startswith("_") or key in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()
