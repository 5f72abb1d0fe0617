"""The fixed model behind the golden stream: a small seeded banking run drawing from doge_dist.rand.

Used by ``tests/test_golden.py`` and ``tests/golden/regenerate.py``. Do not change it without
regenerating ``banking-seed7.jsonl`` (and saying why in the commit).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from doge_dist import DataOnlineGenerator, JsonLinesSink, SubjectFactory, Transition, rand

__all__ = ["GOLDEN_FILE", "SEED", "SUBJECTS", "TICKS", "build", "run", "canonical"]

GOLDEN_FILE = Path(__file__).resolve().parent / "banking-seed7.jsonl"
SEED, SUBJECTS, TICKS = 7, 1_200, 150  # more subjects than one factory block (1,024)


@dataclass
class User:
    user_id: int
    balance: int
    loan_balance: int = 0
    last_payment: int = 0
    mood: float = 0.0


class Users(SubjectFactory[User]):
    def create(self, index: int) -> User:
        return User(index, rand.randrange(0, 1000))


def income(user: User, transition: Transition) -> bool:
    user.balance += rand.randint(500, 2000)
    return True


def spending(user: User, transition: Transition) -> bool:
    payment = max(1, round(rand.gauss(55, 20)))
    if payment > user.balance:
        return False
    user.balance -= payment
    user.last_payment = payment
    return True


def browse(user: User, transition: Transition) -> bool:
    user.mood = round(rand.random(), 6)
    return rand.random() < 0.95


def take_loan(user: User, transition: Transition) -> bool:
    amount = rand.choice([5_000, 10_000, 20_000])
    user.loan_balance += amount
    user.balance += amount
    return True


def record(timestamp: int, user: User, transition: Transition) -> dict[str, Any]:
    return {"t": timestamp, "i": user.user_id, "trigger": transition.trigger,
            "from": transition.from_state, "to": transition.to_state, "balance": user.balance,
            "loan": user.loan_balance, "payment": user.last_payment, "mood": user.mood}


def build(out_dir: Path) -> DataOnlineGenerator:
    """The model, writing JSON Lines to ``out_dir/events-{shard}.jsonl``."""
    sink = JsonLinesSink(str(Path(out_dir) / "events-{shard}.jsonl"), record)
    gen = DataOnlineGenerator(["offline", "online", "loan_screen"], "offline", Users(), SUBJECTS, 60_000,
                              TICKS, 1_700_000_000_000, seed=SEED, reseed_python_random=False)
    gen.add_transition("income", "offline", "offline", 0.05, action_callback=income, event_sinks=[sink])
    gen.add_transition("spending", "offline", "offline", 0.3, action_callback=spending, event_sinks=[sink])
    gen.add_transition("login", "offline", "online", 0.2, event_sinks=[sink])
    gen.add_transition("logout", "online", "offline", 60, event_sinks=[sink])
    gen.add_transition("open_loan_screen", "online", "loan_screen", 30, action_callback=browse,
                       event_sinks=[sink])
    gen.add_transition("close_loan_screen", "loan_screen", "online", 40, event_sinks=[sink])
    gen.add_transition("take_loan", "loan_screen", "online", 10, action_callback=take_loan,
                       event_sinks=[sink])
    return gen


def canonical(out_dir: Path) -> bytes:
    """The written lines of every shard, byte for byte, in (timestamp, subject index) order."""
    lines = [line for path in sorted(Path(out_dir).glob("events-*.jsonl"))
             for line in path.read_bytes().splitlines(keepends=True)]
    lines.sort(key=lambda line: (lambda e: (e["t"], e["i"]))(json.loads(line)))
    return b"".join(lines)


def run(out_dir: Path, workers: int | None = None) -> bytes:
    """Run in this process (``workers=None``) or on Ray workers; return the canonical stream."""
    gen = build(out_dir)
    result = gen.start() if workers is None else gen.start(workers=workers, backend="ray")
    stream = canonical(out_dir)
    lines = stream.count(b"\n")
    if lines != result.total_events:
        raise AssertionError(f"{result.total_events} events counted, {lines} lines written")
    return stream
