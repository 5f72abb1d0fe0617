"""Dense integer ids for the subjects, events and states of a log (shared by fit and compare)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["Names", "grow"]


class Names:
    """Names -> dense ids, encoded a block at a time (one dict lookup per distinct value of a block)."""

    def __init__(self, initial: Iterable[str] = ()) -> None:
        self.ids: dict[Any, int] = {}
        for name in initial:
            self.ids[name] = len(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def names(self) -> list[Any]:
        return list(self.ids)

    def encode(self, column: Any) -> tuple[np.ndarray, list[Any]]:
        """Per row the id (int64), and the names new in this block, in id order.

        Values are compared as text, so subject 7 in a JSON file and "7" in a CSV file are one subject.
        """
        import pyarrow as pa
        import pyarrow.compute as pc

        encoded = column.dictionary_encode()
        values = encoded.dictionary
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            values = pc.cast(values, pa.string())
        keys = values.to_pylist()
        ids = self.ids
        new = [k for k in keys if k not in ids]
        if new:
            ids.update(zip(new, range(len(ids), len(ids) + len(new))))
        lookup = np.fromiter(map(ids.__getitem__, keys), dtype=np.int64, count=len(keys))
        indices = encoded.indices.to_numpy(zero_copy_only=False)
        return lookup[indices], new

    def key_of(self, wanted: int) -> Any:
        """The name with id ``wanted`` (a scan: for error messages only)."""
        for key, value in self.ids.items():
            if value == wanted:
                return key
        return None


def grow(array: np.ndarray, size: int, fill: Any) -> np.ndarray:
    """``array`` with at least ``size`` rows (doubling), new rows set to ``fill``."""
    if size <= len(array):
        return array
    grown = np.full((max(size, 2 * len(array)),) + array.shape[1:], fill, dtype=array.dtype)
    grown[:len(array)] = array
    return grown
