"""Distributed runs on a local Ray: same events at any worker count, failures named, no hangs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import doge_dist
from doge_dist import EventSink, SimulationError, current_shard
from examples.banking import build_generator

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parent.parent


class RecordingSink(EventSink):
    """Writes every event (and the subject's attributes after the transition) to a file per process."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._file = None
        self.closes = 0

    def _open(self):
        shard = current_shard().index
        self._file = open(os.path.join(self.directory, f"events-{shard}-{os.getpid()}.jsonl"), "w")

    def collect(self, timestamp, subject, transition):
        if self._file is None:
            self._open()
        self._file.write(json.dumps([timestamp, subject.user_id, transition.trigger, subject.balance,
                                     subject.loan_balance, subject.last_payment]) + "\n")

    def close(self):
        self.closes += 1
        if self._file is None:
            self._open()
        self._file.close()
        with open(os.path.join(self.directory, f"closed-{current_shard().index}-{os.getpid()}"), "w") as f:
            f.write(str(self.closes))

    def __getstate__(self):
        return {"directory": self.directory, "_file": None, "closes": 0}


@pytest.fixture(autouse=True)
def _pickle_this_module_by_value(ray_session):
    """Workers cannot import pytest's test modules; ship this module's classes by value."""
    ray_session.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield


def read_events(directory: Path) -> list[list]:
    events = []
    for path in sorted(directory.glob("events-*.jsonl")):
        events.extend(json.loads(line) for line in path.read_text().splitlines())
    return events


def run_banking(tmp_path: Path, workers: int, subjects: int = 3000, ticks: int = 400, seed: int = 11,
                window: int | None = None):
    out = tmp_path / f"w{workers}"
    out.mkdir()
    gen = build_generator(RecordingSink(str(out)), subjects=subjects, ticks=ticks, seed=seed)
    result = gen.start(workers=workers, backend="ray", window=window)
    return result, read_events(out), out


def by_subject(events: list[list]) -> dict[int, list[list]]:
    grouped: dict[int, list[list]] = {}
    for event in events:
        grouped.setdefault(event[1], []).append(event)
    return grouped


def test_same_events_for_1_2_and_4_workers(tmp_path):
    local_out = tmp_path / "local"
    local_out.mkdir()
    local = build_generator(RecordingSink(str(local_out)), subjects=3000, ticks=400, seed=11).start()
    reference = read_events(local_out)
    assert len(reference) == local.total_events > 1000
    for workers in (1, 2, 4):
        result, events, _ = run_banking(tmp_path, workers)
        assert result.workers == workers
        assert len(result.shards) == workers
        assert sorted(map(tuple, events)) == sorted(map(tuple, reference)), f"workers={workers}"
        # each subject's own event order is identical, not just the multiset
        assert by_subject(events) == by_subject(reference), f"workers={workers}"
        assert result.events_by_trigger == local.events_by_trigger
        assert result.vetoed_by_trigger == local.vetoed_by_trigger


def test_zero_argument_factory_numbers_subjects_across_shards(tmp_path):
    result, events, _ = run_banking(tmp_path, 2, subjects=500, ticks=2000)
    ids = {e[1] for e in events}
    assert ids <= set(range(500))
    assert len(ids) > 400  # most users act in 2000 ticks
    assert [(s.start, s.stop) for s in result.shards] == [(0, 250), (250, 500)]


def test_each_shard_closes_its_sinks_once_and_counts_add_up(tmp_path):
    result, events, out = run_banking(tmp_path, 2, window=1, ticks=50)
    closed = sorted(out.glob("closed-*"))
    assert len(closed) == 2
    assert all(p.read_text() == "1" for p in closed)
    assert {p.name.split("-")[1] for p in closed} == {"0", "1"}
    assert sum(s.total_events for s in result.shards) == result.total_events == len(events)
    assert result.ticks == 50
    assert all(s.ticks == 50 for s in result.shards)


def test_progress_is_reported_per_window(tmp_path):
    seen = []
    gen = build_generator("count", subjects=1000, ticks=300, seed=1)
    gen.start(workers=2, window=100, progress=seen.append)
    assert [p.ticks_done for p in seen] == [100, 200, 300]
    assert seen[-1].total_events > 0


def explode_in_upper_half(subject, transition):
    if subject.user_id >= 150:
        raise RuntimeError("boom from a callback")
    return True


def test_callback_error_names_shard_tick_subject_and_trigger(tmp_path):
    out = tmp_path / "err"
    out.mkdir()
    sink = RecordingSink(str(out))
    gen = build_generator(sink, subjects=300, ticks=500, seed=5)
    gen.transitions[2].action_callback = explode_in_upper_half  # login
    with pytest.raises(SimulationError) as info:
        gen.start(workers=2)
    err = info.value
    assert err.shard == 1
    assert err.trigger == "login"
    assert err.subject_index is not None and err.subject_index >= 150
    assert err.tick is not None
    assert f"subject {err.subject_index}" in str(err) and "'login'" in str(err)
    assert isinstance(err.__cause__, RuntimeError) and "boom" in str(err.__cause__)
    # every shard's sinks were closed, the failing one included
    assert len(list(out.glob("closed-*"))) == 2


def kill_own_process(subject, transition):
    if subject.user_id == 250:
        os.kill(os.getpid(), signal.SIGKILL)
    return True


def test_killed_actor_fails_the_run_quickly(tmp_path):
    gen = build_generator("count", subjects=300, ticks=5000, seed=2)
    gen.transitions[2].action_callback = kill_own_process  # login
    outcome: dict = {}

    def run():
        try:
            gen.start(workers=2)
        except BaseException as exc:  # noqa: BLE001
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "the run hung after an actor was killed"
    err = outcome.get("error")
    assert isinstance(err, doge_dist.SimulationError), repr(err)
    assert "died" in str(err) and "shard 1" in str(err)


MAIN_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import doge_dist
    from doge_dist import DataOnlineGenerator, SubjectFactory, EventSink

    class Box:
        def __init__(self, i):
            self.i = i
            self.hits = 0

    class BoxFactory(SubjectFactory):
        def create(self, index):
            return Box(index)

    def hit(subject, transition):      # defined in __main__: shipped by value
        subject.hits += 1
        return True

    class FileSink(EventSink):
        def __init__(self, d):
            self.d = d
            self.f = None
        def collect(self, ts, s, t):
            if self.f is None:
                self.f = open(os.path.join(self.d, f"{doge_dist.current_shard().index}.txt"), "w")
            self.f.write(f"{ts} {s.i} {s.hits}\\n")
        def close(self):
            if self.f:
                self.f.close()
        def __getstate__(self):
            return {"d": self.d, "f": None}

    if __name__ == "__main__":
        gen = DataOnlineGenerator(["a", "b"], "a", BoxFactory(), 40, 1000, 10, seed=3)
        sink = FileSink(sys.argv[1])
        gen.add_transition("go", "a", "b", 50, action_callback=hit, event_sinks=[sink])
        gen.add_transition("back", "b", "a", 50, action_callback=hit, event_sinks=[sink])
        result = gen.start(workers=2)
        print(json.dumps({"total": result.total_events, "workers": result.workers}))
""")


def test_callbacks_defined_in_main_work_in_a_fresh_ray(tmp_path):
    script = tmp_path / "main_model.py"
    script.write_text(MAIN_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
                          timeout=240, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    lines = [line for f in ("0.txt", "1.txt") for line in (tmp_path / f).read_text().splitlines()]
    assert summary["workers"] == 2
    assert len(lines) == summary["total"] > 0
    assert {int(line.split()[1]) for line in lines} <= set(range(40))
    assert {int(line.split()[1]) < 20 for line in (tmp_path / "0.txt").read_text().splitlines()} == {True}


SIGINT_SCRIPT = textwrap.dedent("""
    import json, sys, threading, time
    from doge_dist import RunInterrupted
    from examples.banking import build_generator

    gen = build_generator("count", subjects=2000, ticks=None, seed=1)
    started = []
    def progress(p):
        if not started:
            started.append(p)
            print("RUNNING", flush=True)
        time.sleep(0.01)
    try:
        gen.start(workers=2, window=5, progress=progress, stop_event=threading.Event())
    except RunInterrupted as exc:
        r = exc.result
        print(json.dumps({"ticks": r.ticks, "events": r.total_events, "stopped": r.stopped,
                          "shards": [s.ticks for s in r.shards]}), flush=True)
        sys.exit(0)
    print("NOT INTERRUPTED")
    sys.exit(3)
""")


def test_sigint_stops_every_shard_at_a_window_boundary(tmp_path):
    script = tmp_path / "sigint_run.py"
    script.write_text(SIGINT_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    # SIGINT back to its default in the child: a caller that ignores SIGINT (a shell's background job)
    # would otherwise pass that on, the run would never stop and this test would wait for minutes
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=REPO,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 180
        line = ""
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.strip() == "RUNNING" or not line:
                break
        assert line.strip() == "RUNNING", proc.stderr.read()[-3000:] if proc.poll() is not None else line
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    report = json.loads(out.strip().splitlines()[-1])
    assert report["stopped"] is True
    assert report["ticks"] > 0 and report["ticks"] % 5 == 0  # a window boundary
    assert report["shards"] == [report["ticks"], report["ticks"]]
    assert report["events"] > 0


BY_VALUE_MODEL = textwrap.dedent("""
    from random import randrange          # bound to Python's global generator, as in doge-datagen
    from doge_dist import DataOnlineGenerator, SubjectFactory

    class Account:
        def __init__(self, user_id, balance):
            self.user_id, self.balance, self.loan_balance, self.last_payment = user_id, balance, 0, 0

    class Accounts(SubjectFactory):
        def __init__(self):
            self.next_id = 0

        def create(self):
            account = Account(self.next_id, randrange(0, 1000))
            self.next_id += 1
            return account

    def pay(subject, transition):
        subject.last_payment = randrange(1, 100)
        subject.balance -= subject.last_payment
        return True

    def build(sink, subjects, seed):
        gen = DataOnlineGenerator(["idle", "busy"], "idle", Accounts(), subjects, 1000, 300, seed=seed)
        gen.add_transition("pay", "idle", "busy", 2, action_callback=pay, event_sinks=[sink])
        gen.add_transition("rest", "busy", "idle", 50, event_sinks=[sink])
        return gen
""")


def test_seeded_model_pickled_by_value_gives_the_same_events_on_any_worker_count(tmp_path, ray_session):
    """A model module shipped by value (a CLI file target, a __main__ script) carries `from random
    import randrange` bound to the driver's global generator; the workers must draw from their own,
    seeded one, or the data would change with the worker count and from run to run."""
    import importlib.util

    path = tmp_path / "by_value_model.py"
    path.write_text(BY_VALUE_MODEL)
    spec = importlib.util.spec_from_file_location("by_value_model", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["by_value_model"] = module
    spec.loader.exec_module(module)
    ray_session.cloudpickle.register_pickle_by_value(module)
    try:
        runs = {}
        for workers in (1, 2, 4, 2):
            out = tmp_path / f"run-{len(runs)}-{workers}"
            out.mkdir()
            gen = module.build(RecordingSink(str(out)), subjects=400, seed=5)
            gen.start(workers=workers, backend="ray" if workers > 1 else None)
            runs[(workers, len(runs))] = sorted(map(tuple, read_events(out)))
        reference = runs[(1, 0)]
        assert len(reference) > 200
        for key, events in runs.items():
            assert events == reference, f"workers={key[0]} run {key[1]}"
    finally:
        sys.modules.pop("by_value_model", None)


def test_actors_release_their_cpus_unless_kept(ray_session):
    import doge_dist

    @ray_session.remote(num_cpus=1)
    def probe():
        return "ran"

    build_generator("count", subjects=200, ticks=20, seed=1).start(workers=2)
    assert ray_session.get(probe.remote(), timeout=60) == "ran"  # the run's actors are gone

    build_generator("count", subjects=200, ticks=20, seed=1).start(workers=2, keep_workers=True)
    first = doge_dist.release_workers()
    assert first == 2
    assert doge_dist.release_workers() == 0
    assert ray_session.get(probe.remote(), timeout=60) == "ran"


def test_fewer_subjects_than_workers_starts_no_empty_shards(ray_session):
    result = build_generator("count", subjects=3, ticks=50, seed=1).start(workers=5)
    assert [(s.start, s.stop) for s in result.shards] == [(0, 1), (1, 2), (2, 3)]
    assert result.workers == 3
