"""How much memory a run needs, and whether this machine has it -- checked before any subject exists.

A run holds, per subject, the engine's arrays (next tick 8 B, key 8 B, state 2-4 B, a list slot 8 B,
plus the temporaries of the first draw: about 66 B at the peak, measured with 2-4 million subjects)
and the subject object itself, measured on a small sample made by the model's own factory (a copy
of it, so the run's factory and the random generators are left as they were; anything the factory
prints goes to stderr). Runs too small to matter are not measured, so their factory is not called.
"""

from __future__ import annotations

import contextlib
import copy
import os
import random as _py_random
import resource
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .._errors import ModelError

__all__ = ["MemoryEstimate", "estimate_run_memory", "check_memory", "available_memory", "address_space_limit",
           "deep_sizeof", "format_bytes", "ENGINE_BYTES_PER_SUBJECT", "PROCESS_OVERHEAD_BYTES",
           "MEASURE_FROM_SUBJECTS"]

#: Engine bytes per subject at the peak (arrays + temporaries of a draw); measured, see the docstring.
ENGINE_BYTES_PER_SUBJECT = 68
#: What one Python process with numpy and doge-dist holds before any subject (about 35 MB measured);
#: a Ray worker holds more, counted with the same figure as a floor.
PROCESS_OVERHEAD_BYTES = 64 * 1024 * 1024
#: Subject objects measured per estimate.
SAMPLE_SIZE = 32
#: Assumed size of one subject object when it is not measured: the factory cannot be copied, or the run
#: is so small that no subject size could make it too large (then the factory is not called at all).
UNSAMPLED_SUBJECT_BYTES = 256
#: Runs of fewer subjects are not measured (at 4 KiB per subject they would still need less than 1 GiB).
MEASURE_FROM_SUBJECTS = 200_000

_MISSING = object()
_NOT_COUNTED = (type, types.ModuleType, types.FunctionType, types.MethodType, types.BuiltinFunctionType)


@dataclass(frozen=True)
class MemoryEstimate:
    """The expected peak memory of a run; ``per_process_bytes`` is the largest shard's process."""

    subjects: int
    workers: int
    engine_bytes_per_subject: float
    subject_bytes: float
    sampled: int
    total_bytes: int
    per_process_bytes: int

    @property
    def bytes_per_subject(self) -> float:
        return self.engine_bytes_per_subject + self.subject_bytes

    def describe(self) -> str:
        how = f"measured on {self.sampled} subjects" if self.sampled else "assumed, not measured"
        return (f"about {format_bytes(self.total_bytes)} of memory in {self.workers} process(es) "
                f"({self.bytes_per_subject:,.0f} B per subject: {self.engine_bytes_per_subject:.0f} B "
                f"engine + {self.subject_bytes:,.0f} B subject object, {how})")


