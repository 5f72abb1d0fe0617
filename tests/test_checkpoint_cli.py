"""Checkpoints and resume through the real ``doge-dist run`` (a subprocess), and the nightly job that
continues the previous night's run (deploy/kuberay/cronjob-continue.yaml, scaled down to this machine).

Every comparison is of whole files: a run continued from a checkpoint, or stopped and finished, must write
exactly the bytes one uninterrupted run writes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from test_deploy import (
    CONTINUE,
    FIRST_DAY_SED,
    continue_entrypoint,
    continue_rayjob_text,
    load_docs,
    pod_containers,
    pod_templates,
)

from doge_dist.cli._resume import resume_command
from doge_dist.run._checkpoint import CheckpointLog, Store, tick_dir

REPO = Path(__file__).resolve().parent.parent
BANKING = REPO / "examples" / "banking.py"
DAY_MS = 1440 * 60_000

SPEC = f"""\
model: {BANKING}:build_generator
params: {{fast_random: true}}
sink: {{type: jsonl, path: "${{OUT}}/banking-{{part}}.jsonl", parts: 4}}
subjects: 2000
ticks: 300
tick_ms: 60000
timestamp_start: 2024-01-01T00:00:00Z
seed: 7
checkpoint:
  dir: ${{CK}}
  every: 100
"""


def cli(args: list[str], env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "doge_dist", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def run_printed(command: str, timeout: float = 300,
                drop: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run a command line the CLI printed (``VAR=value doge-dist run ...``) as it stands, except for the
    flags in ``drop`` (and each one's value when it takes one: ``--speed``)."""
    words = shlex.split(command)
    env = {}
    while words and re.match(r"^[A-Za-z_]\w*=", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    assert words[0] == "doge-dist", command
    args, skip = [], False
    for word in words[1:]:
        if skip:
            skip = False
        elif word in drop:
            skip = word == "--speed"
        else:
            args.append(word)
    return cli(args, env, timeout)


def files(folder: Path, pattern: str = "*.jsonl") -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob(pattern))}


def spec_file(tmp_path: Path, text: str = SPEC) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


def one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def printed(stderr: str, label: str) -> str:
    """The command after ``label`` on a summary or message line."""
    match = re.search(rf"{re.escape(label)} (.+)$", stderr, flags=re.M)
    assert match, stderr
    return match.group(1)


# -- checkpoint, resume, finish ------------------------------------------------------------------------


def test_checkpoint_then_resume_writes_the_files_of_one_long_run(tmp_path):
    spec = spec_file(tmp_path)
    ck, out = tmp_path / "ck", tmp_path / "parts"
    env = {"OUT": str(out), "CK": str(ck)}
    first = cli(["run", str(spec), "--report", str(tmp_path / "r1.json")], env)
    assert first.returncode == 0, first.stderr
    assert f"checkpoint: tick 300 in {ck} (" in first.stderr and "bytes/subject" in first.stderr
    report = json.loads((tmp_path / "r1.json").read_text())["checkpoint"]
    assert report["dir"] == str(ck) and report["latest_tick"] == 300 and report["every"] == 100
    ticks = [w["tick"] for w in report["written"]]  # a writer finishing late is superseded by a newer one
    assert ticks[-1] == 300 and set(ticks) <= {100, 200, 300}
    # the latest two checkpoints, and the folders the latest is rebuilt from (a full snapshot and deltas)
    folders = sorted(tick_dir(t) for t in {200, 300} | chain_ticks(ck, 300))
    assert sorted(p.name for p in ck.iterdir()) == ["LATEST.json", "RUN.json", *folders]
    assert json.loads((ck / "RUN.json").read_text())["status"] == "completed"

    # the command the summary prints continues the run: ticks 300..599, appended to the same part files
    command = printed(first.stderr, "continue with:")
    assert f"--resume {ck} --ticks 300" in command and command.startswith(f"OUT={out} CK={ck} doge-dist run")
    second = run_printed(command)
    assert second.returncode == 0, second.stderr
    assert f"resumed: from {ck / tick_dir(300)} (this run: ticks 300..599)" in second.stderr
    assert f"checkpoint: tick 600 in {ck}" in second.stderr
    second_report = json.loads((tmp_path / "r1.json").read_text())  # --report was part of the command
    assert second_report["checkpoint"]["first_tick"] == 300 and second_report["result"]["first_tick"] == 300
    assert second_report["checkpoint"]["end_tick"] == 600

    long_out = tmp_path / "long"
    long = cli(["run", str(spec), "--ticks", "600"], {"OUT": str(long_out), "CK": str(tmp_path / "ck-long")})
    assert long.returncode == 0, long.stderr
    assert len(files(out)) == 4 and files(out) == files(long_out)


