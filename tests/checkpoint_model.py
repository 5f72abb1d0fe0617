"""A small seeded model for the checkpoint, resume and recovery tests (shipped to Ray workers by value).

Subjects carry values drawn by the factory (``balance``) and by a callback (``drawn`` from
``doge_dist.rand``, ``noise`` from Python's ``random``), so the events' own fields show whether a
resumed or recovered run drew exactly what one long run draws.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

from doge_dist import DataOnlineGenerator, SubjectFactory, rand

TS0 = 1_700_000_000_000


@dataclass
class Account:
    id: int
    balance: int
    drawn: float = 0.0
    noise: int = 0


class IndexFactory(SubjectFactory):
    """Takes the subject's global index."""

    def create(self, index: int) -> Account:
        return Account(index, rand.randrange(0, 1000))


class CountingFactory(SubjectFactory):
    """doge-datagen style: no index, numbers its subjects itself, draws from Python's random."""

    def __init__(self) -> None:
        self.made = 0

    def create(self) -> Account:
        self.made += 1
        return Account(self.made - 1, random.randrange(0, 1000))


class Spend:
    """The ``spend`` callback: draws in both generators; ``slow_s`` makes a run long enough to kill a
    worker in it; ``fail_at`` raises on that call (counted in this process) to fail a run."""

    def __init__(self, slow_s: float = 0.0, fail_at: int | None = None) -> None:
        self.slow_s = slow_s
        self.fail_at = fail_at
        self.calls = 0

    def __call__(self, account: Account, transition) -> bool:
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise RuntimeError(f"failing on call {self.calls} on purpose")
        if self.slow_s:
            time.sleep(self.slow_s)
        amount = rand.randrange(1, 60)
        account.drawn = rand.random()
        account.noise = random.randrange(1_000_000)
        if amount > account.balance:
            return False
        account.balance -= amount
        return True


def build(sinks, *, ticks: int, subjects: int = 300, seed: int = 11, factory: str = "index",
          arrivals: bool = False, spend: Spend | None = None, tick_ms: int = 60_000) -> DataOnlineGenerator:
    made = IndexFactory() if factory == "index" else CountingFactory()
    gen = DataOnlineGenerator(["idle", "active"], "idle", made, subjects, tick_ms, ticks, seed=seed,
                              timestamp_start=TS0)
    gen.add_transition("login", "idle", "active", 5, event_sinks=sinks)
    gen.add_transition("spend", "active", "active", 30, action_callback=spend or Spend(), event_sinks=sinks)
    gen.add_transition("logout", "active", "idle", 20, event_sinks=sinks)
    if arrivals:
        gen.add_arrivals(0.5, limit=200)
    return gen


def row(timestamp: int, account: Account, transition) -> dict:
    """The SQL rows (and Kafka values) of the tests."""
    return {"ts": timestamp, "subject": account.id, "event": transition.trigger, "balance": account.balance,
            "drawn": account.drawn, "noise": account.noise}


def kafka_key(account: Account, transition) -> str:
    return str(account.id)


def kafka_value(timestamp: int, account: Account, transition) -> str:
    return json.dumps(row(timestamp, account, transition), sort_keys=True)


EVENTS_DDL = ("CREATE TABLE {table} (ts BIGINT NOT NULL, subject BIGINT NOT NULL, "
              "event VARCHAR(16) NOT NULL, balance BIGINT NOT NULL, drawn DOUBLE PRECISION NOT NULL, "
              "noise BIGINT NOT NULL)")


def file_bytes(folder: Path) -> dict[str, bytes]:
    """Every file in ``folder``, by name."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
