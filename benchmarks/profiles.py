"""Profile cost: the banking model with and without a daily profile on every transition, in one run.

    python benchmarks/profiles.py                                  # 500,000 subjects x 1,000 ticks
    python benchmarks/profiles.py --subjects 50000 --ticks 200 --tick-ms 432000   # a quick check over a day

Both variants run the same banking model (``examples/banking.py``: its factory and callbacks, a
counting sink, one process, seed 7 by default) in fresh subprocesses, alternately, best of
``--repeat``. The profiled variant puts one daily profile on every transition, normalised to mean 1
over the run's ticks so that the expected number of events stays comparable. Where a state's
total would go over 100% at the profile's peak (``online``: 70% + 30%), that state's base
probabilities are scaled down so its peak total is 100%: the ratio between its transitions, hence
the events per session, is unchanged. The target: the profiled run reaches >= 0.7x the events/s of
the plain one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

__all__ = ["build_banking", "daily_shape", "main"]

TARGET_RATIO = 0.7
# a working day in UTC: quiet nights, a morning, a busy evening
RAW_SHAPE = [0.2] * 6 + [0.6, 1.0, 1.2, 1.0, 0.9, 1.0, 1.1, 1.0, 0.9, 1.0, 1.2, 1.5, 1.8, 2.0, 1.8, 1.2, 0.6, 0.3]

TRANSITIONS = [  # (trigger, from, to, percent, callback name) as in examples/banking.py
    ("income", "offline", "offline", 0.01, "income"),
    ("spending", "offline", "offline", 0.1, "spending"),
    ("login", "offline", "online", 0.1, None),
    ("logout", "online", "offline", 70, None),
    ("open_loan_screen", "online", "loan_screen", 30, None),
    ("close_loan_screen", "loan_screen", "online", 40, None),
    ("take_loan", "loan_screen", "online", 10, "take_loan"),
]


def daily_shape(timestamp_start: int, tick_ms: int, ticks: int):
    """RAW_SHAPE as a daily profile with mean 1 over the run's ticks."""
    import numpy as np

    from doge_dist.profiles import daily

    stamps = timestamp_start + np.arange(ticks, dtype=np.int64) * tick_ms
    mean = float(daily(RAW_SHAPE).values(stamps).mean())
    return daily([m / mean for m in RAW_SHAPE])


def build_banking(sink, *, subjects: int, ticks: int, seed: int | None, profiled: bool, fast_random: bool,
                  tick_ms: int = 60_000, timestamp_start: int = 0):
    """The banking model of examples/banking.py, with the daily profile on every transition if asked."""
    import functools

    from doge_dist import DataOnlineGenerator
    from doge_dist import rand as doge_rand
    from examples.banking import UserFactory, income_callback, spending_callback, take_loan_callback

    if fast_random:
        callbacks = {"income": functools.partial(income_callback, draw=doge_rand.randrange),
                     "spending": functools.partial(spending_callback, draw=doge_rand.randrange)}
    else:
        callbacks = {"income": income_callback, "spending": spending_callback}
    callbacks["take_loan"] = take_loan_callback
    gen = DataOnlineGenerator(["offline", "online", "loan_screen"], "offline", UserFactory(fast_random),
                              subjects, tick_ms, ticks, timestamp_start, seed=seed,
                              reseed_python_random=not fast_random)
    profile = daily_shape(timestamp_start, tick_ms, ticks) if profiled else None
    scale = {}
    for state in ("offline", "online", "loan_screen"):
        total = sum(p for _, src, _, p, _ in TRANSITIONS if src == state)
        peak = total * (profile.maximum() if profile is not None else 1.0)
        scale[state] = min(1.0, 100.0 / peak)
    for trigger, src, dst, percent, callback in TRANSITIONS:
        gen.add_transition(trigger, src, dst, percent * scale[src], event_sinks=[sink],
                           action_callback=callbacks.get(callback), profile=profile)
    return gen


def child(variant: str, subjects: int, ticks: int, tick_ms: int, seed: int | None, fast_random: bool) -> dict:
    from doge_dist import CountingSink

    sink = CountingSink()
    gen = build_banking(sink, subjects=subjects, ticks=ticks, seed=seed, profiled=variant == "profiled",
                        fast_random=fast_random, tick_ms=tick_ms)
    started = time.perf_counter()
    result = gen.start()
    elapsed = time.perf_counter() - started
    if result.total_events != sink.count:
        raise SystemExit(f"counted {result.total_events} events, the sink got {sink.count}")
    return {"elapsed_s": elapsed, "events": sink.count, "by_trigger": result.events_by_trigger,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def measure(variant: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, "--subjects", str(args.subjects), "--ticks",
           str(args.ticks), "--tick-ms", str(args.tick_ms), "--seed", str(args.seed)] + (["--python-random"] if args.python_random else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{variant} run failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["variant"] = variant
    out["events_per_s"] = out["events"] / out["elapsed_s"]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=500_000)
    parser.add_argument("--ticks", type=int, default=1_000)
    parser.add_argument("--tick-ms", type=int, default=60_000,
                        help="tick length (the profile varies by hour of day: short runs need long ticks)")
    parser.add_argument("--seed", type=int, default=7, help="the run's seed (-1: unseeded)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant, alternating (best is kept)")
    parser.add_argument("--python-random", action="store_true",
                        help="callbacks draw from Python's random (reseeded per callback) instead of doge_dist.rand")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    seed = None if args.seed < 0 else args.seed
    if args.child:
        print(json.dumps(child(args.child, args.subjects, args.ticks, args.tick_ms, seed, not args.python_random)))
        return
    runs: dict[str, list[dict]] = {"plain": [], "profiled": []}
    for _ in range(args.repeat):
        for variant in runs:
            runs[variant].append(measure(variant, args))
    best = {variant: min(rs, key=lambda r: r["elapsed_s"]) for variant, rs in runs.items()}
    print(f"# profiles: banking model, {args.subjects:,} subjects x {args.ticks:,} ticks of {args.tick_ms / 1000:g} s "
          f"({args.ticks * args.tick_ms / 3_600_000:.1f} h), "
          f"seed {seed if seed is not None else '-'}, {'Python random' if args.python_random else 'doge_dist.rand'} "
          f"in callbacks, counting sink, one process; best of {args.repeat}; "
          f"{platform.python_version()}, {os.cpu_count()} CPUs")
    print("| variant                           | time (s) | events     | events/s    | peak RSS |")
    print("|-----------------------------------|----------|------------|-------------|----------|")
    labels = {"plain": "no profiles", "profiled": "daily profile on every transition"}
    for variant, r in best.items():
        print(f"| {labels[variant]:<33} | {r['elapsed_s']:8.2f} | {r['events']:>10,} | {r['events_per_s']:11,.0f} "
              f"| {r['peak_rss_mb']:5.0f} MB |")
    ratio = best["profiled"]["events_per_s"] / best["plain"]["events_per_s"]
    events_ratio = best["profiled"]["events"] / best["plain"]["events"]
    verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
    print(f"\nprofiled / plain events/s: {ratio:.2f}x ({verdict} the target >= {TARGET_RATIO}x); "
          f"events profiled / plain: {events_ratio:.3f}")
    print("events by trigger (plain):   ", best["plain"]["by_trigger"])
    print("events by trigger (profiled):", best["profiled"]["by_trigger"])


if __name__ == "__main__":
    main()