def signal_after_progress(cmd: list[str], env: dict[str, str], signum: int, total: str,
                          timeout: float = 120) -> tuple[int, str]:
    """Start the command; once its progress shows tick >= 3, send ``signum``; return (status, stderr)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **env})
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True)
    reader.start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                assert proc.poll() is None, f"the run ended before it was signalled: {seen}"
                continue
            seen.append(line)
            match = re.search(rf"tick ([\d,]+)/{total}", line)
            if match and int(match.group(1).replace(",", "")) >= 3:
                break
        else:
            pytest.fail(f"no progress within {timeout} s: {seen}")
        proc.send_signal(signum)
        proc.stdout.read()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=30)
    while not lines.empty():
        seen.append(lines.get())
    return proc.returncode, "".join(seen)


def test_sigterm_mid_run_then_resume_finishes_with_the_files_of_an_uninterrupted_run(tmp_path):
    spec = spec_file(tmp_path)
    ck, out = tmp_path / "ck", tmp_path / "parts"
    env = {"OUT": str(out), "CK": str(ck)}
    paced = [sys.executable, "-m", "doge_dist", "run", str(spec), "--ticks", "3000", "--tick-ms", "1000",
             "--checkpoint-every", "50", "--realtime", "--speed", "100", "--progress"]
    status, stderr = signal_after_progress(paced, env, signal.SIGTERM, "3,000")
    assert status == 143, stderr
    stop = json.loads((ck / "RUN.json").read_text())
    assert stop["status"] == "stopped" and stop["latest_checkpoint"] == stop["ticks_reached"] < 3000
    reached = stop["ticks_reached"]
    message = stderr.strip().splitlines()[-1]
    assert message.startswith(f"doge-dist: stopped by SIGTERM after {reached:,} of 3,000 ticks"), message
    command = printed(message, f"finish it from the checkpoint at tick {reached:,} with:")
    assert f"--resume {ck} --ticks {3000 - reached}" in command

    # the printed command, without the pacing flags (pacing never changes the events): fast
    finish = run_printed(command, drop=("--realtime", "--speed", "--progress"))
    assert finish.returncode == 0, finish.stderr
    assert json.loads((ck / "RUN.json").read_text())["status"] == "completed"

    whole_out = tmp_path / "whole"
    whole = cli(["run", str(spec), "--ticks", "3000", "--tick-ms", "1000"],
                {"OUT": str(whole_out), "CK": str(tmp_path / "ck-whole")})
    assert whole.returncode == 0, whole.stderr
    assert len(files(out)) == 4 and files(out) == files(whole_out)


FAILING = """
import os
import sys

sys.path.insert(0, {repo!r})
from doge_dist import JsonLinesSink  # noqa: E402
from examples import banking  # noqa: E402


class Audit:
    \"\"\"Fails while the file ``outage`` exists (an outage of the audit service), from ``at_ms`` on.\"\"\"

    def __init__(self, outage, at_ms):
        self.outage, self.at_ms, self.name = outage, at_ms, "audit"

    def collect(self, timestamp, subject, transition):
        if timestamp >= self.at_ms and os.path.exists(self.outage):
            raise OSError("audit service unavailable")

    def close(self):
        pass


