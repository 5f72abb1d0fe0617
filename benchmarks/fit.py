"""Measure ``doge-dist fit`` throughput (events/s on one core) and peak memory on a JSON Lines log.

Run ``python benchmarks/fit.py`` (default 10,000,000 events; ``--events 1000000`` for a quick
check). The script first generates the log with doge-dist itself: the banking model without
callbacks as a YAML model, 100 events per subject on average, written by ``JsonLinesSink`` with
the YAML model's event records ``{timestamp, subject, event, from_state, to_state}`` (about 100
bytes a line). Then, each in a fresh process pinned to one CPU (``sched_setaffinity``):

- ``read only``: pyarrow's streaming JSON reader over the three fields fit uses, nothing else;
- ``fit``: ``fit_log`` (read + estimate, as ``doge-dist fit`` does), without and with
  ``--profile daily``;
- ``doge-dist fit`` on the command line: wall time including Python's start and imports.

Each in-process row is the best of ``--repeat`` runs (default 3); peak RSS is the largest
``ru_maxrss`` of those runs. Install the learn extra first: ``pip install -e '.[learn]'``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

__all__ = ["BANKING", "make_log", "measure", "main"]

BANKING = """\
format: doge-dist/model-1
tick_ms: 60000
states: [offline, online, loan_screen]
initial_state: offline
transitions:
  - {trigger: income, from: offline, to: offline, probability: 0.01}
  - {trigger: spending, from: offline, to: offline, probability: 0.1}
  - {trigger: login, from: offline, to: online, probability: 0.1}
  - {trigger: logout, from: online, to: offline, probability: 70}
  - {trigger: open_loan_screen, from: online, to: loan_screen, probability: 30}
  - {trigger: close_loan_screen, from: loan_screen, to: online, probability: 40}
  - {trigger: take_loan, from: loan_screen, to: online, probability: 10}
"""
EVENTS_PER_SUBJECT_TICK = 0.00395  # the banking chain's stationary event rate, measured
START_MS = 1_704_067_200_000

_CHILD = """
import json, os, resource, sys, time
os.sched_setaffinity(0, {int(sys.argv[3])})
import pyarrow as pa
pa.set_cpu_count(1)
from doge_dist.learn import FitOptions, LogFields, fit_log, read_log
fields = LogFields("subject", "event", "timestamp")
mode, path = sys.argv[1], sys.argv[2]
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
if mode == "read":
    events = sum(len(b) for b in read_log([path], fields))
else:
    events = fit_log(read_log([path], fields), FitOptions(60000, profile=mode)).events
seconds = time.perf_counter() - started
print(json.dumps({"events": events, "seconds": seconds, "rss_before_kb": rss_before,
                  "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def make_log(path: Path, events: int, seed: int = 1) -> int:
    """Generate about ``events`` banking events as JSON Lines; return the exact count."""
    from doge_dist import load_model

    subjects = max(events // 100, 1)
    ticks = max(int(events / (subjects * EVENTS_PER_SUBJECT_TICK)), 2)
    model = path.with_suffix(".model.yaml")
    model.write_text(BANKING)
    gen = load_model(model, sinks=[{"type": "jsonl", "path": str(path)}], subjects_num=subjects, ticks_num=ticks,
                     seed=seed, timestamp_start=START_MS)
    return gen.start().total_events


def measure(mode: str, path: Path, cpu: int) -> dict:
    """One run in a fresh process pinned to ``cpu``: events, seconds, RSS before the work and peak RSS."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _CHILD, mode, str(path), str(cpu)], capture_output=True,
                         text=True, env=env, check=True)
    return json.loads(out.stdout)


def measure_cli(path: Path, cpu: int) -> tuple[float, int]:
    """``doge-dist fit`` end to end on one CPU: wall seconds and peak RSS (kB) of the process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = path.with_suffix(".fitted.yaml")
    started = time.perf_counter()
    subprocess.run(["taskset", "-c", str(cpu), sys.executable, "-m", "doge_dist", "fit", str(path), "--subject",
                    "subject", "--event", "event", "--time", "timestamp", "--tick-ms", "60000", "-o", str(out),
                    "--quiet"], env=env, check=True, capture_output=True)
    seconds = time.perf_counter() - started
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000, help="events in the generated log")
    parser.add_argument("--log", type=Path, help="reuse this log (from an earlier --keep) instead of generating")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where to write the log")
    parser.add_argument("--keep", action="store_true", help="keep the generated log")
    parser.add_argument("--repeat", type=int, default=3, help="runs per row (best time is reported)")
    parser.add_argument("--cpu", type=int, default=None, help="the CPU to pin to (default: the last one)")
    args = parser.parse_args(argv)
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))

    path = args.log
    if path is None:
        path = args.dir / f"doge-fit-bench-{args.events}.jsonl"
        print(f"generating about {args.events:,} events into {path} ...", flush=True)
        started = time.perf_counter()
        count = make_log(path, args.events)
        print(f"  {count:,} events, {path.stat().st_size / 1e6:,.0f} MB, in {time.perf_counter() - started:.1f} s")
    size_mb = path.stat().st_size / 1e6
    rows = []
    try:
        for label, mode in (("read only (pyarrow, 3 fields)", "read"), ("fit", "none"),
                            ("fit --profile daily", "daily")):
            runs = [measure(mode, path, cpu) for _ in range(args.repeat)]
            best = min(r["seconds"] for r in runs)
            events = runs[0]["events"]
            rows.append((label, events, best, events / best, max(r["peak_rss_kb"] for r in runs) / 1024,
                         min(r["rss_before_kb"] for r in runs) / 1024))
        cli_s, cli_rss = measure_cli(path, cpu)
    finally:
        if args.log is None and not args.keep:
            path.unlink(missing_ok=True)
            path.with_suffix(".model.yaml").unlink(missing_ok=True)
        path.with_suffix(".fitted.yaml").unlink(missing_ok=True)

    print(f"\nlog: {rows[0][1]:,} events, {size_mb:,.0f} MB of JSON Lines; one CPU (#{cpu}); best of {args.repeat}")
    print("| run | events | time | events/s | peak RSS | RSS after imports |")
    print("|---|---|---|---|---|---|")
    for label, events, seconds, rate, peak, before in rows:
        print(f"| {label} | {events:,} | {seconds:.2f} s | {rate:,.0f} | {peak:,.0f} MB | {before:,.0f} MB |")
    print(f"| `doge-dist fit` command (start-up and imports included) | {rows[0][1]:,} | {cli_s:.2f} s | "
          f"{rows[0][1] / cli_s:,.0f} | {cli_rss / 1024:,.0f} MB | - |")
    print("\ntarget: fit >= 1,000,000 events/s on one core")


if __name__ == "__main__":
    main()
