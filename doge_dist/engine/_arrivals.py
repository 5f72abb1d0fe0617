"""Arrival draws: how many subjects join in each tick, the same on every shard.

The count of each stream in tick t is a Poisson draw taken from a hash of (seed, stream, tick)
alone, so every shard computes the same counts and hands out the same global indices: arrival k
of the run gets index ``initial + k``, in (tick, stream) order. Which shard creates it follows
from its part (``(index - initial) % parts``), never from the number of workers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..model._arrivals import ArrivalStream
from ._keyed import GOLDEN, mix64

__all__ = ["ArrivalSchedule", "WindowArrivals", "poisson_quantile"]

_ARRIVAL_SALT = 0xA5A1_7E55_0C0F_FEE1
_TWO_M53 = 2.0 ** -53
_SMALL_MEAN = 50.0  # below it, sum the pmf from 0; above, around the mean (12 sd covers 1 - 1e-30)


def poisson_quantile(u: float, mean: float) -> int:
    """The smallest k with P(X <= k) >= u for X ~ Poisson(mean): an exact inverse-CDF draw."""
    if mean <= 0.0:
        return 0
    if mean < _SMALL_MEAN:
        term = math.exp(-mean)
        total, k = term, 0
        while total < u and k < 10_000:
            k += 1
            term *= mean / k
            total += term
        return k
    spread = 12.0 * math.sqrt(mean) + 10.0
    lo = max(0, int(mean - spread))
    hi = int(mean + spread) + 1
    ks = np.arange(lo, hi + 1, dtype=np.float64)
    # log pmf(k) = k log(mean) - mean - lgamma(k + 1): one lgamma, then a running sum of log(mean / k)
    log_first = lo * math.log(mean) - mean - math.lgamma(lo + 1)
    steps = math.log(mean) - np.log(ks[1:])
    log_pmf = np.concatenate(([log_first], log_first + np.cumsum(steps)))
    cdf = np.cumsum(np.exp(log_pmf))
    return min(lo + int(np.searchsorted(cdf, u, side="left")), hi)


@dataclass
class WindowArrivals:
    """The arrivals of one window: per tick offset, the global indices joining and their streams."""

    by_offset: dict[int, tuple[np.ndarray, np.ndarray]]  # offset -> (global indices, stream ids)
    total: int


class ArrivalSchedule:
    """Draws arrival counts tick by tick; keeps how many have arrived so far (its only state)."""

    def __init__(self, streams: Sequence[ArrivalStream], run_key: int, initial: int, *, timestamp_start: int,
                 tick_ms: int) -> None:
        self.streams = list(streams)
        self.run_key = run_key
        self.initial = initial
        self.timestamp_start = timestamp_start
        self.tick_ms = tick_ms
        self.arrived = [0] * len(self.streams)  # per stream, over the run so far
        self.next_tick = 0                       # the first tick not drawn yet
        self._issued = 0                         # global indices handed out so far

    @property
    def total_arrived(self) -> int:
        return sum(self.arrived)

    def _uniforms(self, stream: int, ticks: np.ndarray) -> np.ndarray:
        h = ticks.astype(np.uint64) + np.uint64(1)
        h *= np.uint64(GOLDEN)
        h ^= np.uint64((self.run_key ^ _ARRIVAL_SALT ^ ((stream + 1) * 0xD6E8FEB86659FD93)) & (2**64 - 1))
        mix64(h)
        u = (h >> np.uint64(11)).astype(np.float64)
        u += 0.5
        u *= _TWO_M53
        return u

    def draw(self, t0: int, t1: int) -> WindowArrivals:
        """Arrivals in ticks ``t0 .. t1-1`` (must follow the previous call: schedules move forward)."""
        if t0 != self.next_tick:
            raise RuntimeError(f"arrival schedule at tick {self.next_tick}, asked for {t0}")
        ticks = np.arange(t0, t1, dtype=np.int64)
        stamps = self.timestamp_start + ticks * self.tick_ms
        counts = np.zeros((ticks.size, len(self.streams)), dtype=np.int64)
        for s, stream in enumerate(self.streams):
            if stream.rate_per_tick <= 0 or (stream.limit is not None and self.arrived[s] >= stream.limit):
                continue
            means = np.full(ticks.size, stream.rate_per_tick)
            if stream.profile is not None:
                means *= stream.profile.values(stamps)
            uniforms = self._uniforms(s, ticks)
            column = np.fromiter((poisson_quantile(u, m) for u, m in zip(uniforms.tolist(), means.tolist())),
                                 dtype=np.int64, count=ticks.size)
            if stream.limit is not None:  # cap the running total at the limit
                room = stream.limit - self.arrived[s]
                running = np.cumsum(column)
                column = np.minimum(running, room) - np.minimum(running - column, room)
            counts[:, s] = column
            self.arrived[s] += int(column.sum())
        self.next_tick = t1
        by_offset: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        first = self.initial + self._issued
        flat = counts.reshape(-1)
        total = int(flat.sum())
        if total:
            offsets_streams = np.repeat(np.arange(flat.size), flat)
            offsets = offsets_streams // len(self.streams)
            streams = offsets_streams % len(self.streams)
            indices = first + np.arange(total, dtype=np.int64)
            bounds = np.searchsorted(offsets, np.arange(ticks.size + 1))
            for k in np.flatnonzero(np.diff(bounds)).tolist():
                a, b = bounds[k], bounds[k + 1]
                by_offset[k] = (indices[a:b], streams[a:b])
        self._issued += total
        return WindowArrivals(by_offset, total)

    def state(self) -> dict:
        """What a checkpoint keeps."""
        return {"arrived": list(self.arrived), "next_tick": self.next_tick, "issued": self._issued}

    def restore(self, state: dict) -> None:
        self.arrived = list(state["arrived"])
        self.next_tick = int(state["next_tick"])
        self._issued = int(state["issued"])
