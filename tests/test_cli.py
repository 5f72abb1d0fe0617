"""The ``doge-dist`` command line, run as a real process (``python -m doge_dist`` and the console script)."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import POSTGRES_URL, free_port, service_missing

REPO = Path(__file__).resolve().parent.parent
JOBS = REPO / "examples" / "jobs"

MODELS = '''
import logging
import sys

from doge_dist import CountingSink, DataOnlineGenerator, JsonLinesSink, ModelError, SubjectFactory


class Account:
    def __init__(self, index):
        self.id = index
        self.balance = 100


class Factory(SubjectFactory):
    def create(self, index):
        return Account(index)


def spend(subject, transition):
    if subject.balance < 30:
        return False
    subject.balance -= 30
    return True


def boom(subject, transition):
    raise RuntimeError(f"ledger offline for account {subject.id}")


def row(ts, subject, transition):
    return {"ts": ts, "id": subject.id, "trigger": transition.trigger}


def make_sink(sink, path, name):
    return JsonLinesSink(path, row) if sink == "jsonl" else CountingSink(name)


def build(sink="count", path=None, subjects=20, ticks=50, seed=1, name="count", fail=False):
    s = make_sink(sink, path, name)
    gen = DataOnlineGenerator(["idle", "active"], "idle", Factory(), subjects, 1000, ticks, seed=seed)
    gen.add_transition("wake", "idle", "active", 30, event_sinks=[s])
    gen.add_transition("spend", "active", "active", 40, action_callback=boom if fail else spend,
                       event_sinks=[s])
    gen.add_transition("sleep", "active", "idle", 20, event_sinks=[s])
    return gen


def lonely():
    gen = DataOnlineGenerator(["a", "b", "c", "d"], "a", Factory(), 10, 1000, 5)
    sink = CountingSink()
    gen.add_transition("to_b", "a", "b", 20, event_sinks=[sink])
    gen.add_transition("to_c", "a", "c", 30, event_sinks=[sink])
    gen.add_transition("d_out", "d", "a", 5, event_sinks=[sink])
    return gen


def secretive(db_url, api_token, fail=False):
    gen = build(name=f"db:{db_url}", fail=fail)
    return gen


def invalid():
    raise ModelError("state 'x' has 120% outgoing probability")


def returns_int():
    return 5


def opaque(db_pass, mysql_pwd, auth, label, subjects=20, fail=False):
    if fail:
        raise ModelError(f"cannot log in with {db_pass} / {mysql_pwd} / {auth}")
    return build(name=f"count:{label}", subjects=subjects)


class ChattyFactory(SubjectFactory):
    def __init__(self, topic):
        self.topic = topic

    def create(self, index):
        if index == 0:  # every shard replays the first block of 1,024: each worker logs this once
            logging.getLogger("models.chatty").warning("sending to topic %s", self.topic)
        return Account(index)


def chatty(topic, subjects=20):
    gen = DataOnlineGenerator(["idle", "active"], "idle", ChattyFactory(topic), subjects, 1000, 5, seed=1)
    sink = CountingSink()
    gen.add_transition("wake", "idle", "active", 30, event_sinks=[sink])
    gen.add_transition("sleep", "active", "idle", 30, event_sinks=[sink])
    return gen


def exits(code=3):
    sys.exit(code)


def explodes():
    raise KeyError("no such table: accounts")


class OneShardSink(CountingSink):
    def check_plan(self, shard_count):
        raise ModelError(f"{self.name}: refuses a plan of {shard_count} shard(s)")


def unplannable():
    gen = DataOnlineGenerator(["idle", "active"], "idle", Factory(), 5, 1000, 10)
    sink = OneShardSink("picky")
    gen.add_transition("wake", "idle", "active", 30, event_sinks=[sink])
    gen.add_transition("sleep", "active", "idle", 30, event_sinks=[sink])
    return gen
'''


# -- helpers -------------------------------------------------------------------------------------


def dd(*args, cwd=None, env=None, timeout=180, script=False) -> subprocess.CompletedProcess:
    """Run the command line to completion."""
    cmd = ["doge-dist"] if script else [sys.executable, "-m", "doge_dist"]
    return subprocess.run([*cmd, *map(str, args)], cwd=cwd, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def report_of(path: Path) -> dict:
    return json.loads(path.read_text())


def jsonl_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_bad_input(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("doge-dist: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def models(tmp_path) -> Path:
    path = tmp_path / "models.py"
    path.write_text(MODELS)
    return path


def write_spec(directory: Path, text: str, name: str = "job.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


# -- the console script --------------------------------------------------------------------------


def test_installed_console_script(tmp_path):
    if shutil.which("doge-dist") is None:
        pytest.fail("the doge-dist console script is not installed: run `pip install -e .`")
    version = dd("--version", script=True)
    assert version.returncode == 0 and version.stdout.startswith("doge-dist ")
    proc = dd("run", JOBS / "banking-print.yaml", "--ticks", "100", "--report", tmp_path / "r.json",
              script=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = report_of(tmp_path / "r.json")
    printed = [line for line in proc.stdout.splitlines() if "made a transition" in line]
    assert len(printed) == report["total_events"] == report["events_by_sink"]["print"]
    usage = dd(script=True)
    assert usage.returncode == 2 and "usage: doge-dist" in usage.stderr


# -- run -----------------------------------------------------------------------------------------


def test_run_spec_prints_summary_and_writes_report(tmp_path):
    from doge_dist.cli._target import build_model, load_target

    proc = dd("run", JOBS / "banking-print.yaml", "--ticks", "300", "--report", tmp_path / "out" / "r.json",
              cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = report_of(tmp_path / "out" / "r.json")
    printed = proc.stdout.splitlines()
    assert len(printed) == report["total_events"] > 0  # stdout carries the events and nothing else
    assert all(re.match(r"^\[\d+\] User id: \d+, .* made a transition \w+ from \w+ to \w+$", line)
               for line in printed)
    assert "doge-dist: run completed: 10 subjects x 300 ticks" in proc.stderr  # the summary: stderr
    for trigger, count in report["events_by_trigger"].items():
        vetoed = report["vetoed_by_trigger"][trigger]
        assert re.search(rf"^\s+{trigger}\s+{count:,}\s+{vetoed:,}$", proc.stderr, re.MULTILINE), trigger
    quiet = dd("run", JOBS / "banking-print.yaml", "--ticks", "300", "--quiet", cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == proc.stdout

    # the model loaded as the spec names it (fingerprints name callables by their module)
    gen = build_model(load_target("../banking.py:build_generator", JOBS), {"sink": "print"})
    gen.configure(subjects_num=10, ticks_num=300, tick_ms=60000, timestamp_start=1704067200000, seed=7)
    assert report["model_fingerprint"] == gen.model_fingerprint()
    assert report["status"] == "completed" and report["seed"] == 7
    assert report["spec"]["model"] == "../banking.py:build_generator"
    assert report["spec"]["ticks"] == 300 and report["spec"]["params"] == {"sink": "print"}
    assert set(report["versions"]) == {"doge-dist", "numpy", "ray", "confluent-kafka", "sqlalchemy", "python"}
    assert report["versions"]["numpy"] == np.__version__
    assert report["result"]["ticks"] == 300 and report["result"]["subjects"] == 10
    assert report["sink_stats"] == {"print": {"delivered": report["total_events"]}}
    assert sum(report["events_by_transition"].values()) == report["total_events"]
    assert report["timings"]["run_s"] >= report["result"]["elapsed_s"] > 0


def test_flags_override_spec_and_runs_are_reproducible(tmp_path, models):
    spec = write_spec(tmp_path, f"""
        model: models.py:build
        params: {{sink: jsonl, path: {tmp_path}/a.jsonl}}
        subjects: 5
        ticks: 10
        seed: 1
    """)
    args = ["run", spec, "--subjects", "40", "--ticks", "60", "--seed", "99", "--tick-ms", "500",
            "--timestamp-start", "2024-01-01T00:00:00Z", "--report", tmp_path / "r.json", "--quiet"]
    first = dd(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == first.stderr == ""  # --quiet, no print sink
    report = report_of(tmp_path / "r.json")
    assert report["generator"]["subjects_num"] == 40 and report["generator"]["ticks_num"] == 60
    assert report["seed"] == 99 and report["spec"]["tick_ms"] == 500
    rows = jsonl_lines(tmp_path / "a.jsonl")
    assert len(rows) == report["total_events"] == report["events_by_sink"][f"jsonl:{tmp_path}/a.jsonl"]
    start = 1704067200000
    assert all(start <= r["ts"] < start + 60 * 500 and (r["ts"] - start) % 500 == 0 for r in rows)
    assert {r["id"] for r in rows} <= set(range(40))
    assert report["vetoed_by_trigger"]["spend"] > 0  # the callback vetoes once a balance runs out
    os.replace(tmp_path / "a.jsonl", tmp_path / "first.jsonl")
    again = dd(*args)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "first.jsonl").read_text()


def test_params_from_command_line_and_progress(tmp_path, models):
    proc = dd("run", f"{models}:build", "--param", "sink=jsonl", "--param", f"path={tmp_path}/p.jsonl",
              "-p", "subjects=30", "--ticks", "400", "--window", "50", "--progress",
              "--report", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    report = report_of(tmp_path / "r.json")
    assert report["result"]["window"] == 50 and report["result"]["subjects"] == 30
    assert len(jsonl_lines(tmp_path / "p.jsonl")) == report["total_events"]
    progress = [line for line in proc.stderr.splitlines() if line.startswith("tick ")]
    assert progress, proc.stderr
    assert progress[-1].startswith("tick 400/400 (100.0%)")
    assert f"{report['total_events']:,} events" in progress[-1]
    assert f"jsonl:{tmp_path}/p.jsonl: {report['total_events']:,}" in progress[-1]
    assert "events/s" in progress[-1]


def test_secrets_never_shown(tmp_path, models):
    spec = write_spec(tmp_path, """
        model: models.py:secretive
        params:
          db_url: postgresql://app:${DB_PASSWORD}@db.internal:5432/events
          api_token: ${SERVICE_TOKEN}
        ticks: 30
    """)
    env = {"DB_PASSWORD": "pw-Zebra-42", "SERVICE_TOKEN": "tok-Quokka-77"}
    ok = dd("run", spec, "--progress", "--report", tmp_path / "r.json", env=env)
    assert ok.returncode == 0, ok.stderr
    report_text = (tmp_path / "r.json").read_text()
    for text in (ok.stdout, ok.stderr, report_text):
        assert "pw-Zebra-42" not in text and "tok-Quokka-77" not in text
    assert "db:postgresql://app:***@db.internal:5432/events" in ok.stderr  # the sink's name, masked
    assert "db:postgresql://app:***@db.internal" in ok.stderr  # progress
    report = json.loads(report_text)
    assert report["spec"]["params"] == {"db_url": "postgresql://app:***@db.internal:5432/events",
                                        "api_token": "***"}
    failed = dd("run", spec, "--param", "fail=true", "--report", tmp_path / "f.json", "--debug", env=env)
    assert failed.returncode == 1
    assert "pw-Zebra-42" not in failed.stderr and "tok-Quokka-77" not in failed.stderr
    assert "Traceback" in failed.stderr  # --debug


OPAQUE_ENV = {"DB_PASS": "Zebra-pw-1", "MYSQL_PWD": "Quokka-pw-2", "REGISTRY_AUTH": "Basic dXNlcjpwYXNz",
              "SINK_LABEL": "Walrus-lbl-3"}


def test_secrets_are_masked_and_everything_else_is_shown(tmp_path, models):
    spec = write_spec(tmp_path, """
        model: models.py:opaque
        params:
          db_pass: ${DB_PASS}
          mysql_pwd: ${MYSQL_PWD}
          auth: ${REGISTRY_AUTH}
          label: ${SINK_LABEL}
          subjects: ${DOGE_TEST_N:-30}
        ticks: 20
    """)
    ok = dd("run", spec, "--progress", "--report", tmp_path / "r.json", env=OPAQUE_ENV)
    assert ok.returncode == 0, ok.stderr
    report_text = (tmp_path / "r.json").read_text()
    secrets = [OPAQUE_ENV[name] for name in ("DB_PASS", "MYSQL_PWD", "REGISTRY_AUTH")]
    for text in (ok.stdout, ok.stderr, report_text):
        for value in secrets:
            assert value not in text
    report = json.loads(report_text)
    assert report["spec"]["params"] == {"db_pass": "***", "mysql_pwd": "***", "auth": "***",
                                        "label": "Walrus-lbl-3", "subjects": 30}
    assert report["masked"] == ["params.db_pass", "params.mysql_pwd", "params.auth"]
    assert report["masked_variables"] == ["DB_PASS", "MYSQL_PWD", "REGISTRY_AUTH"]
    assert "PASS, PWD, SECRET, TOKEN, KEY, CREDENTIAL or AUTH" in report["masking"]
    assert report["result"]["subjects"] == 30  # a lone ${...} in params is typed
    assert report["events_by_sink"] == {"count:Walrus-lbl-3": report["total_events"]}  # not a secret: shown
    assert "count:Walrus-lbl-3" in ok.stderr  # summary and progress
    failed = dd("run", spec, "--param", "fail=true", env=OPAQUE_ENV)
    assert_bad_input(failed, "cannot log in with *** / *** / ***")
    # a variable listed under secrets: is masked whatever its name
    declared = write_spec(tmp_path, spec.read_text() + "secrets: [SINK_LABEL]\n", name="declared.yaml")
    hidden = dd("run", declared, "--progress", "--report", tmp_path / "d.json", env=OPAQUE_ENV)
    assert hidden.returncode == 0, hidden.stderr
    assert "Walrus-lbl-3" not in hidden.stderr + (tmp_path / "d.json").read_text()
    assert "count:***" in hidden.stderr and report_of(tmp_path / "d.json")["masked_variables"] == [
        "DB_PASS", "MYSQL_PWD", "REGISTRY_AUTH", "SINK_LABEL"]
    usage = dd("run", "--help")
    assert "Secrets: masked as ***" in usage.stdout
    assert "128+N a bounded run stopped by signal N" in usage.stdout


def test_defaults_hosts_and_ports_are_shown_in_messages(tmp_path, models):
    """An unset ${DOGE_OUT:-out} and a database's host and port are no secrets: they stay readable."""
    spec = write_spec(tmp_path, """
        model: models.py:build
        params:
          sink: jsonl
          path: ${DOGE_TEST_OUT_DIR:-outdir}/events-{shard}.jsonl
          name: ${DOGE_TEST_HOST:-db.example}:${DOGE_TEST_PORT:-6543}
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOGE_TEST_")}
    cmd = [sys.executable, "-m", "doge_dist", "run", str(spec), "--report", str(tmp_path / "r.json")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "jsonl:outdir/events-{shard}.jsonl" in proc.stderr  # the summary names the sink as it is
    report = report_of(tmp_path / "r.json")
    assert report["spec"]["params"]["path"] == "outdir/events-{shard}.jsonl" and report["masked"] == []


@pytest.mark.ray
def test_log_lines_of_ray_workers_are_masked(tmp_path, models):
    """A worker's log line holding a secret is masked too (worker_setup installs the masking there)."""
    spec = write_spec(tmp_path, """
        model: models.py:chatty
        params:
          topic: ${DOGE_TEST_TOPIC_TOKEN}
        workers: 2
        ticks: 1500
        realtime: true
        speed: 500
    """)  # 3 s: long enough for Ray to forward the workers' lines before it stops
    proc = dd("run", spec, cwd=tmp_path, env={"DOGE_TEST_TOPIC_TOKEN": "Topic-Tok-77"}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    worker_lines = [line for line in proc.stderr.splitlines() if "ShardActor pid=" in line]
    assert any("sending to topic ***" in line for line in worker_lines), proc.stderr  # logged in a worker
    assert "Topic-Tok-77" not in proc.stdout + proc.stderr


def test_unwritable_report_path_exits_2_before_the_run(tmp_path, models):
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "never.jsonl"
    common = [f"{models}:build", "-p", "sink=jsonl", "-p", f"path={out}"]
    assert_bad_input(dd("run", *common, "--report", tmp_path / "a-file" / "r.json"), "--report",
                     "is not a directory")
    assert_bad_input(dd("run", *common, "--report", tmp_path), "--report", "is a directory")
    assert not out.exists()  # nothing ran


def test_summary_is_printed_before_the_report_is_written(tmp_path, models):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    proc = dd("run", f"{models}:build", "--report", "/dev/full")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("doge-dist: run completed: 20 subjects x 50 ticks")
    assert lines[-1] == "doge-dist: error: could not write --report /dev/full: No space left on device"
    assert proc.stdout == ""


def test_speed_without_realtime_exits_2(tmp_path, models):
    assert_bad_input(dd("run", f"{models}:build", "--speed", "5"), "--speed needs --realtime")
    assert_bad_input(dd("run", f"{models}:build", "--speed", "5", "--no-realtime"),
                     "--speed needs --realtime")
    spec = write_spec(tmp_path, "model: models.py:build\nspeed: 5\n")
    assert_bad_input(dd("run", spec), "field 'speed' (line 2)", "realtime: true")
    assert_bad_input(dd("run", spec, "--realtime"), "field 'speed' (line 2)")
    realtime = write_spec(tmp_path, "model: models.py:build\nrealtime: true\nticks: 2\ntick_ms: 1\n",
                          name="rt.yaml")
    proc = dd("run", realtime, "--speed", "5", "--quiet")
    assert proc.returncode == 0, proc.stderr


def test_model_error_from_start_exits_2(tmp_path, models):
    proc = dd("run", f"{models}:unplannable", "--report", tmp_path / "r.json")
    assert_bad_input(proc, "picky: refuses a plan of 1 shard(s)")
    report = report_of(tmp_path / "r.json")
    assert report["status"] == "failed" and "refuses a plan" in report["error"]


def test_realtime_run_of_a_few_ticks(tmp_path, models):
    proc = dd("run", f"{models}:build", "--ticks", "5", "--tick-ms", "1000", "--realtime", "--speed", "2000",
              "--timestamp-start", "now", "--report", tmp_path / "r.json", "-p", "sink=jsonl",
              "-p", f"path={tmp_path}/rt.jsonl", "-p", "subjects=200")
    assert proc.returncode == 0, proc.stderr
    report = report_of(tmp_path / "r.json")
    assert report["status"] == "completed" and report["result"]["ticks"] == 5
    assert report["result"]["window"] == 1  # realtime paces tick by tick
    assert "realtime: 1000 ms per tick at speed 2000; max lag behind the wall clock" in proc.stderr
    rows = jsonl_lines(tmp_path / "rt.jsonl")
    assert len(rows) == report["total_events"]
    start = report["generator"]["timestamp_start"]
    assert abs(start - time.time() * 1000) < 10 * 60 * 1000  # 'now', not 0
    assert all(start <= r["ts"] < start + 5000 for r in rows)


def default_sigint() -> None:
    """In the child, before exec: Python's own Ctrl-C handling even when this test runs with SIGINT
    ignored (a shell's background job), so a SIGINT the test sends cannot be lost."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def signal_run(cmd: list[str], signals: int | list[tuple[int, float]], pattern: str,
               env: dict | None = None, timeout: float = 60) -> tuple[int, str, str]:
    """Start the command, send the signal(s) once progress matches ``pattern`` (ticks >= 3), each after
    its delay in seconds; wait for the command and for everything it wrote."""
    plan = [(signals, 0.0)] if isinstance(signals, int) else signals
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint, env={**os.environ, **(env or {})})
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    seen = []
    try:
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                assert proc.poll() is None, f"the run ended before it was signalled: {seen}"
                continue
            seen.append(line)
            match = re.match(pattern, line)
            if match and int(match.group(1).replace(",", "")) >= 3:
                break
        else:
            pytest.fail(f"no progress within {timeout} s: {seen}")
        for signum, delay in plan:
            time.sleep(delay)
            proc.send_signal(signum)
        stdout = proc.stdout.read()  # until the command closes it (it exits)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=30)  # stderr drained: the pipe is closed
    assert not reader.is_alive()
    return proc.returncode, stdout, "".join(seen) + "".join(iter_queue(lines))


def realtime_command(models: Path, out: Path, report: Path, ticks: str) -> list[str]:
    return [sys.executable, "-m", "doge_dist", "run", f"{models}:build", "--ticks", ticks, "--realtime",
            "--speed", "200", "--tick-ms", "1000", "--timestamp-start", "now", "-p", "sink=jsonl",
            "-p", f"path={out}", "-p", "subjects=300", "--progress", "--report", str(report)]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_unbounded_realtime_run(tmp_path, models, signum):
    out = tmp_path / "stream.jsonl"
    cmd = realtime_command(models, out, tmp_path / "r.json", "unbounded")
    returncode, stdout, stderr = signal_run(cmd, signum, r"tick ([\d,]+) \(unbounded\)")
    assert returncode == 0, stderr
    assert f"{signal.Signals(signum).name} received: stopping at the next tick boundary" in stderr
    report = report_of(tmp_path / "r.json")
    assert report["status"] == "stopped" and report["result"]["stopped"] is True
    assert report["stopped_by"] == signal.Signals(signum).name
    assert report["result"]["ticks"] >= 3
    assert len(jsonl_lines(out)) == report["total_events"] == report["events_by_sink"][f"jsonl:{out}"]
    assert "doge-dist: run stopped:" in stderr and stdout == ""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stopping_a_bounded_run_exits_128_plus_signum(tmp_path, models, signum):
    out = tmp_path / "batch.jsonl"
    cmd = realtime_command(models, out, tmp_path / "r.json", "100000")
    returncode, stdout, stderr = signal_run(cmd, signum, r"tick ([\d,]+)/100,000")
    name = signal.Signals(signum).name
    assert returncode == 128 + signum, stderr
    report = report_of(tmp_path / "r.json")
    assert report["status"] == "stopped" and report["stopped_by"] == name
    ticks = report["result"]["ticks"]
    assert 3 <= ticks < 100000
    assert len(jsonl_lines(out)) == report["total_events"]  # sinks closed: every event written
    assert "doge-dist: run stopped:" in stderr and stdout == ""  # the summary
    assert f"doge-dist: stopped by {name} after {ticks:,} of 100,000 ticks" in stderr
    assert "partial" in report["error"]


def test_a_second_ctrl_c_right_after_the_first_still_gets_the_report(tmp_path, models):
    """Ctrl-C twice 15 ms apart: the second may land while the summary and the report are written; the
    signal handlers stay in place until the report is on disk, so it always is."""
    for attempt in range(3):
        report = tmp_path / f"r{attempt}.json"
        out = tmp_path / f"double-{attempt}.jsonl"
        cmd = realtime_command(models, out, report, "100000")
        returncode, _, stderr = signal_run(cmd, [(signal.SIGINT, 0.0), (signal.SIGINT, 0.015)],
                                           r"tick ([\d,]+)/100,000")
        # 130; or killed by SIGINT (a shell shows 130 too) when the second one lands after the report,
        # once the CLI has handed SIGINT back to Python's default
        assert returncode in (130, -signal.SIGINT), stderr
        assert report.exists(), f"attempt {attempt}: no report\n{stderr}"
        data = report_of(report)
        assert data["status"] in ("stopped", "interrupted"), data["status"]
        if data["status"] == "stopped":
            assert len(jsonl_lines(out)) == data["total_events"]


@pytest.mark.ray
def test_sigterm_stops_a_ray_run_at_a_boundary_with_summary_and_report(tmp_path, models):
    """ray.init() installs a SIGTERM handler that exits at once; the CLI's own handler is kept."""
    out = tmp_path / "w-{shard}.jsonl"
    cmd = realtime_command(models, out, tmp_path / "r.json", "100000") + ["--workers", "2"]
    returncode, stdout, stderr = signal_run(cmd, signal.SIGTERM, r"tick ([\d,]+)/100,000", timeout=240)
    assert returncode == 143, stderr
    report = report_of(tmp_path / "r.json")
    assert report["status"] == "stopped" and report["stopped_by"] == "SIGTERM"
    assert report["result"]["workers"] == 2
    written = sum(len(jsonl_lines(f)) for f in tmp_path.glob("w-*.jsonl"))
    assert written == report["total_events"]  # every shard's sinks closed
    assert "doge-dist: run stopped:" in stderr and stdout == ""


@pytest.mark.ray
def test_sigterm_stops_a_run_attached_to_a_running_ray(tmp_path, models, ray_head):
    out = tmp_path / "attached-{shard}.jsonl"
    cmd = realtime_command(models, out, tmp_path / "r.json", "100000") + [
        "--workers", "1", "--address", f"127.0.0.1:{ray_head.port}"]
    # the head turned token authentication on (this machine has a Ray token): a driver joining it says so
    returncode, stdout, stderr = signal_run(cmd, signal.SIGTERM, r"tick ([\d,]+)/100,000", timeout=240,
                                            env={"RAY_AUTH_MODE": "token"})
    assert returncode == 143, stderr
    report = report_of(tmp_path / "r.json")
    assert report["status"] == "stopped" and report["stopped_by"] == "SIGTERM"
    assert len(jsonl_lines(tmp_path / "attached-0.jsonl")) == report["total_events"]
    assert "doge-dist: run stopped:" in stderr


def iter_queue(q: queue.Queue) -> list[str]:
    items = []
    while True:
        try:
            items.append(q.get_nowait())
        except queue.Empty:
            return items


def test_help_of_each_command_lists_its_own_flags():
    top = dd("--help")
    assert top.returncode == 0 and "examples:" in top.stdout
    assert "doge-dist run examples/jobs/banking-jsonl.yaml --report out/report.json" in top.stdout
    assert "Security: a job spec's 'model:'" in top.stdout
    graph = dd("graph", "--help").stdout
    for absent in ("--seed", "--ticks", "--subjects", "--workers", "--report", "128+N", "Secrets:"):
        assert absent not in graph, absent
    assert "-o FILE" in graph and "--stay" in graph and "Draws the states and transitions" in graph
    inspect = dd("inspect", "--help").stdout
    for absent in ("--seed", "--workers", "--report", "--realtime", "128+N", "Secrets:"):
        assert absent not in inspect, absent
    assert "--json" in inspect and "--subjects" in inspect and "Markov-chain analysis" in inspect
    run = " ".join(dd("run", "--help").stdout.split())  # the epilog is wrapped
    assert "Security: a job spec's 'model:'" in run and "subprocess:run" in run
    assert "seed is null (a fresh run each time) or an integer from 0 to 2**64-1" in run
    assert "--workers N|auto" in run


@pytest.mark.parametrize("function, words", [
    ("exits", "the model function models.py:exits failed: it called sys.exit(3)"),
    ("explodes", "the model function models.py:explodes failed: KeyError: 'no such table: accounts'"),
])
def test_a_failing_model_function_is_bad_input(tmp_path, models, function, words):
    for command in ("run", "inspect", "graph"):
        assert_bad_input(dd(command, f"models.py:{function}", cwd=tmp_path), words)
    debug = dd("run", f"models.py:{function}", "--debug", cwd=tmp_path)
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_a_run_too_large_for_this_machine_is_refused_before_it_starts(tmp_path, models):
    out = tmp_path / "never.jsonl"
    proc = dd("run", f"{models}:build", "-p", "sink=jsonl", "-p", f"path={out}", "--subjects", str(10**12),
              "--report", tmp_path / "r.json")
    assert_bad_input(proc, "subjects=1,000,000,000,000 needs about", "TiB of memory", "MemAvailable")
    assert not out.exists() and not (tmp_path / "r.json").exists()
    spec = write_spec(tmp_path, f"model: models.py:build\nparams: {{sink: jsonl, path: {out}}}\n"
                      "subjects: 1000000000000\n")
    assert_bad_input(dd("run", spec), "field 'subjects' (line 3): subjects=1,000,000,000,000 needs about")


PARTIAL_MODEL = '''
from doge_dist import RunResult, ShardResult
from models import build


class Partial(type(build())):
    """Raises after the run began with the partial result start() attaches to such errors."""

    def start(self, *args, **kwargs):
        try:
            return super().start(*args, **kwargs)
        except Exception as exc:
            shards = [ShardResult(shard=i, start=10 * i, stop=10 * i + 10, ticks=3, total_events=4 + i,
                                  total_vetoed=0, events_by_trigger={"wake": 4 + i}, vetoed_by_trigger={},
                                  events_by_sink={"count": 4 + i}, sink_stats={"count": {"delivered": 4 + i}},
                                  create_s=0.0, engine_s=0.0, close_s=0.0) for i in range(2)]
            exc.result = RunResult(events_by_trigger={"wake": 9}, vetoed_by_trigger={},
                                   events_by_sink={"count": 9}, events_by_transition={}, total_events=9,
                                   total_vetoed=0, subjects=20, ticks=3, elapsed_s=0.5, workers=2, seed=1,
                                   sink_stats={"count": {"delivered": 9}}, shards=shards)
            raise


def failing():
    gen = build(fail=True)
    gen.__class__ = Partial
    return gen
'''


def test_a_failed_run_reports_the_counts_it_reached(tmp_path, models):
    """start() attaches every shard's counts to an error raised after the run began (``exc.result``):
    the one-line error and the report carry them."""
    (tmp_path / "partial.py").write_text(PARTIAL_MODEL)
    proc = dd("run", "partial.py:failing", "--report", tmp_path / "r.json", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("doge-dist: error: run failed: ") and "ledger offline" in lines[-1]
    assert "(9 events in 3 ticks from 2 shard(s); sinks delivered 9 before the failure)" in lines[-1]
    report = report_of(tmp_path / "r.json")
    assert report["status"] == "failed" and report["total_events"] == 9
    assert report["events_by_trigger"] == {"wake": 9} and len(report["result"]["shards"]) == 2
    assert "doge-dist: run failed: 20 subjects x 3 ticks" in proc.stderr  # the summary of what was done


def test_run_failure_exits_1_with_the_runs_message(tmp_path, models):
    proc = dd("run", f"{models}:build", "-p", "fail=true", "--report", tmp_path / "r.json")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]  # after the summary of what the run reached
    assert last.startswith("doge-dist: error: run failed: ")
    assert "spend" in last and "ledger offline for account" in last
    report = report_of(tmp_path / "r.json")
    assert report["status"] == "failed" and "ledger offline" in report["error"]


# -- bad input -------------------------------------------------------------------------------------

BAD_FIELDS = [
    ("subjects", "-5", "subjects must be >= 0"),
    ("ticks", "soon", "ticks must be an integer"),
    ("tick_ms", "0", "tick_ms must be > 0"),
    ("tick_ms", "9223372036854775808", "does not fit in 64-bit epoch milliseconds"),
    ("timestamp_start", "tomorrow", "ISO-8601"),
    ("timestamp_start", "9223372036854775808", "does not fit in 64-bit epoch milliseconds"),
    ("seed", "1.5", "seed must be an integer or None"),
    ("seed", "18446744073709551616", "between 0 and 2**64-1"),
    ("workers", "0", "positive integer or 'auto'"),
    ("ray_address", "[1]", "Ray address"),
    ("window", "-1", "positive integer"),
    ("realtime", "sometimes", "true or false"),
    ("speed", "-2", "positive number"),
    ("params", "[1, 2]", "mapping"),
    ("description", "{a: 1}", "text"),
]


@pytest.mark.parametrize("field, value, words", BAD_FIELDS, ids=[f"{f[0]}={f[1]}" for f in BAD_FIELDS])
def test_bad_spec_field_exits_2_naming_it(tmp_path, models, field, value, words):
    spec = write_spec(tmp_path, f"model: models.py:build\n{field}: {value}\n")
    assert_bad_input(dd("run", spec), f"field '{field}' (line 2)", words, str(spec))


def test_bad_spec_structure_and_interpolation(tmp_path, models):
    spec = write_spec(tmp_path, "model: models.py:build\nsubjcts: 5\n")
    assert_bad_input(dd("run", spec), "unknown key 'subjcts' (line 2); did you mean 'subjects'?")
    spec = write_spec(tmp_path, "params:\n  sink: count\n")
    assert_bad_input(dd("inspect", spec), "field 'model'", "required")
    spec = write_spec(tmp_path, "model: models.py:build\nparams:\n  path: ${DOGE_TEST_UNSET_VAR}\n")
    env = {k: v for k, v in os.environ.items() if k != "DOGE_TEST_UNSET_VAR"}
    proc = subprocess.run([sys.executable, "-m", "doge_dist", "run", str(spec)], env=env, capture_output=True,
                          text=True, timeout=60)
    assert_bad_input(proc, "DOGE_TEST_UNSET_VAR is not set", "field 'params.path' (line 3)")
    assert_bad_input(dd("run", tmp_path / "missing.yaml"), "job spec not found")
    spec = write_spec(tmp_path, "model: models.py:build\nparams: {sink: [\n")
    assert_bad_input(dd("run", spec), "invalid YAML")


def test_bad_targets_models_and_flags_exit_2(tmp_path, models):
    assert_bad_input(dd("run", "nowhere.py:build", cwd=tmp_path), "file not found")
    assert_bad_input(dd("run", "models.py:biuld", cwd=tmp_path),
                     "has no attribute 'biuld'; did you mean 'build'?")
    assert_bad_input(dd("inspect", "no_such_pkg_xyz.models:build", cwd=tmp_path),
                     "no module named 'no_such_pkg_xyz'")
    assert_bad_input(dd("run", "models.py:invalid", cwd=tmp_path), "is invalid", "120% outgoing")
    assert_bad_input(dd("run", "models.py:returns_int", cwd=tmp_path), "returned int")
    assert_bad_input(dd("run", "models.py:build", "-p", "sinc=x", cwd=tmp_path), "no parameter 'sinc'",
                     "did you mean 'sink'?")
    assert_bad_input(dd("run", "models.py:build", "--ticks", "-3", cwd=tmp_path), "field 'ticks (--ticks)'")
    assert_bad_input(dd("run", "models.py:build", "--speed", "0", cwd=tmp_path), "field 'speed (--speed)'")
    assert_bad_input(dd("run", "models.py:build", "--graph-out", "g.gif", cwd=tmp_path), "--graph-out")
    assert_bad_input(dd("graph", "models.py:build", "-o", "g.gif", cwd=tmp_path), "unsupported format 'gif'")
    debug = dd("run", "models.py:invalid", "--debug", cwd=tmp_path)
    assert debug.returncode == 2 and "Traceback" in debug.stderr and "120% outgoing" in debug.stderr
    usage = dd("run", cwd=tmp_path)
    assert usage.returncode == 2 and "usage:" in usage.stderr


# -- graph -----------------------------------------------------------------------------------------


def test_graph_command_formats(tmp_path, models, dot_binary):
    proc = dd("graph", f"{models}:build", "-o", tmp_path / "m.svg")
    assert proc.returncode == 0, proc.stderr
    svg = (tmp_path / "m.svg").read_text()
    assert svg.lstrip().startswith(("<?xml", "<svg")) and "wake" in svg and "P=30%" in svg
    assert dd("graph", f"{models}:build", "-o", tmp_path / "m.png").returncode == 0
    assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert dd("graph", f"{models}:build", "-o", tmp_path / "m.pdf").returncode == 0
    assert (tmp_path / "m.pdf").read_bytes()[:5] == b"%PDF-"
    assert dd("graph", JOBS / "banking-print.yaml", "-o", tmp_path / "m.dot", "--stay").returncode == 0
    dot = (tmp_path / "m.dot").read_text()
    assert dot.startswith("digraph") and "take_loan (P=10%)" in dot and "stay (P=50%)" in dot
    to_stdout = dd("graph", f"{models}:build")
    assert to_stdout.returncode == 0 and to_stdout.stdout.startswith("digraph")
    assert "stay" not in to_stdout.stdout


def test_graph_out_draws_observed_counts(tmp_path, models, dot_binary):
    proc = dd("run", f"{models}:build", "--ticks", "100", "--graph-out", tmp_path / "run.dot",
              "--report", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    report = report_of(tmp_path / "r.json")
    dot = (tmp_path / "run.dot").read_text()
    for key, count in report["events_by_transition"].items():
        trigger = key.split(":")[1]
        assert re.search(rf"{trigger} \(P=\d+%\)\\n{count:,} events \(", dot), (key, dot)
    proc = dd("run", f"{models}:build", "--ticks", "100", "--graph-out", tmp_path / "run.svg", "--quiet")
    assert proc.returncode == 0 and "events (" in (tmp_path / "run.svg").read_text()


# -- inspect ---------------------------------------------------------------------------------------


def banking_chain() -> tuple[list[str], np.ndarray, dict[str, tuple[int, float]]]:
    """The banking model's per-tick chain, written out by hand: (states, P, trigger -> (from, p))."""
    states = ["offline", "online", "loan_screen"]
    p = np.array([[1 - 0.001, 0.001, 0.0],     # income/spending stay offline; login 0.1 %
                  [0.7, 0.0, 0.3],             # logout 70 %, open_loan_screen 30 %
                  [0.0, 0.5, 0.5]])            # close_loan_screen 40 % + take_loan 10 %; stay 50 %
    triggers = {"income": (0, 0.0001), "spending": (0, 0.001), "login": (0, 0.001), "logout": (1, 0.7),
                "open_loan_screen": (1, 0.3), "close_loan_screen": (2, 0.4), "take_loan": (2, 0.1)}
    return states, p, triggers


def test_inspect_json_matches_independent_propagation():
    subjects, ticks = 2000, 300
    proc = dd("inspect", "examples.banking:build_generator", "--subjects", subjects, "--ticks", ticks,
              "--json", cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    states, p, triggers = banking_chain()
    d = np.array([1.0, 0.0, 0.0])
    expected = dict.fromkeys(triggers, 0.0)
    for _ in range(ticks):
        for trigger, (state, prob) in triggers.items():
            expected[trigger] += subjects * d[state] * prob
        d = d @ p
    for trigger, value in expected.items():
        assert data["by_trigger"][trigger]["expected_count"] == pytest.approx(value, rel=1e-9)
    assert data["by_sink"]["print"]["expected_count"] == pytest.approx(sum(expected.values()), rel=1e-9)
    # stationary: pi P = pi, sum 1
    a = np.vstack([p.T - np.eye(3), np.ones(3)])
    pi = np.linalg.lstsq(a, np.array([0, 0, 0, 1.0]), rcond=None)[0]
    assert [data["stationary"][s] for s in states] == pytest.approx(list(pi), rel=1e-9)
    for trigger, (state, prob) in triggers.items():
        rate = data["by_trigger"][trigger]["rate_per_tick"]
        assert rate == pytest.approx(subjects * pi[state] * prob, rel=1e-9)
    stays = {"offline": 1000.0, "online": 1.0, "loan_screen": 2.0}
    assert data["expected_stay_ticks"] == pytest.approx(stays)
    assert data["unreachable"] == [] and data["final_states"] == []
    assert data["model_fingerprint"] and data["ticks"] == ticks and data["subjects"] == subjects


def test_inspect_text_reference_values_and_special_states(tmp_path, models):
    proc = dd("inspect", JOBS / "banking-print.yaml", "--subjects", "10000", "--ticks", "1000")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "valid" in out and "unreachable states: none" in out and "final (dead-end) states: none" in out
    assert re.search(r"^\s+login\s+9\.977\s+9,977\.3$", out, re.MULTILINE), out
    assert re.search(r"^\s+take_loan\s+0\.8552\s+851\.5$", out, re.MULTILINE), out
    assert "callbacks that veto transitions are not modelled" in out
    lonely = dd("inspect", f"{models}:lonely")
    assert lonely.returncode == 0, lonely.stderr
    text = lonely.stdout
    assert "unreachable states: d" in text and "final (dead-end) states: b, c" in text
    assert "not unique: 2 closed classes {b}, {c}" in text
    assert re.search(r"^\s+b\s+40\.0000%", text, re.MULTILINE)  # long-run share from the initial state
    assert re.search(r"^\s+b\s+.*infinite$", text, re.MULTILINE)
    assert "per-tick rates are not given" in text
    unbounded = dd("inspect", f"{models}:build", "--ticks", "unbounded", "--json")
    data = json.loads(unbounded.stdout)
    assert data["ticks"] is None and data["by_trigger"]["wake"]["expected_count"] is None
    assert data["by_trigger"]["wake"]["rate_per_tick"] > 0


# -- the example specs against real servers ---------------------------------------------------------


def test_jsonl_example_spec_chooses_its_workers(tmp_path):
    """workers: auto (the example's default) runs this small job in one process and says why."""
    env = {k: v for k, v in os.environ.items() if k != "DOGE_WORKERS"}
    env["DOGE_OUT"] = str(tmp_path / "events")
    cmd = [sys.executable, "-m", "doge_dist", "run", str(JOBS / "banking-jsonl.yaml"), "--subjects", "300",
           "--ticks", "200", "--report", str(tmp_path / "r.json")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    report = report_of(tmp_path / "r.json")
    assert report["spec"]["workers"] == "auto" and report["result"]["workers"] == 1
    assert report["workers_choice"]["workers"] == 1
    assert "expected events" in report["workers_choice"]["reason"]
    assert re.search(r"^  workers: 1 \(auto: about [\d,]+ expected events .* less than starting Ray costs",
                     proc.stderr, re.MULTILINE), proc.stderr
    files = sorted((tmp_path / "events").glob("banking-*.jsonl"))
    assert [f.name for f in files] == [f"banking-{p}.jsonl" for p in range(4)]  # the spec's 4 parts
    assert sum(len(jsonl_lines(f)) for f in files) == report["total_events"]


def test_jsonl_example_spec(tmp_path):
    proc = dd("run", JOBS / "banking-jsonl.yaml", "--subjects", "300", "--ticks", "200", "--report",
              tmp_path / "r.json", env={"DOGE_OUT": str(tmp_path / "events"), "DOGE_WORKERS": "1"})
    assert proc.returncode == 0, proc.stderr
    report = report_of(tmp_path / "r.json")
    rows = [row for p in range(4) for row in jsonl_lines(tmp_path / "events" / f"banking-{p}.jsonl")]
    assert len(rows) == report["total_events"] > 0
    assert rows[0]["timestamp"] >= 1704067200000


@pytest.mark.services
def test_kafka_example_spec(tmp_path, kafka_broker):
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    topic = f"doge_cli_{os.getpid()}_{int(time.time())}"
    kafka_broker.create_topic(topic, partitions=1)
    env = {"KAFKA_BOOTSTRAP": kafka_broker.bootstrap, "KAFKA_TOPIC": topic}
    proc = dd("run", JOBS / "banking-kafka.yaml", "--subjects", "300", "--ticks", "40", "--no-realtime",
              "--report", tmp_path / "r.json", env=env)
    assert proc.returncode == 0, proc.stderr
    report = report_of(tmp_path / "r.json")
    produced = report["events_by_sink"][f"kafka:{topic}"]  # ${KAFKA_TOPIC} is no secret: shown
    assert produced == report["total_events"] > 0
    assert report["sink_stats"][f"kafka:{topic}"]["delivered"] == produced
    consumer = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": f"g-{topic}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    received = 0
    deadline = time.monotonic() + 30
    try:
        while received < produced and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                received += 1
        extra = consumer.poll(1.0)
    finally:
        consumer.close()
    assert received == produced and (extra is None or extra.error() is not None)


@pytest.mark.services
def test_postgres_example_spec(tmp_path, postgres_url):
    import sqlalchemy as sa

    url = sa.engine.make_url(POSTGRES_URL)
    table = f"doge_cli_{os.getpid()}"
    # trust authentication here: the server never asks for the password, but the spec masks it
    env = {"PGUSER": url.username or "", "PGPASSWORD": url.password or "Pg-Secret-5",
           "PGHOST": url.host or "127.0.0.1", "PGPORT": str(url.port or 5432),
           "PGDATABASE": url.database or "", "DOGE_TABLE": table}
    engine = sa.create_engine(POSTGRES_URL)
    try:
        proc = dd("run", JOBS / "banking-postgres.yaml", "--subjects", "200", "--ticks", "100", "--report",
                  tmp_path / "r.json", env=env)
        assert proc.returncode == 0, proc.stderr
        report = report_of(tmp_path / "r.json")
        with engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
        assert rows == report["total_events"] == report["events_by_sink"][f"db:{table}"] > 0
        assert report["masked"] == ["params.db_url"] and report["masked_variables"] == ["PGPASSWORD"]
        assert env["PGPASSWORD"] not in proc.stdout + proc.stderr + (tmp_path / "r.json").read_text()
        assert f"db:{table}" in proc.stderr  # the table (no secret) is shown in the summary
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


# -- Ray -------------------------------------------------------------------------------------------


@pytest.mark.ray
def test_run_on_two_ray_workers(tmp_path, models):
    proc = dd("run", f"{models}:build", "-p", "sink=jsonl", "-p", f"path={tmp_path}/w-{{shard}}.jsonl",
              "-p", "subjects=100", "--ticks", "50", "--workers", "2", "--report", tmp_path / "r.json",
              cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = report_of(tmp_path / "r.json")
    assert report["result"]["workers"] == 2 and len(report["result"]["shards"]) == 2
    files = sorted(tmp_path.glob("w-*.jsonl"))
    assert [f.name for f in files] == ["w-0.jsonl", "w-1.jsonl"]
    assert sum(len(jsonl_lines(f)) for f in files) == report["total_events"]
    assert {r["id"] for r in jsonl_lines(files[0])} <= set(range(50))
    assert proc.stdout == ""  # no print sink: nothing on stdout, the summary is on stderr
    assert "Token authentication is enabled" not in proc.stderr  # Ray's secure default is no warning
    # the time shown is the whole run's wall time (Ray start included), not the shards' share of it
    head = re.search(r"doge-dist: run completed: 100 subjects x 50 ticks in ([\d.]+) s", proc.stderr)
    assert head and head.group(1) == f"{report['timings']['run_s']:.2f}", proc.stderr
    assert report["timings"]["run_s"] >= report["result"]["elapsed_s"]
    assert re.search(r"^  time: [\d.]+ s wall", proc.stderr, re.MULTILINE)


class RayHead:
    """A Ray head of this test's own (``ray start --head --block``), in its own temp dir and session.

    Stopped by signalling the ``ray start`` process and then its process group (never ``ray stop``,
    which would stop every Ray on the machine).
    """

    def __init__(self) -> None:
        self.port, self.dashboard_port = free_port(), free_port()
        # fixed defaults (52365, 10001) would clash with any other Ray on the machine
        self.agent_port, self.client_port = free_port(), free_port()
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        self.temp_dir = tempfile.mkdtemp(prefix="ddray", dir="/tmp")  # short: Ray's socket paths
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> None:
        ray = shutil.which("ray")
        if ray is None:
            service_missing("Ray: the `ray` command is not installed")
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        self.log = open(Path(self.temp_dir) / "ray-start.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [ray, "start", "--head", f"--port={self.port}", f"--dashboard-port={self.dashboard_port}",
             "--dashboard-host=127.0.0.1", "--num-cpus=1", "--include-dashboard=true",
             f"--dashboard-agent-listen-port={self.agent_port}",
             f"--ray-client-server-port={self.client_port}", f"--temp-dir={self.temp_dir}", "--block"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                urllib.request.urlopen(self.address + "/api/version", timeout=2).read()
                return
            except urllib.error.HTTPError:  # answering (e.g. 401: token authentication is on)
                return
            except OSError:
                time.sleep(0.5)
        log = (Path(self.temp_dir) / "ray-start.log").read_text()[-2000:]
        self.stop()
        service_missing(f"Ray head did not serve its Jobs API at {self.address} within {timeout}s: {log}")

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()  # `ray start --block` drains and stops its processes
                try:
                    self.process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=10)
            try:
                os.killpg(self.process.pid, signal.SIGKILL)  # anything left in the head's own session
            except (ProcessLookupError, PermissionError):
                pass
            self.log.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@pytest.fixture
def ray_head():
    head = RayHead()
    head.start()
    yield head
    head.stop()


@pytest.mark.ray
def test_submit_to_a_local_ray_head(tmp_path, models, ray_head):
    out = tmp_path / "job-events.jsonl"
    plant_private_files(tmp_path)
    spec = write_spec(tmp_path, """
        description: submitted by the test
        model: models.py:build
        params:
          sink: jsonl
          path: ${DOGE_TEST_OUT}
          subjects: 50
        ticks: 500
    """)
    proc = dd("submit", spec, "--address", ray_head.address, "--ticks", "80", "--wait", "--timeout", "240",
              env={"DOGE_TEST_OUT": str(out)}, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job_id = re.search(r"submitted Ray job (\S+) to ", proc.stdout).group(1)
    assert f"ray job logs -f {job_id} --address {ray_head.address}" in proc.stdout
    assert "doge-dist: uploading 2 file(s)" in proc.stderr and "job.yaml, models.py" in proc.stderr
    assert "entrypoint:  python -m doge_dist run job.yaml --ticks 80" in proc.stdout
    assert "environment forwarded: DOGE_TEST_OUT" in proc.stdout
    assert f"job {job_id}: SUCCEEDED" in proc.stdout
    assert "doge-dist: run completed: 50 subjects x 80 ticks" in proc.stdout  # the job's own logs
    total = int(re.search(r"^\s+total\s+([\d,]+)", proc.stdout, re.MULTILINE).group(1).replace(",", ""))
    assert len(jsonl_lines(out)) == total > 0
    # nothing private reached the cluster: the head's unpacked packages hold the spec and the model only
    unpacked = [p.name for p in Path(ray_head.temp_dir).rglob("*") if p.is_file()]
    assert "job.yaml" in unpacked and "models.py" in unpacked
    assert not {"credentials", "id_rsa", "notes.txt", "models.cpython-311.pyc", "big.bin"} & set(unpacked)

    from ray.job_submission import JobStatus, JobSubmissionClient

    from doge_dist.cli._mask import Masker
    from doge_dist.cli._submit import connect

    client = connect(JobSubmissionClient, ray_head.address, Masker())
    assert client.get_job_status(job_id) == JobStatus.SUCCEEDED


def plant_private_files(directory: Path) -> None:
    """What a home directory or a project holds and a job must not upload."""
    (directory / ".ssh").mkdir()
    (directory / ".ssh" / "id_rsa").write_text("PRIVATE KEY")
    (directory / ".aws").mkdir()
    (directory / ".aws" / "credentials").write_text("aws_secret_access_key = x")
    (directory / "__pycache__").mkdir()
    (directory / "__pycache__" / "models.cpython-311.pyc").write_bytes(b"\0")
    (directory / "notes.txt").write_text("unrelated")
    (directory / "big.bin").write_bytes(b"\0" * 1024)


class FakeJobsApi:
    """A tiny HTTP server on a free port that answers like a broken gateway: ``stall`` holds every request
    (at most 30 s) and then answers 504, ``504`` answers 504 at once."""

    def __init__(self, mode: str) -> None:
        import http.server

        release = self.release = threading.Event()
        self.requests: list[str] = []
        requests = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                requests.append(f"GET {self.path}")
                if mode == "stall":
                    release.wait(30)
                self.send_response(504, "Gateway Timeout")
                self.end_headers()
                self.wfile.write(b"upstream timed out")

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeJobsApi:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=30)


def test_submit_bounds_every_wait_on_the_jobs_api(tmp_path, models):
    spec = write_spec(tmp_path, "model: models.py:build\n")
    with FakeJobsApi("stall") as api:
        proc = dd("submit", spec, "--address", api.address, "--http-timeout", "1", timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"the Ray Jobs API at {api.address} did not answer GET /api/version within 1 s" in proc.stderr
    with FakeJobsApi("504") as api:
        proc = dd("submit", spec, "--address", api.address, timeout=60)
    assert proc.returncode == 1 and f"cannot reach the Ray Jobs API at {api.address}" in proc.stderr
    assert "504" in proc.stderr


def test_submit_uploads_only_the_spec_and_the_model(tmp_path, models):
    from doge_dist.cli._spec import load_spec
    from doge_dist.cli._submit import is_hidden, plan_upload

    plant_private_files(tmp_path)
    spec = write_spec(tmp_path, "model: models.py:build\nparams: {sink: jsonl, path: out/e.jsonl}\n")
    down = f"http://127.0.0.1:{free_port()}"
    proc = dd("submit", spec, "--address", down, "--http-timeout", "5", timeout=120)
    assert proc.returncode == 1 and "cannot reach the Ray Jobs API" in proc.stderr
    assert re.search(r"^doge-dist: uploading 2 file\(s\), [\d.,]+ KiB: job\.yaml, models\.py$", proc.stderr,
                     re.MULTILINE), proc.stderr
    assert "relative output path(s) params.path = out/e.jsonl" in proc.stderr
    assert "absolute paths on a shared filesystem" in proc.stderr
    # --working-dir uploads that directory, dotfiles only when asked
    plan = plan_upload(load_spec(spec), working_dir=tmp_path)
    assert sorted(plan.files.values()) == ["big.bin", "job.yaml", "models.py", "notes.txt"]
    everything = plan_upload(load_spec(spec), working_dir=tmp_path, include_hidden=True)
    assert {".ssh/id_rsa", ".aws/credentials", "__pycache__/models.cpython-311.pyc"} <= \
        set(everything.files.values())
    # a model in a package directory brings its package; one far away keeps the spec's relative path valid
    package = tmp_path / "pkgroot" / "mypkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "model.py").write_text(MODELS)
    (package / "helpers.py").write_text("")
    jobs = tmp_path / "pkgroot" / "jobs"
    jobs.mkdir()
    nested = write_spec(jobs, "model: ../mypkg/model.py:build\n")
    plan = plan_upload(load_spec(nested))
    assert sorted(plan.files.values()) == ["jobs/job.yaml", "mypkg/__init__.py", "mypkg/helpers.py",
                                           "mypkg/model.py"]
    assert plan.spec_path == "jobs/job.yaml"
    far = write_spec(tmp_path, f"model: {os.path.relpath(REPO / 'examples' / 'banking.py', tmp_path)}"
                     ":build_generator\n", name="far.yaml")
    plan = plan_upload(load_spec(far))  # their common ancestor is / here: the spec and examples/ only
    examples = [p for p in (REPO / "examples").rglob("*")
                if p.is_file() and not is_hidden(p.relative_to(REPO / "examples"))]
    assert set(plan.files) == {far.resolve(), *examples} and plan.spec_path.endswith("far.yaml")
    assert (REPO / "examples" / "banking.py") in plan.files


def test_submit_refuses_an_upload_over_the_limit(tmp_path, models):
    package = tmp_path / "heavy"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "model.py").write_text(MODELS)
    (package / "weights.bin").write_bytes(os.urandom(1_500_000))
    spec = write_spec(tmp_path, "model: heavy/model.py:build\n")
    proc = dd("submit", spec, "--address", f"http://127.0.0.1:{free_port()}", "--max-upload-mb", "1",
              timeout=120)
    assert_bad_input(proc, "the upload would be 1.4 MiB, more than --max-upload-mb 1", "heavy/weights.bin")


def test_submit_rejects_bad_input(tmp_path, models):
    assert_bad_input(dd("submit", f"{models}:build", "--address", "http://127.0.0.1:1"),
                     "needs a YAML job spec")
    spec = write_spec(tmp_path, "model: elsewhere/nothing.py:build\n")
    assert_bad_input(dd("submit", spec, "--address", "http://127.0.0.1:1"), "field 'model'", "file not found")
    spec = write_spec(tmp_path, "model: models.py:build\n")
    down = dd("submit", spec, "--address", f"http://127.0.0.1:{free_port()}", timeout=120)
    assert down.returncode == 1 and "cannot reach the Ray Jobs API" in down.stderr


def test_submit_warns_about_forwarding_secrets(tmp_path, models):
    spec = write_spec(tmp_path, """
        model: models.py:build
        params:
          db_url: postgresql://app:${DOGE_DBW}@db/x
          api_token: ${DOGE_T1}
          region: ${DOGE_REGION}
    """)
    env = {"DOGE_DBW": "Zebra-pw-1", "DOGE_T1": "Quokka-tok-2", "DOGE_REGION": "eu-west-7"}
    address = f"http://127.0.0.1:{free_port()}"
    proc = dd("submit", spec, "--address", address, env=env, timeout=120)
    assert proc.returncode == 1 and "cannot reach the Ray Jobs API" in proc.stderr
    warning = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warning) == 1, proc.stderr
    assert "forwarding DOGE_DBW, DOGE_T1 to the Ray job in clear text" in warning[0]
    assert "--no-forward-env" in warning[0] and "DOGE_REGION" not in warning[0]
    for value in env.values():
        assert value not in proc.stdout + proc.stderr
    quiet = dd("submit", spec, "--address", address, "--no-forward-env", env=env, timeout=120)
    assert quiet.returncode == 1 and "warning" not in quiet.stderr
    param = dd("submit", spec, "--address", address, "--no-forward-env", "-p", "db_password=Zebra-pw-1",
               env=env, timeout=120)
    assert "warning: --param db_password is part of the Ray job's entrypoint" in param.stderr
    assert "Zebra-pw-1" not in param.stderr


@pytest.mark.services
def test_kafka_avro_example_spec_with_registry_credentials_in_the_url(tmp_path, kafka_broker):
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    from registry_server import RegistryServer

    topic = f"doge_cli_avro_{os.getpid()}_{int(time.time())}"
    kafka_broker.create_topic(topic, partitions=1)
    with RegistryServer(basic_auth=("doge", "Reg-Secret-31")) as registry:
        url = registry.url.replace("http://", "http://doge:Reg-Secret-31@")
        env = {"KAFKA_BOOTSTRAP": kafka_broker.bootstrap, "KAFKA_TOPIC": topic, "SCHEMA_REGISTRY_URL": url}
        proc = dd("run", JOBS / "banking-kafka-avro.yaml", "--subjects", "200", "--ticks", "30", "--progress",
                  "--report", tmp_path / "r.json", env=env)
        assert proc.returncode == 0, proc.stderr
        assert set(registry.subjects) == {f"{topic}-key", f"{topic}-value"}
    report_text = (tmp_path / "r.json").read_text()
    for text in (proc.stdout, proc.stderr, report_text):
        assert "Reg-Secret-31" not in text
    report = json.loads(report_text)
    assert report["spec"]["params"]["schema_registry_url"] == url.replace("Reg-Secret-31", "***")
    assert "params.schema_registry_url" in report["masked"]
    produced = report["sink_stats"][f"kafka:{topic}"]["delivered"]
    assert produced == report["total_events"] > 0
    consumer = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": f"g-{topic}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    received, deadline = 0, time.monotonic() + 30
    try:
        while received < produced and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                assert message.value()[:1] == b"\x00"  # Confluent wire format: magic byte + schema id
                received += 1
    finally:
        consumer.close()
    assert received == produced


# -- progress formatting (in-process) ---------------------------------------------------------------


def test_progress_line_and_terminal_redraw():
    import io

    from doge_dist import Progress
    from doge_dist.cli._mask import Masker
    from doge_dist.cli._progress import ProgressPrinter, format_duration, format_progress

    p = Progress(ticks_done=250, ticks_total=1000, total_events=5000, events_by_sink={"db:x": 5000},
                 elapsed_s=2.0, lag_s=0.25)
    assert format_progress(p) == ("tick 250/1,000 (25.0%) | 5,000 events | 2,500 events/s | ETA 0:06 | "
                                  "db:x: 5,000 | lag 0.250 s")
    assert format_progress(p, tick_s=1.0).split(" | ")[3] == "ETA 12:30"
    assert format_duration(3725) == "1:02:05"
    stream = io.StringIO()
    printer = ProgressPrinter(stream, Masker(["x"]), tty=True, interval=0.0)
    printer(p)
    printer(Progress(1000, 1000, 9, {}, 3.0))
    printer.finish()
    text = stream.getvalue()
    assert text.startswith("\rtick 250/1,000") and "db:***" in text and text.endswith("\n")
    assert "\rtick 1,000/1,000 (100.0%) | 9 events" in text
    quiet = ProgressPrinter(io.StringIO(), Masker(), tty=False, interval=3600)
    quiet(p)
    quiet(Progress(500, 1000, 1, {}, 1.0))  # throttled
    quiet(Progress(1000, 1000, 2, {}, 2.0))  # the last one always shows
    assert quiet.updates == 2 and quiet.stream.getvalue().count("\n") == 2
