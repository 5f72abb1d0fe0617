"""Which subjects a shard owns: whole parts of the population, fixed before the run.

The population is cut into ``parts`` fixed index ranges (part p holds the initial subjects
``bounds[p] .. bounds[p+1]-1``); an arriving subject with global index g belongs to part
``(g - initial) % parts``. A shard owns a contiguous run of parts, so what a part contains never
depends on the number of workers: part files and checkpoints are the same at any worker count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ShardLayout", "split_parts", "part_bounds"]


def part_bounds(subjects: int, parts: int) -> tuple[int, ...]:
    """``parts + 1`` boundaries splitting ``subjects`` initial indices into near-equal ranges."""
    base, extra = divmod(subjects, parts)
    bounds, at = [0], 0
    for p in range(parts):
        at += base + (1 if p < extra else 0)
        bounds.append(at)
    return tuple(bounds)


def split_parts(parts: int, shards: int) -> list[tuple[int, int]]:
    """Contiguous ``[first_part, stop_part)`` runs of parts, one per shard, near-equal in count."""
    base, extra = divmod(parts, shards)
    out, at = [], 0
    for s in range(shards):
        stop = at + base + (1 if s < extra else 0)
        out.append((at, stop))
        at = stop
    return out


@dataclass(frozen=True)
class ShardLayout:
    """One shard's share: parts ``first_part .. stop_part-1`` of ``parts``."""

    index: int
    count: int
    parts: int
    first_part: int
    stop_part: int
    bounds: tuple[int, ...]

    @property
    def start(self) -> int:
        """First initial subject index of this shard."""
        return self.bounds[self.first_part]

    @property
    def stop(self) -> int:
        """One past the last initial subject index of this shard."""
        return self.bounds[self.stop_part]

    @property
    def initial(self) -> int:
        """Size of the initial population (arrivals are numbered from here)."""
        return self.bounds[-1]

    @property
    def owned_parts(self) -> range:
        return range(self.first_part, self.stop_part)

    def parts_of(self, indices: np.ndarray) -> np.ndarray:
        """The part of each global index."""
        indices = np.asarray(indices, dtype=np.int64)
        initial = self.initial
        out = np.searchsorted(np.asarray(self.bounds[1:]), indices, side="right").astype(np.int64)
        late = indices >= initial
        if late.any():
            out[late] = (indices[late] - initial) % self.parts
        return out

    def owns(self, indices: np.ndarray) -> np.ndarray:
        """Mask of the global indices this shard owns."""
        parts = self.parts_of(indices)
        return (parts >= self.first_part) & (parts < self.stop_part)

    @classmethod
    def plan(cls, subjects: int, parts: int, shards: int) -> list[ShardLayout]:
        """Every shard's layout for a run."""
        bounds = part_bounds(subjects, parts)
        runs = split_parts(parts, shards)
        return [cls(index, shards, parts, a, b, bounds) for index, (a, b) in enumerate(runs)]
