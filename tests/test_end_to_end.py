"""End to end and run-level faults: the banking model through real sinks (issue "Real sinks", §6-7).

Two Ray workers write at once to Kafka (JSON), Kafka (Avro through an HTTP schema registry),
PostgreSQL and JSON Lines; every sink must then hold exactly the run's events, once each, in
per-subject order. The fault tests drive ``generator.start()`` into a stopped broker, an
unreachable or missing database, a failing row mapper or value function, and a bad Avro schema.
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import REPO_ROOT, free_port
from registry_server import RegistryServer
from test_kafka_sink import consume, new_topic, run_bounded

from doge_dist import (
    CountingSink,
    DataOnlineGenerator,
    EventSink,
    ModelError,
    SimulationError,
    SinkError,
    Transition,
)
from doge_dist.sinks import DbSinkFactory, JsonLinesSink, KafkaAvroSinkFactory, KafkaSinkFactory
from examples.banking import (
    EVENTS_TABLE_DDL,
    UserFactory,
    avro_key_function,
    avro_value_function,
    event_record,
    income_callback,
    key_function,
    row_mapper,
    spending_callback,
    take_loan_callback,
    value_function,
)

pytestmark = pytest.mark.services

TS0 = 1_700_000_000_000  # librdkafka treats timestamp 0 as "now": use real epoch millis
TICK_MS = 60_000
KEY_SCHEMA = (REPO_ROOT / "examples" / "avro" / "Key.avsc").read_text()
EVENT_SCHEMA = (REPO_ROOT / "examples" / "avro" / "Event.avsc").read_text()

EventId = tuple[int, int, str]  # (timestamp, user_id, trigger): unique in the banking model


def banking(sinks: list[EventSink], subjects: int, ticks: int, seed: int = 7) -> DataOnlineGenerator:
    """The banking model (as examples.banking.build_generator) with ``sinks`` on every transition."""
    gen = DataOnlineGenerator(["offline", "online", "loan_screen"], "offline", UserFactory(), subjects,
                              TICK_MS, ticks, TS0, seed=seed)
    for trigger, source, target, probability, callback in [
        ("income", "offline", "offline", 0.01, income_callback),
        ("spending", "offline", "offline", 0.1, spending_callback),
        ("login", "offline", "online", 0.1, None),
        ("logout", "online", "offline", 70, None),
        ("open_loan_screen", "online", "loan_screen", 30, None),
        ("close_loan_screen", "loan_screen", "online", 40, None),
        ("take_loan", "loan_screen", "online", 10, take_loan_callback),
    ]:
        gen.add_transition(trigger, source, target, probability, action_callback=callback,
                           event_sinks=sinks)
    return gen


def event_id(record: dict) -> EventId:
    return record["timestamp"], int(record["user_id"]), record["event"]


@pytest.fixture
def events_table(postgres_url):
    """A uniquely named events table, dropped afterwards."""
    import sqlalchemy as sa

    name = f"e2e_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text(EVENTS_TABLE_DDL.format(table=name)))
    try:
        yield name
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
        engine.dispose()


def query_rows(db_url: str, table: str) -> list[dict]:
    import sqlalchemy as sa

    engine = sa.create_engine(db_url, connect_args={"connect_timeout": 10})
    try:
        with engine.connect() as conn:
            result = conn.execute(sa.text(
                f"SELECT timestamp, user_id, event, balance, loan_balance FROM {table}"))
            return [dict(row._mapping) for row in result]
    finally:
        engine.dispose()


def read_jsonl(directory: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(directory.glob("events-*.jsonl"))
            for line in path.read_text().splitlines()]


def decode_avro(registry_url: str, topic: str, messages: list) -> list[tuple[int, dict, dict, int]]:
    """(partition, key record, value record, message timestamp) for each consumed Avro message."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    deserializer = AvroDeserializer(SchemaRegistryClient({"url": registry_url, "timeout": 10}))
    key_ctx = SerializationContext(topic, MessageField.KEY)
    value_ctx = SerializationContext(topic, MessageField.VALUE)
    return [(partition, deserializer(key, key_ctx), deserializer(value, value_ctx), ts)
            for partition, key, value, ts in messages]


