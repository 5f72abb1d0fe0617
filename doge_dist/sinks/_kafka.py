"""Kafka sink: events to a topic through one lazily opened confluent-kafka Producer per factory per process.

``KafkaSinkFactory`` is a picklable description of a producer (its settings are checked by
``_kafka_conf``); ``create()`` returns a ``KafkaSink`` per topic. Nothing connects until the first
``collect()`` in the process that writes; there the factory's producer is opened once and shared
by all its sinks. Delivery reports are counted per sink and run (``stats()``); ``close()`` flushes
with a bounded timeout and raises ``SinkError`` with the counts when anything failed or is still
undelivered. Every librdkafka error (``KafkaException``, and the bare ``KafkaError`` the binding
can raise after a fatal error, which is not an exception class) becomes a ``SinkError``.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from .._context import current_shard
from .._errors import ModelError, SinkError
from ..model._vocabulary import EventSink, Transition
from ._clients import CLIENTS
from ._kafka_conf import (
    BOOTSTRAP_ENV,
    DEFAULT_BOOTSTRAP,
    DEFAULT_DELIVERY_TIMEOUT_S,
    PRODUCER_DEFAULTS,
    ProducerSettings,
    resolve_producer_settings,
)
from ._pickling import PicklesAsDescription

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

#: How long the brokers may stay "all down" with messages waiting before ``collect()`` gives up.
ALL_DOWN_FAIL_S = 10.0
#: Delivery reports are served with ``poll(0)`` every this many produced messages, or after
#: ``POLL_INTERVAL_S`` when events are sparse (realtime runs), and broker health is checked then.
POLL_EVERY = 1000
POLL_INTERVAL_S = 0.5
#: How long the last user of a producer waits for purged messages' reports before letting go.
_SHUTDOWN_WAIT_S = 1.0

_monotonic = time.monotonic
_LOGGER = logging.getLogger("doge_dist")
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


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


# --------------------------------------------------------------------------- librdkafka errors


class _Failure(NamedTuple):
    """A librdkafka error caught at a call: its text, whether it is fatal, and an exception to chain."""

    reason: str
    fatal: bool
    cause: BaseException


def _failure(value: Any) -> _Failure:
    """Describe a ``KafkaException``, a bare ``KafkaError`` or any other error a librdkafka call raised."""
    err = value.args[0] if isinstance(value, BaseException) and value.args else value
    if hasattr(err, "str") and hasattr(err, "fatal") and hasattr(err, "code"):
        reason, fatal = err.str(), bool(err.fatal())
    else:
        reason, fatal = f"{type(value).__name__}: {value}", False
    if isinstance(value, BaseException):
        cause = value
    else:  # a bare KafkaError: chain it inside the exception class it belongs to
        from confluent_kafka import KafkaException

        cause = KafkaException(value)
    return _Failure(reason, fatal, cause)


def _call(fn: Callable[..., Any], *args: Any) -> tuple[Any, _Failure | None]:
    """``(fn(*args), None)``, or ``(None, failure)`` when librdkafka raised.

    After a fatal error the binding can raise a bare ``KafkaError``; it is not an exception class,
    so ``except Exception`` and even ``except BaseException`` miss it once it has passed through
    a ``finally`` block: only a bare ``except`` right at the call catches it.
    """
    try:
        return fn(*args), None
    except Exception as exc:  # KafkaException, RuntimeError (closed producer), a callback's error
        return None, _failure(exc)
    except BaseException:  # KeyboardInterrupt and friends pass through
        raise
    except:  # noqa: E722 - the bare KafkaError
        return None, _failure(sys.exc_info()[1])


class _ProducerHandle:
    """The live producer of one factory in one process, with broker-health flags from ``error_cb``."""

    def __init__(self, conf: dict[str, Any], user_error_cb: Callable[[Any], None] | None) -> None:
        from confluent_kafka import KafkaError, Producer

        self._all_brokers_down = KafkaError._ALL_BROKERS_DOWN
        self._user_error_cb = user_error_cb
        self.fatal: str | None = None  # set from a fatal error (raised by poll/flush/produce)
        self.down_since: float | None = None
        self.down_reason = ""
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

    def shutdown(self) -> None:
        """The last sink let go: purge what is left (it stays counted as undelivered) and serve the
        purge reports briefly. librdkafka errors here change no count and are not raised."""
        producer = self.producer
        if len(producer):
            _call(producer.purge)
            _call(producer.flush, _SHUTDOWN_WAIT_S)
        # let go of the producer now: the handle and the producer refer to each other (error_cb), and
        # a traceback that keeps the handle would keep a producer reconnecting to a stopped broker
        self.producer = None

# --------------------------------------------------------------------------- factory


class KafkaSinkFactory(PicklesAsDescription):
    """Creates ``KafkaSink`` s that share one producer per process (doge-datagen compatible).

    :param bootstrap_servers: iterable of ``"host:port"`` or a comma separated string; ``None``
        reads ``conf["bootstrap.servers"]``, else ``$DOGE_KAFKA_BOOTSTRAP``, else ``"localhost:9092"``.
    :param client_id: producer ``client.id`` (default ``"doge-dist"``; ``-shard<i>`` is appended
        in sharded runs).
    :param conf: librdkafka producer settings; they override ``PRODUCER_DEFAULTS``
        (``enable.idempotence=true``, ``linger.ms=20``, no compression) and win over the
        arguments that set the same thing (``bootstrap.servers``, ``client.id``,
        ``queue.buffering.max.messages``, ``message.timeout.ms``): one WARNING on the
        ``doge_dist`` logger when both are given and disagree. Checked here: an unknown key or a
        bad value is a ``ModelError``.
    :param buffer_size: the most messages held in the local producer queue
        (``queue.buffering.max.messages``, default 100,000); when it is full ``collect()`` serves
        delivery reports and retries rather than dropping. (doge-datagen flushed every
        ``buffer_size`` messages.)
    :param delivery_timeout_s: how long a message may wait for delivery (``message.timeout.ms``)
        before it counts as failed; default 30 s.
    :param close_timeout_s: the most ``close()`` waits for outstanding deliveries; default
        ``delivery_timeout_s + 5``.
    :param transactional: each sink gets a transactional producer of its own, with a stable
        ``transactional.id`` per (run, topic, shard) (``<transactional_id>.<run id>.<topic>.<shard>``),
        and commits one transaction per window (and at checkpoints and close); its per-part counts
        are committed inside the same transactions (consumer group offsets), so a worker that
        replaces a lost one, or a resumed run, re-sends nothing that was committed. Consumers must
        read with ``isolation.level=read_committed``. See ``_kafka_txn`` for what each broker honours.
    :param transactional_id: the prefix of the transactional ids and progress groups (default: the
        client id).

    For doge-datagen's positional form ``KafkaSinkFactory(servers, client_id, buffer_size)``
    an int in the ``conf`` position is taken as ``buffer_size``.
    """

    _DESCRIPTION = ("_token",)  # copies of a factory share its producer in one process

    def __init__(
        self,
        bootstrap_servers: str | Iterable[str] | None = None,
        client_id: str | None = None,
        conf: Mapping[str, Any] | int | None = None,
        buffer_size: int | None = None,
        *,
        delivery_timeout_s: float | None = None,
        close_timeout_s: float | None = None,
        transactional: bool = False,
        transactional_id: str | None = None,
    ) -> None:
        owner = type(self).__name__
        if isinstance(conf, int) and not isinstance(conf, bool) and buffer_size is None:
            conf, buffer_size = None, conf  # doge-datagen: (bootstrap_servers, client_id, buffer_size)
        self._apply(resolve_producer_settings(owner, bootstrap_servers, client_id, conf, buffer_size,
                                              delivery_timeout_s, close_timeout_s),
                    transactional, transactional_id, owner)

    @classmethod
    def from_settings(cls, settings: ProducerSettings, transactional: bool = False,
                      transactional_id: str | None = None, owner: str | None = None) -> KafkaSinkFactory:
        """A factory for settings already checked (by ``resolve_producer_settings``)."""
        factory = cls.__new__(cls)
        factory._apply(settings, transactional, transactional_id, owner or cls.__name__)
        return factory

    def _apply(self, settings: ProducerSettings, transactional: bool = False,
               transactional_id: str | None = None, owner: str = "KafkaSinkFactory") -> None:
        from ._kafka_txn import check_transactional

        self.transactional, self.transactional_id = check_transactional(
            owner, settings, transactional, transactional_id)
        self.bootstrap_servers = settings.bootstrap_servers
        self.client_id = settings.client_id
        self.buffer_size = settings.buffer_size
        self.delivery_timeout_s = settings.delivery_timeout_s
        self.close_timeout_s = settings.close_timeout_s
        self.conf = settings.conf
        self._token = uuid.uuid4().hex
        self._reset()

    def _reset(self) -> None:
        """Nothing live is held by the factory itself: producers live in the process registry."""

    def producer_conf(self) -> dict[str, Any]:
        """The librdkafka settings the producer is opened with (without the error callback)."""
        return ProducerSettings(self.bootstrap_servers, self.client_id, self.buffer_size,
                                self.delivery_timeout_s, self.close_timeout_s, self.conf).producer_conf()

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
        if self.transactional:
            from ._kafka_txn import TransactionalKafkaSink

            return TransactionalKafkaSink(self, topic, key_function, value_function, key_serializer,
                                          value_serializer)
        return KafkaSink(self, topic, key_function, value_function, key_serializer, value_serializer)

    # -- process-local producer -------------------------------------------------------------
    def _open_handle(self) -> _ProducerHandle:
        conf = self.producer_conf()
        shard = current_shard()
        if shard.count > 1:
            conf["client.id"] = f"{self.client_id}-shard{shard.index}"
        user_cb = conf.pop("error_cb", None)
        return _ProducerHandle(conf, user_cb)

    def _acquire(self) -> _ProducerHandle:
        return CLIENTS.acquire(self._token, self._open_handle)

    def _release(self, handle: _ProducerHandle) -> None:
        if CLIENTS.release(self._token, handle):
            handle.shutdown()

    def __repr__(self) -> str:
        extra = ", transactional=True" if self.transactional else ""
        return (f"KafkaSinkFactory(bootstrap_servers={self.bootstrap_servers!r}, client_id={self.client_id!r}"
                f"{extra})")


# --------------------------------------------------------------------------- sink


class KafkaSink(PicklesAsDescription, EventSink):
    """Produces each event to ``topic``: key from ``key_function``, value from ``value_function``.

    ``name`` is ``"kafka:<topic>"``. ``stats()`` gives produced / delivered / failed / undelivered
    counts of the current run (``begin_run()``) in this process.
    """

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
        self._reset()

    def _reset(self) -> None:
        """Unopened, with zero counts (a new sink, or a pickled copy arriving in a worker)."""
        self._handle: _ProducerHandle | None = None
        self._producer: Any = None
        self._produce: Any = None
        self._key_ser: Any = None
        self._value_ser: Any = None
        self._utf8_key = self._utf8_value = False
        self._key_ctx: Any = None
        self._value_ctx: Any = None
        self._dr: Any = None
        self._since_poll = 0
        self._poll_due = 0.0
        self._ts_warned = False
        self.begin_run()

    def begin_run(self) -> None:
        """Counts start at zero for each run."""
        self._produced = self._delivered = self._failed = 0
        self._first_error: str | None = None

    # -- writing -------------------------------------------------------------------------------
    def _open(self) -> None:
        from confluent_kafka.serialization import MessageField, SerializationContext, StringSerializer

        key_ser = _open_serializer(self.key_serializer, StringSerializer)
        value_ser = _open_serializer(self.value_serializer, StringSerializer)
        handle, failure = _call(self._acquire_handle)
        if failure is not None:  # e.g. a certificate file that exists on the driver but not here
            raise self._error(f"cannot open the producer: {failure.reason}") from failure.cause
        self._handle = handle
        self._producer = handle.producer
        self._produce = handle.producer.produce
        self._key_ser, self._value_ser = key_ser, value_ser
        self._utf8_key = self.key_serializer is None
        self._utf8_value = self.value_serializer is None
        self._key_ctx = SerializationContext(self.topic, MessageField.KEY)
        self._value_ctx = SerializationContext(self.topic, MessageField.VALUE)
        self._since_poll = 0
        self._poll_due = _monotonic() + POLL_INTERVAL_S
        self._dr = self._on_delivery

    def _acquire_handle(self) -> _ProducerHandle:
        """This process's producer of the factory, shared with its other sinks."""
        return self.factory._acquire()

    def _release_handle(self, handle: _ProducerHandle) -> None:
        self.factory._release(handle)  # the last sink purges what is left: it stays undelivered

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is None:
            self._delivered += 1
            if self._handle is not None:
                self._handle.down_since = None
        elif not _is_purge(err):  # purged at close or after a fatal error: stays "undelivered"
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
            raise self._refused(_failure(exc)) from exc
        except BaseException:
            raise
        except:  # noqa: E722 - a bare KafkaError (see _call)
            failure = _failure(sys.exc_info()[1])
            raise self._refused(failure) from failure.cause
        self._produced += 1
        self._since_poll += 1
        if self._since_poll >= POLL_EVERY or _monotonic() >= self._poll_due:
            self._since_poll = 0
            self._poll_due = _monotonic() + POLL_INTERVAL_S
            self._poll(0)
            self._check_health()

    def _poll(self, timeout: float) -> None:
        _, failure = _call(self._producer.poll, timeout)
        if failure is not None:
            raise self._librdkafka_error("poll()", failure) from failure.cause

    def _refused(self, failure: _Failure) -> SinkError:
        """produce() refused a message; after a fatal error, say which one (poll() raises it)."""
        from confluent_kafka import KafkaError

        cause = failure.cause.args[0] if failure.cause.args else None
        if getattr(cause, "code", None) is not None and cause.code() == KafkaError._FATAL:
            _, fatal = _call(self._producer.poll, 0)
            if fatal is not None and fatal.fatal:
                return self._librdkafka_error("produce()", fatal)
            if self._handle is not None and self._handle.fatal is not None:
                return self._error(f"fatal producer error: {self._handle.fatal}")
        return self._error(f"produce() refused the message: {failure.reason}")

    def _librdkafka_error(self, what: str, failure: _Failure) -> SinkError:
        return self._error(self._librdkafka_reason(what, failure))

    def _librdkafka_reason(self, what: str, failure: _Failure) -> str:
        """The reason for a librdkafka error at ``what``; a fatal one is recorded on the producer."""
        handle = self._handle
        if failure.fatal:
            if handle is not None:
                handle.fatal = failure.reason
                handle.gave_up = True
            return f"fatal producer error: {failure.reason}"
        return f"{what} failed: {failure.reason}"

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
                self._poll(0.05)
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
                raise self._refused(_failure(exc)) from exc
            except BaseException:
                raise
            except:  # noqa: E722 - a bare KafkaError (see _call)
                failure = _failure(sys.exc_info()[1])
                raise self._refused(failure) from failure.cause

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

        The sink stays open. Delivery failures show in the counts and at ``close()``; a librdkafka
        error (e.g. a fatal producer error) raises ``SinkError`` with the counts.
        """
        if self._producer is not None:
            wait = self.factory.close_timeout_s if timeout is None else timeout
            _, failure = _call(self._producer.flush, wait)
            if failure is not None:
                raise self._librdkafka_error("flush()", failure) from failure.cause
        return self.stats()

    def close(self) -> None:
        """Flush (at most ``close_timeout_s``); raise ``SinkError`` if any message was not delivered."""
        handle = self._handle
        if handle is None:
            return
        producer = handle.producer
        timed_out = False
        broken = handle.fatal is not None or handle.flush_timed_out or handle.gave_up
        timeout = min(1.0, self.factory.close_timeout_s) if broken else self.factory.close_timeout_s
        remaining, failure = _call(producer.flush, timeout)
        failed_call = ""
        if failure is not None:
            failed_call = self._librdkafka_reason("flush()", failure)  # records a fatal error
        elif remaining > 0 and self._produced > self._delivered + self._failed:
            handle.flush_timed_out = timed_out = True
        self._handle = None
        self._producer = self._produce = self._dr = None
        self._release_handle(handle)
        if failure is None and not self._failed and self._produced <= self._delivered:
            return
        if handle.fatal is not None:
            reason = f"fatal producer error: {handle.fatal}"
        elif failed_call:
            reason = failed_call
        elif handle.down_since is not None:
            reason = f"all Kafka brokers are down ({handle.down_reason})"
        elif timed_out:
            reason = f"not all messages delivered within {self.factory.close_timeout_s:g} s"
        else:
            reason = "delivery failed"
        del handle, producer  # the raised error's frames must not keep the producer alive
        raise self._error(reason) from (failure.cause if failure is not None else None)

    def checkpoint_positions(self) -> dict[str, Any]:
        """At a checkpoint: wait (at most ``close_timeout_s``) until every message produced so far is
        delivered, so that a replay from this checkpoint never has to send them again; ``SinkError``
        when some failed or are still undelivered. This sink records no position (it has no ``resume``:
        after a recovery it re-sends the events since the checkpoint, counted as possible duplicates)."""
        if self._producer is None:
            return {}
        self.flush()
        undelivered = self._produced - self._delivered - self._failed
        if self._failed or undelivered:
            reason = (f"not all messages delivered within {self.factory.close_timeout_s:g} s" if undelivered
                      else "delivery failed")
            raise self._error(f"{reason} at a checkpoint")
        return {}

    def stats(self) -> dict[str, int]:
        """Counts of this run in this process: produced, delivered, failed, undelivered."""
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
