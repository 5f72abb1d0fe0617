"""KafkaAvroSinkFactory against a real broker, with the mock:// registry and with an HTTP registry."""

from __future__ import annotations

import json
import pickle
import uuid
from dataclasses import dataclass

import pytest
from conftest import REPO_ROOT, free_port
from registry_server import RegistryServer
from test_kafka_sink import TS0, consume, new_topic, run_bounded, silent_server

from doge_dist import ModelError, SinkError, Transition
from doge_dist.sinks import KafkaAvroSinkFactory, _kafka_avro

pytestmark = pytest.mark.services

KEY_SCHEMA = (REPO_ROOT / "examples" / "avro" / "Key.avsc").read_text()
EVENT_SCHEMA = (REPO_ROOT / "examples" / "avro" / "Event.avsc").read_text()
TRIGGERS = [Transition("login", "offline", "online", 10.0), Transition("logout", "online", "offline", 70.0)]


@dataclass
class User:
    user_id: int
    balance: int
    loan_balance: int


def avro_key(user: User, transition: Transition) -> dict:
    return {"key": str(user.user_id)}


def avro_value(timestamp: int, user: User, transition: Transition) -> dict:
    return {"timestamp": timestamp,
            "user": {"userId": str(user.user_id), "balance": str(user.balance),
                     "loanBalance": str(user.loan_balance)},
            "event": transition.trigger}


def produce_users(sink, n: int) -> list[tuple[dict, dict, int]]:
    users = [User(i, 100 * i, 7 * i) for i in range(13)]
    sent = []
    for i in range(n):
        user, transition, ts = users[i % len(users)], TRIGGERS[i % 2], TS0 + i * 60_000
        user.balance += i
        sink.collect(ts, user, transition)
        sent.append((avro_key(user, transition), avro_value(ts, user, transition), ts))
    return sent


def decode_all(registry_client, topic: str, messages: list) -> list[tuple[dict, dict, int]]:
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    deserializer = AvroDeserializer(registry_client)
    key_ctx = SerializationContext(topic, MessageField.KEY)
    value_ctx = SerializationContext(topic, MessageField.VALUE)
    return [(deserializer(key, key_ctx), deserializer(value, value_ctx), ts)
            for _, key, value, ts in messages]


def by_timestamp(rows):
    return sorted(rows, key=lambda row: row[2])


def test_mock_registry_roundtrip(kafka_broker):
    topic = new_topic(kafka_broker, 3)
    factory = KafkaAvroSinkFactory([kafka_broker.bootstrap], f"mock://{uuid.uuid4().hex}", "avro-test")
    sink = factory.create(topic, avro_key, KEY_SCHEMA, avro_value, EVENT_SCHEMA)
    assert sink.name == f"kafka:{topic}"
    sent = produce_users(sink, 400)
    sink.close()
    assert sink.stats() == {"produced": 400, "delivered": 400, "failed": 0, "undelivered": 0}
    messages = consume(kafka_broker.bootstrap, topic, 400)
    assert all(value[0] == 0 for _, _, value, _ in messages)  # Confluent wire format: magic byte
    # The mock registry lives in this process: decode with the same client the sink used.
    assert by_timestamp(decode_all(factory.schema_registry_client(), topic, messages)) == by_timestamp(sent)


def test_http_registry_with_basic_auth(kafka_broker):
    topic = new_topic(kafka_broker, 3)
    with RegistryServer(basic_auth=("doge", "s3cret")) as registry:
        factory = KafkaAvroSinkFactory(kafka_broker.bootstrap, registry.url,
                                       registry_conf={"basic.auth.user.info": "doge:s3cret", "timeout": 10})
        sink = factory.create(topic, avro_key, json.loads(KEY_SCHEMA), avro_value, EVENT_SCHEMA)
        sink = pickle.loads(pickle.dumps(sink))  # as shipped to a worker
        sent = produce_users(sink, 250)
        sink.close()
        assert sink.stats()["delivered"] == 250
        messages = consume(kafka_broker.bootstrap, topic, 250)

        from confluent_kafka.schema_registry import SchemaRegistryClient

        reader = SchemaRegistryClient({"url": registry.url, "basic.auth.user.info": "doge:s3cret"})
        assert by_timestamp(decode_all(reader, topic, messages)) == by_timestamp(sent)
        assert set(registry.subjects) == {f"{topic}-key", f"{topic}-value"}
        requests = registry.requests
        assert requests and all(user == "doge" for _, _, user in requests)
        assert any(method == "POST" and path.startswith(f"/subjects/{topic}-value/versions")
                   for method, path, _ in requests)
        assert any(path.startswith("/schemas/ids/") for _, path, _ in requests)


