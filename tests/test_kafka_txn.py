"""Transactional Kafka sinks against the local Tansu broker, driven as a shard drives them.

What these tests pin down about Tansu 0.6 (see doge_dist/sinks/_kafka_txn.py): transactional offsets
commit and abort with their transaction and fencing works, so committed windows are never re-sent
after a recovery; aborted messages stay visible (Tansu does not honour aborts), so the lost worker's
open transaction can show up twice. On Apache Kafka read_committed consumers would not see those.
"""

from __future__ import annotations

import collections
import json
import pickle
import uuid

import pytest
from test_kafka_sink import GO, TS0, Sub, consume, key_of, new_topic, value_of

from doge_dist import KafkaSinkFactory, ModelError, SinkError
from doge_dist._context import ShardInfo, shard_scope
from doge_dist.sinks._kafka import KafkaSink
from doge_dist.sinks._kafka_txn import TransactionalKafkaSink

pytestmark = pytest.mark.services


def shard(run_id: str, parts: int = 2) -> ShardInfo:
    return ShardInfo(index=0, count=1, start=0, stop=100, parts=parts, first_part=0, stop_part=parts,
                     in_driver=True, run_id=run_id, tick_ms=1000, timestamp_start=TS0)


def feed(sink, start: int, stop: int) -> None:
    """Events ``start..stop-1``, in parts of runs of 5 (as the engine routes them)."""
    for i in range(start, stop):
        if getattr(sink, "uses_parts", False):
            sink.select_part((i // 5) % 2)
        sink.collect(TS0 + i * 1000, Sub(i), GO)


def values(messages) -> collections.Counter:
    """How often each event (its subject id) arrived."""
    return collections.Counter(json.loads(value)["sid"] for _, _, value, _ in messages)


def txn_factory(broker, **kwargs) -> KafkaSinkFactory:
    client = f"doge-txn-{uuid.uuid4().hex[:6]}"
    return KafkaSinkFactory(broker.bootstrap, client, transactional=True, **kwargs)


def test_a_replacement_skips_committed_windows_and_the_lost_transaction_is_fenced(kafka_broker):
    topic = new_topic(kafka_broker)
    sink = txn_factory(kafka_broker).create(topic, key_of, value_of)
    assert isinstance(sink, TransactionalKafkaSink) and sink.uses_parts and callable(sink.resume)
    run_id = uuid.uuid4().hex[:16]
    with shard_scope(shard(run_id)):
        sink.begin_run()
        feed(sink, 0, 50)
        sink.end_window()
        positions = sink.checkpoint_positions()
        assert {k: v["committed"] for k, v in positions.items()} == {"part:0": 25, "part:1": 25}
        feed(sink, 50, 80)
        sink.end_window()  # committed after the checkpoint: must not be sent again
        feed(sink, 80, 100)  # the open transaction when the worker is lost
        sink.flush(10)
        sink._forget_id(sink._tid)  # its process is lost (a replacement runs in a new process)
        replacement = pickle.loads(pickle.dumps(sink))
        replacement.resume(positions)  # fences the lost producer; its transaction is aborted
        feed(replacement, 50, 120)
        replacement.close()
        with pytest.raises(SinkError, match="fenc|FENCED"):  # the zombie cannot commit any more
            sink.close()
    assert replacement.stats() == {"produced": 40, "delivered": 40, "failed": 0, "undelivered": 0,
                                   "skipped": 30}
    seen = values(consume(kafka_broker.bootstrap, topic, 120))
    assert set(seen) == set(range(120))  # nothing lost
    assert all(seen[i] == 1 for i in range(80))  # committed windows were not re-sent
    assert all(seen[i] == 1 for i in range(100, 120))
    # what Tansu 0.6 does not honour: the aborted (fenced) transaction's messages stay visible to
    # read_committed consumers, so they arrive twice; on Apache Kafka each would arrive once. If this
    # starts failing, the broker hides aborts now: update the table in _kafka_txn's docstring.
    assert all(seen[i] == 2 for i in range(80, 100))


def test_a_kill_before_any_checkpoint_resumes_from_the_committed_counts(kafka_broker):
    topic = new_topic(kafka_broker)
    sink = txn_factory(kafka_broker).create(topic, key_of, value_of)
    run_id = uuid.uuid4().hex[:16]
    with shard_scope(shard(run_id)):
        sink.begin_run()
        feed(sink, 0, 40)
        sink.end_window()
        sink._forget_id(sink._tid)
        replacement = pickle.loads(pickle.dumps(sink))
        replacement.resume({})
        feed(replacement, 0, 60)
        replacement.close()
    assert replacement.stats()["skipped"] == 40
    seen = values(consume(kafka_broker.bootstrap, topic, 60))
    assert seen == collections.Counter(range(60))


def test_each_window_is_one_transaction_and_the_counts_are_committed_with_it(kafka_broker):
    from confluent_kafka import Consumer, TopicPartition

    topic = new_topic(kafka_broker)
    sink = txn_factory(kafka_broker).create(topic, key_of, value_of)
    run_id = uuid.uuid4().hex[:16]
    with shard_scope(shard(run_id)):
        sink.begin_run()
        feed(sink, 0, 30)
        sink.end_window()
        groups = [sink.progress_group(p) for p in (0, 1)]
        feed(sink, 30, 37)  # open transaction: not in the committed counts yet
        committed = []
        for group in groups:
            consumer = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": group})
            try:
                [tp] = consumer.committed([TopicPartition(topic, 0)], timeout=10)
            finally:
                consumer.close()
            committed.append(tp.offset)
        assert committed == [15, 15]
        assert sink.stats() == {"produced": 37, "delivered": 30, "failed": 0, "undelivered": 7}
        sink.close()
    assert sink.stats()["delivered"] == 37


def test_two_transactional_sinks_on_one_id_in_a_process_are_refused(kafka_broker):
    factory = txn_factory(kafka_broker)
    topic = new_topic(kafka_broker)
    first, second = factory.create(topic, key_of, value_of), factory.create(topic, key_of, value_of)
    with shard_scope(shard("run-x")):
        first.begin_run()
        second.begin_run()
        feed(first, 0, 1)
        with pytest.raises(SinkError, match="distinct transactional_id="):
            feed(second, 0, 1)
        first.close()
        second.close()


def test_without_transactions_there_is_no_resume_and_checkpoints_wait_for_delivery(kafka_broker):
    topic = new_topic(kafka_broker)
    sink = KafkaSinkFactory(kafka_broker.bootstrap).create(topic, key_of, value_of)
    assert type(sink) is KafkaSink and getattr(sink, "resume", None) is None
    with shard_scope(shard("run-y")):
        sink.begin_run()
        feed(sink, 0, 500)
        assert sink.checkpoint_positions() == {}
        assert sink.stats()["delivered"] == 500  # everything before a checkpoint is on the broker
        sink.close()


@pytest.mark.parametrize("kwargs, message", [
    ({"transactional": "yes"}, "transactional must be True or False"),
    ({"transactional_id": "x"}, "needs transactional=True"),
    ({"transactional": True, "transactional_id": ""}, "transactional_id must be"),
    ({"transactional": True, "conf": {"enable.idempotence": False}}, "idempotent producer"),
    ({"conf": {"transactional.id": "mine"}}, "do not set conf"),
    ({"transactional": True, "conf": {"transaction.timeout.ms": 10}}, "transaction.timeout.ms"),
])
def test_bad_transactional_settings_are_model_errors(kwargs, message):
    with pytest.raises(ModelError, match=message):
        KafkaSinkFactory("127.0.0.1:9", **kwargs)


def test_the_avro_factory_makes_transactional_sinks_too():
    from doge_dist import KafkaAvroSinkFactory

    factory = KafkaAvroSinkFactory("127.0.0.1:9", "mock://txn", transactional=True, transactional_id="jobs")
    sink = factory.create("events", key_of, '"string"', value_of, '"string"')
    assert isinstance(sink, TransactionalKafkaSink)
    with shard_scope(shard("run-z")):
        assert sink.transactional_id() == "jobs.run-z.events.0"
        assert sink.progress_group(1) == "jobs.run-z.events.part-1"


def test_a_job_spec_kafka_sink_takes_transactional():
    from doge_dist.sinks._spec import SinkSpecError, build_sink

    def kafka_sink(kind="kafka", **extra):
        description = {"type": kind, "topic": "t", "bootstrap_servers": "127.0.0.1:9", **extra}
        return build_sink(description, record=None, for_model=True)

    assert isinstance(kafka_sink(transactional=True), TransactionalKafkaSink)
    assert type(kafka_sink()) is KafkaSink
    avro = kafka_sink("kafka-avro", schema_registry_url="mock://spec", transactional=True)
    assert isinstance(avro, TransactionalKafkaSink)
    with pytest.raises(SinkSpecError, match="transactional must be true or false"):
        kafka_sink(transactional="yes")
