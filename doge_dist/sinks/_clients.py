"""The per-process client registry: one producer or registry client per factory per process.

Factories are pickled descriptions; copies of one factory (every sink of it, shipped to a worker
together or one by one) carry the same token and so share the client of their process. The key
includes the process id, so a forked child never writes through its parent's client.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["ProcessClients", "CLIENTS"]


class ProcessClients:
    """Clients keyed by ``(token, pid)``: shared with a use count (``acquire``/``release``), or for
    the life of the process (``get``)."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, int], list[Any]] = {}  # key -> [client, users]
        self._lock = threading.Lock()

    def acquire(self, token: str, open_client: Callable[[], Any]) -> Any:
        """This process's client for ``token`` (``open_client()`` makes it the first time); one more user."""
        key = (token, os.getpid())
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = [open_client(), 0]
            entry[1] += 1
            return entry[0]

    def release(self, token: str, client: Any) -> bool:
        """One user fewer; True when that was the last one (the client is then forgotten and the
        caller shuts it down)."""
        key = (token, os.getpid())
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] is not client:
                return False
            entry[1] -= 1
            if entry[1] > 0:
                return False
            del self._entries[key]
            return True

    def get(self, token: str, open_client: Callable[[], Any]) -> Any:
        """This process's client for ``token``, kept for the life of the process (no use count)."""
        key = (token, os.getpid())
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = [open_client(), 0]
            return entry[0]


#: The one registry every sink factory uses.
CLIENTS = ProcessClients()
