"""KafkaSink against a real (Tansu) broker, consumed back with a real Consumer."""

from __future__ import annotations

import contextlib
import json
import logging
import pickle
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass

import pytest
from conftest import REPO_ROOT, free_port

from doge_dist import ModelError, SinkError, Transition
from doge_dist.sinks import KafkaSink, KafkaSinkFactory

pytestmark = pytest.mark.services

TS0 = 1_700_000_000_000  # librdkafka treats timestamp 0 as "now": use real epoch millis
GO = Transition("go", "a", "b", 10.0)
BACK = Transition("back", "b", "a", 20.0)


@dataclass
class Sub:
    sid: int
    seq: int = 0


def key_of(subject: Sub, transition: Transition) -> str:
    return f"s{subject.sid}"


def value_of(timestamp: int, subject: Sub, transition: Transition) -> str:
    return json.dumps({"sid": subject.sid, "seq": subject.seq, "trigger": transition.trigger,
                       "ts": timestamp})


def new_topic(broker, partitions: int = 3) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    broker.create_topic(name, partitions)
    return name


def consume(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list:
    """Read the whole topic from the beginning (assigned partitions, no group join); bounded."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g_{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "session.timeout.ms": 6000})
    try:
        meta = consumer.list_topics(topic, timeout=10)
        partitions = sorted(meta.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        got: list = []
        deadline = time.monotonic() + timeout
        quiet_until = None
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                if len(got) >= expected:  # drain a little longer to catch duplicates
                    quiet_until = quiet_until or time.monotonic() + 1.0
                    if time.monotonic() > quiet_until:
                        break
                continue
            if msg.error():
                raise AssertionError(f"consumer error: {msg.error()}")
            got.append((msg.partition(), msg.key(), msg.value(), msg.timestamp()[1]))
        return got
    finally:
        consumer.close()


def produce_events(sink: KafkaSink, n: int, subjects: int = 17, start: int = 0) -> list[tuple]:
    """Call collect like the engine would; return what was sent: (key, value, timestamp)."""
    population = [Sub(i) for i in range(subjects)]
    sent = []
    for i in range(start, start + n):
        subject = population[i % subjects]
        subject.seq += 1
        transition = GO if i % 2 else BACK
        ts = TS0 + i * 1000
        sink.collect(ts, subject, transition)
        sent.append((key_of(subject, transition).encode(), value_of(ts, subject, transition).encode(), ts))
    return sent


def run_bounded(fn, bound: float):
    """Run fn in a thread; fail if it is still running after `bound` seconds; return (result, error)."""
    box: dict = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(bound)
    assert not thread.is_alive(), f"still running after {bound} s"
    return box.get("result"), box.get("error")


@contextlib.contextmanager
def silent_server():
    """A TCP server on 127.0.0.1 that accepts connections and never sends a byte; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:  # listener closed
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(5)
        for sock in held:
            sock.close()


def test_roundtrip_keys_values_timestamps_and_order(kafka_broker):
    topic = new_topic(kafka_broker, 3)
    factory = KafkaSinkFactory([kafka_broker.bootstrap], "test-roundtrip")
    sink = factory.create(topic, key_of, value_of)
    assert sink.name == f"kafka:{topic}"
    n = 3000
    sent = produce_events(sink, n)
    sink.close()
    assert sink.stats() == {"produced": n, "delivered": n, "failed": 0, "undelivered": 0}

    got = consume(kafka_broker.bootstrap, topic, n)
    assert len(got) == n
    assert sorted((k, v, ts) for _, k, v, ts in got) == sorted(sent)
    by_key: dict[bytes, list] = defaultdict(list)
    partitions_of: dict[bytes, set] = defaultdict(set)
    for partition, key, value, _ in got:  # consumer order within a partition is offset order
        by_key[key].append(json.loads(value)["seq"])
        partitions_of[key].add(partition)
    assert all(len(parts) == 1 for parts in partitions_of.values())
    assert len({p for parts in partitions_of.values() for p in parts}) > 1  # really spread over partitions
    for key, seqs in by_key.items():
        assert seqs == sorted(seqs) == list(range(1, len(seqs) + 1)), key


def test_timestamp_zero_or_less_warns_once_per_sink(kafka_broker, caplog):
    topic = new_topic(kafka_broker, 1)
    factory = KafkaSinkFactory(kafka_broker.bootstrap, "test-ts-zero")
    first, second = factory.create(topic, key_of, value_of), factory.create(topic, key_of, value_of)
    with caplog.at_level(logging.WARNING, logger="doge_dist"):
        first.collect(TS0, Sub(1), GO)  # a real epoch-ms timestamp: nothing to say
        assert not caplog.records
        for ts in (0, 60_000, 0, -60_000):  # timestamp_start=0: the first tick is at 0
            first.collect(ts, Sub(1), GO)
        second.collect(0, Sub(2), BACK)
        second.collect(0, Sub(2), BACK)
        first.close()
        second.close()
        clone = pickle.loads(pickle.dumps(first))  # as shipped to a worker: warns there on its own
        clone.collect(0, Sub(3), GO)
        clone.close()
    warnings = [r for r in caplog.records if r.name == "doge_dist" and r.levelno == logging.WARNING]
    assert len(warnings) == 3  # one per sink (and process)
    for record in warnings:
        message = record.getMessage()
        assert f"kafka:{topic}" in message and "timestamp 0" in message
        assert "timestamp_start" in message and "epoch-ms" in message
    assert (first.stats()["delivered"], second.stats()["delivered"], clone.stats()["delivered"]) == (5, 2, 1)
    assert "timestamp_start" in KafkaSinkFactory.create.__doc__


def test_two_sinks_share_one_producer_and_count_separately(kafka_broker):
    t1, t2 = new_topic(kafka_broker, 1), new_topic(kafka_broker, 1)
    factory = KafkaSinkFactory(kafka_broker.bootstrap, conf={"linger.ms": 5})
    s1 = factory.create(t1, key_of, value_of)
    s2 = factory.create(t2, key_of, value_of, None, None)
    produce_events(s1, 30)
    produce_events(s2, 20)
    assert s1._handle is s2._handle
    s1.close()
    s2.close()
    s1.close()  # idempotent
    assert s1.stats()["delivered"] == 30 and s2.stats()["delivered"] == 20
    assert len(consume(kafka_broker.bootstrap, t1, 30)) == 30
    assert len(consume(kafka_broker.bootstrap, t2, 20)) == 20


def test_unreachable_bootstrap_fails_at_close(kafka_broker):
    factory = KafkaSinkFactory([f"127.0.0.1:{free_port()}"], delivery_timeout_s=1.0)
    assert factory.close_timeout_s == 6.0
    sink = factory.create("nowhere", key_of, value_of)
    produce_events(sink, 10)
    _, error = run_bounded(sink.close, 60)
    assert isinstance(error, SinkError), error
    assert (error.delivered, error.failed + error.undelivered) == (0, 10)
    assert error.sink == "kafka:nowhere"
    assert "0 delivered" in str(error) and "10 produced" in str(error)
    assert "127.0.0.1" in str(error)
    sink.close()  # already closed: nothing more to report


def test_unreachable_bootstrap_stops_a_long_run_in_collect():
    """A full local queue with no broker ends the run from collect(), not after the whole run."""
    factory = KafkaSinkFactory(f"127.0.0.1:{free_port()}", buffer_size=50, delivery_timeout_s=1.0)
    sink = factory.create("nowhere", key_of, value_of)

    def run():
        produce_events(sink, 1_000_000)

    _, error = run_bounded(run, 60)
    assert isinstance(error, SinkError), error
    assert error.delivered == 0
    _, close_error = run_bounded(sink.close, 60)
    assert isinstance(close_error, SinkError)
    stats = sink.stats()
    assert stats["delivered"] == 0
    assert stats["failed"] + stats["undelivered"] == stats["produced"] > 0


def test_unreachable_bootstrap_stops_a_sparse_realtime_run():
    """Few events (as in a realtime run) still end the run early when no broker answers."""
    factory = KafkaSinkFactory(f"127.0.0.1:{free_port()}", delivery_timeout_s=1.0)
    sink = factory.create("nowhere", key_of, value_of)

    def run():
        for i in range(200):  # at most ~20 s of events, 10 per second
            produce_events(sink, 1, start=i)
            time.sleep(0.1)

    _, error = run_bounded(run, 60)
    assert isinstance(error, SinkError), error
    assert "brokers are down" in str(error) and error.delivered == 0
    _, close_error = run_bounded(sink.close, 60)
    assert isinstance(close_error, SinkError)


def test_broker_stopped_mid_run(fresh_kafka_broker):
    topic = new_topic(fresh_kafka_broker, 3)
    factory = KafkaSinkFactory([fresh_kafka_broker.bootstrap], delivery_timeout_s=2.0)
    sink = factory.create(topic, key_of, value_of)
    produce_events(sink, 100)
    assert sink.flush(30)["delivered"] == 100
    fresh_kafka_broker.stop()
    produce_events(sink, 50, start=100)
    _, error = run_bounded(sink.close, 60)
    assert isinstance(error, SinkError), error
    assert error.delivered == 100
    assert error.failed + error.undelivered == 50
    assert error.delivered + error.failed + error.undelivered == 150
    assert "100 delivered" in str(error)


def test_value_and_key_function_errors_propagate(kafka_broker):
    topic = new_topic(kafka_broker, 1)
    boom = KeyError("no such field")

    def bad_value(timestamp, subject, transition):
        raise boom

    sink = KafkaSinkFactory(kafka_broker.bootstrap).create(topic, key_of, bad_value)
    with pytest.raises(KeyError) as info:
        sink.collect(TS0, Sub(1), GO)
    assert info.value is boom
    sink.close()
    assert sink.stats()["produced"] == 0

    def bad_key(subject, transition):
        raise ZeroDivisionError("key")

    sink = KafkaSinkFactory(kafka_broker.bootstrap).create(topic, bad_key, value_of)
    with pytest.raises(ZeroDivisionError):
        sink.collect(TS0, Sub(1), GO)
    sink.close()


def test_serializer_error_names_sink_and_field(kafka_broker):
    topic = new_topic(kafka_broker, 1)
    sink = KafkaSinkFactory(kafka_broker.bootstrap).create(topic, key_of, lambda ts, s, t: 12345)
    with pytest.raises(ValueError, match=rf"kafka:{topic}: cannot serialize value 12345"):
        sink.collect(TS0, Sub(1), GO)
    sink.close()


def test_pickle_round_trip_before_and_after_use(kafka_broker):
    topic = new_topic(kafka_broker, 3)
    factory = KafkaSinkFactory([kafka_broker.bootstrap], "pickled", conf={"linger.ms": 5}, buffer_size=5000)
    factory2 = pickle.loads(pickle.dumps(factory))
    assert factory2.producer_conf() == factory.producer_conf()
    assert factory2.buffer_size == 5000

    sink = factory.create(topic, key_of, value_of)
    fresh = pickle.loads(pickle.dumps(sink))  # before use
    produce_events(sink, 10)
    live = pickle.loads(pickle.dumps(sink))  # while its producer is open: the producer is not pickled
    assert live._producer is None and live.stats()["produced"] == 0
    assert live.name == sink.name == fresh.name
    produce_events(live, 5, start=10)
    assert live._handle is sink._handle  # same factory in the same process: one producer
    live.close()
    sink.close()
    after = pickle.loads(pickle.dumps(sink))  # after close
    produce_events(after, 5, start=15)
    after.close()
    fresh.close()  # never used: nothing to do
    assert (sink.stats()["delivered"], live.stats()["delivered"], after.stats()["delivered"]) == (10, 5, 5)
    assert len(consume(kafka_broker.bootstrap, topic, 20)) == 20


def test_sink_reopens_for_a_second_run(kafka_broker):
    topic = new_topic(kafka_broker, 1)
    sink = KafkaSinkFactory(kafka_broker.bootstrap).create(topic, key_of, value_of)
    produce_events(sink, 7)
    sink.close()
    sink.begin_run()  # what the runner calls before a run's first event: counts start afresh
    produce_events(sink, 3, start=7)
    sink.collect(float(TS0 + 10_000), Sub(99), GO)  # a float timestamp is taken as int millis
    sink.close()
    assert sink.stats() == {"produced": 4, "delivered": 4, "failed": 0, "undelivered": 0}
    got = consume(kafka_broker.bootstrap, topic, 11)
    assert len(got) == 11 and max(ts for *_, ts in got) == TS0 + 10_000


@pytest.mark.parametrize("kwargs, message", [
    ({"conf": ["linger.ms"]}, "conf must be a dict"),
    ({"conf": {"no.such.setting": 1}}, "No such configuration property"),
    ({"conf": {"linger.ms": "soon"}}, "Invalid value"),
    ({"conf": {"linger.ms": [5]}}, r"conf\['linger.ms'\] must be a str, int, float or bool"),
    ({"conf": {"linger.ms": None}}, r"conf\['linger.ms'\]"),
    ({"conf": {1: 2}}, "keys must be strings"),
    ({"conf": {"message.timeout.ms": 0}}, r"message.timeout.ms'\] must be a positive int.*0 waits forever"),
    ({"conf": {"message.timeout.ms": 1000, "delivery.timeout.ms": 2000}}, "aliases"),
    ({"conf": {"queue.buffering.max.messages": "many"}}, r"max.messages'\] must be a positive int"),
    ({"conf": {"bootstrap.servers": ""}}, r"conf\['bootstrap.servers'\] must be a non-empty str"),
    ({"conf": {"client.id": 7}}, r"conf\['client.id'\] must be a non-empty str"),
    ({"conf": {"delivery.report.only.error": True}}, "delivery.report.only.error"),
    ({"buffer_size": 0}, "buffer_size must be a positive int"),
    ({"buffer_size": "10"}, "buffer_size must be a positive int"),
    ({"bootstrap_servers": []}, "bootstrap_servers is empty"),
    ({"bootstrap_servers": [9092]}, "'host:port' strings"),
    ({"bootstrap_servers": "a b:1"}, "invalid bootstrap server"),
    ({"delivery_timeout_s": 0}, "delivery_timeout_s must be a positive number"),
    ({"client_id": ""}, "client_id must be a non-empty str"),
])
def test_bad_factory_arguments(kwargs, message):
    with pytest.raises(ModelError, match=message):
        KafkaSinkFactory(**kwargs)


def test_unknown_argument_and_bad_create_arguments():
    with pytest.raises(TypeError, match="bootstrap_server"):
        KafkaSinkFactory(bootstrap_server="x:1")  # type: ignore[call-arg]
    factory = KafkaSinkFactory("127.0.0.1:9")
    with pytest.raises(ModelError, match="invalid topic name"):
        factory.create("bad topic", key_of, value_of)
    with pytest.raises(ModelError, match="value_function must be callable"):
        factory.create("t", key_of, "value")
    with pytest.raises(ModelError, match="key_serializer"):
        factory.create("t", key_of, value_of, key_serializer="utf-8")


def test_defaults_env_and_doge_datagen_positional_form(monkeypatch):
    monkeypatch.setenv("DOGE_KAFKA_BOOTSTRAP", "envhost:9093")
    factory = KafkaSinkFactory()
    conf = factory.producer_conf()
    assert conf["bootstrap.servers"] == "envhost:9093"
    assert conf["enable.idempotence"] is True and conf["compression.type"] == "none"
    assert conf["queue.buffering.max.messages"] == 100_000
    assert conf["message.timeout.ms"] == 30_000 and factory.close_timeout_s <= 60
    monkeypatch.delenv("DOGE_KAFKA_BOOTSTRAP")
    assert KafkaSinkFactory().bootstrap_servers == "localhost:9092"
    legacy = KafkaSinkFactory(["a:1", "b:2"], "legacy-client", 5000)  # doge-datagen's positional order
    assert legacy.buffer_size == 5000 and legacy.bootstrap_servers == "a:1,b:2"
    assert legacy.client_id == "legacy-client"
    assert KafkaSinkFactory(conf={"enable.idempotence": False}).producer_conf()["enable.idempotence"] is False


def test_importing_the_sink_modules_stays_light():
    code = ("import sys, doge_dist.sinks._kafka, doge_dist.sinks._kafka_avro\n"
            "heavy = [m for m in ('confluent_kafka', 'fastavro') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT, timeout=60)


def test_banking_example_into_kafka(kafka_broker):
    banking = pytest.importorskip("examples.banking")
    topic = new_topic(kafka_broker, 3)
    gen = banking.build_generator("kafka", subjects=30, ticks=300, seed=11, timestamp_start=TS0,
                                  bootstrap_servers=kafka_broker.bootstrap, topic=topic)
    result = gen.start()
    expected = result.events_by_sink[f"kafka:{topic}"]
    assert expected > 0
    assert result.sink_stats[f"kafka:{topic}"]["delivered"] == expected
    got = consume(kafka_broker.bootstrap, topic, expected)
    assert len(got) == expected
    first = json.loads(got[0][2])
    assert {"timestamp", "user_id", "event"} <= set(first)
    assert all(ts == json.loads(value)["timestamp"] for _, _, value, ts in got)


# ---------------------------------------------------------------------------- conf as librdkafka takes it


def _doge_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "doge_dist" and r.levelno == logging.WARNING]


def test_conf_may_repeat_the_arguments_and_set_any_producer_key(caplog):
    with caplog.at_level(logging.WARNING, logger="doge_dist"):
        same = KafkaSinkFactory(["a:1", "b:2"], "cid", conf={
            "bootstrap.servers": "a:1,b:2", "client.id": "cid", "queue.buffering.max.messages": "5000",
            "message.timeout.ms": 7000, "linger.ms": 5})
    assert not _doge_warnings(caplog)  # they agree: nothing to say
    assert (same.bootstrap_servers, same.client_id, same.buffer_size) == ("a:1,b:2", "cid", 5000)
    assert (same.delivery_timeout_s, same.close_timeout_s) == (7.0, 12.0)
    conf = same.producer_conf()
    assert conf["queue.buffering.max.messages"] == 5000 and conf["message.timeout.ms"] == 7000
    assert conf["linger.ms"] == 5 and conf["bootstrap.servers"] == "a:1,b:2"
    alias = KafkaSinkFactory("a:1", conf={"delivery.timeout.ms": 2500})
    assert alias.delivery_timeout_s == 2.5 and alias.producer_conf()["message.timeout.ms"] == 2500
    assert "delivery.timeout.ms" not in alias.producer_conf()  # one key for one setting


def test_conf_wins_over_disagreeing_arguments_with_one_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="doge_dist"):
        factory = KafkaSinkFactory("x:1", "from-arg", {"bootstrap.servers": "y:2", "client.id": "from-conf",
                                                       "queue.buffering.max.messages": 20,
                                                       "message.timeout.ms": 4000},
                                   10, delivery_timeout_s=3)
    warnings = _doge_warnings(caplog)
    assert len(warnings) == 1, warnings
    for part in ("bootstrap_servers='x:1'", "conf['bootstrap.servers']='y:2'", "client_id='from-arg'",
                 "buffer_size=10", "delivery_timeout_s=3", "conf wins"):
        assert part in warnings[0], warnings[0]
    assert (factory.bootstrap_servers, factory.client_id, factory.buffer_size) == ("y:2", "from-conf", 20)
    assert factory.delivery_timeout_s == 4.0
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="doge_dist"):
        with pytest.raises(ModelError, match="No such configuration property"):  # unknown keys still fail
            KafkaSinkFactory("x:1", conf={"bootstrap.servers": "x:1", "queue.buffering.max.messagez": 1})