def test_http_registry_wrong_password_fails_clearly(kafka_broker):
    topic = new_topic(kafka_broker, 1)
    with RegistryServer(basic_auth=("doge", "s3cret")) as registry:
        factory = KafkaAvroSinkFactory(kafka_broker.bootstrap, registry.url,
                                       registry_conf={"basic.auth.user.info": "doge:wrong"})
        sink = factory.create(topic, avro_key, KEY_SCHEMA, avro_value, EVENT_SCHEMA)
        with pytest.raises(SinkError, match="HTTP 401") as info:
            produce_users(sink, 1)
        message = str(info.value)
        assert registry.url in message and f"'{topic}-key'" in message
        assert "basic.auth.user.info" in message
        sink.close()
        assert sink.stats()["produced"] == 0
        assert registry.subjects == {}


def test_unreachable_registry_fails_clearly(kafka_broker):
    url = f"http://127.0.0.1:{free_port()}"
    factory = KafkaAvroSinkFactory(kafka_broker.bootstrap, url,
                                   registry_conf={"max.retries": 0, "timeout": 5})
    sink = factory.create(new_topic(kafka_broker, 1), avro_key, KEY_SCHEMA, avro_value, EVENT_SCHEMA)
    with pytest.raises(SinkError, match=f"schema registry {url} unreachable"):
        produce_users(sink, 1)
    sink.close()


def test_silent_registry_fails_within_the_default_timeout_with_credentials_masked(kafka_broker, monkeypatch):
    # the default bound, shortened for the test (30 s in real runs)
    monkeypatch.setattr(_kafka_avro, "DEFAULT_REGISTRY_TIMEOUT_S", 0.5)
    with silent_server() as port:  # accepts the connection, never answers
        url = f"http://doge:s3cret-pw@127.0.0.1:{port}"
        factory = KafkaAvroSinkFactory(kafka_broker.bootstrap, url, registry_conf={"max.retries": 0})
        assert factory.registry_conf["timeout"] == 0.5
        sink = factory.create(new_topic(kafka_broker, 1), avro_key, KEY_SCHEMA, avro_value, EVENT_SCHEMA)
        _, error = run_bounded(lambda: produce_users(sink, 1), 30)
    assert isinstance(error, SinkError), error
    message = str(error)
    assert f"schema registry http://doge:***@127.0.0.1:{port} did not answer within" in message
    assert "registry_conf['timeout']=0.5 s" in message and "-key'" in message
    assert "s3cret-pw" not in message
    sink.close()
    assert sink.stats()["produced"] == 0


def test_registry_timeout_default_and_validation():
    assert KafkaAvroSinkFactory("h:1", "http://r:1").registry_conf["timeout"] == 30
    given = KafkaAvroSinkFactory("h:1", "http://r:1", registry_conf={"timeout": 4})
    assert given.registry_conf["timeout"] == 4
    for bad in (None, 0, -1, "10", True):
        with pytest.raises(ModelError, match=r"registry_conf\['timeout'\] must be a positive number"):
            KafkaAvroSinkFactory("h:1", "http://r:1", registry_conf={"timeout": bad})


def test_registry_credentials_are_masked_in_errors_and_repr(kafka_broker):
    with RegistryServer(basic_auth=("doge", "s3cret")) as registry:
        # credentials in the URL (the client sends them as basic auth), wrong password
        url = registry.url.replace("http://", "http://doge:wr0ng-pw@")
        factory = KafkaAvroSinkFactory(kafka_broker.bootstrap, url)
        assert "wr0ng-pw" not in repr(factory) and "http://doge:***@127.0.0.1" in repr(factory)
        sink = factory.create(new_topic(kafka_broker, 1), avro_key, KEY_SCHEMA, avro_value, EVENT_SCHEMA)
        with pytest.raises(SinkError, match="HTTP 401") as info:
            produce_users(sink, 1)
        sink.close()
    assert "wr0ng-pw" not in str(info.value) and "http://doge:***@127.0.0.1" in str(info.value)

    gone = f"http://doge:wr0ng-pw@127.0.0.1:{free_port()}"
    factory = KafkaAvroSinkFactory(kafka_broker.bootstrap, gone, registry_conf={"max.retries": 0})
    sink = factory.create(new_topic(kafka_broker, 1), avro_key, KEY_SCHEMA, avro_value, EVENT_SCHEMA)
    with pytest.raises(SinkError, match="unreachable") as info:
        produce_users(sink, 1)
    sink.close()
    assert "wr0ng-pw" not in str(info.value) and "http://doge:***@127.0.0.1" in str(info.value)

    with pytest.raises(ModelError) as info:
        KafkaAvroSinkFactory("h:1", "ftp://doge:wr0ng-pw@host")
    assert "wr0ng-pw" not in str(info.value) and "ftp://doge:***@host" in str(info.value)
    with pytest.raises(ModelError, match="invalid registry_conf") as info:  # the client's own error text
        KafkaAvroSinkFactory("h:1", "http://doge:wr0ng-pw@host",
                             registry_conf={"basic.auth.user.info": "other:pw-two"})
    assert "wr0ng-pw" not in str(info.value) and "pw-two" not in str(info.value)


