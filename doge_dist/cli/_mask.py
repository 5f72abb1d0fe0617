"""Keep secrets out of logs, progress, summaries, errors and reports -- and nothing else.

The rule (shown in ``doge-dist run --help`` and stated in every report, see :data:`MASKING_RULE`):
masked are the values of environment variables whose names look like secrets, of variables the spec
lists under ``secrets:``, of settings known to hold secrets (``sasl.password``, ``basic.auth.user.info``,
any key named like ``password`` or ``token``...) and the password of every URL. Everything else
(hosts, ports, paths, topics, tables) is shown as it is, so that errors stay readable.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

from ..sinks._masking import url_passwords as _sink_url_passwords

__all__ = ["MASK", "SECRET_VAR_RE", "SECRET_KEY_RE", "SECRET_SETTINGS", "MASKING_RULE", "Masker",
           "MaskingFormatter", "MaskingFilter", "InstallLogMasking", "mask_url_passwords", "masked_paths",
           "is_secret_var", "is_secret_key", "url_passwords"]

MASK = "***"
#: Environment variables whose values are secrets, by name (case-insensitive).
SECRET_VAR_RE = re.compile(r"PASS|PWD|SECRET|TOKEN|KEY|CREDENTIAL|AUTH", re.IGNORECASE)
#: Mapping keys (model params, nested client configs) whose values are secrets, by name.
SECRET_KEY_RE = re.compile(r"pass|pwd|secret|token|credential|auth|api[._-]?key|private[._-]?key|"
                           r"access[._-]?key", re.IGNORECASE)
#: Settings of librdkafka (confluent-kafka producers) and of the Schema Registry client that hold
#: secrets whatever their name says (``ssl.key.pem``, ``sasl.oauthbearer.config``...).
SECRET_SETTINGS = frozenset({
    "sasl.password", "sasl.jaas.config", "sasl.oauthbearer.config", "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.client.credentials.client.secret", "sasl.oauthbearer.assertion.private.key.pem",
    "sasl.oauthbearer.assertion.private.key.passphrase", "ssl.key.password", "ssl.key.pem", "ssl_key",
    "ssl.keystore.password", "ssl.truststore.password", "basic.auth.user.info", "bearer.auth.token",
    "bearer.auth.client.secret",
})
MASKING_RULE = (
    "masked as *** (in the report, sink names, progress, messages and logs, also of Ray workers) are: "
    "the values of environment variables whose names contain PASS, PWD, SECRET, TOKEN, KEY, CREDENTIAL "
    "or AUTH (any case) and of the variables listed under 'secrets:' in the job spec; the values of "
    "settings that hold secrets (keys named like password, token, secret, auth, api_key, and client "
    "settings such as sasl.password, ssl.key.password, ssl.keystore.password, basic.auth.user.info, "
    "bearer.auth.token); and the password of every URL (scheme://user:***@host). Everything else is "
    "shown as it is. The report lists the masked fields and variables by name")

_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s,]*):(?P<password>[^@/\s]+)@")


def is_secret_var(name: str, declared: Iterable[str] = ()) -> bool:
    """An environment variable whose value is a secret: named like one, or listed under ``secrets:``."""
    return bool(SECRET_VAR_RE.search(name)) or name in set(declared)


def is_secret_key(key: Any) -> bool:
    """A mapping key whose value is a secret (``db_password``, ``sasl.password``, ``ssl.key.pem``...)."""
    return isinstance(key, str) and (key.lower() in SECRET_SETTINGS or bool(SECRET_KEY_RE.search(key)))


def mask_url_passwords(text: str) -> str:
    """``scheme://user:secret@host`` -> ``scheme://user:***@host``."""
    return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}:{MASK}@", text)


def url_passwords(text: str) -> list[str]:
    """The passwords of the URLs in ``text`` (as written and percent-decoded)."""
    found: list[str] = []
    for match in _URL_PASSWORD.finditer(text):
        password = match.group("password")
        found += [password, unquote(password)]
    found += _sink_url_passwords(text)  # urlsplit also reads a password the regex leaves (e.g. with '/')
    return [p for p in dict.fromkeys(found) if p]