def test_a_conf_bootstrap_is_the_one_the_producer_uses(kafka_broker, caplog):
    topic = new_topic(kafka_broker, 1)
    nowhere = f"127.0.0.1:{free_port()}"
    with caplog.at_level(logging.WARNING, logger="doge_dist"):
        factory = KafkaSinkFactory([nowhere], "conf-wins", {"bootstrap.servers": kafka_broker.bootstrap,
                                                            "message.timeout.ms": 20_000})
    assert len(_doge_warnings(caplog)) == 1
    sink = factory.create(topic, key_of, value_of)
    produce_events(sink, 25)
    _, error = run_bounded(sink.close, 60)
    assert error is None, error
    assert sink.stats()["delivered"] == 25
    assert len(consume(kafka_broker.bootstrap, topic, 25)) == 25


def test_avro_factory_takes_conf_the_same_way(kafka_broker, caplog):
    from doge_dist.sinks import KafkaAvroSinkFactory

    with caplog.at_level(logging.WARNING, logger="doge_dist"):
        factory = KafkaAvroSinkFactory("x:1", f"mock://{uuid.uuid4().hex}", "cid",
                                       {"bootstrap.servers": kafka_broker.bootstrap,
                                        "message.timeout.ms": 9000})
    warnings = _doge_warnings(caplog)
    assert len(warnings) == 1 and "KafkaAvroSinkFactory" in warnings[0]
    assert factory.bootstrap_servers == kafka_broker.bootstrap and factory.kafka.delivery_timeout_s == 9.0
    with pytest.raises(ModelError, match="No such configuration property"):
        KafkaAvroSinkFactory("x:1", "mock://r", "cid", {"no.such.setting": 1})


