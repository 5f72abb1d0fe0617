"""A fast, reproducible stand-in for Python's ``random`` module inside callbacks and factories.

In a run, the engine keys this generator before every factory call and action callback with
a value derived from (seed, subject index, tick), so draws do not depend on processing order
or on how the population is sharded. Keying costs one attribute store, while reseeding
Python's global generator costs about 6 us, so ``from doge_dist.rand import randrange`` is the
cheap way to draw reproducible values. Outside a run it behaves as an ordinary generator.
"""

from __future__ import annotations

import hashlib
import os
import random as _random

__all__ = [
    "KeyedRandom", "rekey", "random", "randrange", "randint", "choice", "choices", "uniform", "gauss",
    "shuffle", "sample", "getrandbits", "expovariate", "normalvariate",
]

_M64 = (1 << 64) - 1


class KeyedRandom(_random.Random):
    """A counter-based generator: draw n after ``rekey(k)`` is a pure function of (k, n)."""

    # slots make the stores in rekey(), which runs before every callback, about twice as fast
    __slots__ = ("_key", "_ctr", "gauss_next")

    def __init__(self, key: int | None = None) -> None:
        self._key = 0
        self._ctr = 0
        super().__init__(key)

    def seed(self, a=None, version: int = 2) -> None:
        """Start the stream at a key derived from ``a``, the same in every process.

        ``None``: from the OS's entropy; an int: its low 64 bits; str, bytes or bytearray: the
        first 8 bytes of their SHA-256 (UTF-8 for str), not ``hash()``, which changes from one
        process to the next; a float: its ``hash()`` (not randomised per process).
        """
        if a is None:
            key = int.from_bytes(os.urandom(8), "little")
        elif isinstance(a, int):
            key = a
        elif isinstance(a, (str, bytes, bytearray)):
            data = a.encode() if isinstance(a, str) else bytes(a)
            key = int.from_bytes(hashlib.sha256(data).digest()[:8], "little")
        elif isinstance(a, float):
            key = hash(a)
        else:
            raise TypeError("The only supported seed types are: None, int, float, str, bytes, and bytearray.")
        self._key = key & _M64
        self._ctr = 0
        self.gauss_next = None

    def rekey(self, key: int) -> None:
        """Restart the stream at ``key`` (what the engine calls before each callback).

        Also drops a Gaussian left over from the previous key (``gauss`` makes two at a time), so
        it is not handed to the next subject or run.
        """
        self._key = key
        self._ctr = 0
        self.gauss_next = None

    def _next64(self) -> int:
        self._ctr += 1
        z = (self._key + self._ctr * 0x9E3779B97F4A7C15) & _M64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
        return z ^ (z >> 31)

    def random(self) -> float:
        return (self._next64() >> 11) * 1.1102230246251565e-16

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        """Like ``random.randrange``; the bias of the multiply-shift mapping is below n / 2**64."""
        if stop is None:
            start, stop = 0, start
        if step == 1 and type(start) is int and type(stop) is int:
            width = stop - start
            if 0 < width <= _M64:
                return start + ((self._next64() * width) >> 64)
        return super().randrange(start, stop, step)

    def randint(self, a: int, b: int) -> int:
        return self.randrange(a, b + 1)

    def getrandbits(self, k: int) -> int:
        if k <= 64:
            return self._next64() >> (64 - k) if k else 0
        words, rest = divmod(k, 64)
        value = 0
        for _ in range(words):
            value = (value << 64) | self._next64()
        if rest:
            value = (value << rest) | (self._next64() >> (64 - rest))
        return value

    def getstate(self):
        return (self._key, self._ctr, self.gauss_next)

    def setstate(self, state) -> None:
        self._key, self._ctr, self.gauss_next = state


_inst = KeyedRandom()


# Module-level functions (not bound methods), so that a callback pickled by value into a Ray
# worker still reaches that worker's generator, which the engine keys before each callback.
def rekey(key: int) -> None:
    """Restart this process's keyed stream (the engine calls this before each callback).

    Like ``KeyedRandom.rekey``: also drops a Gaussian left over from the previous key.
    """
    _inst._key = key
    _inst._ctr = 0
    _inst.gauss_next = None


def random() -> float:
    """A float in [0, 1)."""
    return _inst.random()


def randrange(start: int, stop: int | None = None, step: int = 1) -> int:
    """Like ``random.randrange`` (the common integer case inlined: it is the hot call in callbacks)."""
    if stop is None:
        start, stop = 0, start
    if step == 1 and type(start) is int and type(stop) is int and 0 < stop - start <= _M64:
        inst = _inst
        ctr = inst._ctr + 1
        inst._ctr = ctr
        z = (inst._key + ctr * 0x9E3779B97F4A7C15) & _M64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
        return start + (((z ^ (z >> 31)) * (stop - start)) >> 64)
    return _inst.randrange(start, stop, step)


def randint(a: int, b: int) -> int:
    """Like ``random.randint`` (both ends included)."""
    return _inst.randrange(a, b + 1)


def choice(seq):
    """Like ``random.choice``."""
    return _inst.choice(seq)


def choices(population, weights=None, *, cum_weights=None, k: int = 1):
    """Like ``random.choices``."""
    return _inst.choices(population, weights, cum_weights=cum_weights, k=k)


def uniform(a: float, b: float) -> float:
    """Like ``random.uniform``."""
    return _inst.uniform(a, b)


def gauss(mu: float = 0.0, sigma: float = 1.0) -> float:
    """Like ``random.gauss``."""
    return _inst.gauss(mu, sigma)


def normalvariate(mu: float = 0.0, sigma: float = 1.0) -> float:
    """Like ``random.normalvariate``."""
    return _inst.normalvariate(mu, sigma)


def expovariate(lambd: float = 1.0) -> float:
    """Like ``random.expovariate``."""
    return _inst.expovariate(lambd)


def shuffle(x) -> None:
    """Like ``random.shuffle``."""
    _inst.shuffle(x)


def sample(population, k: int, *, counts=None):
    """Like ``random.sample``."""
    return _inst.sample(population, k, counts=counts)


def getrandbits(k: int) -> int:
    """Like ``random.getrandbits``."""
    return _inst.getrandbits(k)