def format_bytes(count: float) -> str:
    """``1536`` -> ``1.5 KiB``."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{value:,.1f} PiB"  # pragma: no cover


def _slot_names(cls: type) -> tuple[str, ...]:
    slots = cls.__dict__.get("__slots__", ())
    return (slots,) if isinstance(slots, str) else tuple(slots)


def _children(obj: Any) -> Iterator[Any]:
    if isinstance(obj, dict):
        yield from obj.keys()
        yield from obj.values()
    elif isinstance(obj, (list, tuple, set, frozenset)):
        yield from obj
    attributes = getattr(obj, "__dict__", None)
    if isinstance(attributes, dict):
        yield attributes
    for cls in type(obj).__mro__:
        for name in _slot_names(cls):
            if name not in ("__dict__", "__weakref__"):
                value = getattr(obj, name, _MISSING)
                if value is not _MISSING:
                    yield value


def deep_sizeof(obj: Any, seen: set[int] | None = None, limit: int = 10_000) -> int:
    """``sys.getsizeof`` of ``obj`` and what it holds (containers, ``__dict__``, ``__slots__``), each object
    once per ``seen``; classes, functions and modules are not counted; at most ``limit`` objects."""
    seen = set() if seen is None else seen
    total = 0
    stack = [obj]
    visited = 0
    while stack and visited < limit:
        item = stack.pop()
        if id(item) in seen or isinstance(item, _NOT_COUNTED):
            continue
        seen.add(id(item))
        visited += 1
        try:
            total += sys.getsizeof(item)
        except TypeError:
            continue
        stack.extend(_children(item))
    return total


def _sample_subjects(factory: Any, count: int) -> list[Any] | None:
    """``count`` subjects from a copy of the factory; the random generators are restored after."""
    from .. import rand as doge_rand
    from ..model._compiled import factory_takes_index

    try:
        clone = copy.deepcopy(factory)
    except Exception:  # noqa: BLE001 - a factory holding locks, connections...: not measured
        return None
    python_state = _py_random.getstate()
    doge_state = doge_rand._inst.getstate()
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries data only
            if factory_takes_index(clone):
                return [clone.create(i) for i in range(count)]
            return [clone.create() for _ in range(count)]
    except Exception:  # noqa: BLE001 - the run itself will report a failing factory, with context
        return None
    finally:
        _py_random.setstate(python_state)
        doge_rand._inst.setstate(doge_state)


def _expected_subjects(generator: Any) -> int:
    total = int(generator.subjects_num)
    ticks = generator.ticks_num
    for stream in getattr(generator, "arrivals", None) or ():
        if stream.limit is not None:
            total += stream.limit
        elif ticks is not None:
            total += int(stream.rate_per_tick * ticks)
    return total


def estimate_run_memory(generator: Any, workers: int = 1) -> MemoryEstimate:
    """The memory a run of ``generator`` on ``workers`` processes needs at its peak.

    Cheap: a run of MEASURE_FROM_SUBJECTS subjects or more has SAMPLE_SIZE subjects made by a copy of
    its factory and measured; smaller runs assume UNSAMPLED_SUBJECT_BYTES per subject.
    """
    subjects = _expected_subjects(generator)
    workers = max(1, min(int(workers), max(1, subjects)))
    sample: list[Any] | None = []
    if subjects >= MEASURE_FROM_SUBJECTS:
        sample = _sample_subjects(generator.subject_factory, SAMPLE_SIZE)
    if sample is None:
        subject_bytes, sampled = float(UNSAMPLED_SUBJECT_BYTES), 0
    elif sample:
        seen: set[int] = set()
        subject_bytes = sum(deep_sizeof(s, seen) for s in sample) / len(sample)
        sampled = len(sample)
    else:
        subject_bytes, sampled = float(UNSAMPLED_SUBJECT_BYTES) if subjects else 0.0, 0
    per_subject = ENGINE_BYTES_PER_SUBJECT + subject_bytes
    largest_shard = -(-subjects // workers)
    return MemoryEstimate(
        subjects=subjects, workers=workers, engine_bytes_per_subject=float(ENGINE_BYTES_PER_SUBJECT),
        subject_bytes=subject_bytes, sampled=sampled,
        total_bytes=int(subjects * per_subject + workers * PROCESS_OVERHEAD_BYTES),
        per_process_bytes=int(largest_shard * per_subject + PROCESS_OVERHEAD_BYTES),
    )


def available_memory() -> int | None:
    """``MemAvailable`` from /proc/meminfo in bytes (None where there is no such file)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _own_address_space() -> int:
    try:
        with open(f"/proc/{os.getpid()}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def address_space_limit() -> int | None:
    """This process's ``RLIMIT_AS`` soft limit in bytes (None when unlimited)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def check_memory(estimate: MemoryEstimate, *, available: int | None = None,
                 address_limit: int | None = None) -> None:
    """ModelError naming ``subjects``, the estimate and the limit when the run cannot fit this machine:
    the whole run against ``MemAvailable`` (all its processes run here) and the largest process against
    ``RLIMIT_AS`` (on top of what this process already maps). Call it for runs on this machine only.
    """
    available = available_memory() if available is None else available
    address_limit = address_space_limit() if address_limit is None else address_limit
    advice = "lower subjects, or run on a Ray cluster with more memory (workers and ray_address)"
    if available is not None and estimate.total_bytes > available:
        raise ModelError(f"subjects={estimate.subjects:,} needs {estimate.describe()}, but this machine has "
                         f"{format_bytes(available)} available (MemAvailable): {advice}")
    if address_limit is not None:
        needed = estimate.per_process_bytes + (_own_address_space() if estimate.workers == 1 else 0)
        if needed > address_limit:
            raise ModelError(f"subjects={estimate.subjects:,} needs {estimate.describe()}, but one process "
                             f"may use at most {format_bytes(address_limit)} of address space (RLIMIT_AS, "
                             f"ulimit -v) and would need about {format_bytes(needed)}: {advice}")