# ---------------------------------------------------------------------------- librdkafka errors


# A real fatal error of the idempotent producer: told that the broker predates Kafka 0.11 (so has no
# InitProducerId), librdkafka raises "Idempotent producer not supported" as a fatal error as soon as
# it connects. The confluent-kafka binding then raises from poll()/flush() -- sometimes a bare
# KafkaError, which is not an exception class and escapes `except BaseException`.
FATAL_CONF = {"api.version.request": False, "broker.version.fallback": "0.9.0", "log_level": 0}


def _fatal_sink(broker) -> KafkaSink:
    return KafkaSinkFactory(broker.bootstrap, "fatal", FATAL_CONF, delivery_timeout_s=5).create(
        new_topic(broker, 1), key_of, value_of)


def _assert_fatal(error, sink: KafkaSink, produced: int) -> None:
    assert isinstance(error, SinkError), repr(error)
    assert error.sink == sink.name and sink.name in str(error)
    assert "fatal producer error" in str(error) and "Idempotent producer not supported" in str(error)
    assert error.delivered == 0 and error.failed + error.undelivered == produced
    assert f"{produced} produced" in str(error)


def test_a_fatal_producer_error_at_close_is_a_sink_error(kafka_broker):
    sink = _fatal_sink(kafka_broker)
    produce_events(sink, 10)
    time.sleep(1.0)  # the producer connects and hits the fatal error before close() flushes
    _, error = run_bounded(sink.close, 60)
    _assert_fatal(error, sink, 10)
    _, again = run_bounded(sink.close, 10)
    assert again is None  # closed: nothing more to report