def assert_per_key_order(messages: list[tuple[int, bytes, int]], what: str) -> None:
    """Every key lives in one partition; within it, consumed order is strictly timestamp order."""
    partitions: dict[bytes, set[int]] = defaultdict(set)
    timestamps: dict[bytes, list[int]] = defaultdict(list)
    for partition, key, ts in messages:  # consume() returns each partition in offset order
        partitions[key].add(partition)
        timestamps[key].append(ts)
    spread = {k: p for k, p in partitions.items() if len(p) > 1}
    assert not spread, f"{what}: keys in several partitions: {list(spread.items())[:5]}"
    unordered = {k: t for k, t in timestamps.items() if t != sorted(set(t))}
    assert not unordered, f"{what}: keys out of timestamp order: {list(unordered.items())[:3]}"
    assert len({p for p, _, _ in messages}) > 1, f"{what}: all keys went to one partition"


def assert_once(ids: list[EventId], what: str) -> set[EventId]:
    unique = set(ids)
    assert len(unique) == len(ids), f"{what}: {len(ids) - len(unique)} duplicated events"
    return unique


# --------------------------------------------------------------------------- §6 end to end


@pytest.mark.ray
def test_banking_two_ray_workers_into_four_real_sinks(ray_session, kafka_broker, postgres_url,
                                                      events_table, tmp_path):
    json_topic, avro_topic = new_topic(kafka_broker, 3), new_topic(kafka_broker, 3)
    with RegistryServer() as registry:
        kafka_json = KafkaSinkFactory(kafka_broker.bootstrap, "e2e-json").create(
            json_topic, key_function, value_function)
        kafka_avro = KafkaAvroSinkFactory(kafka_broker.bootstrap, registry.url, "e2e-avro",
                                          registry_conf={"timeout": 10}).create(
            avro_topic, avro_key_function, KEY_SCHEMA, avro_value_function, EVENT_SCHEMA)
        pg = DbSinkFactory(postgres_url).create(events_table, row_mapper, batch_size=500)
        jsonl = JsonLinesSink(str(tmp_path / "events-{shard}.jsonl"), event_record)
        sinks = [kafka_json, kafka_avro, pg, jsonl]

        result = banking(sinks, subjects=2000, ticks=300).start(workers=2)

        assert result.workers == 2 and result.ticks == 300 and not result.stopped
        assert [(s.start, s.stop) for s in result.shards] == [(0, 1000), (1000, 2000)]
        total = result.total_events
        assert total > 1000
        assert result.events_by_sink == {sink.name: total for sink in sinks}
        for sink in (kafka_json, kafka_avro):
            stats = result.sink_stats[sink.name]
            assert stats["delivered"] == stats["produced"] == total, (sink.name, stats)
            assert stats["failed"] == 0 and stats["undelivered"] == 0, (sink.name, stats)

        json_messages = consume(kafka_broker.bootstrap, json_topic, total)
        avro_messages = decode_avro(registry.url, avro_topic,
                                    consume(kafka_broker.bootstrap, avro_topic, total))
        assert set(registry.subjects) == {f"{avro_topic}-key", f"{avro_topic}-value"}
    rows = query_rows(postgres_url, events_table)
    lines = read_jsonl(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("events-*.jsonl")) == ["events-0.jsonl", "events-1.jsonl"]

    # counts: what every sink holds is what the run says it was given
    assert len(json_messages) == len(avro_messages) == len(rows) == len(lines) == total

    # each event once per sink, and the same events in all four
    json_values = [json.loads(value) for _, _, value, _ in json_messages]
    expected = assert_once([event_id(r) for r in lines], "jsonl")
    assert assert_once([event_id(v) for v in json_values], "kafka json") == expected
    assert assert_once([(v["timestamp"], int(v["user"]["userId"]), v["event"])
                        for _, _, v, _ in avro_messages], "kafka avro") == expected
    assert assert_once([event_id(r) for r in rows], "postgres") == expected
    assert {i[1] for i in expected} <= set(range(2000))

    # the same content too (each sink's projection of the event record)
    records = {event_id(r): r for r in lines}
    assert all(records[event_id(v)] == v for v in json_values)
    assert all({k: records[event_id(r)][k] for k in r} == r for r in rows)
    for _, key, value, ts in avro_messages:
        record = records[(value["timestamp"], int(value["user"]["userId"]), value["event"])]
        assert key == {"key": str(record["user_id"])} and ts == record["timestamp"]
        assert value["user"]["balance"] == str(record["balance"])
        assert value["user"]["loanBalance"] == str(record["loan_balance"])

    # Kafka: keyed by user, so each subject's events are in one partition, in event order
    assert all(ts == json.loads(value)["timestamp"] for _, _, value, ts in json_messages)
    assert all(key.decode() == str(json.loads(value)["user_id"]) for _, key, value, _ in json_messages)
    assert_per_key_order([(p, k, ts) for p, k, _, ts in json_messages], "kafka json")
    assert_per_key_order([(p, k["key"].encode(), ts) for p, k, _, ts in avro_messages], "kafka avro")


