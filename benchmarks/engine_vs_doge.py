"""Engine benchmark: doge-dist vs doge-datagen 1.0.4 on the banking model, in one run.

    python benchmarks/engine_vs_doge.py            # full run (about 2 minutes)
    python benchmarks/engine_vs_doge.py --quick    # smaller populations

Each measurement runs in a fresh subprocess so its peak RSS is its own. Both engines use the
same banking model (doge-datagen's example, with its callbacks) and a counting sink; the timed
span is ``start()``, subject creation included.
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

TARGET_RATIO = 60.0
TARGET_1M_SUBJECT_TICKS = 100e6
TARGET_1M_EVENTS = 400_000
TARGET_RSS_MB = 500


def _child_doge(subjects: int, ticks: int) -> dict:
    import logging

    from benchmarks._peer import ensure_doge_datagen

    sys.path.insert(0, str(ensure_doge_datagen()))
    from doge_datagen import DataOnlineGenerator, EventSink, SubjectFactory  # type: ignore

    logging.disable(logging.INFO)
    from random import randrange

    class User:
        def __init__(self, user_id, balance):
            self.user_id, self.balance, self.loan_balance, self.last_payment = user_id, balance, 0, 0

        def __hash__(self):
            return self.user_id

    class UserFactory(SubjectFactory):
        def __init__(self):
            self.current_id = 0

        def create(self):
            user = User(self.current_id, randrange(0, 1000))
            self.current_id += 1
            return user

    class Counting(EventSink):
        def __init__(self):
            self.count = 0

        def collect(self, timestamp, subject, transition):
            self.count += 1

    def income(s, t):
        s.balance += randrange(500, 2000)
        return True

    def spending(s, t):
        payment = randrange(10, 100)
        if payment > s.balance:
            return False
        s.balance -= payment
        s.last_payment = payment
        return True

    def take_loan(s, t):
        s.loan_balance += 10000
        s.balance += 10000
        return True

    sink = Counting()
    gen = DataOnlineGenerator(["offline", "online", "loan_screen"], "offline", UserFactory(), subjects, 60000,
                              ticks)
    gen.add_transition("income", "offline", "offline", 0.01, action_callback=income, event_sinks=[sink])
    gen.add_transition("spending", "offline", "offline", 0.1, action_callback=spending, event_sinks=[sink])
    gen.add_transition("login", "offline", "online", 0.1, event_sinks=[sink])
    gen.add_transition("logout", "online", "offline", 70, event_sinks=[sink])
    gen.add_transition("open_loan_screen", "online", "loan_screen", 30, event_sinks=[sink])
    gen.add_transition("close_loan_screen", "loan_screen", "online", 40, event_sinks=[sink])
    gen.add_transition("take_loan", "loan_screen", "online", 10, action_callback=take_loan, event_sinks=[sink])
    started = time.perf_counter()
    gen.start()
    return {"elapsed_s": time.perf_counter() - started, "events": sink.count}


def _child_dist(subjects: int, ticks: int, seed: int | None, fast_random: bool) -> dict:
    from doge_dist import CountingSink
    from examples.banking import build_generator

    sink = CountingSink()
    gen = build_generator(sink, subjects=subjects, ticks=ticks, seed=seed, fast_random=fast_random)
    started = time.perf_counter()
    result = gen.start()
    elapsed = time.perf_counter() - started
    assert result.total_events == sink.count
    return {"elapsed_s": elapsed, "events": sink.count}


def child(args: argparse.Namespace) -> None:
    engine, subjects, ticks, seed = args.child
    seed = None if seed == "none" else int(seed)
    cpu0 = time.process_time()
    if engine == "doge-datagen":
        out = _child_doge(int(subjects), int(ticks))
    else:
        out = _child_dist(int(subjects), int(ticks), seed, fast_random=engine.endswith("+rand"))
    out["cpu_s"] = time.process_time() - cpu0
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def measure(engine: str, subjects: int, ticks: int, seed: int | None) -> dict:
    cmd = [sys.executable, __file__, "--child", engine, str(subjects), str(ticks),
           "none" if seed is None else str(seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{engine} run failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out.update(engine=engine, subjects=subjects, ticks=ticks, seed=seed)
    out["subject_ticks_per_s"] = subjects * ticks / out["elapsed_s"]
    out["events_per_s"] = out["events"] / out["elapsed_s"]
    return out


def fmt_row(r: dict) -> str:
    seed = "-" if r["seed"] is None else str(r["seed"])
    return (f"| {r['engine']:<14} | {r['subjects']:>9,} x {r['ticks']:,} | {seed:>4} | {r['elapsed_s']:8.3f} "
            f"| {r['subject_ticks_per_s'] / 1e6:9.1f} M | {r['events_per_s']:11,.0f} | {r['events']:>10,} "
            f"| {r['peak_rss_mb']:6.0f} MB |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller populations (a smoke run)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per configuration (best is kept)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true",
                        help="profile one in-process doge-dist run at the small size with pyinstrument")
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.profile:
        from pyinstrument import Profiler

        from doge_dist import CountingSink
        from examples.banking import build_generator

        gen = build_generator(CountingSink(), subjects=10_000, ticks=1_000)
        with Profiler(interval=0.0005) as profiler:
            gen.start()
        print(profiler.output_text(unicode=True, color=False))
        return
    small = (10_000, 1_000) if not args.quick else (2_000, 500)
    large = (1_000_000, 1_000) if not args.quick else (100_000, 200)

    def best(engine, n, t, seed, repeat):
        runs = [measure(engine, n, t, seed) for _ in range(repeat)]
        return min(runs, key=lambda r: r["elapsed_s"])

    print(f"# engine_vs_doge: {platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, best of {args.repeat}")
    rows = [
        best("doge-datagen", *small, None, args.repeat),
        best("doge-dist", *small, None, args.repeat),
        best("doge-dist", *small, 42, args.repeat),
        best("doge-dist+rand", *small, 42, args.repeat),
        best("doge-dist", *large, None, max(1, args.repeat - 1)),
        best("doge-dist", *large, 42, 1),
        best("doge-dist+rand", *large, 42, 1),
    ]
    print("| engine         | subjects x ticks     | seed | time (s) | subject-ticks/s | events/s    | events     "
          "| peak RSS  |")
    print("|----------------|----------------------|------|----------|-----------------|-------------|------------"
          "|-----------|")
    for r in rows:
        print(fmt_row(r))
    ratio = rows[1]["subject_ticks_per_s"] / rows[0]["subject_ticks_per_s"]
    ratio_seeded = rows[2]["subject_ticks_per_s"] / rows[0]["subject_ticks_per_s"]
    ratio_rand = rows[3]["subject_ticks_per_s"] / rows[0]["subject_ticks_per_s"]
    big, big_seeded, big_rand = rows[4], rows[5], rows[6]
    print()
    print(f"ratio at {small[0]:,} x {small[1]:,}: {ratio:.1f}x doge-datagen unseeded, {ratio_seeded:.1f}x seeded "
          f"with Python's random, {ratio_rand:.1f}x seeded with doge_dist.rand (target >= {TARGET_RATIO:.0f}x)")
    print(f"{large[0]:,} x {large[1]:,}: {big['subject_ticks_per_s'] / 1e6:.0f} M subject-ticks/s "
          f"(target >= {TARGET_1M_SUBJECT_TICKS / 1e6:.0f} M), {big['events_per_s']:,.0f} events/s "
          f"(target >= {TARGET_1M_EVENTS:,}), peak RSS {big['peak_rss_mb']:.0f} MB (target <= {TARGET_RSS_MB}); "
          f"seeded: {big_seeded['subject_ticks_per_s'] / 1e6:.0f} M subject-ticks/s, "
          f"{big_seeded['events_per_s']:,.0f} events/s; seeded with doge_dist.rand: "
          f"{big_rand['subject_ticks_per_s'] / 1e6:.0f} M subject-ticks/s, {big_rand['events_per_s']:,.0f} events/s")
    print("engines: doge-dist+rand = callbacks and factory draw from doge_dist.rand instead of Python's random")


if __name__ == "__main__":
    main()
