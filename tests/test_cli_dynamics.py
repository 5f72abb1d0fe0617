"""Rate-paced runs and the HTML report on the command line: ``--rate``, ``load:`` / ``rate:`` /
``repeat:`` in job specs, target vs achieved in progress, summary and ``--report``, ``--report-html``.

Rate runs here last one to three seconds; no assertion on wall time beyond the pacer's own report.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from doge_dist import DataOnlineGenerator, Progress, SubjectFactory
from doge_dist.cli import main
from doge_dist.cli._commands import load_job
from doge_dist.cli._mask import Masker
from doge_dist.cli._pacing import rate_workers_choice
from doge_dist.cli._progress import ProgressPrinter, format_progress
from doge_dist.cli._spec import SpecError, parse_spec_text
from doge_dist.cli._submit import build_entrypoint

REPO = Path(__file__).resolve().parent.parent
JOBS = REPO / "examples" / "jobs"

MODELS = '''
from doge_dist import CountingSink, DataOnlineGenerator, SubjectFactory


class Plain(SubjectFactory):
    def create(self, index):
        return index


def loop(subjects=2000, ticks=40, percent=5.0):
    """subjects x percent / 100 events per tick (100 with the defaults)."""
    gen = DataOnlineGenerator(["a"], "a", Plain(), subjects, 1000, ticks, 1704067200000, seed=1)
    gen.add_transition("x", "a", "a", percent, event_sinks=[CountingSink("events")])
    return gen
'''


@pytest.fixture
def models(tmp_path) -> Path:
    path = tmp_path / "rate_models.py"
    path.write_text(MODELS)
    return path


def write(directory: Path, text: str, name: str = "job.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def dd(*args, cwd=None, timeout=180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "doge_dist", *map(str, args)], cwd=cwd, env=dict(os.environ),
                          capture_output=True, text=True, timeout=timeout)


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([*map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_error_line(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("doge-dist: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def strict_json(text: str) -> dict:
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


# -- bad input: exit 2, one line, before the run ----------------------------------------------------


def test_rate_with_speed_is_exit_2(models, capsys):
    code, _, err = cli(capsys, "run", f"{models}:loop", "--rate", "1000", "--speed", "2", "--realtime")
    assert code == 2
    one_error_line(err, "--rate and --speed exclude each other")
    code, _, err = cli(capsys, "run", f"{models}:loop", "--rate", "1000", "--no-realtime")
    assert code == 2
    one_error_line(err, "--rate is realtime")
    code, _, err = cli(capsys, "run", f"{models}:loop", "--rate", "-5")
    assert code == 2
    one_error_line(err, "field 'rate (--rate)'", "must be a number of events per second > 0, got -5")


@pytest.mark.parametrize("step, words", [
    ("{rate: 500, for: 0s}", "a duration must be > 0, got '0s'"),
    ("{ramp: [500], for: 1s}", "ramp must be [from_rate, to_rate], got [500]"),
    ("{rat: 500, for: 1s}", "unknown key(s) ['rat']"),
    ("{rate: 500}", "missing 'for'"),
    ("{rate: 500, ramp: [1, 2], for: 1s}", "give exactly one of rate or ramp"),
    ("{rate: fast, for: 1s}", "a rate must be a number of events per second"),
])
def test_a_bad_load_step_is_exit_2_with_its_line(models, tmp_path, capsys, step, words):
    spec = write(tmp_path, f"""
        model: {models}:loop
        ticks: unbounded
        load:
          - {{rate: 1000, for: 1s}}
          - {step}
          - {{rate: 2000, for: 1s}}
    """)
    code, _, err = cli(capsys, "run", spec)
    assert code == 2
    one_error_line(err, "job.yaml: field 'load.2' (line 5): ", words)  # line 5: the second step


@pytest.mark.parametrize("extra, field, words", [
    ("rate: 1000\nload: [{rate: 1000, for: 1s}]", "load", "give rate or load, not both"),
    ("repeat: true", "repeat", "repeats a load shape: add load"),
    ("load: [{rate: 1000, for: 1s}]\nrealtime: true\nspeed: 2", "speed", "with rate or load the event rate"),
    ("rate: 1000\nrealtime: false", "rate", "a target event rate is realtime"),
    ("load: []", "load", "must be a non-empty list of steps"),
    ("load: {rate: 1000, for: 1s}", "load", "must be a non-empty list of steps"),
    ("rate: 0", "rate", "must be a number of events per second > 0"),
])
def test_pacing_combinations_in_a_spec_are_refused_with_the_field(extra, field, words):
    text = "model: m:f\n" + extra + "\n"
    with pytest.raises(SpecError) as info:
        parse_spec_text(text, source="job.yaml", environ={})
    assert f"field '{field}'" in str(info.value) and words in str(info.value)
    line = next(k for k, text_line in enumerate(text.splitlines(), 1) if text_line.startswith(f"{field}:"))
    assert f"(line {line})" in str(info.value)


def test_a_spec_with_load_and_repeat_parses_and_the_rate_flag_replaces_it(tmp_path):
    spec_path = write(tmp_path, """
        model: m:f
        load:
          - {rate: 1000, for: 30s}
          - {ramp: [1000, 50000], for: 5m}
        repeat: true
    """)
    args = argparse.Namespace(target=str(spec_path), param=None, rate=None, speed=None, realtime=None)
    spec = load_job(args, Masker(), run_flags=True)
    assert spec.settings["load"] == [{"rate": 1000, "for": "30s"}, {"ramp": [1000, 50000], "for": "5m"}]
    assert spec.settings["repeat"] is True
    args.rate = "2500"
    spec = load_job(args, Masker(), run_flags=True)
    assert spec.settings["rate"] == 2500.0 and "load" not in spec.settings and "repeat" not in spec.settings


def test_report_html_is_checked_before_the_run(models, tmp_path, capsys):
    code, _, err = cli(capsys, "run", f"{models}:loop", "--report-html", tmp_path)
    assert code == 2
    one_error_line(err, "--report-html", "name an .html file")
    (tmp_path / "page.html").mkdir()
    code, _, err = cli(capsys, "run", f"{models}:loop", "--report-html", tmp_path / "page.html")
    assert code == 2
    one_error_line(err, "--report-html", "is a directory")


def test_workers_auto_sizes_a_rate_run_by_its_peak_target():
    small = rate_workers_choice({"load": [{"rate": 1000, "for": "1s"}, {"ramp": [1000, 5000], "for": "1s"}]},
                                cores=8)
    assert small.workers == 1 and "peak target of 5,000 events/s" in small.reason
    big = rate_workers_choice({"rate": 1_000_000.0}, cores=8)
    assert big.workers == 8 and "so all 8 cores" in big.reason
    assert rate_workers_choice({}, cores=8) is None


def test_submit_passes_the_rate_on():
    args = argparse.Namespace(rate="7000", realtime=None, param=None)
    spec = parse_spec_text("model: m:f\n", environ={})
    assert "--rate 7000" in build_entrypoint("job.yaml", spec, args)


# -- progress: target vs achieved on a terminal -------------------------------------------------------


def test_progress_line_shows_target_and_achieved_on_a_terminal():
    stream = io.StringIO()
    printer = ProgressPrinter(stream, Masker(), tty=True, interval=0.0)
    printer(Progress(ticks_done=10, ticks_total=None, total_events=20_000, events_by_sink={"events": 20_000},
                     elapsed_s=1.5, target_rate=20_000.0, achieved_rate=15_000.0))
    printer(Progress(ticks_done=20, ticks_total=None, total_events=40_000, events_by_sink={"events": 40_000},
                     elapsed_s=2.5, target_rate=20_000.0, achieved_rate=19_900.0))
    printer.finish()
    text = stream.getvalue()
    assert text.startswith("\rtick 10 (unbounded) | 20,000 events | ")
    assert "target 20,000/s, achieved 15,000/s (shortfall 25%)" in text
    assert ("\rtick 20 (unbounded) | 40,000 events | 16,000 events/s | target 20,000/s, achieved 19,900/s |"
            in text)
    assert text.endswith("\n")
    # a plain run shows no rate; the first second of a paced run has no achieved rate yet
    assert "target" not in format_progress(Progress(1, 10, 5, {}, 1.0))
    assert "target 500/s, achieved -" in format_progress(Progress(1, None, 5, {}, 0.5, target_rate=500.0))


def test_on_a_ramp_the_shortfall_compares_with_the_last_seconds_target():
    """A ramp from 0 to 20,000/s over 2 s, achieved exactly on target: the target now (20,000/s) is ahead
    of the last second's average (15,000/s), which is what the achieved rate must be compared with."""
    stream = io.StringIO()
    printer = ProgressPrinter(stream, Masker(), tty=True, interval=0.0)
    for k in range(1, 9):
        now = 0.25 * k
        printer(Progress(k, None, 0, {}, now, target_rate=10_000.0 * now,
                         achieved_rate=None if now < 1 else 10_000.0 * (now - 0.5)))
    assert "target 20,000/s, achieved 15,000/s" in stream.getvalue()
    assert "shortfall" not in stream.getvalue()
    behind = ProgressPrinter(io.StringIO(), Masker(), tty=True, interval=0.0)  # half the ramp's events
    for k in range(1, 9):
        now = 0.25 * k
        behind(Progress(k, None, 0, {}, now, target_rate=10_000.0 * now,
                        achieved_rate=None if now < 1 else 5_000.0 * (now - 0.5)))
    assert behind.stream.getvalue().endswith("target 20,000/s, achieved 7,500/s (shortfall 50%)")


