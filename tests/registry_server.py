"""A small in-memory Confluent Schema Registry over HTTP, for tests (stdlib only).

Implements what confluent_kafka's ``SchemaRegistryClient`` calls for Avro serialization and
deserialization: register (``POST /subjects/{s}/versions``), lookup (``POST /subjects/{s}``),
``GET /schemas/ids/{id}``, ``GET /subjects``, ``GET /subjects/{s}/versions`` and
``GET /subjects/{s}/versions/{v|latest}``. Optionally requires HTTP basic auth.
Listens on 127.0.0.1 on a free port; use as a context manager.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["RegistryServer"]

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class _Store:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids: dict[tuple[str, str], int] = {}  # (schemaType, schema text) -> id
        self.schemas: dict[int, dict[str, Any]] = {}  # id -> {"schema", "schemaType"}
        self.subjects: dict[str, list[int]] = {}  # subject -> schema ids by version (1-based)

    def register(self, subject: str, schema: str, schema_type: str) -> int:
        with self.lock:
            key = (schema_type, schema)
            schema_id = self.ids.get(key)
            if schema_id is None:
                schema_id = self.ids[key] = len(self.ids) + 1
                self.schemas[schema_id] = {"schema": schema, "schemaType": schema_type}
            versions = self.subjects.setdefault(subject, [])
            if schema_id not in versions:
                versions.append(schema_id)
            return schema_id

    def version_entry(self, subject: str, version: int) -> dict[str, Any]:
        schema_id = self.subjects[subject][version - 1]
        entry = {"subject": subject, "version": version, "id": schema_id,
                 "schema": self.schemas[schema_id]["schema"]}
        if self.schemas[schema_id]["schemaType"] != "AVRO":
            entry["schemaType"] = self.schemas[schema_id]["schemaType"]
        return entry


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    # -- plumbing ------------------------------------------------------------------------------
    def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", _CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: int, message: str) -> None:
        self._reply(status, {"error_code": code, "message": message})

    def _authorized(self) -> bool:
        expected = self.server.credentials
        header = self.headers.get("Authorization", "")
        user = None
        if header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                user = password = None
        self.server.requests.append((self.command, self.path, user))
        if expected is None:
            return True
        if user is not None and (user, password) == expected:
            return True
        self._reply(401, {"error_code": 401, "message": "Unauthorized"},
                    {"WWW-Authenticate": 'Basic realm="schema-registry"'})
        return False

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def _route(self) -> list[str]:
        return [unquote(part) for part in urlsplit(self.path).path.strip("/").split("/") if part]

    # -- endpoints -----------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        if not self._authorized():
            return
        parts, store = self._route(), self.server.store
        with store.lock:
            if len(parts) == 3 and parts[:2] == ["schemas", "ids"] and parts[2].isdigit():
                entry = store.schemas.get(int(parts[2]))
                if entry is None:
                    return self._error(404, 40403, "Schema not found")
                body = {"schema": entry["schema"]}
                if entry["schemaType"] != "AVRO":
                    body["schemaType"] = entry["schemaType"]
                return self._reply(200, body)
            if parts == ["subjects"]:
                return self._reply(200, sorted(store.subjects))
            if len(parts) >= 3 and parts[0] == "subjects" and parts[2] == "versions":
                versions = store.subjects.get(parts[1])
                if versions is None:
                    return self._error(404, 40401, f"Subject '{parts[1]}' not found.")
                if len(parts) == 3:
                    return self._reply(200, list(range(1, len(versions) + 1)))
                if len(parts) == 4:
                    wanted = parts[3]
                    version = len(versions) if wanted in ("latest", "-1") else int(wanted) \
                        if wanted.isdigit() else 0
                    if not 1 <= version <= len(versions):
                        return self._error(404, 40402, f"Version {wanted} not found.")
                    return self._reply(200, store.version_entry(parts[1], version))
        self._error(404, 404, f"Not implemented by the test registry: GET {self.path}")

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        if not self._authorized():
            return
        parts, store = self._route(), self.server.store
        try:
            body = self._body()
        except ValueError:
            return self._error(400, 400, "request body is not JSON")
        schema, schema_type = body.get("schema"), body.get("schemaType", "AVRO")
        if len(parts) in (2, 3) and parts[0] == "subjects" and not isinstance(schema, str):
            return self._error(422, 42201, "Invalid schema: 'schema' must be a string")
        if len(parts) == 3 and parts[0] == "subjects" and parts[2] == "versions":
            try:
                json.loads(schema)
            except ValueError:
                return self._error(422, 42201, "Invalid schema: not JSON")
            return self._reply(200, {"id": store.register(parts[1], schema, schema_type)})
        if len(parts) == 2 and parts[0] == "subjects":
            with store.lock:
                versions = store.subjects.get(parts[1])
                if versions is None:
                    return self._error(404, 40401, f"Subject '{parts[1]}' not found.")
                schema_id = store.ids.get((schema_type, schema))
                if schema_id is None or schema_id not in versions:
                    return self._error(404, 40403, "Schema not found")
                return self._reply(200, store.version_entry(parts[1], versions.index(schema_id) + 1))
        self._error(404, 404, f"Not implemented by the test registry: POST {self.path}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, credentials: tuple[str, str] | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.store = _Store()
        self.credentials = credentials
        self.requests: list[tuple[str, str, str | None]] = []


class RegistryServer:
    """``with RegistryServer(basic_auth=("user", "secret")) as registry: registry.url``."""

    def __init__(self, basic_auth: tuple[str, str] | None = None) -> None:
        self._server = _Server(basic_auth)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="test-schema-registry", daemon=True)

    @property
    def requests(self) -> list[tuple[str, str, str | None]]:
        """Every request seen: (method, path, basic-auth user or None)."""
        return list(self._server.requests)

    @property
    def subjects(self) -> dict[str, list[int]]:
        with self._server.store.lock:
            return {name: list(ids) for name, ids in self._server.store.subjects.items()}

    def start(self) -> RegistryServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