# --------------------------------------------------------------------------- §7 faults


class StopBrokerAfterFirstDelivery:
    """A progress callback: at the first window boundary with events, wait (bounded) until the
    broker holds all of them, then stop the broker; the rest of the run has nowhere to go."""

    def __init__(self, broker, topic: str) -> None:
        self.broker, self.topic = broker, topic
        self.seen_before_stop = self.events_before_stop = 0
        self.stopped_at: int | None = None

    def __call__(self, progress) -> None:
        if self.stopped_at is None and progress.total_events > 0:
            got = consume(self.broker.bootstrap, self.topic, progress.total_events, timeout=20)
            self.seen_before_stop = len(got)
            self.events_before_stop = progress.total_events
            self.broker.stop()
            self.stopped_at = progress.ticks_done


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.ray)])
def test_broker_stopped_mid_run_fails_the_run_with_counts(request, fresh_kafka_broker, workers):
    if workers > 1:
        request.getfixturevalue("ray_session")
    topic = new_topic(fresh_kafka_broker, 3)
    sink = KafkaSinkFactory(fresh_kafka_broker.bootstrap, "e2e-broker-down",
                            delivery_timeout_s=3).create(topic, key_function, value_function)
    counter = CountingSink("count")  # first on every transition: sees every event Kafka was given
    gen = banking([counter, sink], subjects=2000, ticks=300)
    stopper = StopBrokerAfterFirstDelivery(fresh_kafka_broker, topic)

    result, error = run_bounded(lambda: gen.start(workers=workers, window=20, progress=stopper), 120)

    assert result is None, f"the run succeeded silently: {result}"
    assert stopper.stopped_at is not None and stopper.stopped_at < 300
    assert stopper.seen_before_stop == stopper.events_before_stop > 0
    sink_error = error if isinstance(error, SinkError) else error.__cause__
    assert isinstance(error, (SinkError, SimulationError)), repr(error)
    assert isinstance(sink_error, SinkError), repr(error)
    assert sink_error.sink == f"kafka:{topic}"
    message = str(sink_error)
    assert f"kafka:{topic}" in message and fresh_kafka_broker.bootstrap in message
    assert f"{sink_error.delivered} delivered" in message and f"{sink_error.failed} failed" in message
    assert sink_error.delivered > 0, message  # the events before the stop reached the broker
    assert sink_error.failed + sink_error.undelivered > 0, message
    if workers == 1:  # this process's sinks: every event given to Kafka is accounted for
        assert sink_error.delivered + sink_error.failed + sink_error.undelivered == counter.count, message


class RecordingUserFactory(UserFactory):
    """The banking factory, noting every subject it creates."""

    def __init__(self) -> None:
        super().__init__()
        self.made = 0

    def create(self):
        self.made += 1
        return super().create()


def test_database_unreachable_fails_before_any_subject():
    url = f"postgresql+psycopg://doge:hunter2@127.0.0.1:{free_port()}/test"
    gen = banking([DbSinkFactory(url, connect_timeout=2).create("events", row_mapper)], subjects=10, ticks=10)
    gen.subject_factory = factory = RecordingUserFactory()  # building the model connected nowhere
    with pytest.raises(ConnectionError) as info:
        gen.start()
    assert factory.made == 0  # the run checked the database before creating any subject
    message = str(info.value)
    assert "cannot reach" in message and f"127.0.0.1:{url.rsplit(':', 1)[1]}" in message
    assert "hunter2" not in message and "***" in message


def test_missing_table_fails_before_any_subject(postgres_url):
    table = f"missing_{uuid.uuid4().hex[:12]}"
    gen = banking([DbSinkFactory(postgres_url).create(table, row_mapper)], subjects=10, ticks=10)
    gen.subject_factory = factory = RecordingUserFactory()
    with pytest.raises(ModelError, match=f"Table {table} does not exist"):
        gen.start()
    assert factory.made == 0


