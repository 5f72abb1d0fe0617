"""Pure logic behind the command line: workers: auto, the memory estimate, summary timings."""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass

import pytest

from doge_dist import CountingSink, DataOnlineGenerator, ModelError, RunResult, SubjectFactory
from doge_dist import rand as doge_rand
from doge_dist.cli._auto import choose_workers
from doge_dist.cli._report import describe_counts, summary_table
from doge_dist.run._memory import (
    ENGINE_BYTES_PER_SUBJECT,
    MEASURE_FROM_SUBJECTS,
    PROCESS_OVERHEAD_BYTES,
    check_memory,
    deep_sizeof,
    estimate_run_memory,
)


@dataclass(slots=True)
class Slotted:
    user_id: int
    name: str


class Counting(SubjectFactory):
    """Numbers its subjects itself and draws from both random generators, like doge-datagen factories."""

    def __init__(self) -> None:
        self.made = 0

    def create(self):
        self.made += 1
        return {"id": self.made, "balance": random.randrange(10**6), "tag": "x" * doge_rand.randrange(1, 50),
                "history": list(range(20))}


def generator(subjects: int, ticks: int | None = 100, factory=None,
              probability: float = 10) -> DataOnlineGenerator:
    gen = DataOnlineGenerator(["a", "b"], "a", factory or Counting(), subjects, 1000, ticks, seed=1)
    sink = CountingSink()
    gen.add_transition("go", "a", "b", probability, event_sinks=[sink])
    gen.add_transition("back", "b", "a", probability, event_sinks=[sink])
    return gen


def test_auto_runs_small_jobs_in_process_and_large_ones_on_every_core():
    small = choose_workers(generator(10_000, 1000), cores=8)
    assert small.workers == 1 and "less than starting Ray costs" in small.reason
    assert "about 1,000,000 expected events" in small.reason  # 10,000 x 1,000 x 10% (stationary 50/50)
    large = choose_workers(generator(1_000_000, 10_000), cores=8)
    assert large.workers == 8 and "all 8 cores" in large.reason
    assert choose_workers(generator(1_000_000, 10_000), cores=1).workers == 1
    # many subject-ticks but hardly any events still cost time
    quiet = choose_workers(generator(10_000_000, 1000, probability=0.0001), cores=4)
    assert quiet.workers == 4 and "10,000,000,000 subject-ticks" in quiet.reason
    assert choose_workers(generator(100, None), cores=4).workers == 4  # unbounded as fast as possible
    stream = choose_workers(generator(1000, None), realtime=True, speed=60, cores=4)
    assert stream.workers == 1 and "of one core" in stream.reason
    assert stream.to_dict() == {"requested": "auto", "workers": 1, "reason": stream.reason}


def test_memory_estimate_measures_a_copy_of_the_factory_and_leaves_the_run_alone():
    factory = Counting()
    gen = generator(MEASURE_FROM_SUBJECTS, factory=factory)
    random.seed(5)
    doge_rand.rekey(11)
    python_before, doge_before = random.getstate(), doge_rand._inst.getstate()
    estimate = estimate_run_memory(gen, workers=2)
    assert factory.made == 0  # the run's own factory was not called
    assert random.getstate() == python_before and doge_rand._inst.getstate() == doge_before
    assert estimate.sampled == 32 and estimate.workers == 2
    assert 400 < estimate.subject_bytes < 2000  # a dict with a 20-int list, a string and two ints
    assert estimate.total_bytes == int(MEASURE_FROM_SUBJECTS * estimate.bytes_per_subject
                                       + 2 * PROCESS_OVERHEAD_BYTES)
    assert estimate.per_process_bytes < estimate.total_bytes
    small = estimate_run_memory(generator(1000, factory=factory))
    assert small.sampled == 0 and factory.made == 0  # too small to matter: the factory is not called
    assert small.bytes_per_subject == ENGINE_BYTES_PER_SUBJECT + 256


def test_memory_estimate_of_a_factory_that_cannot_be_copied():
    import threading

    class Locked(SubjectFactory):
        def __init__(self):
            self.lock = threading.Lock()

        def create(self):
            return object()

    estimate = estimate_run_memory(generator(MEASURE_FROM_SUBJECTS, factory=Locked()))
    assert estimate.sampled == 0 and "assumed, not measured" in estimate.describe()


def test_check_memory_names_subjects_the_estimate_and_the_limit():
    estimate = estimate_run_memory(generator(10**9, factory=Counting()))
    with pytest.raises(ModelError) as info:
        check_memory(estimate, available=8 * 2**30, address_limit=None)
    text = str(info.value)
    assert text.startswith("subjects=1,000,000,000 needs about ")
    assert "8.0 GiB available (MemAvailable)" in text
    with pytest.raises(ModelError, match=r"RLIMIT_AS, ulimit -v"):
        check_memory(estimate, available=2**60, address_limit=2**30)
    check_memory(estimate, available=2**60, address_limit=2**60)  # fits: no error


def test_deep_sizeof_follows_slots_dicts_and_shared_objects_once():
    shared = "s" * 1000
    a, b = Slotted(10**9, shared), Slotted(10**9 + 1, shared)
    seen: set[int] = set()
    first, second = deep_sizeof(a, seen), deep_sizeof(b, seen)
    assert first >= sys.getsizeof(a) + sys.getsizeof(shared)
    assert second < sys.getsizeof(shared)  # the shared string is counted once
    parts = ({"k": 0}, "k", [1.5, 2.5], 1.5, 2.5)
    assert deep_sizeof({"k": [1.5, 2.5]}) == sum(sys.getsizeof(x) for x in parts)


def result(**extra) -> RunResult:
    r = RunResult(events_by_trigger={"go": 5}, vetoed_by_trigger={}, events_by_sink={"count": 5},
                  events_by_transition={}, total_events=5, total_vetoed=0, subjects=10, ticks=4,
                  elapsed_s=0.27, workers=2, seed=1, sink_stats={"count": {"delivered": 4, "failed": 1}})
    for key, value in extra.items():
        setattr(r, key, value)
    return r


def test_summary_shows_the_wall_time_and_its_parts():
    timed = result(timings={"ray_start_s": 3.1, "actor_start_s": 1.2, "create_s": 0.4, "simulate_s": 0.25,
                            "close_s": 0.05, "total_s": 5.5})
    text = summary_table(timed, status="completed")
    assert "in 5.50 s (workers 2, seed 1)" in text
    assert ("time: 5.50 s wall = Ray start 3.10 s + actor start 1.20 s + subject creation 0.40 s + "
            "simulation 0.25 s + closing sinks 0.05 s") in text
    assert "rate: 20 events/s" in text  # over the simulation
    untimed = summary_table(result(), status="completed", wall_s=5.5)
    assert "in 5.50 s" in untimed and "0.27 s in the shards" in untimed
    chosen = summary_table(result(), status="completed", workers_choice="auto: because")
    assert "  workers: 2 (auto: because)" in chosen
    assert describe_counts(result()) == "5 events in 4 ticks from 2 shard(s); sinks delivered 4, failed 1"