def test_a_fatal_producer_error_at_flush_is_a_sink_error(kafka_broker):
    sink = _fatal_sink(kafka_broker)
    produce_events(sink, 10)
    time.sleep(1.0)
    _, error = run_bounded(lambda: sink.flush(10), 60)
    _assert_fatal(error, sink, 10)
    _, close_error = run_bounded(sink.close, 30)  # closing afterwards reports the same, briefly
    _assert_fatal(close_error, sink, 10)


def test_a_fatal_producer_error_while_producing_is_a_sink_error(kafka_broker):
    sink = _fatal_sink(kafka_broker)

    def run():
        for i in range(300):  # at most ~30 s of sparse events; the fatal error comes within a second
            produce_events(sink, 1, start=i)
            time.sleep(0.1)

    _, error = run_bounded(run, 60)
    assert isinstance(error, SinkError), repr(error)
    assert "fatal producer error" in str(error) and "Idempotent producer not supported" in str(error)
    assert error.delivered == 0 and error.sink == sink.name
    _, close_error = run_bounded(sink.close, 30)
    assert isinstance(close_error, SinkError) and "fatal producer error" in str(close_error)
    stats = sink.stats()
    assert stats["delivered"] == 0 and stats["failed"] + stats["undelivered"] == stats["produced"] > 0


