"""Kafka sink: events to a topic through one lazily opened confluent-kafka Producer per factory per process.

``KafkaSinkFactory`` is a picklable description of a producer; ``create()`` returns a ``KafkaSink``
per topic. Nothing connects until the first ``collect()`` in the process that writes; there the
factory's producer is opened once and shared by all its sinks. Delivery reports are counted per
sink (``stats()``); ``close()`` flushes with a bounded timeout and raises ``SinkError`` with the
counts when anything failed or is still undelivered.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .._context import current_shard
from .._errors import ModelError, SinkError
from ..model._vocabulary import EventSink, Transition

__all__ = [
    "KafkaSinkFactory",
    "KafkaSink",
    "LazySerializer",
    "RecordSerializationError",
    "BOOTSTRAP_ENV",
    "DEFAULT_BOOTSTRAP",
    "DEFAULT_DELIVERY_TIMEOUT_S",
    "PRODUCER_DEFAULTS",
]

BOOTSTRAP_ENV = "DOGE_KAFKA_BOOTSTRAP"
DEFAULT_BOOTSTRAP = "localhost:9092"
DEFAULT_CLIENT_ID = "doge-dist"
DEFAULT_DELIVERY_TIMEOUT_S = 30.0
#: Extra time ``close()`` waits beyond the delivery timeout (librdkafka scans for timeouts once a second).
FLUSH_GRACE_S = 5.0
#: How long the brokers may stay "all down" with messages waiting before ``collect()`` gives up.
ALL_DOWN_FAIL_S = 10.0
#: Delivery reports are served with ``poll(0)`` every this many produced messages, or after
#: ``POLL_INTERVAL_S`` when events are sparse (realtime runs), and broker health is checked then.
POLL_EVERY = 1000
POLL_INTERVAL_S = 0.5

#: Producer settings applied unless ``conf`` sets them. Against a local broker the Python side is
#: the bottleneck (linger.ms 5 vs 20 measured the same); 20 ms gives larger batches over a real
#: network at no cost to a generator. Compression off: lz4 measured ~15 % slower locally.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "linger.ms": 20,
    "batch.size": 1_000_000,
    "batch.num.messages": 10_000,
    "compression.type": "none",
}

# Settings owned by factory arguments; a conf entry for them would be silently ignored otherwise.
_OWNED = {
    "queue.buffering.max.messages": "buffer_size",
    "message.timeout.ms": "delivery_timeout_s",
    "delivery.timeout.ms": "delivery_timeout_s",
}
_monotonic = time.monotonic
_LOGGER = logging.getLogger("doge_dist")
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")

# (factory token, pid) -> open producer handle; one producer per factory per process.
_HANDLES: dict[tuple[str, int], _ProducerHandle] = {}
_HANDLES_LOCK = threading.Lock()


class RecordSerializationError(ValueError):
    """A key or value could not be serialized; the message names the sink (topic) and the field."""


class LazySerializer:
    """A picklable serializer description, turned into a live ``(obj, ctx) -> bytes`` callable by ``open()``.

    ``open()`` runs once per sink in the process that writes (for clients that cannot be pickled,
    such as a schema registry client). ``SinkError`` and ``RecordSerializationError`` raised by the
    returned callable propagate as they are; other errors are wrapped naming the sink and field.
    """

    def open(self) -> Callable[[Any, Any], bytes | None]:  # pragma: no cover - interface
        raise NotImplementedError


class _ProducerHandle:
    """The live producer of one factory in one process, with broker-health flags from ``error_cb``."""

    def __init__(self, conf: dict[str, Any], user_error_cb: Callable[[Any], None] | None) -> None:
        from confluent_kafka import KafkaError, Producer

        self._all_brokers_down = KafkaError._ALL_BROKERS_DOWN
        self._user_error_cb = user_error_cb
        self.fatal: str | None = None
        self.down_since: float | None = None
        self.down_reason = ""
        self.users = 0
        self.flush_timed_out = False  # a close() already waited in vain: later ones wait briefly
        self.gave_up = False  # a collect() already failed on broker health
        self.producer = Producer({**conf, "error_cb": self._on_error})

    def _on_error(self, err: Any) -> None:
        if err.fatal():
            self.fatal = err.str()
        elif err.code() == self._all_brokers_down:
            if self.down_since is None:
                self.down_since = time.monotonic()
            self.down_reason = err.str()
        if self._user_error_cb is not None:
            self._user_error_cb(err)


def _split_bootstrap(value: str | Iterable[str]) -> str:
    items = value.split(",") if isinstance(value, str) else list(value)
    servers = []
    for item in items:
        if not isinstance(item, str):
            raise ModelError(f"KafkaSinkFactory: bootstrap_servers entries must be 'host:port' strings, "
                             f"got {item!r} ({type(item).__name__})")
        item = item.strip()
        if not item or any(ch.isspace() for ch in item):
            raise ModelError(f"KafkaSinkFactory: invalid bootstrap server {item!r} (expected 'host:port')")
        servers.append(item)
    if not servers:
        raise ModelError("KafkaSinkFactory: bootstrap_servers is empty")
    return ",".join(servers)


def _check_conf(conf: Any, owner: str) -> dict[str, Any]:
    if conf is None:
        return {}
    if not isinstance(conf, Mapping):
        raise ModelError(f"{owner}: conf must be a dict of librdkafka settings, got {type(conf).__name__}")
    checked: dict[str, Any] = {}
    for key, value in conf.items():
        if not isinstance(key, str):
            raise ModelError(f"{owner}: conf keys must be strings, got {key!r}")
        if callable(value):
            if not (key.endswith("_cb") or key in ("logger", "on_delivery")):
                raise ModelError(f"{owner}: conf[{key!r}] is a callable; only callback settings "
                                 f"(error_cb, stats_cb, throttle_cb, oauth_cb, logger) take one")
        elif not isinstance(value, (str, int, float)):  # bool is an int
            raise ModelError(f"{owner}: conf[{key!r}] must be a str, int, float or bool, "
                             f"got {type(value).__name__} {value!r}")
        if key in _OWNED:
            raise ModelError(f"{owner}: set {_OWNED[key]}= instead of conf[{key!r}]")
        if key == "delivery.report.only.error" and str(value).lower() in ("true", "1"):
            raise ModelError(f"{owner}: conf['delivery.report.only.error'] is not supported: "
                             "the sink counts every delivery report")
        checked[key] = value
    return checked


def _validate_with_librdkafka(conf: dict[str, Any], owner: str) -> None:
    """Let librdkafka check names and values now, with a producer that has no brokers to reach."""
    from confluent_kafka import KafkaException, Producer

    probe = {k: v for k, v in conf.items() if k not in ("bootstrap.servers", "error_cb", "logger")}
    probe["log_level"] = 0  # no "no bootstrap.servers" notice on stderr
    try:
        Producer(probe)
    except KafkaException as exc:
        err = exc.args[0]
        reason = err.str() if hasattr(err, "str") else str(exc)
        raise ModelError(f"{owner}: invalid producer conf: {reason}") from None
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{owner}: invalid producer conf: {exc}") from None


class KafkaSinkFactory:
    """Creates ``KafkaSink`` s that share one producer per process (doge-datagen compatible).

    :param bootstrap_servers: iterable of ``"host:port"`` or a comma separated string; ``None``
        reads ``$DOGE_KAFKA_BOOTSTRAP``, else ``"localhost:9092"`` (or ``conf["bootstrap.servers"]``).
    :param client_id: producer ``client.id`` (default ``"doge-dist"``; ``-shard<i>`` is appended
        in sharded runs).
    :param conf: extra librdkafka producer settings; they override ``PRODUCER_DEFAULTS``
        (``enable.idempotence=true``, ``linger.ms=20``, no compression). Checked here.
    :param buffer_size: the most messages held in the local producer queue
        (``queue.buffering.max.messages``); when it is full ``collect()`` serves delivery reports
        and retries rather than dropping. (doge-datagen flushed every ``buffer_size`` messages.)
    :param delivery_timeout_s: how long a message may wait for delivery (``message.timeout.ms``)
        before it counts as failed; default 30 s.
    :param close_timeout_s: the most ``close()`` waits for outstanding deliveries; default
        ``delivery_timeout_s + 5``.

    For doge-datagen's positional form ``KafkaSinkFactory(servers, client_id, buffer_size)``
    an int in the ``conf`` position is taken as ``buffer_size``.
    """

    def __init__(
        self,
        bootstrap_servers: str | Iterable[str] | None = None,
        client_id: str | None = None,
        conf: Mapping[str, Any] | None = None,
        buffer_size: int = 100_000,
        *,
        delivery_timeout_s: float | None = None,
        close_timeout_s: float | None = None,
    ) -> None:
        owner = type(self).__name__
        if isinstance(conf, int) and not isinstance(conf, bool) and buffer_size == 100_000:
            conf, buffer_size = None, conf  # doge-datagen: (bootstrap_servers, client_id, buffer_size)
        user_conf = _check_conf(conf, owner)
        if bootstrap_servers is None:
            bootstrap_servers = user_conf.get("bootstrap.servers") or os.environ.get(BOOTSTRAP_ENV) \
                or DEFAULT_BOOTSTRAP
        elif "bootstrap.servers" in user_conf:
            raise ModelError(f"{owner}: give the brokers either as bootstrap_servers or as "
                             "conf['bootstrap.servers'], not both")
        self.bootstrap_servers = _split_bootstrap(bootstrap_servers)
        if client_id is not None and not (isinstance(client_id, str) and client_id):
            raise ModelError(f"{owner}: client_id must be a non-empty str, got {client_id!r}")
        if client_id is not None and "client.id" in user_conf:
            raise ModelError(f"{owner}: give client_id or conf['client.id'], not both")
        self.client_id = client_id or user_conf.pop("client.id", None) or DEFAULT_CLIENT_ID
        if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 1:
            raise ModelError(f"{owner}: buffer_size must be a positive int, got {buffer_size!r}")
        self.buffer_size = buffer_size
        self.delivery_timeout_s = _positive(
            DEFAULT_DELIVERY_TIMEOUT_S if delivery_timeout_s is None else delivery_timeout_s,
            "delivery_timeout_s", owner)
        self.close_timeout_s = _positive(
            self.delivery_timeout_s + FLUSH_GRACE_S if close_timeout_s is None else close_timeout_s,
            "close_timeout_s", owner)
        self.conf = user_conf
        _validate_with_librdkafka(self.producer_conf(), owner)
        self._token = uuid.uuid4().hex

    def producer_conf(self) -> dict[str, Any]:
        """The librdkafka settings the producer is opened with (without the error callback)."""
        conf = {**PRODUCER_DEFAULTS, **self.conf}
        conf["bootstrap.servers"] = self.bootstrap_servers
        conf["client.id"] = self.client_id
        conf["queue.buffering.max.messages"] = self.buffer_size
        conf["message.timeout.ms"] = max(1, int(self.delivery_timeout_s * 1000))
        return conf

    def create(
        self,
        topic: str,
        key_function: Callable[[Any, Transition], Any],
        value_function: Callable[[int, Any, Transition], Any],
        key_serializer: Any = None,
        value_serializer: Any = None,
    ) -> KafkaSink:
        """A sink writing to ``topic``; ``None`` serializers mean ``StringSerializer()`` (UTF-8).

        ``key_function(subject, transition)`` gives the key (so one subject's events share a
        partition, in order); ``value_function(timestamp, subject, transition)`` gives the value.

        The message timestamp is the event timestamp in epoch milliseconds. librdkafka treats a
        timestamp of 0 as "now": events at timestamp 0 (a generator with the default
        ``timestamp_start=0``) get the wall-clock time of producing instead. Set the generator's
        ``timestamp_start`` to a real epoch-ms value (e.g. ``int(time.time() * 1000)``); each sink
        logs one WARNING (logger ``"doge_dist"``) the first time it produces a timestamp <= 0.
        """
        return KafkaSink(self, topic, key_function, value_function, key_serializer, value_serializer)

    # -- process-local producer -------------------------------------------------------------
    def _acquire(self) -> _ProducerHandle:
        key = (self._token, os.getpid())
        with _HANDLES_LOCK:
            handle = _HANDLES.get(key)
            if handle is None:
                conf = self.producer_conf()
                shard = current_shard()
                if shard.count > 1:
                    conf["client.id"] = f"{self.client_id}-shard{shard.index}"
                user_cb = conf.pop("error_cb", None)
                handle = _HANDLES[key] = _ProducerHandle(conf, user_cb)
            handle.users += 1
            return handle

    def _release(self, handle: _ProducerHandle) -> None:
        key = (self._token, os.getpid())
        with _HANDLES_LOCK:
            handle.users -= 1
            if handle.users > 0 or _HANDLES.get(key) is not handle:
                return
            del _HANDLES[key]
        producer = handle.producer
        if len(producer):
            producer.purge()  # whatever is left stays counted as undelivered
            producer.flush(1.0)

    def __repr__(self) -> str:
        return f"KafkaSinkFactory(bootstrap_servers={self.bootstrap_servers!r}, client_id={self.client_id!r})"


def _positive(value: Any, name: str, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ModelError(f"{owner}: {name} must be a positive number of seconds, got {value!r}")
    return float(value)


class KafkaSink(EventSink):
    """Produces each event to ``topic``: key from ``key_function``, value from ``value_function``.

    ``name`` is ``"kafka:<topic>"``. ``stats()`` gives produced / delivered / failed / undelivered
    counts for the current process since the sink was opened.
    """

    _LIVE = ("_handle", "_producer", "_produce", "_key_ser", "_value_ser", "_key_ctx", "_value_ctx",
             "_utf8_key", "_utf8_value", "_dr", "_produced", "_delivered", "_failed", "_first_error",
             "_since_poll", "_poll_due", "_ts_warned")

    def __init__(
        self,
        factory: KafkaSinkFactory,
        topic: str,
        key_function: Callable[[Any, Transition], Any],
        value_function: Callable[[int, Any, Transition], Any],
        key_serializer: Any = None,
        value_serializer: Any = None,
    ) -> None:
        if not isinstance(topic, str) or not _TOPIC_RE.match(topic) or topic in (".", ".."):
            raise ModelError(f"KafkaSink: invalid topic name {topic!r} (1-249 characters of "
                             "letters, digits, '.', '_', '-')")
        for label, fn in (("key_function", key_function), ("value_function", value_function)):
            if not callable(fn):
                raise ModelError(f"kafka:{topic}: {label} must be callable, got {fn!r}")
        for label, ser in (("key_serializer", key_serializer), ("value_serializer", value_serializer)):
            if ser is not None and not callable(ser) and not isinstance(ser, LazySerializer):
                raise ModelError(f"kafka:{topic}: {label} must be a confluent_kafka Serializer "
                                 f"(callable as serializer(obj, ctx)), got {ser!r}")
        self.factory = factory
        self.topic = topic
        self.name = f"kafka:{topic}"
        self.key_function = key_function
        self.value_function = value_function
        self.key_serializer = key_serializer
        self.value_serializer = value_serializer
        self._reset_live()
        self._produced = self._delivered = self._failed = 0

    def _reset_live(self) -> None:
        self._handle: _ProducerHandle | None = None
        self._producer: Any = None
        self._produce: Any = None
        self._key_ser: Any = None
        self._value_ser: Any = None
        self._utf8_key = self._utf8_value = False
        self._key_ctx: Any = None
        self._value_ctx: Any = None
        self._dr: Any = None
        self._first_error: str | None = None
        self._since_poll = 0
        self._poll_due = 0.0
        self._ts_warned = False

    # -- pickling: a description only --------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in self._LIVE}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset_live()
        self._produced = self._delivered = self._failed = 0

    # -- writing -------------------------------------------------------------------------------
    def _open(self) -> None:
        from confluent_kafka.serialization import MessageField, SerializationContext, StringSerializer

        key_ser = _open_serializer(self.key_serializer, StringSerializer)
        value_ser = _open_serializer(self.value_serializer, StringSerializer)
        handle = self.factory._acquire()
        self._handle = handle
        self._producer = handle.producer
        self._produce = handle.producer.produce
        self._key_ser, self._value_ser = key_ser, value_ser
        self._utf8_key = self.key_serializer is None
        self._utf8_value = self.value_serializer is None
        self._key_ctx = SerializationContext(self.topic, MessageField.KEY)
        self._value_ctx = SerializationContext(self.topic, MessageField.VALUE)
        self._produced = self._delivered = self._failed = 0
        self._first_error = None
        self._since_poll = 0
        self._poll_due = _monotonic() + POLL_INTERVAL_S
        self._dr = self._on_delivery

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is None:
            self._delivered += 1
            if self._handle is not None:
                self._handle.down_since = None
        elif not _is_purge(err):  # purged at close: stays "undelivered"
            self._failed += 1
            if self._first_error is None:
                self._first_error = err.str()

    def collect(self, timestamp: int, subject: Any, transition: Transition) -> None:
        if self._produce is None:
            self._open()
        key_obj = self.key_function(subject, transition)
        value_obj = self.value_function(timestamp, subject, transition)
        # Default StringSerializer: encode str inline (same UTF-8 bytes, no call per message).
        if self._utf8_key and key_obj.__class__ is str:
            key = key_obj.encode()
        else:
            key = self._serialize(self._key_ser, key_obj, self._key_ctx, "key")
        if self._utf8_value and value_obj.__class__ is str:
            value = value_obj.encode()
        else:
            value = self._serialize(self._value_ser, value_obj, self._value_ctx, "value")
        if timestamp <= 0 and not self._ts_warned:
            self._warn_timestamp(timestamp)
        try:
            self._produce(self.topic, value, key, timestamp=timestamp, on_delivery=self._dr)
        except BufferError:
            self._produce_when_room(key, value, timestamp)
        except TypeError:
            if isinstance(timestamp, int):
                raise
            self._produce_when_room(key, value, int(timestamp), wait_first=False)
        except Exception as exc:  # KafkaException: fatal producer state, message too large, ...
            raise self._error(f"produce() refused the message: {exc}") from exc
        self._produced += 1
        self._since_poll += 1
        if self._since_poll >= POLL_EVERY or _monotonic() >= self._poll_due:
            self._since_poll = 0
            self._poll_due = _monotonic() + POLL_INTERVAL_S
            self._producer.poll(0)
            self._check_health()

    def _warn_timestamp(self, timestamp: int) -> None:
        self._ts_warned = True
        _LOGGER.warning(
            "%s: event timestamp %s <= 0: librdkafka stamps a message with timestamp 0 with the "
            "current wall-clock time instead, so the topic will not show the simulated time; set the "
            "generator's timestamp_start to a real epoch-ms value, e.g. int(time.time() * 1000) "
            "(warned once per sink)", self.name, timestamp)

    def _serialize(self, serializer: Any, obj: Any, ctx: Any, field: str) -> bytes | None:
        try:
            return serializer(obj, ctx)
        except (SinkError, RecordSerializationError):
            raise
        except Exception as exc:
            raise RecordSerializationError(
                f"{self.name}: cannot serialize {field} {obj!r:.200}: {type(exc).__name__}: {exc}") from exc

    def _produce_when_room(self, key: bytes | None, value: bytes | None, timestamp: int,
                           wait_first: bool = True) -> None:
        """The local queue is full: serve delivery reports until there is room (bounded)."""
        deadline = _monotonic() + self.factory.close_timeout_s
        wait = wait_first
        while True:
            if wait:
                self._producer.poll(0.05)
                self._check_health()
            wait = True
            try:
                self._produce(self.topic, value, key, timestamp=timestamp, on_delivery=self._dr)
                return
            except BufferError:
                if _monotonic() > deadline:
                    raise self._error(f"local producer queue stayed full ({self.factory.buffer_size} "
                                      f"messages) for {self.factory.close_timeout_s:g} s") from None
            except Exception as exc:
                raise self._error(f"produce() refused the message: {exc}") from exc

    def _check_health(self) -> None:
        handle = self._handle
        assert handle is not None
        if handle.fatal is not None:
            handle.gave_up = True
            raise self._error(f"fatal producer error: {handle.fatal}")
        since = handle.down_since
        patience = min(ALL_DOWN_FAIL_S, self.factory.delivery_timeout_s)
        if since is not None and time.monotonic() - since > patience \
                and self._produced > self._delivered + self._failed:
            handle.gave_up = True
            raise self._error(f"all Kafka brokers are down ({handle.down_reason}); "
                              f"no delivery for {time.monotonic() - since:.0f} s")

    def _error(self, reason: str) -> SinkError:
        delivered, failed = self._delivered, self._failed
        undelivered = self._produced - delivered - failed
        detail = f"; first delivery error: {self._first_error}" if self._first_error else ""
        return SinkError(
            f"{self.name} (bootstrap {self.factory.bootstrap_servers}): {reason}: {self._produced} produced, "
            f"{delivered} delivered, {failed} failed, {undelivered} undelivered{detail}",
            sink=self.name, delivered=delivered, failed=failed, undelivered=undelivered)

    def flush(self, timeout: float | None = None) -> dict[str, int]:
        """Wait up to ``timeout`` s (default ``close_timeout_s``) for deliveries; return ``stats()``.

        The sink stays open. Nothing is raised here: failures show in the counts and at ``close()``.
        """
        if self._producer is not None:
            self._producer.flush(self.factory.close_timeout_s if timeout is None else timeout)
        return self.stats()

    def close(self) -> None:
        """Flush (at most ``close_timeout_s``); raise ``SinkError`` if any message was not delivered."""
        handle = self._handle
        if handle is None:
            return
        producer = handle.producer
        timed_out = False
        try:
            broken = handle.fatal is not None or handle.flush_timed_out or handle.gave_up
            timeout = min(1.0, self.factory.close_timeout_s) if broken else self.factory.close_timeout_s
            if producer.flush(timeout) > 0 and self._produced > self._delivered + self._failed:
                handle.flush_timed_out = timed_out = True
        finally:
            self._handle = None
            self._producer = self._produce = self._dr = None
            self.factory._release(handle)
        if self._failed or self._produced > self._delivered:
            if handle.fatal is not None:
                reason = f"fatal producer error: {handle.fatal}"
            elif handle.down_since is not None:
                reason = f"all Kafka brokers are down ({handle.down_reason})"
            elif timed_out:
                reason = f"not all messages delivered within {self.factory.close_timeout_s:g} s"
            else:
                reason = "delivery failed"
            raise self._error(reason)

    def stats(self) -> dict[str, int]:
        """Counts in this process since the sink opened: produced, delivered, failed, undelivered."""
        produced, delivered, failed = self._produced, self._delivered, self._failed
        return {"produced": produced, "delivered": delivered, "failed": failed,
                "undelivered": produced - delivered - failed}

    def __repr__(self) -> str:
        return f"KafkaSink({self.name!r}, bootstrap={self.factory.bootstrap_servers!r})"


def _open_serializer(ser: Any, default: Callable[[], Any]) -> Callable[[Any, Any], bytes | None]:
    if ser is None:
        return default()
    if isinstance(ser, LazySerializer):
        return ser.open()
    return ser


def _is_purge(err: Any) -> bool:
    from confluent_kafka import KafkaError

    return err.code() in (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT)