class Masker:
    """Replaces known secret values and URL passwords with ``***`` wherever they occur.

    Picklable (it travels to Ray workers inside :class:`InstallLogMasking`).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for secret in secrets:
            self.add(secret)

    def __getstate__(self) -> dict[str, Any]:
        return {"secrets": sorted(self._secrets)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._secrets = set(state["secrets"])
        self._pattern = None

    def add(self, secret: Any) -> None:
        """Remember a secret value (empty values are ignored)."""
        if isinstance(secret, str) and secret and secret not in self._secrets:
            self._secrets.add(secret)
            self._pattern = None

    @property
    def secrets(self) -> frozenset[str]:
        return frozenset(self._secrets)

    def _compiled(self) -> re.Pattern[str] | None:
        if self._pattern is None and self._secrets:
            alternatives = [re.escape(v) for v in sorted(self._secrets, key=len, reverse=True)]
            self._pattern = re.compile("|".join(alternatives))
        return self._pattern

    def mask(self, text: str) -> str:
        """The text with every known secret and URL password masked."""
        pattern = self._compiled()
        if pattern is not None:
            text = pattern.sub(MASK, text)
        return mask_url_passwords(text)

    def mask_data(self, data: Any, *, mask_keys: bool = False) -> Any:
        """A copy of JSON-like data with secrets masked in every string.

        ``mask_keys`` also masks the value of every key that holds a secret (:func:`is_secret_key`).
        Keys that become equal once masked keep apart with ``#2``, ``#3`` suffixes.
        """
        if isinstance(data, str):
            return self.mask(data)
        if isinstance(data, dict):
            masked: dict[Any, Any] = {}
            for key, value in data.items():
                skey = self.mask(key) if isinstance(key, str) else key
                if skey in masked:
                    n = 2
                    while f"{skey}#{n}" in masked:
                        n += 1
                    skey = f"{skey}#{n}"
                if mask_keys and is_secret_key(key) and value not in (None, "") \
                        and isinstance(value, (str, int, float)) and not isinstance(value, bool):
                    masked[skey] = MASK
                    continue
                masked[skey] = self.mask_data(value, mask_keys=mask_keys)
            return masked
        if isinstance(data, (list, tuple)):
            return [self.mask_data(item, mask_keys=mask_keys) for item in data]
        return data


def masked_paths(original: Any, shown: Any, prefix: str = "") -> list[str]:
    """Paths (``params.db_url``, ``params.hosts[0]``) of the leaves that differ between two versions."""
    if isinstance(original, dict) and isinstance(shown, dict):
        paths = []
        for key, value in original.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            paths += masked_paths(value, shown.get(key), path) if key in shown else [path]
        return paths
    sequences = isinstance(original, (list, tuple)) and isinstance(shown, (list, tuple))
    if sequences and len(original) == len(shown):
        paths = []
        for i, (a, b) in enumerate(zip(original, shown, strict=True)):
            paths += masked_paths(a, b, f"{prefix}[{i}]")
        return paths
    return [] if original == shown else [prefix]


class MaskingFormatter(logging.Formatter):
    """A log formatter that masks secrets in the final text (message and traceback)."""

    def __init__(self, masker: Masker, fmt: str | None = None) -> None:
        super().__init__(fmt)
        self.masker = masker

    def format(self, record: logging.LogRecord) -> str:
        return self.masker.mask(super().format(record))


class MaskingFilter(logging.Filter):
    """A handler filter that masks a record's message and traceback before any formatter sees it
    (for handlers whose formatter is not ours, such as Ray's in its worker processes)."""

    def __init__(self, masker: Masker) -> None:
        super().__init__()
        self.masker = masker

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken %-format: leave it to the handler's error path
            return True
        record.msg, record.args = self.masker.mask(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.masker.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self.masker.mask(record.stack_info)
        return True


LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


class InstallLogMasking:
    """``worker_setup`` for ``generator.start()``: in each Ray worker process, mask every log record
    (a filter on every handler there, and a masked stderr handler on the root logger when it has none)
    and route ``warnings`` through logging. Picklable: it carries the masker and a level."""

    def __init__(self, masker: Masker, level: int = logging.WARNING) -> None:
        self.masker = masker
        self.level = level

    def __call__(self) -> None:
        install_log_masking(self.masker, self.level, replace_handlers=False)


def install_log_masking(masker: Masker, level: int, *, replace_handlers: bool) -> None:
    """Mask every log record of this process; ``replace_handlers`` makes ours the only root handler."""
    root = logging.getLogger()
    if replace_handlers:
        for old in list(root.handlers):
            root.removeHandler(old)
    if replace_handlers or not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(MaskingFormatter(masker, LOG_FORMAT))
        root.addHandler(handler)
        root.setLevel(level)
    known = logging.Logger.manager.loggerDict.values()
    loggers = [root] + [lg for lg in known if isinstance(lg, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            for existing in [f for f in handler.filters if isinstance(f, MaskingFilter)]:
                handler.removeFilter(existing)
            handler.addFilter(MaskingFilter(masker))
    logging.captureWarnings(True)