def test_a_run_into_a_fatal_producer_error_ends_with_a_sink_error(kafka_broker):
    from doge_dist import DataOnlineGenerator, SimulationError

    class Factory:
        def create(self, index=0):
            return Sub(index)

    sink = _fatal_sink(kafka_broker)
    gen = DataOnlineGenerator(["a", "b"], "a", Factory(), 50, 1000, 200, TS0, seed=3)
    gen.add_transition("go", "a", "b", 10, event_sinks=[sink])
    gen.add_transition("back", "b", "a", 10, event_sinks=[sink])
    _, error = run_bounded(gen.start, 120)
    sink_error = error.__cause__ if isinstance(error, SimulationError) else error
    assert isinstance(sink_error, SinkError), repr(error)
    assert "Idempotent producer not supported" in str(sink_error) and sink_error.sink == sink.name
    assert sink_error.delivered == 0


def test_a_producer_that_cannot_open_where_it_writes_is_a_sink_error(kafka_broker, tmp_path):
    ca = tmp_path / "ca.pem"  # exists where the model is built (the factory checks it) ...
    ca.write_bytes(open("/etc/ssl/certs/ca-certificates.crt", "rb").read())
    factory = KafkaSinkFactory(kafka_broker.bootstrap, conf={"security.protocol": "ssl",
                                                             "ssl.ca.location": str(ca), "log_level": 0})
    sink = factory.create("t_missing_ca", key_of, value_of)
    ca.unlink()  # ... but not where the sink opens its producer
    with pytest.raises(SinkError, match="cannot open the producer.*ssl.ca.location") as info:
        sink.collect(TS0, Sub(1), GO)
    assert info.value.sink == sink.name and isinstance(info.value.__cause__, Exception)
    sink.close()  # never opened: nothing to report
