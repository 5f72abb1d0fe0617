"""doge-datagen's upstream examples run on doge_dist with only their import line changed.

The scripts in ``tests/upstream/examples`` are getindata/doge-datagen's ``examples/`` (Apache-2.0; see
``tests/upstream/README.md`` for the commit and every change). Each runs here as a subprocess, as its
README says (from the examples directory, with the repository on ``PYTHONPATH``), against a real
Tansu broker, the test Schema Registry and PostgreSQL, and the test checks what arrived: every event
``start()`` reported (recorded by ``tests/upstream/hook/sitecustomize.py``) is a message consumed or
a row counted, and each user's events chain from state to state.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import POSTGRES_URL, service_missing
from registry_server import RegistryServer

REPO_ROOT = Path(__file__).resolve().parent.parent
UPSTREAM = REPO_ROOT / "tests" / "upstream"

# trigger -> (from_state, to_state) in doge_example_common.create_example_data_online_generator
WALK = {"income": ("offline", "offline"), "spending": ("offline", "offline"),
        "login": ("offline", "online"), "logout": ("online", "offline"),
        "open_loan_screen": ("online", "loan_screen"), "close_loan_screen": ("loan_screen", "online"),
        "take_loan": ("loan_screen", "online")}


def test_the_copies_name_their_origin_and_document_every_variable_they_read():
    for path in sorted((UPSTREAM / "examples").glob("*.py")):
        lines = path.read_text().splitlines()
        header = "\n".join(line for line in lines[:10] if line.startswith("#"))
        assert header.startswith("# From getindata/doge-datagen"), path.name
        assert "commit db5288a1dd914dd3e18bc2429a17609ec59ddb02" in header, path.name
        assert "Apache License 2.0" in header, path.name
        body = "\n".join(lines[header.count("\n") + 1:])
        assert "doge_datagen" not in body, path.name
        for variable in re.findall(r"os\.environ\.get\('(\w+)'", body):
            if variable != "PGPASSWORD":  # upstream's own
                assert variable in header, f"{path.name}: reads ${variable} but its header does not say so"
    assert (UPSTREAM / "LICENSE").read_text().lstrip().startswith("Apache License")


# -- running an example ------------------------------------------------------------------------


class Example:
    """A copy of the upstream examples directory in a temporary directory, and how to run one."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / "examples"
        shutil.copytree(UPSTREAM / "examples", self.dir)
        self.results = root / "results.jsonl"

    def run(self, script: str, **env: str) -> tuple[subprocess.CompletedProcess, list[dict[str, Any]]]:
        full_env = {k: v for k, v in os.environ.items() if k not in ("LOGLEVEL", "PYTHONPATH")}
        # the hook first (sitecustomize), then this copy (so `examples` is doge-datagen's, not ours),
        # then the repository for doge_dist
        full_env["PYTHONPATH"] = os.pathsep.join([str(UPSTREAM / "hook"), str(self.root), str(REPO_ROOT)])
        full_env["DOGE_UPSTREAM_RESULT"] = str(self.results)
        full_env.update(env)
        done = subprocess.run([sys.executable, script], cwd=self.dir, env=full_env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, f"{script} failed:\n{done.stderr[-3000:]}"
        results = [json.loads(line) for line in self.results.read_text().splitlines()] \
            if self.results.exists() else []
        return done, results


@pytest.fixture
def example(tmp_path) -> Example:
    return Example(tmp_path)


def check_walks(events: list[tuple[int, int, str]], users: int = 10, ticks: int = 1000) -> None:
    """Each user's events, in time order, go from state to state along the model's transitions."""
    state: dict[int, str] = {}
    last: dict[int, int] = {}
    for timestamp, user, trigger in sorted(events, key=lambda e: (e[1], e[0])):
        assert 0 <= user < users
        assert timestamp % 60000 == 0 and 0 <= timestamp < ticks * 60000
        assert timestamp > last.get(user, -1), f"user {user} acted twice at {timestamp}"
        last[user] = timestamp
        src, dst = WALK[trigger.strip()]
        assert state.get(user, "offline") == src, f"user {user}: {trigger} from {state.get(user, 'offline')}"
        state[user] = dst


# -- the examples ------------------------------------------------------------------------------


EVENT_LINE = re.compile(r"^\[(\d+)\] User id: (\d+), balance: (-?\d+), loan_balance: (\d+) "
                        r"made a transition (\w+) from (\w+) to (\w+)$")


def test_doge_example_prints_every_event(example):
    """``from doge_datagen.printing_sink import PrintingSink, Transition`` -> doge_dist.printing_sink."""
    done, results = example.run("doge_example.py")
    (result,) = results
    lines = done.stdout.splitlines()
    assert len(lines) == result["total_events"] > 10
    events = []
    for line in lines:
        m = EVENT_LINE.match(line)
        assert m, f"not in doge-datagen's format: {line!r}"
        events.append((int(m.group(1)), int(m.group(2)), m.group(5)))
        assert WALK[m.group(5)] == (m.group(6), m.group(7))
    check_walks(events)


def test_doge_graph_example_writes_doctest_output(example, dot_binary):
    """``DataOnlineGeneratorGrapher(datagen).render()`` with no argument, as doge-datagen calls it."""
    done, results = example.run("doge_graph_example.py")
    assert results == []  # the example draws the model and runs nothing
    assert done.stdout.startswith("digraph")
    for trigger, (src, dst) in WALK.items():
        assert re.search(rf"\b{src} -> {dst} \[label=\"{trigger} \(P=", done.stdout), trigger
    # the example prints generate_graph().source; render() wrote the same source
    assert (example.dir / "doctest-output" / "out.gv").read_text() + "\n" == done.stdout
    assert (example.dir / "doctest-output" / "out.gv.pdf").read_bytes().startswith(b"%PDF")


@pytest.fixture
def postgres_database():
    """A database of the test's own (created and dropped here), as a doge-datagen style URL."""
    import sqlalchemy as sa

    name = f"doge_upstream_{uuid.uuid4().hex[:10]}"
    try:
        admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
    except Exception as exc:  # driver missing or server down
        service_missing(f"PostgreSQL unreachable at {POSTGRES_URL}: {exc}")
    url = sa.engine.make_url(POSTGRES_URL).set(drivername="postgresql", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def sql(url: str, *statements: str) -> list[list[tuple]]:
    """Run statements in one transaction; the rows of each (empty for DDL)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as conn:
            results = [conn.execute(sa.text(statement)) for statement in statements]
            return [list(result) if result.returns_rows else [] for result in results]
    finally:
        engine.dispose()


@pytest.mark.services
def test_doge_db_example_writes_every_event_to_postgres(example, postgres_database):
    # the table from doge-datagen's examples/README.md ("DB Example", step 1)
    sql(postgres_database, "create table events (user_id int, balance int, loan_balance int, "
                           "event varchar(50), timestamp int)")
    _, results = example.run("doge_db_example.py", POSTGRES_URL=postgres_database)
    (result,) = results
    (rows,) = sql(postgres_database, "SELECT timestamp, user_id, event, loan_balance FROM events")
    assert len(rows) == result["total_events"] > 10
    assert result["sink_stats"]["db:events"]["failed"] == 0
    check_walks([(ts, user, event) for ts, user, event, _ in rows])


def consume(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> list[Any]:
    """Every message of ``topic`` from the beginning (assigned partitions, no group join); bounded."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g_{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        meta = consumer.list_topics(topic, timeout=10)
        partitions = sorted(meta.topics[topic].partitions)
        assert partitions, f"topic {topic} does not exist"
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        got: list[Any] = []
        deadline = time.monotonic() + timeout
        quiet_until = None
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                if len(got) >= expected:  # drain a moment longer to catch duplicates
                    quiet_until = quiet_until or time.monotonic() + 1.0
                    if time.monotonic() > quiet_until:
                        break
                continue
            assert not msg.error(), f"consumer error: {msg.error()}"
            got.append(msg)
        return got
    finally:
        consumer.close()


KAFKA_ENV = {"KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}  # the examples' conf is for a SASL_SSL cluster


@pytest.mark.services
def test_doge_kafka_example_delivers_every_event(example, fresh_kafka_broker):
    """``KafkaSinkFactory(conf=kafka_conf)``: brokers and client id given only in ``conf``."""
    _, results = example.run("doge_kafka_example.py", KAFKA_BOOTSTRAP_SERVERS=fresh_kafka_broker.bootstrap,
                             **KAFKA_ENV)
    (result,) = results
    messages = consume(fresh_kafka_broker.bootstrap, "test_topic", result["total_events"])
    assert len(messages) == result["total_events"] > 10
    events = []
    for msg in messages:
        value = json.loads(msg.value())
        assert msg.key().decode() == str(value["user"]["user_id"])
        events.append((value["timestamp"], value["user"]["user_id"], value["event"]))
    check_walks(events)


@pytest.fixture
def registry():
    with RegistryServer() as server:
        yield server


def decode_avro(registry_url: str, topic: str, messages: list[Any]) -> list[tuple[dict, dict]]:
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    deserialize = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))
    return [(deserialize(m.key(), SerializationContext(topic, MessageField.KEY)),
             deserialize(m.value(), SerializationContext(topic, MessageField.VALUE))) for m in messages]


@pytest.mark.services
def test_doge_kafka_avro_example_delivers_every_event(example, fresh_kafka_broker, registry):
    """``KafkaAvroSinkFactory(schema_registry_url=..., conf=kafka_conf)`` with the example's .avsc files."""
    _, results = example.run("doge_kafka_avro_example.py",
                             KAFKA_BOOTSTRAP_SERVERS=fresh_kafka_broker.bootstrap,
                             SCHEMA_REGISTRY_URL=registry.url, **KAFKA_ENV)
    (result,) = results
    messages = consume(fresh_kafka_broker.bootstrap, "test_avro_topic", result["total_events"])
    assert len(messages) == result["total_events"] > 10
    decoded = decode_avro(registry.url, "test_avro_topic", messages)
    assert set(registry.subjects) == {"test_avro_topic-key", "test_avro_topic-value"}
    for key, value in decoded:
        assert key == {"key": value["user"]["userId"]}
    check_walks([(value["timestamp"], int(value["user"]["userId"]), value["event"]) for _, value in decoded])


@pytest.mark.services
def test_doge_demo_fills_two_topics_and_two_tables(example, fresh_kafka_broker, registry, postgres_database):
    """Avro to trx and clickstream, rows to balance and loan; sinks made at import time, as upstream."""
    # the tables from doge-datagen's examples/README.md ("Demo example", step 1)
    sql(postgres_database, "create table loan (timestamp int, user_id int, loan int)",
        "create table balance (timestamp int, user_id int, balance int)")
    _, results = example.run("doge_demo.py", KAFKA_BOOTSTRAP_SERVERS=fresh_kafka_broker.bootstrap,
                             SCHEMA_REGISTRY_URL=registry.url, POSTGRES_URL=postgres_database, **KAFKA_ENV)
    (result,) = results
    by_sink = result["events_by_sink"]
    trigger = result["events_by_trigger"]
    assert by_sink == {
        "db:balance": trigger["income"] + trigger["spending"] + trigger["take_loan"],
        "kafka:trx": trigger["spending"],
        "kafka:clickstream": trigger["login"] + trigger["open_loan_screen "] + trigger["close_loan_screen"]
        + trigger["take_loan"],
        "db:loan": trigger["take_loan"],
    }
    assert by_sink["kafka:trx"] > 0 and by_sink["kafka:clickstream"] > 0
    trx = decode_avro(registry.url, "trx", consume(fresh_kafka_broker.bootstrap, "trx", by_sink["kafka:trx"]))
    clicks = decode_avro(registry.url, "clickstream",
                         consume(fresh_kafka_broker.bootstrap, "clickstream", by_sink["kafka:clickstream"]))
    balance, loan = sql(postgres_database, "SELECT timestamp, user_id, balance FROM balance",
                        "SELECT timestamp, user_id, loan FROM loan")
    assert (len(trx), len(clicks), len(balance), len(loan)) == (
        by_sink["kafka:trx"], by_sink["kafka:clickstream"], by_sink["db:balance"], by_sink["db:loan"])
    # one event, several sinks: the same (timestamp, user) shows up in each of them
    balance_at = {(ts, user) for ts, user, _ in balance}
    assert {(v["timestamp"], int(v["user_id"])) for _, v in trx} <= balance_at
    assert {(ts, user) for ts, user, _ in loan} == {
        (v["timestamp"], int(v["user_id"])) for _, v in clicks if v["event"] == "take_loan"}
    assert {v["event"] for _, v in clicks} <= {"login", "open_loan_screen ", "close_loan_screen", "take_loan"}
