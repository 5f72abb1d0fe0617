"""Checkpoint benchmark: what checkpoints cost a run, what one checkpoint weighs, and how long recovery takes.

    python benchmarks/checkpoint.py                        # 1,000,000 subjects x 1,000 ticks (the figures)
    python benchmarks/checkpoint.py --subjects 100000      # a quicker check of the script

The banking model (``examples/banking.py``, callbacks on ``doge_dist.rand``, seed 7, counting sink), in
this process and on 2 Ray workers (Ray started once beforehand, not counted):

1. **Slowdown**: the whole ``start()`` without checkpoints and with ``checkpoint_every=100`` (best of
   ``--repeat``; the checkpointed run ends by waiting for its writers). Target: < 10%.
2. **Size and time of one checkpoint**: bytes per subject; the **pause** in the shard (sink positions,
   ``engine.snapshot()`` and the ``fork()`` of the writer, timed by a wrapper installed with
   ``worker_setup``) and the forked child's **write** time (``RunResult.checkpoint["written"]``: files
   written, flushed and fsynced while the shard goes on).
3. **Recovery**: on 2 Ray workers with ``max_restarts=1``, shard 1 kills its own process (SIGKILL) at the
   first event at or after a known tick; the extra wall time against the same run without the kill, for
   two checkpoint intervals and two shard sizes, next to the model
   ``actor start + restore + replay (ticks since the checkpoint) x (per-tick cost of one shard)``
   with each input measured: the actor start of this run, the time to read and unpickle the shard's
   parts of a checkpoint of this run (its last one: the same size as the one restored), and its engine
   time per tick.

Checkpoints go to a temporary folder under ``--dir`` (default: the system's temp folder), removed after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_SLOWDOWN = 0.10


class TimeCheckpointPauses:
    """``worker_setup``: wraps ``ShardWorker.checkpoint`` in the shard's process so that each pause (sink
    positions + snapshot + fork of the writer, or the inline write of the final checkpoint) is appended to
    ``path`` as a JSON line. Picklable (a plain class), so Ray workers run it too."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self) -> None:
        from doge_dist.run import _shard

        current = _shard.ShardWorker.checkpoint
        original = getattr(current, "_original", current)
        path = self.path

        def checkpoint(worker: Any, tick: int, *, inline: bool = False) -> None:
            started = time.perf_counter()
            original(worker, tick, inline=inline)
            pause = time.perf_counter() - started
            with open(path, "a") as fh:
                fh.write(json.dumps({"shard": worker.layout.index, "tick": tick, "inline": inline,
                                     "pause_s": pause}) + "\n")

        checkpoint._original = original  # type: ignore[attr-defined]
        _shard.ShardWorker.checkpoint = checkpoint


def untime_checkpoints() -> None:
    from doge_dist.run import _shard

    _shard.ShardWorker.checkpoint = getattr(_shard.ShardWorker.checkpoint, "_original",
                                            _shard.ShardWorker.checkpoint)


class KillShardAt:
    """A counting sink that, in shard ``shard``, SIGKILLs its own process at the first event at or after
    ``at_ms`` -- once (a marker file), so the replacement replays past that point."""

    def __init__(self, at_ms: int | None, marker: str, shard: int = 1) -> None:
        self.at_ms, self.marker, self.shard = at_ms, marker, shard
        self.name = "count"
        self.count = 0

    def collect(self, timestamp: int, subject: Any, transition: Any) -> None:
        self.count += 1
        if self.at_ms is not None and timestamp >= self.at_ms:
            from doge_dist import current_shard

            if current_shard().index == self.shard and not os.path.exists(self.marker):
                open(self.marker, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)

    def close(self) -> None:
        pass