FAILING_FROM = 1000  # user ids from here on are in shard 1 of a 2-worker run over 2000 subjects
_FACTS = re.compile(r"user=(\d+) ts=(\d+) trigger=(\w+)$")


def row_mapper_failing_in_upper_half(timestamp: int, user, transition: Transition) -> dict:
    if user.user_id >= FAILING_FROM:
        raise ValueError(f"no row for user={user.user_id} ts={timestamp} trigger={transition.trigger}")
    return row_mapper(timestamp, user, transition)


def value_function_failing_in_upper_half(timestamp: int, user, transition: Transition) -> str:
    if user.user_id >= FAILING_FROM:
        raise ValueError(f"no value for user={user.user_id} ts={timestamp} trigger={transition.trigger}")
    return value_function(timestamp, user, transition)


def assert_names_the_event(err: SimulationError, what: str) -> None:
    """The error's subject, trigger and tick are those of the event the function failed on."""
    cause = err.__cause__
    assert isinstance(cause, ValueError) and what in str(cause), repr(cause)
    facts = _FACTS.search(str(cause))
    assert facts is not None, str(cause)
    user, tick, trigger = int(facts[1]), (int(facts[2]) - TS0) // TICK_MS, facts[3]
    assert err.subject_index == user >= FAILING_FROM  # UserFactory numbers users by index
    assert err.trigger == trigger and err.tick == tick
    message = str(err)
    assert f"subject {user}" in message and f"tick {tick}" in message
    assert repr(trigger) in message and what in message


@pytest.mark.ray
def test_row_mapper_error_in_a_ray_worker_names_the_event(ray_session, postgres_url, events_table):
    ray_session.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    sink = DbSinkFactory(postgres_url).create(events_table, row_mapper_failing_in_upper_half)
    gen = banking([sink], subjects=2000, ticks=300)
    with pytest.raises(SimulationError) as info:
        gen.start(workers=2)
    assert info.value.shard == 1
    assert_names_the_event(info.value, "no row for user")


def test_value_function_error_names_the_event(kafka_broker):
    topic = new_topic(kafka_broker, 3)
    sink = KafkaSinkFactory(kafka_broker.bootstrap, "e2e-bad-value").create(
        topic, key_function, value_function_failing_in_upper_half)
    gen = banking([sink], subjects=2000, ticks=300)
    with pytest.raises(SimulationError) as info:
        gen.start()
    assert_names_the_event(info.value, "no value for user")
    # the events before the failure were still delivered when the run closed the sink
    stats = sink.stats()
    assert stats["produced"] == stats["delivered"] > 0 and stats["failed"] == 0


def test_bad_avro_schema_fails_at_create_before_any_event(kafka_broker):
    topic = new_topic(kafka_broker, 1)
    bad = json.loads(EVENT_SCHEMA)
    bad["fields"][0]["type"] = "longg"
    with RegistryServer() as registry:
        factory = KafkaAvroSinkFactory(kafka_broker.bootstrap, registry.url, "e2e-bad-schema")
        made: list[DataOnlineGenerator] = []
        with pytest.raises(ModelError, match=r"value_schema is not a valid Avro schema.*longg") as info:
            sink = factory.create(topic, avro_key_function, KEY_SCHEMA, avro_value_function, bad)
            made.append(banking([sink], subjects=10, ticks=10))
        assert not made
        assert f"kafka:{topic}" in str(info.value)
        assert registry.requests == []  # nothing was registered, nothing was produced
    assert consume(kafka_broker.bootstrap, topic, 0, timeout=2) == []


def test_records_not_matching_the_avro_schema_fail_the_run_at_the_first_event(kafka_broker):
    topic = new_topic(kafka_broker, 1)
    strict = json.loads(EVENT_SCHEMA)
    strict["fields"][1]["type"]["fields"][1]["type"] = "long"  # balance: the model sends a string
    factory = KafkaAvroSinkFactory(kafka_broker.bootstrap, f"mock://{uuid.uuid4().hex}")
    sink = factory.create(topic, avro_key_function, KEY_SCHEMA, avro_value_function, strict)
    gen = banking([sink], subjects=200, ticks=300)
    with pytest.raises(SimulationError) as info:
        gen.start()
    cause = info.value.__cause__
    assert isinstance(cause, ValueError) and "field 'doge.example.User.balance'" in str(cause)
    assert info.value.subject_index is not None and info.value.tick is not None
    assert sink.stats()["produced"] == 0
