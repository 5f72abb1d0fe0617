"""Subject creation can be stopped and fails clearly when memory runs out."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from doge_dist import CountingSink, DataOnlineGenerator, SimulationError, SubjectFactory
from doge_dist.engine._shard_engine import FACTORY_BLOCK

REPO_ROOT = Path(__file__).resolve().parent.parent


class StoppingFactory(SubjectFactory):
    """Asks the run to stop after ``stop_after`` subjects (as a signal handler would)."""

    def __init__(self, stop: threading.Event, stop_after: int) -> None:
        self.stop, self.stop_after, self.calls = stop, stop_after, 0

    def create(self, index):
        self.calls += 1
        if self.calls == self.stop_after:
            self.stop.set()
        return {"id": index}


def test_a_stop_during_creation_ends_the_run_at_the_next_block():
    stop = threading.Event()
    factory = StoppingFactory(stop, 3_000)
    sink = CountingSink()
    gen = DataOnlineGenerator(["a", "b"], "a", factory, 200_000, 1000, 100, seed=1)
    gen.add_transition("go", "a", "b", 50, event_sinks=[sink])
    result = gen.start(stop_event=stop)
    assert result.status == "stopped" and result.ticks == 0 and result.total_events == 0
    assert factory.calls < 3_000 + FACTORY_BLOCK  # no more than the block it was in
    assert sink.closed == 1


class ExhaustedFactory(SubjectFactory):
    def create(self, index):
        if index == 2_500:
            raise MemoryError()
        return {"id": index}


def test_out_of_memory_in_the_factory_names_the_subject_and_the_way_out():
    gen = DataOnlineGenerator(["a", "b"], "a", ExhaustedFactory(), 10_000, 1000, 10, seed=1)
    gen.add_transition("go", "a", "b", 50, event_sinks=[CountingSink()])
    expected = r"out of memory creating subject 2500.*lower subjects_num"
    with pytest.raises(SimulationError, match=expected) as info:
        gen.start()
    assert isinstance(info.value.__cause__, MemoryError)


MODEL = textwrap.dedent('''
    import time
    from doge_dist import CountingSink, DataOnlineGenerator, SubjectFactory

    class Slow(SubjectFactory):
        def create(self, index):
            time.sleep(0.001)
            return {"id": index}

    class Huge(SubjectFactory):
        def create(self, index):
            return bytearray(20_000_000)  # 20 MB per subject

    def build(kind="slow", subjects=100000):
        factory = Slow() if kind == "slow" else Huge()
        gen = DataOnlineGenerator(["a", "b"], "a", factory, subjects, 1000, 100, seed=1)
        gen.add_transition("go", "a", "b", 50, event_sinks=[CountingSink()])
        return gen
''')


def _doge(tmp_path: Path, *args: str, limit_as: int | None = None) -> subprocess.Popen:
    (tmp_path / "model.py").write_text(MODEL)

    def child() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if limit_as is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit_as, limit_as))

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-m", "doge_dist", "run", "model.py:build", *args], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=child)


def test_sigterm_during_a_long_creation_stops_the_run_promptly(tmp_path):
    proc = _doge(tmp_path, "--report", "r.json")  # 100,000 subjects at 1 ms each: 100 s to create
    time.sleep(4.0)
    proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("SIGTERM did not stop subject creation within 60 s")
    assert proc.returncode == 143, err
    assert time.monotonic() - started < 60
    assert "stopped" in err
    assert (tmp_path / "r.json").exists()


def test_memory_exhaustion_while_creating_is_a_clear_error(tmp_path):
    # 200 subjects of 20 MB under a 1.5 GB address-space limit: the factory runs out of memory
    proc = _doge(tmp_path, "-p", "kind=huge", "-p", "subjects=200", limit_as=1_500_000_000)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("a run out of memory did not end within 120 s")
    assert proc.returncode == 1, err
    assert "out of memory creating subject" in err and "Traceback" not in err
