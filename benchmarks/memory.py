"""Measure memory per subject: engine arrays plus the Python subject objects.

Run ``python benchmarks/memory.py [N]`` (default 100,000 subjects). It prints bytes per subject
for the parts a shard holds in memory, measured with ``tracemalloc`` (which counts the Python
objects and, since numpy registers its allocations there, the engine arrays too):

- the engine's per-subject arrays: ``int16`` state index and ``int64`` next tick;
- the list holding the subject references;
- banking ``User`` subjects as a slotted dataclass (4 ints), as a plain dataclass (with a
  ``__dict__``) and as a tuple, with values like the banking example's (index id, balance 0..999);
- one real shard of the banking model (``examples/banking.py`` in the engine that the runners
  use, ``doge_dist.engine._shard_engine.ShardEngine``): its arrays, everything after subject creation, the
  peak during creation, and the peak during a 100-tick and a 1,000-tick window.

The figures feed the memory table in docs/scaling.md. No third-party service is needed.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from random import Random

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # make `examples` importable
    sys.path.insert(0, str(ROOT))

__all__ = ["measure", "measure_engine", "main"]


@dataclass(slots=True)
class SlottedUser:
    """The banking example's subject with ``__slots__`` (no per-instance dict)."""

    user_id: int
    balance: int
    loan_balance: int
    last_payment: int


@dataclass
class PlainUser:
    """The same subject as doge-datagen 1.0.4 declares it (instances carry a ``__dict__``)."""

    user_id: int
    balance: int
    loan_balance: int
    last_payment: int


def measure(build: Callable[[int], object], n: int) -> float:
    """Bytes allocated per subject while ``build(n)`` is alive (traced peak minus baseline)."""
    gc.collect()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    kept = build(n)
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del kept
    return (current - base) / n


def _subjects(cls: type, n: int) -> list[object]:
    rnd = Random(1)
    return [cls(i, rnd.randrange(0, 1000), 0, 0) for i in range(n)]


def _subjects_after_run(cls: type, n: int) -> list[object]:
    """Subjects whose balances have grown past the small-int cache, as after a long run."""
    rnd = Random(1)
    return [cls(i, rnd.randrange(1000, 100_000), 10_000 * rnd.randrange(0, 3), rnd.randrange(10, 100))
            for i in range(n)]


def measure_engine(n: int, windows: tuple[int, ...] = (100, 1000)) -> list[tuple[str, float]]:
    """Bytes per subject of one banking shard of ``n`` subjects, at each stage of a run.

    Uses the engine's private constructor as the runners do; a counting sink keeps sink buffers
    out of the figures.
    """
    from doge_dist.engine._keyed import seed_key
    from doge_dist.engine._shard_engine import ShardEngine
    from examples.banking import build_generator

    gen = build_generator("count", subjects=n, ticks=sum(windows), seed=7)
    model = gen.compile()
    gc.collect()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    engine = ShardEngine.for_range(model, gen.subject_factory, 0, n, run_key=seed_key(7), tick_ms=gen.tick_ms,
                         timestamp_start=0)
    arrays, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    engine.create_subjects()
    created, peak_create = tracemalloc.get_traced_memory()
    rows = [("shard engine arrays (before subjects)", (arrays - base) / n),
            ("shard after subject creation (arrays + banking Users)", (created - base) / n),
            ("shard peak during subject creation", (peak_create - base) / n)]
    t0 = 0
    for width in windows:
        tracemalloc.reset_peak()
        engine.run_window(t0, t0 + width)
        t0 += width
        _, peak = tracemalloc.get_traced_memory()
        rows.append((f"shard peak during a {width:,}-tick window", (peak - base) / n))
    tracemalloc.stop()
    return rows


def main(argv: list[str] | None = None) -> None:
    """Print the per-subject figures for ``N`` subjects (first argument, default 100,000)."""
    args = sys.argv[1:] if argv is None else argv
    n = int(args[0]) if args else 100_000
    rows = [
        ("engine arrays (int16 state + int64 next tick)",
         lambda k: (np.zeros(k, dtype=np.int16), np.zeros(k, dtype=np.int64))),
        ("list of subject references", lambda k: [None] * k),
        ("slotted dataclass User, fresh (list included)", lambda k: _subjects(SlottedUser, k)),
        ("slotted dataclass User, after a run (list included)",
         lambda k: _subjects_after_run(SlottedUser, k)),
        ("plain dataclass User, fresh (list included)", lambda k: _subjects(PlainUser, k)),
        ("tuple of 4 ints, fresh (list included)", lambda k: [(i, i % 1000, 0, 0) for i in range(k)]),
    ]
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, N={n:,}")
    print(f"sys.getsizeof(SlottedUser(...)) = {sys.getsizeof(SlottedUser(10**6, 500, 0, 0))} bytes, "
          f"sys.getsizeof(PlainUser(...)) = {sys.getsizeof(PlainUser(10**6, 500, 0, 0))} bytes "
          f"(+ its __dict__ {sys.getsizeof(PlainUser(10**6, 500, 0, 0).__dict__)}), "
          f"sys.getsizeof(10**6) = {sys.getsizeof(10**6)} bytes")
    for label, build in rows:
        print(f"{measure(build, n):8.1f} B/subject  {label}")
    for label, value in measure_engine(n):
        print(f"{value:8.1f} B/subject  {label}")


if __name__ == "__main__":
    main()
