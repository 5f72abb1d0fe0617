"""Keep secrets out of logs, progress, summaries and reports.

The rule (shown in ``doge-dist run --help`` and in every report): every value substituted from a
``${VAR}`` in a job spec is masked as ``***``, except the numeric run settings (see
:data:`NUMERIC_FIELDS`) holding a number, boolean or null. Values of keys named like secrets
(``password``, ``token``...) and passwords in URLs (``scheme://user:***@host``) are masked too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["MASK", "SECRET_VAR_RE", "SECRET_KEY_RE", "NUMERIC_FIELDS", "MIN_TOKEN_LEN", "MASKING_RULE",
           "Masker", "MaskingFormatter", "mask_url_passwords", "masked_paths"]

MASK = "***"
#: Environment variables that certainly hold secrets: their values are masked wherever they appear,
#: even inside a longer word. (Every other interpolated value is masked too, as a whole token.)
SECRET_VAR_RE = re.compile(r"PASS|PWD|SECRET|TOKEN|KEY|CREDENTIAL|AUTH", re.IGNORECASE)
#: Mapping keys (e.g. model params) whose values are always shown masked.
SECRET_KEY_RE = re.compile(r"pass|pwd|secret|token|credential|auth|api[_-]?key|private[_-]?key|"
                           r"access[_-]?key", re.IGNORECASE)
#: Run settings whose interpolated numbers/booleans stay visible (top level, or a param of that name).
NUMERIC_FIELDS = ("subjects", "ticks", "tick_ms", "timestamp_start", "seed", "workers", "window", "realtime",
                  "speed")
#: Interpolated values shorter than this are masked in the report's spec but not searched for in
#: free text (masking every "1" or "eu" in messages would garble them without protecting anything).
MIN_TOKEN_LEN = 4
MASKING_RULE = (
    "every value substituted from ${VAR} in the job spec is shown as *** (in the report, sink names, "
    "progress, messages and logs), except numbers/booleans of the run settings "
    f"{', '.join(NUMERIC_FIELDS)} (top level or a param of that name); values of keys named like "
    "secrets (password, pass, pwd, token, secret, auth, api_key...) and passwords in URLs are masked too; "
    f"values shorter than {MIN_TOKEN_LEN} characters are masked in the report's spec only")

_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):(?P<password>[^@/\s]+)@")


def mask_url_passwords(text: str) -> str:
    """``scheme://user:secret@host`` -> ``scheme://user:***@host``."""
    return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}:{MASK}@", text)


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


class Masker:
    """Replaces known secret values and URL passwords with ``***``.

    ``add()`` registers a secret masked wherever it occurs; ``add_token()`` registers a value masked
    where it stands as a whole token (not inside a longer word: the value ``postgres`` leaves
    ``postgresql`` alone), for interpolated values that are not known to be secrets.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._tokens: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for secret in secrets:
            self.add(secret)

    def add(self, secret: Any) -> None:
        """Remember a secret value (empty values are ignored)."""
        if isinstance(secret, str) and secret and secret not in self._secrets:
            self._secrets.add(secret)
            self._pattern = None

    def add_token(self, value: Any) -> None:
        """Remember a value to mask where it stands alone (short values are not searched for)."""
        if isinstance(value, str) and len(value.strip()) >= MIN_TOKEN_LEN and value not in self._tokens:
            self._tokens.add(value)
            self._pattern = None

    @property
    def secrets(self) -> frozenset[str]:
        return frozenset(self._secrets)

    @property
    def tokens(self) -> frozenset[str]:
        return frozenset(self._tokens)

    def _compiled(self) -> re.Pattern[str] | None:
        if self._pattern is None and (self._secrets or self._tokens):
            alternatives = []
            values = [(v, False) for v in self._secrets] + [(v, True) for v in self._tokens - self._secrets]
            for value, whole in sorted(values, key=lambda item: len(item[0]), reverse=True):
                part = re.escape(value)
                if whole and _is_word(value[0]):
                    part = r"(?<![A-Za-z0-9_])" + part
                if whole and _is_word(value[-1]):
                    part += r"(?![A-Za-z0-9_])"
                alternatives.append(part)
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

        ``mask_keys`` also masks the value of every key named like a secret (``password``, ``token``...).
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
                secret_key = mask_keys and isinstance(key, str) and SECRET_KEY_RE.search(key)
                if secret_key and value not in (None, "") and isinstance(value, (str, int, float)) \
                        and not isinstance(value, bool):
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
