"""Counter-based randomness: every draw is a pure function of (seed, subject index, tick, stream).

Because nothing depends on the order subjects are processed in, any split of the population
across shards produces the same draws.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["mix64", "mix64_int", "seed_key", "subject_keys", "GOLDEN"]

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)


def mix64_int(x: int) -> int:
    """SplitMix64's finaliser on a Python int (bijective on 64 bits)."""
    x &= M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser, vectorised and in place on a uint64 array (returned)."""
    x ^= x >> _S30
    x *= _M1
    x ^= x >> _S27
    x *= _M2
    x ^= x >> _S31
    return x


def seed_key(seed: int | None) -> int:
    """A 64-bit run key: derived from ``seed``, or from the OS's entropy when ``seed`` is None."""
    if seed is None:
        return int.from_bytes(os.urandom(8), "little")
    return mix64_int(mix64_int(seed & M64) ^ (seed >> 64) ^ 0x5EED)


def subject_keys(run_key: int, start: int, stop: int) -> np.ndarray:
    """One well-mixed 64-bit key per subject index in ``[start, stop)``."""
    idx = np.arange(start, stop, dtype=np.uint64)
    idx *= np.uint64(GOLDEN)
    idx ^= np.uint64(run_key)
    return mix64(idx)
