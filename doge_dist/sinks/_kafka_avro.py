"""Kafka Avro sink: keys and values in Confluent wire format, schemas registered in a Schema Registry.

``KafkaAvroSinkFactory.create()`` parses both schemas up front (a bad schema is a ``ModelError``
before any event is generated) and returns a ``KafkaSink`` whose serializers are picklable
descriptions: the registry client and the ``AvroSerializer`` s are created lazily in the process
that writes, one registry client per factory per process. A record that does not fit its schema
raises ``ValueError`` naming the topic and the offending field.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .._errors import ModelError, SinkError
from ..model._vocabulary import Transition
from ._clients import CLIENTS
from ._kafka import KafkaSink, KafkaSinkFactory, LazySerializer, RecordSerializationError
from ._kafka_conf import resolve_producer_settings
from ._masking import mask_url, url_passwords
from ._masking import scrub as _scrub
from ._pickling import PicklesAsDescription

__all__ = ["KafkaAvroSinkFactory", "AvroSerializerSpec", "REGISTRY_ENV", "DEFAULT_REGISTRY_URL",
           "DEFAULT_REGISTRY_TIMEOUT_S"]

REGISTRY_ENV = "DOGE_SCHEMA_REGISTRY_URL"
DEFAULT_REGISTRY_URL = "http://localhost:8081"
#: Seconds one Schema Registry request may take (``registry_conf['timeout']``). The client makes
#: up to ``max.retries`` + 1 attempts (default 4) with backoff, so a silent registry fails a run
#: after at most about 4 x this plus ~7 s. Without it the client waits forever.
DEFAULT_REGISTRY_TIMEOUT_S = 30.0
_DEFAULT_RETRIES = 3  # confluent_kafka's SchemaRegistryClient default for max.retries

# registry_conf keys whose values are secrets (masked in every message)
_SECRET_KEY_WORDS = ("password", "secret", "token", "user.info")

def _new_registry_client(conf: dict[str, Any]) -> Any:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    # new_client() returns the in-memory MockSchemaRegistryClient for mock:// URLs.
    return SchemaRegistryClient.new_client(conf)


def parse_avro_schema(schema: str | Mapping[str, Any], what: str) -> tuple[str, Any]:
    """Return ``(schema_json, parsed)`` for an Avro schema given as JSON text or a dict.

    Raises ``ModelError`` naming ``what`` and fastavro's reason when the schema is invalid.
    """
    import fastavro

    if isinstance(schema, Mapping):
        text = json.dumps(schema)
    elif isinstance(schema, str):
        text = schema
    else:
        raise ModelError(f"{what} must be an Avro schema as JSON text or a dict, got {type(schema).__name__}")
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{what} is not valid JSON: {exc}") from None
    if isinstance(loaded, dict) and loaded.get("type") == "record" \
            and not isinstance(loaded.get("fields"), list):
        raise ModelError(f"{what} is not a valid Avro schema: a record needs a \"fields\" list")
    try:
        parsed = fastavro.parse_schema(loaded)
    except Exception as exc:  # SchemaParseException, UnknownType, ...
        raise ModelError(f"{what} is not a valid Avro schema ({type(exc).__name__}: {exc})") from None
    return text, parsed


def describe_mismatch(record: Any, parsed: Any) -> str | None:
    """Field-by-field reasons why ``record`` does not fit ``parsed`` (fastavro's validation), or None."""
    from fastavro.validation import ValidationError, validate

    try:
        validate(record, parsed, raise_errors=True)
    except ValidationError as exc:
        reasons = []
        for item in exc.errors:
            expected = item.schema
            if isinstance(expected, dict):
                expected = f"{expected.get('type')} {expected.get('name', '')}".strip()
            field = f"field '{item.field}'" if item.field else "the record itself"
            got = f"{item.datum!r:.80} ({type(item.datum).__name__})"
            reasons.append(f"{field} is {got}, expected {expected}")
        return "; ".join(reasons)
    except Exception as exc:  # validate() itself choked on the datum
        return f"{type(exc).__name__}: {exc}"
    return None


class AvroSerializerSpec(PicklesAsDescription, LazySerializer):
    """A picklable ``AvroSerializer`` description for one topic and field (``"key"`` or ``"value"``)."""

    def __init__(self, factory: KafkaAvroSinkFactory, topic: str, field: str, schema_text: str) -> None:
        self.factory = factory
        self.topic = topic
        self.field = field
        self.schema_text = schema_text
        self._reset()

    def _reset(self) -> None:
        self._parsed: Any = None
        self._serializer: Any = None

    def open(self) -> Callable[[Any, Any], bytes | None]:
        from confluent_kafka.schema_registry.avro import AvroSerializer

        self._parsed = parse_avro_schema(self.schema_text, f"{self.field}_schema")[1]
        self._serializer = AvroSerializer(self.factory.schema_registry_client(), self.schema_text,
                                          conf=dict(self.factory.serializer_conf) or None)
        return self._serialize

    def _serialize(self, obj: Any, ctx: Any) -> bytes | None:
        try:
            return self._serializer(obj, ctx)
        except Exception as exc:
            raise self._explain(obj, exc) from exc

    def _explain(self, obj: Any, exc: Exception) -> Exception:
        from confluent_kafka.schema_registry import SchemaRegistryError

        where = f"kafka:{self.topic}"
        mismatch = describe_mismatch(obj, self._parsed)
        if mismatch is not None:
            return RecordSerializationError(
                f"{where}: {self.field} record does not match its Avro schema: {mismatch}")
        factory = self.factory
        url = factory.masked_registry_url
        subject = f"{self.topic}-{self.field}"
        if isinstance(exc, SchemaRegistryError):
            hint = ""
            if exc.http_status_code in (401, 403):
                hint = " (check registry_conf['basic.auth.user.info'])"
            return SinkError(factory.scrub(
                f"{where}: schema registry {url} refused the {self.field} schema for subject "
                f"'{subject}': HTTP {exc.http_status_code}, error code {exc.error_code}: "
                f"{exc.error_message}{hint}"), sink=where)
        if _is_timeout(exc):
            attempts = int(factory.registry_conf.get("max.retries", _DEFAULT_RETRIES)) + 1
            return SinkError(factory.scrub(
                f"{where}: schema registry {url} did not answer within "
                f"registry_conf['timeout']={factory.registry_conf['timeout']:g} s ({attempts} attempt(s)) "
                f"while registering subject '{subject}': {type(exc).__name__}: {exc}"), sink=where)
        if _is_transport_error(exc):
            return SinkError(factory.scrub(
                f"{where}: schema registry {url} unreachable while registering subject "
                f"'{subject}': {type(exc).__name__}: {exc}"), sink=where)
        return RecordSerializationError(factory.scrub(
            f"{where}: cannot serialize {self.field} {obj!r:.200} with its Avro schema: "
            f"{type(exc).__name__}: {exc}"))


def _is_httpx(exc: Exception, class_name: str) -> bool:
    return any(cls.__name__ == class_name and cls.__module__.split(".")[0] in ("httpx", "httpx2")
               for cls in type(exc).__mro__)


def _is_transport_error(exc: Exception) -> bool:
    """A network-level failure talking to the registry (httpx or httpx2 TransportError, OSError)."""
    return isinstance(exc, OSError) or _is_httpx(exc, "TransportError")


def _is_timeout(exc: Exception) -> bool:
    """The registry accepted the connection (or not) but did not answer in time."""
    return isinstance(exc, TimeoutError) or _is_httpx(exc, "TimeoutException")


class KafkaAvroSinkFactory(PicklesAsDescription):
    """Creates Kafka sinks that write Avro keys and values (Confluent wire format), doge-datagen compatible.

    :param bootstrap_servers, client_id, conf, buffer_size, delivery_timeout_s, close_timeout_s:
        as for ``KafkaSinkFactory``.
    :param schema_registry_url: e.g. ``"http://localhost:8081"``; ``None`` reads
        ``$DOGE_SCHEMA_REGISTRY_URL``, else ``"http://localhost:8081"``. ``mock://<name>`` uses an
        in-memory registry of the writing process (see ``schema_registry_client()``).
    :param registry_conf: extra ``SchemaRegistryClient`` settings, e.g. ``basic.auth.user.info``,
        ``ssl.ca.location``, ``max.retries``. Checked here. ``timeout`` (seconds per request,
        default ``DEFAULT_REGISTRY_TIMEOUT_S`` = 30) bounds every wait on the registry: a registry
        that accepts connections but never answers fails the run with a ``SinkError`` after
        ``max.retries`` + 1 attempts.
    :param serializer_conf: ``AvroSerializer`` settings, e.g. ``{"auto.register.schemas": False}``.
    :param transactional, transactional_id: as for ``KafkaSinkFactory``: transactions per window, exactly
        once across recoveries and resumed runs for ``read_committed`` consumers.
    """

    _DESCRIPTION = ("_token",)  # copies of a factory share its registry client in one process

    def __init__(
        self,
        bootstrap_servers: str | Iterable[str] | None = None,
        schema_registry_url: str | None = None,
        client_id: str | None = None,
        conf: Mapping[str, Any] | int | None = None,
        buffer_size: int | None = None,
        registry_conf: Mapping[str, Any] | None = None,
        *,
        serializer_conf: Mapping[str, Any] | None = None,
        delivery_timeout_s: float | None = None,
        close_timeout_s: float | None = None,
        transactional: bool = False,
        transactional_id: str | None = None,
    ) -> None:
        owner = type(self).__name__
        if isinstance(conf, int) and not isinstance(conf, bool) and buffer_size is None:
            conf, buffer_size = None, conf  # doge-datagen: (servers, registry_url, client_id, buffer_size)
        self.kafka = KafkaSinkFactory.from_settings(resolve_producer_settings(
            owner, bootstrap_servers, client_id, conf, buffer_size, delivery_timeout_s, close_timeout_s),
            transactional, transactional_id, owner)
        if registry_conf is not None and not isinstance(registry_conf, Mapping):
            raise ModelError(f"{owner}: registry_conf must be a dict, got {type(registry_conf).__name__}")
        registry_conf = dict(registry_conf or {})
        if schema_registry_url is None:
            schema_registry_url = (registry_conf.get("url") or os.environ.get(REGISTRY_ENV)
                                   or DEFAULT_REGISTRY_URL)
        elif "url" in registry_conf and registry_conf["url"] != schema_registry_url:
            raise ModelError(f"{owner}: give the registry URL as schema_registry_url or "
                             "registry_conf['url'], not both")
        if not isinstance(schema_registry_url, str) or not schema_registry_url.startswith(
                ("http://", "https://", "mock://")):
            shown = mask_url(schema_registry_url) if isinstance(schema_registry_url, str) \
                else schema_registry_url
            raise ModelError(f"{owner}: schema_registry_url must start with http://, https:// or mock://, "
                             f"got {shown!r}")
        registry_conf["url"] = schema_registry_url
        timeout = registry_conf.setdefault("timeout", DEFAULT_REGISTRY_TIMEOUT_S)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ModelError(f"{owner}: registry_conf['timeout'] must be a positive number of seconds "
                             f"(every wait on the registry is bounded), got {timeout!r}")
        self.schema_registry_url = schema_registry_url
        self.masked_registry_url = mask_url(schema_registry_url)
        self.registry_conf = registry_conf
        if serializer_conf is not None and not isinstance(serializer_conf, Mapping):
            raise ModelError(f"{owner}: serializer_conf must be a dict, got {type(serializer_conf).__name__}")
        self.serializer_conf = dict(serializer_conf or {})
        self._check_clients(owner)
        self._token = uuid.uuid4().hex

    def _reset(self) -> None:
        """Nothing live is held by the factory itself: registry clients live in the process registry."""

    def _check_clients(self, owner: str) -> None:
        """Build a throwaway registry client and serializer so bad settings fail now (no network)."""
        from confluent_kafka.schema_registry.avro import AvroSerializer

        try:
            client = _new_registry_client(self.registry_conf)
        except (TypeError, ValueError) as exc:
            raise ModelError(self.scrub(f"{owner}: invalid registry_conf: {exc}")) from None
        try:
            AvroSerializer(client, '"string"', conf=dict(self.serializer_conf) or None)
        except (TypeError, ValueError) as exc:
            raise ModelError(self.scrub(f"{owner}: invalid serializer_conf: {exc}")) from None
        finally:
            client.close()

    def scrub(self, text: str) -> str:
        """``text`` with the registry's credentials (URL password, basic auth, tokens) masked."""
        secrets = url_passwords(self.schema_registry_url)
        for key, value in self.registry_conf.items():
            if isinstance(value, str) and any(word in key for word in _SECRET_KEY_WORDS):
                secrets.append(value)
                if key.endswith("user.info") and ":" in value:
                    secrets.append(value.split(":", 1)[1])
        return _scrub(text, secrets)

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka.bootstrap_servers

    def schema_registry_client(self) -> Any:
        """This process's registry client for this factory (created on first use).

        With a ``mock://`` URL it holds the schemas the sinks registered in this process, so a
        test can decode with ``AvroDeserializer(factory.schema_registry_client())``.
        """
        return CLIENTS.get(self._token, lambda: _new_registry_client(self.registry_conf))

    def create(
        self,
        topic: str,
        key_function: Callable[[Any, Transition], Any],
        key_schema: str | Mapping[str, Any],
        value_function: Callable[[int, Any, Transition], Any],
        value_schema: str | Mapping[str, Any],
    ) -> KafkaSink:
        """A sink writing Avro to ``topic``; schemas are Avro JSON text (as in .avsc files) or dicts.

        Subjects follow the topic name strategy: ``<topic>-key`` and ``<topic>-value``.
        """
        key_text, _ = parse_avro_schema(key_schema, f"kafka:{topic}: key_schema")
        value_text, _ = parse_avro_schema(value_schema, f"kafka:{topic}: value_schema")
        return self.kafka.create(topic, key_function, value_function,
                                 AvroSerializerSpec(self, topic, "key", key_text),
                                 AvroSerializerSpec(self, topic, "value", value_text))

    def __repr__(self) -> str:
        return (f"KafkaAvroSinkFactory(bootstrap_servers={self.kafka.bootstrap_servers!r}, "
                f"schema_registry_url={self.masked_registry_url!r})")