def build(out, outage):
    gen = banking.build_generator(JsonLinesSink(out + "/banking-{{part}}.jsonl", parts=4), subjects=500,
                                  ticks=400, seed=3, fast_random=True)
    gen.add_transition("audit", "loan_screen", "loan_screen", 20, event_sinks=[Audit(outage, 250 * 60000)])
    return gen
"""


def test_a_failed_run_names_the_checkpoint_that_finishes_it(tmp_path):
    model = tmp_path / "failing.py"
    model.write_text(FAILING.format(repo=str(REPO)))
    ck, out, outage = tmp_path / "ck", tmp_path / "parts", tmp_path / "outage"
    outage.write_text("")
    proc = cli(["run", f"{model}:build", "-p", f"out={out}", "-p", f"outage={outage}",
                "--checkpoint-dir", str(ck), "--checkpoint-every", "100",
                "--report", str(tmp_path / "r.json")])
    assert proc.returncode == 1, proc.stderr
    message = proc.stderr.strip().splitlines()[-1]
    assert "audit service unavailable" in message
    run = json.loads((ck / "RUN.json").read_text())
    latest = run["latest_checkpoint"]  # tick 200: its snapshot was written, though never reported
    assert run["status"] == "failed" and latest == 200, run
    command = printed(message, f"finish it from the checkpoint at tick {latest} with:")
    assert command.endswith(f"--resume {ck} --ticks {400 - latest}"), command
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["status"] == "failed" and report["checkpoint"]["resume_command"] == command

    outage.unlink()  # the outage is over: the printed command finishes the run
    finish = run_printed(command)
    assert finish.returncode == 0, finish.stderr
    whole = cli(["run", f"{model}:build", "-p", f"out={tmp_path / 'whole'}", "-p", f"outage={outage}"])
    assert whole.returncode == 0, whole.stderr
    assert len(files(out)) == 4 and files(out) == files(tmp_path / "whole")


def test_a_resumed_run_refuses_a_changed_seed_and_names_it(tmp_path):
    spec = spec_file(tmp_path)
    ck, out = tmp_path / "ck", tmp_path / "parts"
    env = {"OUT": str(out), "CK": str(ck)}
    assert cli(["run", str(spec)], env).returncode == 0
    before = files(out)
    changed = cli(["run", str(spec), "--resume", str(ck), "--seed", "8"], env)
    one_line_error(changed, f"--resume {ck}", "seed (checkpoint 7, now 8)")
    more = cli(["run", str(spec), "--resume", str(ck), "--subjects", "2001"], env)
    one_line_error(more, "subjects_num (checkpoint 2000, now 2001)")
    assert files(out) == before and json.loads((ck / "RUN.json").read_text())["status"] == "completed"


BAD_SECTIONS = [
    ("checkpoint: {dir: ck, evry: 100}", "field 'checkpoint.evry' (line 9)", "did you mean 'every'"),
    ("checkpoint:\n  dir: ck\n  every: 0", "field 'checkpoint.every' (line 11)", ">= 1"),
    ("checkpoint:\n  dir: ck\n  keep: -1", "field 'checkpoint.keep' (line 11)", "'all'"),
    ("checkpoint:\n  every: 100", "field 'checkpoint.every' (line 10)", "needs 'dir'"),
    ("checkpoint: ck", "field 'checkpoint' (line 9)", "must be a mapping"),
    ("checkpoint:\n  dir: 'no-scheme:://x'", "field 'checkpoint.dir' (line 10)", "not a folder or a URL"),
    ("max_restarts: -1", "field 'max_restarts' (line 9)", "integer >= 0"),
]


@pytest.mark.parametrize("section,where,reason", BAD_SECTIONS, ids=[b[1] for b in BAD_SECTIONS])
def test_bad_checkpoint_sections_exit_2_naming_field_and_line(tmp_path, section, where, reason):
    text = SPEC.split("checkpoint:")[0] + section + "\n"
    proc = cli(["run", str(spec_file(tmp_path, text))], {"OUT": str(tmp_path / "parts")})
    one_line_error(proc, where, reason)
    assert not (tmp_path / "parts").exists()


def test_bad_checkpoint_flags_and_places_exit_2_before_anything_runs(tmp_path):
    spec = spec_file(tmp_path)
    out = tmp_path / "parts"
    env = {"OUT": str(out), "CK": str(tmp_path / "ck")}
    cases = [
        (["--checkpoint-every", "0"], ["checkpoint.every (--checkpoint-every)", ">= 1"]),
        (["--checkpoint-keep", "some"], ["checkpoint.keep (--checkpoint-keep)"]),
        (["--max-restarts", "-2"], ["max_restarts (--max-restarts)"]),
        (["--resume", str(tmp_path / "nothing")], ["no complete checkpoint in"]),
        (["--checkpoint-dir", "nosuchprotocol://bucket/x"], ["unknown protocol nosuchprotocol://"]),
    ]
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cases.append((["--checkpoint-dir", str(blocker / "ck")], [f"checkpoint.dir {blocker / 'ck'}"]))
    cases.append((["--checkpoint-dir", str(blocker)], ["exists and is not a folder"]))
    try:
        import s3fs  # noqa: F401
    except ImportError:
        cases.append((["--checkpoint-dir", "s3://bucket/run"], ["pip install s3fs"]))
    for flags, fragments in cases:
        one_line_error(cli(["run", str(spec), *flags], env), *fragments)
    assert not out.exists()


def test_a_folder_is_one_lineage(tmp_path):
    """A fresh run refuses a folder with another run's checkpoints; a stopped or failed run is finished only
    into its own folder (continuing it elsewhere would shift every later segment), unless its tick folder
    is named; resuming an older checkpoint into its own folder (which holds later ones) is refused."""
    spec = spec_file(tmp_path)
    ck = tmp_path / "ck"
    env = {"OUT": str(tmp_path / "parts"), "CK": str(ck)}
    assert cli(["run", str(spec)], env).returncode == 0
    one_line_error(cli(["run", str(spec)], env),
                   f"checkpoint.dir {ck}: already holds checkpoints of another run", f"--resume {ck}")
    older = [t for t in Store(str(ck)).ticks() if t < 300 and (ck / tick_dir(t) / "MANIFEST.json").exists()]
    assert older, "keep=2 leaves the one before the last"  # (unless its writer was superseded: rare)
    one_line_error(cli(["run", str(spec), "--resume", str(ck / tick_dir(older[-1]))], env),
                   "already holds later ones (up to tick 300)")
    run = json.loads((ck / "RUN.json").read_text())
    (ck / "RUN.json").write_text(json.dumps({**run, "status": "failed", "ticks_reached": 340}))
    elsewhere = {"OUT": str(tmp_path / "next"), "CK": str(tmp_path / "ck-next")}
    line = one_line_error(cli(["run", str(spec), "--resume", str(ck)], elsewhere),
                          "did not complete (failed at tick 340; latest checkpoint: tick 300)",
                          str(ck / tick_dir(300)))
    assert not (tmp_path / "ck-next").exists(), line
    named = cli(["run", str(spec), "--resume", str(ck / tick_dir(300))], elsewhere)
    assert named.returncode == 0, named.stderr
    into_itself = cli(["run", str(spec), "--resume", str(ck), "--ticks", "40"], env)
    assert into_itself.returncode == 0, into_itself.stderr


def chain_ticks(ck: Path, tick: int) -> set[int]:
    """The ticks of the folders checkpoint ``tick`` is rebuilt from (its manifest's chains)."""
    manifest = json.loads((ck / tick_dir(tick) / "MANIFEST.json").read_text())
    return {int(t) for chain in manifest["chains"].values() for t in chain}


def test_keep_sets_how_many_checkpoints_stay(tmp_path):
    spec = spec_file(tmp_path)
    kept = {}
    for keep in ("1", "all"):
        ck = tmp_path / f"ck-{keep}"
        proc = cli(["run", str(spec), "--checkpoint-keep", keep, "--ticks", "600"],
                   {"OUT": str(tmp_path / keep), "CK": str(ck)})
        assert proc.returncode == 0, proc.stderr
        kept[keep] = Store(str(ck)).ticks()
    assert kept["1"] == sorted(chain_ticks(tmp_path / "ck-1", 600))  # the latest and what it is rebuilt from
    assert kept["1"][-1] == 600
    # all: every one that completed (a writer finishing after a newer one's is superseded, so not always 6)
    assert kept["all"][-1] == 600 and len(kept["all"]) > 2 and set(kept["all"]) <= set(range(100, 700, 100))


# -- restarts after a lost worker, on Ray --------------------------------------------------------------

KILLER = '''
import os
import signal
import sys

sys.path.insert(0, {repo!r})
from doge_dist import CountingSink, JsonLinesSink, current_shard  # noqa: E402
from examples import banking  # noqa: E402


class KillsItsWorkerOnce:
    """Kills the process of shard 1 at the first event at or after ``at_ms`` (once: a marker file)."""

    def __init__(self, marker, at_ms):
        self.marker, self.at_ms, self.name = marker, at_ms, "killer"

    def collect(self, timestamp, subject, transition):
        if timestamp >= self.at_ms and current_shard().index == 1 and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)

    def close(self):
        pass


def build(out, marker, kill_at_tick=None):
    files = JsonLinesSink(out + "/banking-{{part}}.jsonl", parts=4)
    gen = banking.build_generator(files, subjects=2000, ticks=600, seed=5, fast_random=True)
    audit = [CountingSink("counted")]  # no exactly-once resume: its replayed events are possible duplicates
    if kill_at_tick is not None:
        audit.append(KillsItsWorkerOnce(marker, kill_at_tick * 60000))
    gen.add_transition("audit", "loan_screen", "loan_screen", 20, event_sinks=audit)
    return gen
'''


@pytest.mark.ray
def test_a_lost_worker_is_replaced_and_the_summary_says_so(tmp_path):
    model = tmp_path / "killer.py"
    model.write_text(KILLER.format(repo=str(REPO)))
    out, ck, marker = tmp_path / "parts", tmp_path / "ck", tmp_path / "killed"
    proc = cli(["run", f"{model}:build", "-p", f"out={out}", "-p", f"marker={marker}",
                "-p", "kill_at_tick=350", "--workers", "2", "--checkpoint-dir", str(ck),
                "--checkpoint-every", "100", "--max-restarts", "1", "--report", str(tmp_path / "r.json")],
               timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert marker.exists()
    assert "restarts: 1 lost shard(s) replaced and replayed" in proc.stderr
    assert re.search(r"possible duplicates: [\d,]+ events in counted", proc.stderr), proc.stderr
    # from the newest checkpoint complete when it was lost (one is complete once every shard reported its
    # snapshot written, which on a busy machine lags some windows behind), or from the start
    lost = (r"note: shard 1 \(subjects 1000\.\.1999\) was lost in window 3\d\d\.\.\d+ and replayed from "
            r"tick (\d+) \(restart 1 of 1\)")
    found = re.search(lost, proc.stderr)
    assert found and int(found.group(1)) in (0, 100, 200, 300), proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())["checkpoint"]
    assert report["restarts"] == 1 and report["max_restarts"] == 1
    assert report["possible_duplicates"]["counted"] > 0 and "files" not in str(report["possible_duplicates"])
    # the file sink resumes exactly: the same bytes as a run that lost nothing
    reference = cli(["run", f"{model}:build", "-p", f"out={tmp_path / 'ref'}", "-p", f"marker={marker}"])
    assert reference.returncode == 0, reference.stderr
    assert len(files(out)) == 4 and files(out) == files(tmp_path / "ref")


# -- the nightly job: day N continues day N-1 ----------------------------------------------------------


def _scaled(argv: list[str], data: Path, yesterday: str, *, subjects: str, workers: str) -> list[str]:
    """The CronJob's doge-dist arguments for this machine: fewer subjects and workers, this machine's Ray
    (no --address), the image's /app as this repository, the volume's /data as ``data``."""
    values = {"--subjects": subjects, "--workers": workers}
    out: list[str] = []
    words = iter(argv)
    for word in words:
        if word == "--address":
            next(words)
        elif word in values:
            next(words)
            out += [word, values[word]]
        elif word.startswith("/app/"):
            out.append(str(REPO / word.removeprefix("/app/")))
        else:
            out.append(word.replace("$(date -u -d yesterday +%F)", yesterday).replace("/data/", f"{data}/"))
    return out


@pytest.mark.ray
def test_the_nightly_command_scaled_down_day_two_is_ticks_1440_to_2879_of_one_long_run(tmp_path):
    text = continue_rayjob_text(load_docs(CONTINUE))
    head = pod_templates(yaml.safe_load(text))[0][1]
    head_env = {e["name"]: e["value"] for c in pod_containers(head) for e in c.get("env") or []}
    data = tmp_path / "data"
    env = {name: value.replace("/data/", f"{data}/") for name, value in head_env.items()}
    first_day = dt.datetime.fromisoformat(env["DOGE_FIRST_DAY"]).replace(tzinfo=dt.timezone.utc)
    day1, day2, day3 = (str((first_day + dt.timedelta(days=n)).date()) for n in range(3))

    def nightly(manifest: str, today: str, yesterday: str, workers: str) -> subprocess.CompletedProcess:
        assignments, argv = continue_entrypoint(manifest)
        assert assignments == {"DAY": "$(date -u +%F)"}
        return cli(_scaled(argv, data, yesterday, subjects="1000", workers=workers), {**env, "DAY": today},
                   timeout=600)

    first = nightly(FIRST_DAY_SED.sub("", text), day1, "-", "1")   # day 1, by hand: without --resume
    assert first.returncode == 0, first.stderr
    assert "resumed" not in first.stderr
    second = nightly(text, day2, day1, "2")                         # the CronJob's command, on Ray
    assert second.returncode == 0, second.stderr
    assert "(this run: ticks 1,440..2,879)" in second.stderr
    events = data / "doge-dist" / "events"
    assert sorted(p.name for p in events.iterdir()) == [day1, day2]

    # one run of two days, in this process
    spec = _scaled(continue_entrypoint(text)[1], data, day1, subjects="1000", workers="1")[1]
    whole = cli(["run", spec, "--subjects", "1000", "--ticks", "2880", "--workers", "1"],
                {**env, "DAY": "whole"})
    assert whole.returncode == 0, whole.stderr
    start = int(first_day.timestamp() * 1000)
    parts = sorted((events / "whole").glob("*.jsonl"))
    assert len(parts) == 16
    assert sorted(p.name for p in (events / day2).glob("*.jsonl")) == [p.name for p in parts]
    for part in parts:
        lines = part.read_text().splitlines()
        day_of = [(json.loads(line)["timestamp"] - start) // DAY_MS for line in lines]
        by_day = [[line for line, day in zip(lines, day_of) if day == d] for d in (0, 1)]
        assert by_day[0] + by_day[1] == lines
        assert (events / day1 / part.name).read_text().splitlines() == by_day[0], part.name
        assert (events / day2 / part.name).read_text().splitlines() == by_day[1], part.name
    run_json = data / "doge-dist" / "checkpoints" / day2 / "RUN.json"
    status = json.loads(run_json.read_text())
    assert (status["status"], status["first_tick"], status["latest_checkpoint"]) == ("completed", 1440, 2880)

    # day 3 refuses to build on a day 2 that did not complete
    run_json.write_text(json.dumps({**status, "status": "failed", "ticks_reached": 2000}))
    one_line_error(nightly(text, day3, day2, "1"), "did not complete (failed at tick 2000")
    assert not (events / day3).exists()


# -- units -------------------------------------------------------------------------------------------


def test_resume_command_replaces_resume_and_ticks_and_keeps_the_rest():
    argv = ["run", "job.yaml", "--ticks=300", "--resume", "old", "--seed", "7", "-p", "path=a b"]
    env = {"DAY": "2024-01-02", "DB_PASSWORD": "hunter2", "UNUSED": "x"}
    command = resume_command(argv, resume="/ck", ticks=100, env_vars=["DAY", "DB_PASSWORD", "MISSING"],
                             environ=env)
    assert command == "DAY=2024-01-02 doge-dist run job.yaml --seed 7 -p 'path=a b' --resume /ck --ticks 100"
    unbounded = resume_command(["run", "job.yaml", "--ticks", "unbounded"], resume="/ck", ticks=None,
                               environ={})
    assert unbounded == "doge-dist run job.yaml --ticks unbounded --resume /ck"


class _Report:
    def __init__(self, checkpoint=None, snapshots=()):
        self.checkpoint = checkpoint
        self.snapshots = list(snapshots)


def test_a_newer_checkpoint_completing_first_leaves_the_older_ones_folder_alone(tmp_path):
    """Writers finish out of order: completing tick 40 while tick 20's writer still writes must not delete
    tick 20's folder as a partial (its writer would then fail to find its files and fail the run)."""
    store = Store(str(tmp_path))
    log = CheckpointLog(str(tmp_path), 1, {"run_id": "r"}, keep=2)

    def record(tick):
        return {"tick": tick, "shard": 0, "positions": {}, "arrivals": None, "total_events": tick,
                "events_by_sink": {}}

    def written(tick):
        store.write(f"{tick_dir(tick)}/part-00000.npz", b"x")
        return {"tick": tick, "shard": 0, "ok": True, "files": {}, "bytes": 1, "subjects": 1, "seconds": 0.0}

    log.add([_Report(record(20))])                      # tick 20: its writer has started
    store.write(f"{tick_dir(20)}/part-00000.npz", b"x")
    log.add([_Report(record(40), [written(40)])])      # tick 40 is on disk before tick 20
    assert log.latest == 40 and store.exists(f"{tick_dir(40)}/MANIFEST.json")
    assert store.exists(f"{tick_dir(20)}/part-00000.npz")  # not deleted as a partial while being written
    log.add([_Report(None, [written(20)])])            # then tick 20 finishes: older than the latest, dropped
    assert log.latest == 40 and [c["tick"] for c in log.completed] == [40]
    log.add([_Report(record(60), [written(60)])])
    assert log.latest == 60 and not store.exists(tick_dir(20))  # now it is a partial: removed


def test_a_failed_runs_last_checkpoints_are_completed_from_the_store(tmp_path):
    """The failing window's report never comes, so the snapshots it would have carried are found on disk."""
    log = CheckpointLog(str(tmp_path), 2, {"run_id": "r"}, keep=2)
    record = {"positions": {}, "arrivals": None, "total_events": 0, "events_by_sink": {}}
    log.add([_Report({**record, "tick": 20, "shard": s}) for s in (0, 1)])
    for shard in (0, 1):
        info = {"tick": 20, "shard": shard, "files": {}, "bytes": 1, "subjects": 1, "seconds": 0.0}
        Store(str(tmp_path)).write(f"{tick_dir(20)}/shard-{shard:05d}.json", json.dumps(info).encode())
    assert log.latest is None
    log.complete_from_store()
    assert log.latest == 20 and Store(str(tmp_path)).exists(f"{tick_dir(20)}/MANIFEST.json")


def test_a_writer_whose_files_are_gone_is_a_failed_snapshot_not_a_failed_run(tmp_path):
    from doge_dist.run._checkpoint import SnapshotWriter

    writer = SnapshotWriter(str(tmp_path), 0)
    pid = os.fork()
    if pid == 0:
        os._exit(0)  # a writer that "succeeded" but whose folder was removed meanwhile
    writer.pending.append(type("Job", (), {"tick": 20, "pid": pid, "started": time.perf_counter()})())
    (done,) = writer.poll(wait=True)
    assert done["ok"] is False and done["tick"] == 20 and "FileNotFoundError" in done["error"]