def test_progress_of_a_real_load_run_on_a_fake_terminal():
    class Plain(SubjectFactory):
        def create(self, index):
            return index

    gen = DataOnlineGenerator(["a"], "a", Plain(), 5000, 1000, None, seed=1)
    gen.add_transition("x", "a", "a", 10.0)
    stream = io.StringIO()
    printer = ProgressPrinter(stream, Masker(), tty=True, interval=0.0)
    result = gen.start(load_shape=[{"rate": 4000, "for": "1.5s"}], progress=printer)
    printer.finish()
    redraws = stream.getvalue().split("\r")[1:]
    assert len(redraws) >= 3 and all("target 4,000/s, achieved" in line for line in redraws)
    assert any("achieved -" not in line for line in redraws)
    assert result.rate.steps[0]["target_events_per_s"] == pytest.approx(4000)


# -- real runs ------------------------------------------------------------------------------------------


def test_a_rate_run_reports_target_achieved_and_shortfall(models, tmp_path):
    """--rate 3000 on 40 ticks of 100 events: about 1.3 s paced; summary, report and page say so."""
    report, page = tmp_path / "r.json", tmp_path / "r.html"
    proc = dd("run", f"{models}:loop", "--rate", "3000", "--report", report, "--report-html", page,
              "--progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = strict_json(report.read_text())
    rate = data["rate"]
    assert rate["steps"][0]["rate"] == 3000.0 and rate["steps"][0]["for_s"] is None  # unbounded step
    assert rate["steps"][0]["target_events_per_s"] == pytest.approx(3000)
    assert rate["achieved_events"] == data["total_events"] > 0
    assert 0.0 <= rate["shortfall"] <= 1.0
    assert data["result"]["rate"]["per_second"] and data["result"]["ticks"] == 40
    assert "target rate:" in proc.stderr and "rate 3,000" in proc.stderr
    assert "target events/s  achieved events/s  achieved / target" in proc.stderr
    assert "target 3,000/s, achieved" in proc.stderr  # the --progress lines
    assert "ms per tick at speed" not in proc.stderr
    html = page.read_text()
    assert "Target and achieved event rate" in html and html.count("<svg") == 2
    assert f"doge-dist: HTML report written to {page}" in proc.stderr


def test_a_load_spec_lists_every_step_in_summary_and_report(models, tmp_path):
    spec = write(tmp_path, f"""
        model: {models}:loop
        ticks: unbounded
        load:
          - {{rate: 2000, for: 1s}}
          - {{ramp: [2000, 6000], for: 1s}}
    """)
    report = tmp_path / "r.json"
    proc = dd("run", spec, "--report", report, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rate = strict_json(report.read_text())["rate"]
    assert [step["step"] for step in rate["steps"]] == [1, 2]
    assert rate["steps"][1]["ramp"] == [2000.0, 6000.0]
    assert rate["steps"][1]["target_events_per_s"] == pytest.approx(4000, rel=0.01)
    assert rate["target_events"] == pytest.approx(6000, rel=0.01)
    lines = proc.stderr.splitlines()
    assert any(line.split()[:3] == ["1", "rate", "2,000"] for line in lines)
    assert any(line.split()[:5] == ["2", "ramp", "2,000", "->", "6,000"] for line in lines)


def test_the_example_jobs_run_and_draw_their_pages(tmp_path):
    """The two example jobs as the README runs them (the load test is 5 s of wall clock)."""
    out = tmp_path / "out"
    proc = dd("run", JOBS / "banking-dynamics.yaml", "--report-html", out / "dyn.html", "--report",
              out / "dyn.json", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = strict_json((out / "dyn.json").read_text())
    assert data["result"]["created"] > data["result"]["subjects"] and data["result"]["departed"] > 0
    assert sorted(p.name for p in out.glob("ev-*.jsonl")) == [f"ev-{k}.jsonl" for k in range(4)]
    lines = sum(len(p.read_text().splitlines()) for p in out.glob("ev-*.jsonl"))
    assert lines == data["total_events"]
    assert (out / "dyn.html").read_text().count("<svg") == 2
    proc = dd("run", JOBS / "load-test.yaml", "--report", out / "load.json", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rate = strict_json((out / "load.json").read_text())["rate"]
    assert [step["step"] for step in rate["steps"]] == [1, 2, 3]
    assert rate["achieved_events"] >= 0.5 * rate["target_events"]
