"""Behaviour over time on Ray workers: the same bytes at any worker count (profiles, arrivals, churn,
part files), print output shipped to the driver, stops during creation, failures across shards."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from doge_dist import (
    DataOnlineGenerator,
    EventSink,
    JsonLinesSink,
    SimulationError,
    SubjectFactory,
    Transition,
    current_shard,
)
from doge_dist import rand as doge_rand
from doge_dist.profiles import daily, piecewise, weekly

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parent.parent
MINUTE = 60_000
JAN_2024 = 1_704_067_200_000  # 2024-01-01T00:00:00Z, a Monday; no DST change in the runs below
EVENINGS = [0.3] * 7 + [1.0] * 10 + [2.0] * 5 + [0.6] * 2


@pytest.fixture(autouse=True)
def _pickle_this_module_by_value(ray_session):
    """Workers cannot import pytest's test modules; ship this module's classes by value."""
    ray_session.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield


@dataclass
class Account:
    index: int
    balance: int
    acts: int = 0


class IndexFactory(SubjectFactory):
    def create(self, index: int) -> Account:
        return Account(index, doge_rand.randrange(0, 1000))


class NumberingFactory(SubjectFactory):
    """Numbers subjects itself and has no advance(): the engine must replay what other shards made."""

    def __init__(self) -> None:
        self.made = 0

    def create(self) -> Account:
        self.made += 1
        return Account(self.made - 1, doge_rand.randrange(0, 1000))


def spend(account: Account, transition: Transition) -> bool:
    amount = doge_rand.randrange(1, 200)
    if amount > account.balance:
        return False
    account.balance -= amount
    return True


def build(factory: SubjectFactory, sinks: list[EventSink], *, profiled: bool = True, seed: int = 31,
          subjects: int = 600, ticks: int = 1500) -> DataOnlineGenerator:
    """Churn (drop_final) and arrivals with a profile and a cap; with ``profiled``, profiles on most
    transitions too (a daily x weekly product in a time zone, a linear ramp)."""
    gen = DataOnlineGenerator(["offline", "online", "gone"], "offline", factory, subjects, MINUTE, ticks,
                              JAN_2024, seed=seed, drop_final=True)
    week = weekly([1.0, 1.0, 1.1, 1.1, 1.2, 0.7, 0.5], tz="Europe/Warsaw")
    ramp = piecewise([(JAN_2024, 0.5), (JAN_2024 + ticks * MINUTE, 1.5)], interpolation="linear")
    gen.add_transition("login", "offline", "online", 1.0, event_sinks=sinks,
                       profile=daily(EVENINGS, tz="Europe/Warsaw") * week if profiled else None)
    gen.add_transition("spend", "online", "online", 10.0, action_callback=spend, event_sinks=sinks)
    gen.add_transition("logout", "online", "offline", 20.0, event_sinks=sinks,
                       profile=ramp if profiled else None)
    gen.add_transition("close", "offline", "gone", 0.05, event_sinks=sinks)
    gen.add_arrivals(0.8, profile=daily(EVENINGS), limit=900)
    return gen


def part_bytes(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.glob("part-*.jsonl"))}


def shard_lines(directory: Path) -> Counter:
    lines: Counter = Counter()
    for path in directory.glob("shard-*.jsonl"):
        lines.update(path.read_text().splitlines())
    return lines


def run_to(directory: Path, factory: SubjectFactory, workers: int, *, parts: int | None,
           profiled: bool = True):
    """Run into ``directory``: ``{shard}`` files always, ``{part}`` files when ``parts`` is given."""
    directory.mkdir()
    sinks = [JsonLinesSink(str(directory / "shard-{shard}.jsonl"))]
    if parts is not None:
        sinks.append(JsonLinesSink(str(directory / "part-{part}.jsonl"), parts=parts))
    return build(factory, sinks, profiled=profiled).start(workers=workers,
                                                          backend="local" if workers == 1 else "ray")


def assert_same_run(results: dict, events: dict) -> None:
    first = results[1]
    assert first.created > 600 and first.departed > 0 and sum(events[1].values()) == first.total_events
    assert min(first.events_by_trigger.values()) > 0
    for workers, result in results.items():
        assert events[workers] == events[1], f"events differ on {workers} workers"
        assert (result.events_by_trigger, result.created, result.departed) == \
            (first.events_by_trigger, first.created, first.departed)
        assert result.timeline.events == first.timeline.events
        assert (result.timeline.created, result.timeline.departed) == \
            (first.timeline.created, first.timeline.departed)
        assert len(result.shards) == workers


def test_profiles_and_arrivals_give_the_same_events_on_1_2_and_3_workers(tmp_path):
    results, events = {}, {}
    for workers in (1, 2, 3):
        results[workers] = run_to(tmp_path / f"w{workers}", IndexFactory(), workers, parts=None)
        events[workers] = shard_lines(tmp_path / f"w{workers}")
    assert_same_run(results, events)


def test_arrivals_give_the_same_part_files_on_1_2_and_3_workers(tmp_path):
    results, files, events = {}, {}, {}
    for workers in (1, 2, 3):
        out = tmp_path / f"w{workers}"
        results[workers] = run_to(out, IndexFactory(), workers, parts=3, profiled=False)
        files[workers], events[workers] = part_bytes(out), shard_lines(out)
    assert sorted(files[1]) == ["part-0.jsonl", "part-1.jsonl", "part-2.jsonl"]
    assert files[2] == files[1] and files[3] == files[1]
    assert_same_run(results, events)


def test_profiles_and_arrivals_give_the_same_part_files_on_1_2_and_3_workers(tmp_path):
    files = {}
    for workers in (1, 2, 3):
        run_to(tmp_path / f"w{workers}", IndexFactory(), workers, parts=3)
        files[workers] = part_bytes(tmp_path / f"w{workers}")
    assert len(files[1]) == 3 and files[2] == files[1] and files[3] == files[1]


def test_a_numbering_factory_gives_the_same_part_files_on_1_and_3_workers(tmp_path):
    one = run_to(tmp_path / "w1", NumberingFactory(), 1, parts=6, profiled=False)
    three = run_to(tmp_path / "w3", NumberingFactory(), 3, parts=6, profiled=False)
    assert part_bytes(tmp_path / "w3") == part_bytes(tmp_path / "w1")
    assert shard_lines(tmp_path / "w3") == shard_lines(tmp_path / "w1")
    assert one.created == three.created > 600


PRINT_SCRIPT = textwrap.dedent('''
    import sys
    import ray
    from doge_dist import DataOnlineGenerator, PrintingSink, SubjectFactory
    from doge_dist.profiles import daily

    class Factory(SubjectFactory):
        def create(self, index):
            return {"id": index}

    def line(ts, subject, transition):
        return f"{ts} {subject['id']} {transition.trigger}"

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=True)
    for workers in (1, 2, 3):
        sink = PrintingSink(line)
        gen = DataOnlineGenerator(["a", "b", "gone"], "a", Factory(), 300, 60_000, 600, seed=5,
                                  drop_final=True)
        gen.add_transition("go", "a", "b", 3.0, event_sinks=[sink], profile=daily([0.5] * 12 + [1.5] * 12))
        gen.add_transition("back", "b", "a", 20.0, event_sinks=[sink])
        gen.add_transition("quit", "b", "gone", 1.0, event_sinks=[sink])
        gen.add_arrivals(0.5, profile=daily([1.0] * 6 + [0.2] * 18))
        print(f"=== {workers}", flush=True)
        result = gen.start(workers=workers, backend="local" if workers == 1 else "ray")
        sys.stdout.flush()
        print(f"=== end {workers} {result.total_events}", flush=True)
    ray.shutdown()
''')


def test_print_output_on_2_and_3_workers_is_the_one_process_output(tmp_path):
    script = tmp_path / "print_run.py"
    script.write_text(PRINT_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outputs, total = {}, {}
    current = None
    for line in proc.stdout.splitlines():
        if line.startswith("=== end "):
            _, _, workers, events = line.split()
            total[int(workers)] = int(events)
            current = None
        elif line.startswith("=== "):
            current = int(line.split()[1])
            outputs[current] = []
        elif current is not None:
            outputs[current].append(line)
    assert sorted(outputs) == [1, 2, 3]
    assert len(outputs[1]) == total[1] > 500
    assert outputs[2] == outputs[1]
    assert outputs[3] == outputs[1]
    assert {line.split()[2] for line in outputs[1]} == {"go", "back", "quit"}


# -- stops and failures across shards ----------------------------------------------------------------


class MarkingSlowFactory(SubjectFactory):
    """Slow to create; touches a marker file when it starts, so the driver knows creation is under way."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def create(self, index: int) -> Account:
        if index % 1000 == 0:
            Path(self.marker).touch()
        time.sleep(0.002)
        return Account(index, 0)




