"""The doge-datagen banking model: users log in, look at loans, spend and earn.

Importable (``build_generator`` returns the generator) and runnable::

    python examples/banking.py --subjects 1000 --ticks 1000 --seed 7 --sink jsonl --path out/events.jsonl
"""

from __future__ import annotations

import argparse
import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from random import randrange
from typing import Any

from doge_dist import (
    CountingSink,
    DataOnlineGenerator,
    EventSink,
    PrintingSink,
    SubjectFactory,
    Transition,
)
from doge_dist import rand as doge_rand

__all__ = ["User", "UserFactory", "build_generator", "create_example_data_online_generator",
           "format_event", "event_record", "key_function", "value_function", "row_mapper",
           "EVENTS_TABLE_DDL"]


@dataclass(slots=True)
class User:
    user_id: int
    balance: int
    loan_balance: int
    last_payment: int


class UserFactory(SubjectFactory[User]):
    """Numbers users itself, like doge-datagen's example (a zero-argument factory)."""

    def __init__(self, fast_random: bool = False) -> None:
        self.current_id = 0
        # A flag, not a stored ``random.randrange``: a bound method of Python's global generator
        # would be pickled as a copy of that generator into Ray workers, escaping the seeding.
        self.fast_random = fast_random

    def create(self) -> User:
        draw = doge_rand.randrange if self.fast_random else randrange
        user = User(self.current_id, draw(0, 1000), 0, 0)
        self.current_id += 1
        return user

    def advance(self, count: int) -> None:
        """Optional doge-dist fast path: skip ``count`` users (a shard starting mid-population)."""
        self.current_id += count


def income_callback(subject: User, transition: Transition,
                    draw: Callable[[int, int], int] = randrange) -> bool:
    subject.balance += draw(500, 2000)
    return True


def spending_callback(subject: User, transition: Transition,
                      draw: Callable[[int, int], int] = randrange) -> bool:
    payment = draw(10, 100)
    if payment > subject.balance:
        return False
    subject.balance -= payment
    subject.last_payment = payment
    return True


def take_loan_callback(subject: User, transition: Transition) -> bool:
    subject.loan_balance += 10000
    subject.balance += 10000
    return True


def format_event(timestamp: int, user: User, transition: Transition) -> str:
    return (f"[{timestamp}] User id: {user.user_id}, balance: {user.balance}, "
            f"loan_balance: {user.loan_balance} made a transition {transition.trigger} "
            f"from {transition.from_state} to {transition.to_state}")


def event_record(timestamp: int, user: User, transition: Transition) -> dict[str, Any]:
    """One event as plain data (JSON Lines, Kafka JSON values)."""
    return {"timestamp": timestamp, "user_id": user.user_id, "event": transition.trigger,
            "from_state": transition.from_state, "to_state": transition.to_state,
            "balance": user.balance, "loan_balance": user.loan_balance,
            "last_payment": user.last_payment}


def key_function(user: User, transition: Transition) -> str:
    return str(user.user_id)


def value_function(timestamp: int, user: User, transition: Transition) -> str:
    return json.dumps(event_record(timestamp, user, transition))


def avro_key_function(user: User, transition: Transition) -> dict[str, Any]:
    return {"key": str(user.user_id)}


def avro_value_function(timestamp: int, user: User, transition: Transition) -> dict[str, Any]:
    return {"timestamp": timestamp,
            "user": {"userId": str(user.user_id), "balance": str(user.balance),
                     "loanBalance": str(user.loan_balance)},
            "event": transition.trigger}


def row_mapper(timestamp: int, user: User, transition: Transition) -> dict[str, Any]:
    return {"timestamp": timestamp, "user_id": user.user_id, "balance": user.balance,
            "loan_balance": user.loan_balance, "event": transition.trigger}


EVENTS_TABLE_DDL = ("CREATE TABLE IF NOT EXISTS {table} (timestamp BIGINT NOT NULL, user_id BIGINT NOT NULL, "
                    "balance BIGINT NOT NULL, loan_balance BIGINT NOT NULL, event VARCHAR(32) NOT NULL)")