class TreeMemory:
    """Samples, every 20 ms, the summed RSS of this process and of its forked checkpoint writers (pages they
    share are counted in each) and how many writers there are. Linux (/proc) only."""

    def __init__(self) -> None:
        self.peak_rss = 0
        self.peak_children = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeMemory:
        if os.path.isdir("/proc/self"):
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        me = os.getpid()
        with open("/proc/self/cmdline", "rb") as fh:
            command = fh.read()

        def read(path: str, mode: str = "r") -> Any:
            with open(path, mode) as fh:
                return fh.read()

        while not self._stop.wait(0.02):
            rss, count = int(read("/proc/self/statm").split()[1]) * page, 0
            for name in os.listdir("/proc"):  # forked writers: children running this same command line
                if not name.isdigit() or int(name) == me:
                    continue
                try:
                    if int(read(f"/proc/{name}/stat").rsplit(")", 1)[1].split()[1]) != me:
                        continue
                    if read(f"/proc/{name}/cmdline", "rb") != command:
                        continue  # e.g. Ray's own processes, started by ray.init() in this process
                    rss += int(read(f"/proc/{name}/statm").split()[1]) * page
                    count += 1
                except (OSError, ValueError, IndexError):
                    continue
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_children = max(self.peak_children, count)


def generator(subjects: int, ticks: int, sink: Any = "count") -> Any:
    from examples.banking import build_generator

    return build_generator(sink, subjects=subjects, ticks=ticks, seed=7, fast_random=True)


def timed_run(subjects: int, ticks: int, *, backend: str, workers: int, folder: str | None, every: int | None,
              sink: Any = "count", max_restarts: int = 0) -> dict[str, Any]:
    """One ``start()``: wall time, its result, and (with checkpoints) each pause in the shards."""
    kwargs: dict[str, Any] = {"workers": workers, "backend": backend, "max_restarts": max_restarts}
    pauses_file = None
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
        pauses_file = folder + ".pauses.jsonl"
        Path(pauses_file).unlink(missing_ok=True)
        kwargs.update(checkpoint_dir=folder, checkpoint_every=every,
                      worker_setup=TimeCheckpointPauses(pauses_file))
    gen = generator(subjects, ticks, sink)
    started = time.perf_counter()
    try:
        with TreeMemory() as memory:
            result = gen.start(**kwargs)
    finally:
        untime_checkpoints()
    wall = time.perf_counter() - started
    pauses = []
    if pauses_file is not None and os.path.exists(pauses_file):
        pauses = [json.loads(line) for line in Path(pauses_file).read_text().splitlines()]
    return {"wall_s": wall, "result": result, "pauses": pauses, "peak_rss": memory.peak_rss,
            "peak_children": memory.peak_children}


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return min(runs, key=lambda r: r["wall_s"])


def slowdown_rows(subjects: int, ticks: int, every: int, repeat: int, base: str) -> list[dict[str, Any]]:
    rows = []
    for label, backend, workers in (("in-process", "local", 1), ("Ray, 2 workers", "ray", 2)):
        plain, checked = [], []
        for i in range(repeat):  # interleaved, so a busy moment of the machine hits both
            plain.append(timed_run(subjects, ticks, backend=backend, workers=workers, folder=None, every=None))
            checked.append(timed_run(subjects, ticks, backend=backend, workers=workers,
                                     folder=f"{base}/{backend}-{i}", every=every))
        a, b = best(plain), best(checked)
        assert a["result"].events_by_trigger == b["result"].events_by_trigger, "checkpoints changed the events"
        written = b["result"].checkpoint["written"]
        full = [w for w in written if not w.get("delta")] or written
        deltas = [w for w in written if w.get("delta")]
        periodic = [p for p in b["pauses"] if not p["inline"]]
        timings = b["result"].timings
        rows.append({
            "label": label, "plain_s": a["wall_s"], "checked_s": b["wall_s"],
            "slowdown": b["wall_s"] / a["wall_s"] - 1.0, "checkpoints": len(written),
            "bytes": full[-1]["bytes"], "subjects": full[-1]["subjects"],
            "full_write_s": statistics.median(w["write_s"] for w in full),
            "delta_bytes": statistics.median(w["bytes"] for w in deltas) if deltas else 0,
            "delta_subjects": statistics.median(w["subjects"] for w in deltas) if deltas else 0,
            "write_s": statistics.median(w["write_s"] for w in deltas) if deltas else float("nan"),
            "pause_s": statistics.median(p["pause_s"] for p in periodic) if periodic else float("nan"),
            "pause_max_s": max((p["pause_s"] for p in periodic), default=float("nan")),
            "pause_share": sum(p["pause_s"] for p in periodic) / max(workers, 1) / timings["simulate_s"],
            "end_wait_s": timings["total_s"] - sum(timings.get(k, 0.0) for k in (
                "ray_start_s", "actor_start_s", "create_s", "simulate_s", "close_s")),
            "plain_rss": a["peak_rss"], "checked_rss": b["peak_rss"], "writers": b["peak_children"],
        })
    return rows


