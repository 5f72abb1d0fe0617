"""Kafka producer settings: defaults, argument checks and merging with a librdkafka ``conf`` dict.

Pure configuration, no transport: ``resolve_producer_settings()`` turns the factory's arguments into
checked :class:`ProducerSettings` (librdkafka itself validates names and values, with a producer
that has no brokers to reach), so a bad setting is a ``ModelError`` when the model is built.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .._errors import ModelError

__all__ = [
    "ProducerSettings",
    "resolve_producer_settings",
    "BOOTSTRAP_ENV",
    "DEFAULT_BOOTSTRAP",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_BUFFER_SIZE",
    "DEFAULT_DELIVERY_TIMEOUT_S",
    "FLUSH_GRACE_S",
    "PRODUCER_DEFAULTS",
]

BOOTSTRAP_ENV = "DOGE_KAFKA_BOOTSTRAP"
DEFAULT_BOOTSTRAP = "localhost:9092"
DEFAULT_CLIENT_ID = "doge-dist"
DEFAULT_BUFFER_SIZE = 100_000
DEFAULT_DELIVERY_TIMEOUT_S = 30.0
#: Extra time ``close()`` waits beyond the delivery timeout (librdkafka scans for timeouts once a second).
FLUSH_GRACE_S = 5.0

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

_LOGGER = logging.getLogger("doge_dist")

# librdkafka keys that have a factory argument of their own: conf may set them (it wins over the
# argument, as librdkafka settings given explicitly should), and they are kept in one place.
_OWNED_KEYS = ("bootstrap.servers", "client.id", "queue.buffering.max.messages", "message.timeout.ms",
               "delivery.timeout.ms")


@dataclass(frozen=True)
class ProducerSettings:
    """The checked settings of one producer; ``conf`` holds the other librdkafka keys."""

    bootstrap_servers: str
    client_id: str
    buffer_size: int
    delivery_timeout_s: float
    close_timeout_s: float
    conf: dict[str, Any]

    def producer_conf(self) -> dict[str, Any]:
        """The librdkafka settings the producer is opened with."""
        conf = {**PRODUCER_DEFAULTS, **self.conf}
        conf["bootstrap.servers"] = self.bootstrap_servers
        conf["client.id"] = self.client_id
        conf["queue.buffering.max.messages"] = self.buffer_size
        conf["message.timeout.ms"] = max(1, int(self.delivery_timeout_s * 1000))
        return conf


def resolve_producer_settings(
    owner: str,
    bootstrap_servers: str | Iterable[str] | None,
    client_id: str | None,
    conf: Mapping[str, Any] | None,
    buffer_size: int | None,
    delivery_timeout_s: float | None,
    close_timeout_s: float | None,
) -> ProducerSettings:
    """Check the factory arguments and merge them with ``conf``.

    A ``conf`` key that has an argument of its own (``bootstrap.servers``, ``client.id``,
    ``queue.buffering.max.messages``, ``message.timeout.ms`` / ``delivery.timeout.ms``) wins over
    that argument; when both are given and disagree, one WARNING on the ``doge_dist`` logger names
    every disagreement. Unknown keys and bad values raise ``ModelError`` naming them.
    """
    user = _check_conf(conf, owner)
    owned = {key: user.pop(key) for key in _OWNED_KEYS if key in user}
    disagreements: list[str] = []

    given_servers = None if bootstrap_servers is None else _split_bootstrap(bootstrap_servers, owner)
    if "bootstrap.servers" in owned:
        servers = _split_bootstrap(_text(owned["bootstrap.servers"], "bootstrap.servers", owner), owner)
        if given_servers is not None and given_servers != servers:
            disagreements.append(f"bootstrap_servers={given_servers!r} vs "
                                 f"conf['bootstrap.servers']={servers!r}")
    else:
        servers = given_servers or _split_bootstrap(os.environ.get(BOOTSTRAP_ENV) or DEFAULT_BOOTSTRAP, owner)

    if client_id is not None and not (isinstance(client_id, str) and client_id):
        raise ModelError(f"{owner}: client_id must be a non-empty str, got {client_id!r}")
    if "client.id" in owned:
        client = _text(owned["client.id"], "client.id", owner)
        if client_id is not None and client_id != client:
            disagreements.append(f"client_id={client_id!r} vs conf['client.id']={client!r}")
    else:
        client = client_id or DEFAULT_CLIENT_ID

    if buffer_size is not None:
        _positive_int(buffer_size, "buffer_size", owner, from_text=False)
    if "queue.buffering.max.messages" in owned:
        buffer = _positive_int(owned["queue.buffering.max.messages"], "conf['queue.buffering.max.messages']",
                               owner)
        if buffer_size is not None and buffer_size != buffer:
            disagreements.append(f"buffer_size={buffer_size} vs "
                                 f"conf['queue.buffering.max.messages']={buffer}")
    else:
        buffer = DEFAULT_BUFFER_SIZE if buffer_size is None else buffer_size

    if delivery_timeout_s is not None:
        _positive(delivery_timeout_s, "delivery_timeout_s", owner)
    timeouts = {key: owned[key] for key in ("message.timeout.ms", "delivery.timeout.ms") if key in owned}
    if timeouts:
        values = {key: _positive_int(value, f"conf[{key!r}]", owner, zero_means="waits forever")
                  for key, value in timeouts.items()}
        if len(set(values.values())) > 1:
            raise ModelError(f"{owner}: conf['message.timeout.ms'] and conf['delivery.timeout.ms'] are one "
                             f"setting (aliases) and disagree: {values}")
        key, ms = next(iter(values.items()))
        delivery = ms / 1000
        if delivery_timeout_s is not None and float(delivery_timeout_s) != delivery:
            disagreements.append(f"delivery_timeout_s={delivery_timeout_s:g} vs conf[{key!r}]={ms}")
    else:
        delivery = DEFAULT_DELIVERY_TIMEOUT_S if delivery_timeout_s is None else float(delivery_timeout_s)

    close = _positive(delivery + FLUSH_GRACE_S if close_timeout_s is None else close_timeout_s,
                      "close_timeout_s", owner)
    if disagreements:
        _LOGGER.warning("%s: conf and arguments disagree; conf wins: %s", owner, "; ".join(disagreements))
    settings = ProducerSettings(servers, client, buffer, delivery, close, user)
    _validate_with_librdkafka(settings.producer_conf(), owner)
    return settings


def _text(value: Any, key: str, owner: str) -> str:
    if not isinstance(value, str) or not value:
        raise ModelError(f"{owner}: conf[{key!r}] must be a non-empty str, got {value!r}")
    return value


def _split_bootstrap(value: Any, owner: str) -> str:
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, Iterable):
        items = list(value)
    else:
        raise ModelError(f"{owner}: bootstrap_servers must be 'host:port' strings, got {value!r}")
    servers = []
    for item in items:
        if not isinstance(item, str):
            raise ModelError(f"{owner}: bootstrap_servers entries must be 'host:port' strings, "
                             f"got {item!r} ({type(item).__name__})")
        item = item.strip()
        if not item or any(ch.isspace() for ch in item):
            raise ModelError(f"{owner}: invalid bootstrap server {item!r} (expected 'host:port')")
        servers.append(item)
    if not servers:
        raise ModelError(f"{owner}: bootstrap_servers is empty")
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
        if key == "delivery.report.only.error" and str(value).lower() in ("true", "1"):
            raise ModelError(f"{owner}: conf['delivery.report.only.error'] is not supported: "
                             "the sink counts every delivery report")
        checked[key] = value
    return checked


def _positive(value: Any, name: str, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ModelError(f"{owner}: {name} must be a positive number of seconds, got {value!r}")
    return float(value)


def _positive_int(value: Any, name: str, owner: str, zero_means: str = "", from_text: bool = True) -> int:
    """A positive int; a conf value may also be a numeric string, as librdkafka takes it."""
    number: Any = value
    if from_text and isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        hint = f" (0 {zero_means}: every wait is bounded)" if zero_means and number == 0 else ""
        raise ModelError(f"{owner}: {name} must be a positive int, got {value!r}{hint}")
    return number


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