_AVRO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "avro")


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def make_sink(kind: str | EventSink | None, *, path: str | None = None, bootstrap_servers: str | None = None,
              schema_registry_url: str | None = None, db_url: str | None = None,
              topic: str = "doge_events", table: str = "events", connect_timeout: float = 10,
              parts: int = 4) -> EventSink:
    """Build one of the example's sinks by name (no I/O: building a model never connects).

    ``"jsonl"`` writes ``parts`` part files when the path holds ``{part}`` (the default
    ``out/banking-{part}.jsonl``): the same files and bytes at any number of workers up to ``parts``.
    ``"postgres"`` writes to ``table``, which the run creates if missing before any subject exists;
    a database that does not answer within ``connect_timeout`` seconds then fails the run with a
    ``ConnectionError`` naming the URL (password masked).
    """
    if kind is None or kind == "print":
        return PrintingSink(format_event)
    if not isinstance(kind, str):
        return kind
    if kind == "count":
        return CountingSink()
    if kind == "jsonl":
        from doge_dist import JsonLinesSink

        path = path or "out/banking-{part}.jsonl"
        return JsonLinesSink(path, event_record, parts=parts if "{part" in path else None)
    if kind == "kafka":
        from doge_dist import KafkaSinkFactory

        factory = KafkaSinkFactory(bootstrap_servers or "localhost:9092", "doge-banking")
        return factory.create(topic, key_function, value_function)
    if kind == "kafka-avro":
        from doge_dist import KafkaAvroSinkFactory

        factory = KafkaAvroSinkFactory(bootstrap_servers or "localhost:9092",
                                       schema_registry_url or "http://localhost:8081", "doge-banking")
        return factory.create(topic, avro_key_function, _read(os.path.join(_AVRO_DIR, "Key.avsc")),
                              avro_value_function, _read(os.path.join(_AVRO_DIR, "Event.avsc")))
    if kind == "postgres":
        from doge_dist import DbSinkFactory

        factory = DbSinkFactory(db_url or "postgresql+psycopg://postgres@127.0.0.1:5432/test",
                                connect_timeout=connect_timeout)
        # no I/O here: the run creates the table if missing, before any subject exists
        return factory.create(table, row_mapper, create_table=EVENTS_TABLE_DDL.format(table=table))
    raise ValueError(f"unknown sink {kind!r}; use print, count, jsonl, kafka, kafka-avro or postgres")


def build_generator(sink: str | EventSink | None = "print", subjects: int = 10, ticks: int | None = 1000,
                    seed: int | None = None, *, tick_ms: int = 60000, timestamp_start: int = 0,
                    path: str | None = None, bootstrap_servers: str | None = None,
                    schema_registry_url: str | None = None, db_url: str | None = None,
                    topic: str = "doge_events", table: str = "events",
                    fast_random: bool = False, parts: int = 4) -> DataOnlineGenerator:
    """The banking model with one sink on every transition.

    ``fast_random`` draws from ``doge_dist.rand`` instead of Python's ``random`` module: just as
    reproducible with a seed, without reseeding the global generator before every callback.
    """
    sink = make_sink(sink, path=path, bootstrap_servers=bootstrap_servers,
                     schema_registry_url=schema_registry_url, db_url=db_url, topic=topic, table=table,
                     parts=parts)
    if fast_random:
        factory = UserFactory(fast_random=True)
        income = functools.partial(income_callback, draw=doge_rand.randrange)
        spending = functools.partial(spending_callback, draw=doge_rand.randrange)
    else:
        factory, income, spending = UserFactory(), income_callback, spending_callback
    gen = DataOnlineGenerator(["offline", "online", "loan_screen"], "offline", factory, subjects,
                              tick_ms, ticks, timestamp_start, seed=seed,
                              reseed_python_random=not fast_random)
    gen.add_transition("income", "offline", "offline", 0.01, action_callback=income, event_sinks=[sink])
    gen.add_transition("spending", "offline", "offline", 0.1, action_callback=spending, event_sinks=[sink])
    gen.add_transition("login", "offline", "online", 0.1, event_sinks=[sink])
    gen.add_transition("logout", "online", "offline", 70, event_sinks=[sink])
    gen.add_transition("open_loan_screen", "online", "loan_screen", 30, event_sinks=[sink])
    gen.add_transition("close_loan_screen", "loan_screen", "online", 40, event_sinks=[sink])
    gen.add_transition("take_loan", "loan_screen", "online", 10, action_callback=take_loan_callback,
                       event_sinks=[sink])
    return gen


def create_example_data_online_generator(sink: EventSink) -> DataOnlineGenerator:
    """doge-datagen's example entry point: 10 users, 1000 ticks of one minute."""
    return build_generator(sink, subjects=10, ticks=1000)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=10)
    parser.add_argument("--ticks", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--sink", default="print",
                        choices=["print", "count", "jsonl", "kafka", "kafka-avro", "postgres"])
    parser.add_argument("--path", default=None,
                        help="JSON Lines path ({part}: 4 part files; {shard}: one per worker)")
    parser.add_argument("--fast-random", action="store_true", help="draw from doge_dist.rand")
    args = parser.parse_args(argv)
    gen = build_generator(args.sink, args.subjects, args.ticks, args.seed, path=args.path,
                          fast_random=args.fast_random)
    result = gen.start(workers=args.workers)
    print(f"{result.total_events} events in {result.elapsed_s:.2f} s "
          f"({result.events_per_s:,.0f} events/s): {result.events_by_trigger}")


if __name__ == "__main__":
    main()
