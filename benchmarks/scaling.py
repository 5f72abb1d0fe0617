"""Scaling benchmark: the banking model in-process, on Ray with 1 worker and with 2 workers, in one run.

    python benchmarks/scaling.py                      # 1,000,000 subjects x 1,000 ticks
    python benchmarks/scaling.py --subjects 100000    # a quicker run

Ray is started once before the measurements (about 3 s, not counted). "Cold" Ray runs start
their actor processes inside ``start()`` (the default); "warm" runs reuse actors parked by a tiny
``start(keep_workers=True)`` run. Each measured span is the whole ``start()`` call: actor start-up
when cold, subject creation, ticks, closing sinks. A counting sink
keeps the sink cost out, so the figures show the engine and the sharding overhead.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_SPEEDUP_2 = 1.6


def run(subjects: int, ticks: int, seed: int | None, workers: int, backend: str, fast_random: bool,
        warm: bool = False) -> dict:
    from examples.banking import build_generator

    gen = build_generator("count", subjects=subjects, ticks=ticks, seed=seed, fast_random=fast_random)
    started = time.perf_counter()
    result = gen.start(workers=workers, backend=backend, keep_workers=warm)
    wall = time.perf_counter() - started
    slowest = max(s.create_s + s.engine_s for s in result.shards)
    label = "in-process" if backend == "local" else f"Ray, {workers} worker(s), {'warm' if warm else 'cold'}"
    return {"label": label,
            "wall_s": wall, "events": result.total_events, "shard_s": slowest,
            "counts": result.events_by_trigger}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=1_000_000)
    parser.add_argument("--ticks", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--python-random", action="store_true",
                        help="callbacks draw from Python's random (reseeded per callback) instead of doge_dist.rand")
    args = parser.parse_args()
    import ray

    os.environ["PYTHONPATH"] = str(ROOT)  # inherited by Ray's workers (faster than a runtime_env)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    fast = not args.python_random
    print(f"# scaling: banking model, {args.subjects:,} subjects x {args.ticks:,} ticks, seed {args.seed}, "
          f"{'doge_dist.rand' if fast else 'Python random'} in callbacks, counting sink; "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, ray {ray.__version__}")
    rows = [run(args.subjects, args.ticks, args.seed, 1, "local", fast),
            run(args.subjects, args.ticks, args.seed, 2, "ray", fast)]
    # keep_workers=True: a tiny run starts the actors, the measured runs reuse them
    run(min(args.subjects, 10_000), 10, args.seed, 1, "ray", fast, warm=True)
    rows.append(run(args.subjects, args.ticks, args.seed, 1, "ray", fast, warm=True))
    from doge_dist import release_workers

    release_workers()
    run(min(args.subjects, 10_000), 10, args.seed, 2, "ray", fast, warm=True)
    rows.append(run(args.subjects, args.ticks, args.seed, 2, "ray", fast, warm=True))
    release_workers()
    ray.shutdown()
    base = rows[0]["wall_s"]
    print("| run                       | time (s) | slowest shard (s) | subject-ticks/s | events/s    | speedup |")
    print("|---------------------------|----------|-------------------|-----------------|-------------|---------|")
    for r in rows:
        st = args.subjects * args.ticks / r["wall_s"]
        print(f"| {r['label']:<25} | {r['wall_s']:8.2f} | {r['shard_s']:17.2f} | {st / 1e6:13.1f} M "
              f"| {r['events'] / r['wall_s']:11,.0f} | {base / r['wall_s']:6.2f}x |")
    same = all(r["counts"] == rows[0]["counts"] for r in rows)
    print(f"\nsame per-trigger counts in all three runs: {same}")
    print(f"2 workers vs in-process: {base / rows[1]['wall_s']:.2f}x cold (actor processes started by the run), "
          f"{base / rows[3]['wall_s']:.2f}x warm (start(keep_workers=True) reusing actors) "
          f"(target >= {TARGET_SPEEDUP_2}x)")


if __name__ == "__main__":
    main()
