"""Lines for the driver's stdout (print sinks on worker processes), merged into one-process order.

Each shard keeps its print sinks' lines with the (tick, subject index) of the event they belong to
and ships them with its window report; the driver sorts a window's lines from all shards by
(tick, subject, sink) — the order one process would have printed them in — and writes them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._plan import OutputChunk

__all__ = ["OutputMerger", "OUTPUT_WINDOW_LINES"]

OUTPUT_WINDOW_LINES = 100_000  # windows shrink so that a window carries about this many lines at most


class OutputMerger:
    """Collects a window's output chunks from every shard; writes them in order when it is done."""

    def __init__(self, sinks: list[Any]) -> None:
        self.sinks = sinks
        self.chunks: list[OutputChunk] = []
        self.written = 0

    def add(self, chunks: list[OutputChunk]) -> None:
        self.chunks.extend(chunks)

    def flush(self) -> int:
        """Write the collected lines in (tick, subject, sink) order; return how many."""
        if not self.chunks:
            return 0
        keys = np.concatenate([c.keys for c in self.chunks])
        sinks = np.concatenate([np.full(len(c.lines), c.sink, dtype=np.int64) for c in self.chunks])
        lines: list[str] = [line for c in self.chunks for line in c.lines]
        self.chunks = []
        order = np.lexsort((sinks, keys[:, 1], keys[:, 0]))
        ordered_sinks = sinks[order]
        cuts = np.flatnonzero(np.diff(ordered_sinks)) + 1
        starts = [0, *cuts.tolist()]
        ends = [*cuts.tolist(), order.size]
        order_list = order.tolist()
        for a, b in zip(starts, ends):
            sink = self.sinks[int(ordered_sinks[a])]
            sink.emit([lines[i] for i in order_list[a:b]])
        self.written += order.size
        return order.size