def restore_seconds(folder: str, tick: int, shard: int) -> float:
    """Read and unpickle one shard's parts of the checkpoint at ``tick`` (what a replacement does first)."""
    from doge_dist.run._checkpoint import load_manifest, read_part, read_shard, tick_dir

    started = time.perf_counter()
    manifest = load_manifest(f"{folder}/{tick_dir(tick)}")
    first, stop = manifest.data["shards"][shard]
    for part in range(first, stop):
        read_part(manifest, part)
    read_shard(manifest, shard)
    return time.perf_counter() - started


def recovery_rows(subjects: int, ticks: int, intervals: list[int], kill_tick: int, base: str) -> list[dict]:
    rows = []
    for size in (subjects, subjects // 2):
        for every in intervals:
            folder = f"{base}/recovery-{size}-{every}"
            marker = f"{folder}.killed"
            Path(marker).unlink(missing_ok=True)
            calm = timed_run(size, ticks, backend="ray", workers=2, folder=folder, every=every,
                             sink=KillShardAt(None, marker), max_restarts=1)
            hit = timed_run(size, ticks, backend="ray", workers=2, folder=folder, every=every,
                            sink=KillShardAt(kill_tick * 60_000, marker), max_restarts=1)
            result = hit["result"]
            assert os.path.exists(marker) and result.restarts == 1, result.notes
            assert result.events_by_trigger == calm["result"].events_by_trigger, "recovery changed the events"
            note = next(n for n in result.notes if "replayed from tick" in n)
            since = int(re.search(r"replayed from tick (\d+)", note).group(1))
            lost_at = int(re.search(r"lost in window (\d+)\.\.(\d+)", note).group(2)) + 1
            shard = calm["result"].shards[1]
            per_tick = shard.engine_s / ticks
            actor_start = calm["result"].timings.get("actor_start_s", 0.0)
            restore = restore_seconds(folder, result.checkpoint["latest_tick"], 1)  # same size as at `since`
            # the replacement replays since..t0 and then runs the lost window again
            replay = (lost_at - since) * per_tick
            rows.append({"shard_subjects": size // 2, "every": every, "since": since, "lost_at": lost_at,
                         "calm_s": calm["wall_s"], "hit_s": hit["wall_s"], "extra_s": hit["wall_s"] - calm["wall_s"],
                         "actor_start_s": actor_start, "restore_s": restore, "per_tick_ms": per_tick * 1000,
                         "replay_s": replay, "model_s": actor_start + restore + replay,
                         "duplicates": sum(result.possible_duplicates.values())})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=1_000_000)
    parser.add_argument("--ticks", type=int, default=1_000)
    parser.add_argument("--every", type=int, default=100, help="checkpoint interval of the slowdown runs")
    parser.add_argument("--repeat", type=int, default=2, help="runs per variant (best is kept)")
    parser.add_argument("--intervals", default="100,500", help="checkpoint intervals of the recovery runs")
    parser.add_argument("--kill-tick", type=int, default=None,
                        help="tick at which shard 1 is killed (default: 85%% of --ticks)")
    parser.add_argument("--dir", default=None, help="where the checkpoints are written (a temp folder inside)")
    parser.add_argument("--skip-recovery", action="store_true")
    args = parser.parse_args()
    import ray

    os.environ["PYTHONPATH"] = str(ROOT)  # inherited by Ray's workers
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    base = tempfile.mkdtemp(prefix="doge-checkpoint-bench-", dir=args.dir)
    print(f"# checkpoint: banking model, {args.subjects:,} subjects x {args.ticks:,} ticks, seed 7, "
          f"doge_dist.rand, counting sink; checkpoints in {base}; {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, ray {ray.__version__}")
    try:
        rows = slowdown_rows(args.subjects, args.ticks, args.every, args.repeat, base)
        print(f"\n## Run time without and with checkpoint_every={args.every} (best of {args.repeat})\n")
        print("| run | no checkpoints (s) | checkpoint every "
              f"{args.every} (s) | slowdown | checkpoints | full snapshot: bytes/subject, write (s) | delta: "
              "changed subjects, MB, write (s) | pause in the shard, median / max (ms) | pauses / simulation | "
              "end: waiting for writers (s) |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['label']} | {r['plain_s']:.2f} | {r['checked_s']:.2f} | {r['slowdown']:+.1%} | "
                  f"{r['checkpoints']} | {r['bytes'] / max(r['subjects'], 1):.1f}, {r['full_write_s']:.2f} | "
                  f"{r['delta_subjects']:,.0f}, {r['delta_bytes'] / 1e6:.1f}, {r['write_s']:.2f} | "
                  f"{r['pause_s'] * 1000:.1f} / {r['pause_max_s'] * 1000:.1f} | {r['pause_share']:.1%} | "
                  f"{r['end_wait_s']:.2f} |")
        local = rows[0]
        print(f"\nin-process memory (summed RSS of the process and its forked writers, shared pages counted in "
              f"each): {local['plain_rss'] / 1e6:,.0f} MB without checkpoints, {local['checked_rss'] / 1e6:,.0f} MB "
              f"with them; up to {local['writers']} writers in flight at once")
        worst = max(r["slowdown"] for r in rows)
        print(f"\nworst slowdown {worst:+.1%} (target < {TARGET_SLOWDOWN:.0%}); a full checkpoint of "
              f"{rows[0]['subjects']:,} subjects: {rows[0]['bytes'] / 1e6:.1f} MB written in "
              f"{rows[0]['full_write_s']:.2f} s; a delta ({rows[0]['delta_subjects']:,.0f} changed subjects) "
              f"{rows[0]['delta_bytes'] / 1e6:.1f} MB in {rows[0]['write_s']:.2f} s, by the forked child "
              f"(in-process) while the shard paused {rows[0]['pause_s'] * 1000:.1f} ms")
        if not args.skip_recovery:
            intervals = [int(x) for x in args.intervals.split(",")]
            kill_tick = args.kill_tick or int(args.ticks * 0.85)
            rec = recovery_rows(args.subjects, args.ticks, intervals, kill_tick, base)
            print(f"\n## Recovery: shard 1 of 2 SIGKILLed at tick {kill_tick}, max_restarts=1\n")
            print("| subjects per shard | checkpoint every | replayed from tick | lost in window ending | "
                  "run without kill (s) | with kill (s) | extra (s) | model: actor start + restore + replay "
                  "(s) | per-tick cost of one shard (ms) | possible duplicates |")
            print("|---|---|---|---|---|---|---|---|---|---|")
            for r in rec:
                print(f"| {r['shard_subjects']:,} | {r['every']} | {r['since']} | {r['lost_at']} | "
                      f"{r['calm_s']:.2f} | {r['hit_s']:.2f} | {r['extra_s']:.2f} | {r['actor_start_s']:.2f} + "
                      f"{r['restore_s']:.2f} + {r['replay_s']:.2f} = {r['model_s']:.2f} | "
                      f"{r['per_tick_ms']:.2f} | {r['duplicates']:,} |")
    finally:
        shutil.rmtree(base, ignore_errors=True)
        ray.shutdown()


if __name__ == "__main__":
    main()