def test_a_stop_during_creation_on_2_workers_stops_with_no_tick(tmp_path):
    marker = tmp_path / "creating"
    stop = threading.Event()

    def stop_when_creating() -> None:
        deadline = time.monotonic() + 120
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()

    gen = DataOnlineGenerator(["a"], "a", MarkingSlowFactory(str(marker)), 20_000, 1000, 100, seed=1)
    gen.add_transition("x", "a", "a", 10.0)
    watcher = threading.Thread(target=stop_when_creating, daemon=True)
    watcher.start()
    started = time.monotonic()
    result = gen.start(workers=2, stop_event=stop)
    watcher.join(timeout=130)
    assert marker.exists()
    assert (result.status, result.ticks, result.total_events) == ("stopped", 0, 0)
    assert time.monotonic() - started < 100  # 20 s of creation per shard were not waited for


class ShardFileSink(EventSink):
    """Writes one line per event to a file of its shard (counts what each shard's sink really got)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._file = None

    def collect(self, timestamp: int, subject: Account, transition: Transition) -> None:
        if self._file is None:
            self._file = open(os.path.join(self.directory, f"shard-{current_shard().index}.txt"), "w")
        self._file.write(f"{timestamp} {subject.index}\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __getstate__(self):
        return {"directory": self.directory, "_file": None}


def failing(fail_at: dict[int, int], sink: EventSink) -> DataOnlineGenerator:
    """2,000 subjects acting every tick (100% self-loop); subject i raises in tick fail_at[i]."""
    def act(subject: Account, transition: Transition) -> bool:
        subject.acts += 1
        if fail_at.get(subject.index) == subject.acts - 1:
            raise ValueError(f"boom {subject.index}")
        return True

    gen = DataOnlineGenerator(["a"], "a", IndexFactory(), 2000, 1000, 30, seed=1)
    gen.add_transition("x", "a", "a", 100.0, action_callback=act, event_sinks=[sink])
    return gen


def delivered(directory: Path) -> dict[int, int]:
    return {int(path.stem.split("-")[1]): len(path.read_text().splitlines())
            for path in directory.glob("shard-*.txt")}


def test_the_earliest_error_across_shards_is_raised_with_every_shards_counts(tmp_path):
    """Shard 0's subject 10 fails in tick 7, shard 1's subject 1500 in tick 3: tick 3 comes first."""
    with pytest.raises(SimulationError) as info:
        failing({10: 7, 1500: 3}, ShardFileSink(str(tmp_path))).start(workers=2)
    error = info.value
    assert (error.tick, error.subject_index, error.shard) == (3, 1500, 1)
    assert "tick 3, subject 1500, trigger 'x'" in str(error) and isinstance(error.__cause__, ValueError)
    result = error.result
    assert result.status == "failed" and [s.shard for s in result.shards] == [0, 1]
    got = delivered(tmp_path)
    assert sorted(got) == [0, 1]
    assert result.total_events == sum(s.total_events for s in result.shards) > 0
    for shard in result.shards:  # each shard's count is within the tick that failed of what it sent
        assert 0 < shard.total_events <= got[shard.shard] <= shard.total_events + 1000


def test_a_failed_2_worker_run_counts_exactly_what_each_shard_delivered(tmp_path):
    with pytest.raises(SimulationError) as info:
        failing({10: 7, 1500: 3}, ShardFileSink(str(tmp_path))).start(workers=2)
    got = delivered(tmp_path)
    assert got == {0: 7 * 1000 + 10, 1: 3 * 1000 + 500}
    assert {s.shard: s.total_events for s in info.value.result.shards} == got
