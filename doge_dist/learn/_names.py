"""Dense integer ids for the subjects, events and states of a log (shared by fit and compare)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["Names", "SubjectIndex", "grow"]


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
            first = self._allocate(len(new))
            ids.update(zip(new, range(first, first + len(new))))
        lookup = np.fromiter(map(ids.__getitem__, keys), dtype=np.int64, count=len(keys))
        indices = encoded.indices.to_numpy(zero_copy_only=False)
        return lookup[indices], new

    def _allocate(self, count: int) -> int:
        """The first of ``count`` fresh ids."""
        return len(self.ids)

    def key_of(self, wanted: int) -> Any:
        """The name with id ``wanted`` (a scan: for error messages only)."""
        for key, value in self.ids.items():
            if value == wanted:
                return key
        return None


class SubjectIndex(Names):
    """Subject keys -> dense ids. Integer keys (also decimal text such as "42") live in two sorted
    numpy arrays (16 bytes per subject, looked up with a binary search per row); other keys in a dict.
    """

    def __init__(self) -> None:
        super().__init__()
        self.int_keys = np.empty(0, dtype=np.int64)
        self.int_ids = np.empty(0, dtype=np.int64)
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def encode(self, column: Any) -> tuple[np.ndarray, list[Any]]:
        import pyarrow as pa
        import pyarrow.compute as pc

        kind = column.type
        if pa.types.is_integer(kind):
            return self._encode_ints(column.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)), []
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            try:
                ints = pc.cast(column, pa.int64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                ints = None
            if ints is not None and pc.all(pc.equal(pc.cast(ints, kind), column)).as_py():
                return self._encode_ints(ints.to_numpy(zero_copy_only=False)), []
        return super().encode(column)

    def _allocate(self, count: int) -> int:
        first = self.count
        self.count += count
        return first

    def _encode_ints(self, values: np.ndarray) -> np.ndarray:
        keys = self.int_keys
        pos = np.searchsorted(keys, values)
        found = pos < keys.size
        found[found] = keys[pos[found]] == values[found]
        if not found.all():
            fresh = np.unique(values[~found])
            at = np.searchsorted(keys, fresh)
            self.int_keys = np.insert(keys, at, fresh)
            self.int_ids = np.insert(self.int_ids, at, np.arange(self.count, self.count + fresh.size))
            self.count += fresh.size
            keys = self.int_keys
            pos = np.searchsorted(keys, values)
        return self.int_ids[pos]

    def key_of(self, wanted: int) -> Any:
        hit = np.flatnonzero(self.int_ids == wanted)
        if hit.size:
            return int(self.int_keys[hit[0]])
        return super().key_of(wanted)


def grow(array: np.ndarray, size: int, fill: Any) -> np.ndarray:
    """``array`` with at least ``size`` rows (doubling), new rows set to ``fill``."""
    if size <= len(array):
        return array
    grown = np.full((max(size, 2 * len(array)),) + array.shape[1:], fill, dtype=array.dtype)
    grown[:len(array)] = array
    return grown