@pytest.mark.parametrize("which, schema, reason", [
    ("key_schema", "{not json", "is not valid JSON"),
    ("value_schema", '{"type": "record", "name": "E", "fields": [{"name": "a", "type": "strin"}]}',
     r"not a valid Avro schema \(UnknownType: strin\)"),
    ("value_schema", '{"type": "record", "fields": []}', '"name" is a required field'),
    ("key_schema", '{"type": "record", "name": "K"}', 'a record needs a "fields" list'),
    ("key_schema", 42, "must be an Avro schema as JSON text or a dict"),
])
def test_invalid_schema_fails_at_create(which, schema, reason):
    factory = KafkaAvroSinkFactory("127.0.0.1:9", "mock://invalid")
    schemas = {"key_schema": KEY_SCHEMA, "value_schema": EVENT_SCHEMA, which: schema}
    with pytest.raises(ModelError, match=reason) as info:
        factory.create("events", avro_key, schemas["key_schema"], avro_value, schemas["value_schema"])
    assert f"kafka:events: {which}" in str(info.value)


@pytest.mark.parametrize("broken, field", [
    (lambda record: record["user"].pop("balance"), "doge.example.User.balance"),
    (lambda record: record.update(timestamp="yesterday"), "doge.example.Event.timestamp"),
    (lambda record: record["user"].update(loanBalance=12), "doge.example.User.loanBalance"),
])
def test_record_not_matching_schema_names_the_field(kafka_broker, broken, field):
    topic = new_topic(kafka_broker, 1)

    def bad_value(timestamp, user, transition):
        record = avro_value(timestamp, user, transition)
        broken(record)
        return record

    factory = KafkaAvroSinkFactory(kafka_broker.bootstrap, f"mock://{uuid.uuid4().hex}")
    sink = factory.create(topic, avro_key, KEY_SCHEMA, bad_value, EVENT_SCHEMA)
    with pytest.raises(ValueError) as info:
        sink.collect(TS0, User(1, 2, 3), TRIGGERS[0])
    message = str(info.value)
    assert f"kafka:{topic}" in message and "value record does not match" in message
    assert f"field '{field}'" in message
    sink.close()


def test_key_record_error_names_key(kafka_broker):
    factory = KafkaAvroSinkFactory(kafka_broker.bootstrap, f"mock://{uuid.uuid4().hex}")
    sink = factory.create(new_topic(kafka_broker, 1), lambda user, t: {"id": 1}, KEY_SCHEMA,
                          avro_value, EVENT_SCHEMA)
    with pytest.raises(ValueError, match=r"key record does not match.*field 'doge.example.Key.key'"):
        sink.collect(TS0, User(1, 2, 3), TRIGGERS[0])
    sink.close()


def test_pickle_factory_and_sink_before_and_after_use(kafka_broker):
    topic = new_topic(kafka_broker, 3)
    factory = KafkaAvroSinkFactory(kafka_broker.bootstrap, f"mock://{uuid.uuid4().hex}",
                                   registry_conf={"timeout": 5})
    clone = pickle.loads(pickle.dumps(factory))
    assert clone.registry_conf == factory.registry_conf
    assert clone.bootstrap_servers == factory.bootstrap_servers
    sink = factory.create(topic, avro_key, KEY_SCHEMA, avro_value, EVENT_SCHEMA)
    produce_users(sink, 5)
    copy = pickle.loads(pickle.dumps(sink))  # the open producer, registry client and serializers stay behind
    assert copy.value_serializer._serializer is None and copy._producer is None
    sink.close()
    produce_users(copy, 5)
    copy.close()
    assert copy.stats()["delivered"] == 5
    assert len(consume(kafka_broker.bootstrap, topic, 10)) == 10


@pytest.mark.parametrize("kwargs, message", [
    ({"registry_conf": {"no.such": 1}}, "invalid registry_conf: Unrecognized properties: no.such"),
    ({"registry_conf": {"basic.auth.user.info": "nocolon"}}, "invalid registry_conf"),
    ({"registry_conf": "url"}, "registry_conf must be a dict"),
    ({"schema_registry_url": "localhost:8081"}, "must start with http://"),
    ({"serializer_conf": {"auto.register.schemas": "yes"}}, "invalid serializer_conf"),
    ({"conf": {"linger.ms": "x"}}, "invalid producer conf"),
])
def test_bad_factory_arguments(kwargs, message):
    with pytest.raises(ModelError, match=message):
        KafkaAvroSinkFactory("127.0.0.1:9", **{"schema_registry_url": "http://127.0.0.1:9", **kwargs})


def test_defaults_and_doge_datagen_positional_form(monkeypatch):
    monkeypatch.setenv("DOGE_SCHEMA_REGISTRY_URL", "http://registry.example:8081")
    assert KafkaAvroSinkFactory("h:1").schema_registry_url == "http://registry.example:8081"
    monkeypatch.delenv("DOGE_SCHEMA_REGISTRY_URL")
    legacy = KafkaAvroSinkFactory(["a:1"], "http://localhost:8081", "legacy", 2000)
    assert legacy.kafka.buffer_size == 2000 and legacy.kafka.client_id == "legacy"
    assert KafkaAvroSinkFactory().schema_registry_url == "http://localhost:8081"
