"""Rate accuracy: a run paced at a target rate in one process and on 2 Ray workers, second by second.

    python benchmarks/rate.py                                   # 10 s at 50,000 events/s
    python benchmarks/rate.py --rate 20000 --seconds 3 --subjects 50000   # a quick check

Each run is the banking model (``examples/banking.py``, counting sink, unbounded ticks) started with
``load_shape=[{"rate": R, "for": "<seconds>s"}]``, so it ends when the shape does. Ray is started
once before the measurements (not counted); the 2-worker run starts its actors inside ``start()``.
The table shows each second's target and achieved events from the run's ``RateReport``; the summary
gives, per run, the worst second after the first two (the issue's tolerance: within 5% of R in
every one-second interval after the first two seconds) and the shortfall.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

__all__ = ["run", "worst_second", "main"]

TOLERANCE = 0.05
SKIP_SECONDS = 2


def run(rate: float, seconds: float, subjects: int, workers: int, seed: int | None) -> dict:
    from examples.banking import build_generator

    gen = build_generator("count", subjects=subjects, ticks=None, seed=seed, fast_random=True)
    started = time.perf_counter()
    result = gen.start(workers=workers, backend="local" if workers == 1 else "ray",
                       load_shape=[{"rate": rate, "for": f"{seconds}s"}])
    wall = time.perf_counter() - started
    return {"label": "1 process" if workers == 1 else f"{workers} Ray workers", "wall_s": wall,
            "result": result, "report": result.rate}


def worst_second(report, skip: int = SKIP_SECONDS) -> tuple[int | None, float]:
    """(second, achieved / target - 1) of the whole second after the first ``skip`` furthest from its
    target (the last second is left out when the run ended more than 50 ms before its end)."""
    rows = [row for row in report.per_second[skip:] if row["target"] > 0]
    whole = [row for row in rows if row["second"] + 1 <= _end(report) + 0.05]
    if not whole:
        return None, 0.0
    row = max(whole, key=lambda r: abs(r["achieved"] / r["target"] - 1))
    return int(row["second"]), row["achieved"] / row["target"] - 1


def _end(report) -> float:
    return sum(step["seconds"] for step in report.steps)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50_000, help="target events per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--subjects", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7, help="the run's seed (-1: unseeded)")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers of the distributed run")
    args = parser.parse_args(argv)
    seed = None if args.seed < 0 else args.seed
    import ray

    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        runs = [run(args.rate, args.seconds, args.subjects, 1, seed),
                run(args.rate, args.seconds, args.subjects, args.workers, seed)]
    finally:
        ray.shutdown()
    print(f"# rate: banking model, {args.subjects:,} subjects, target {args.rate:,.0f} events/s for "
          f"{args.seconds:g} s, counting sink; {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"ray {ray.__version__}")
    print("| second | target    |" + "".join(f" {r['label']:<14} | ratio  |" for r in runs))
    print("|--------|-----------|" + "----------------|--------|" * len(runs))
    seconds = max(len(r["report"].per_second) for r in runs)
    for k in range(seconds):
        target = next((r["report"].per_second[k]["target"] for r in runs if k < len(r["report"].per_second)), 0.0)
        cells = []
        for r in runs:
            rows = r["report"].per_second
            if k < len(rows):
                achieved = rows[k]["achieved"]
                ratio = f"{achieved / rows[k]['target']:.3f}" if rows[k]["target"] > 0 else "-"
                cells.append(f" {achieved:>14,.0f} | {ratio:>6} |")
            else:
                cells.append(f" {'':>14} | {'':>6} |")
        print(f"| {k:>6} | {target:>9,.0f} |" + "".join(cells))
    print()
    for r in runs:
        report, result = r["report"], r["result"]
        second, deviation = worst_second(report)
        within = "within" if abs(deviation) <= TOLERANCE else "OUTSIDE"
        where = f"second {second}: {deviation:+.1%}" if second is not None else "no whole second after the first two"
        print(f"{r['label']}: {result.total_events:,} events of {report.target_events:,.0f} targeted "
              f"(shortfall {report.shortfall:.1%}), {result.ticks:,} ticks, wall {r['wall_s']:.1f} s; worst second "
              f"after the first {SKIP_SECONDS}: {where} ({within} {TOLERANCE:.0%})")


if __name__ == "__main__":
    main()
