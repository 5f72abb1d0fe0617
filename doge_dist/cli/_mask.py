"""Keep secrets out of logs, progress, summaries and reports."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["MASK", "SECRET_VAR_RE", "SECRET_KEY_RE", "Masker", "MaskingFormatter", "mask_url_passwords"]

MASK = "***"
#: Environment variables whose values are secrets when interpolated into a spec.
SECRET_VAR_RE = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|KEY|CREDENTIAL", re.IGNORECASE)
#: Mapping keys (e.g. model params) whose values are always shown masked.
SECRET_KEY_RE = re.compile(r"password|passwd|secret|token|credential|api[_-]?key|private[_-]?key|"
                           r"access[_-]?key", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):(?P<password>[^@/\s]+)@")


def mask_url_passwords(text: str) -> str:
    """``scheme://user:secret@host`` -> ``scheme://user:***@host``."""
    return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}:{MASK}@", text)


class Masker:
    """Replaces known secret values and URL passwords with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        """Remember a secret value (empty values are ignored)."""
        if isinstance(secret, str) and secret:
            self._secrets.add(secret)

    @property
    def secrets(self) -> frozenset[str]:
        return frozenset(self._secrets)

    def mask(self, text: str) -> str:
        """The text with every known secret and URL password masked."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return mask_url_passwords(text)

    def mask_data(self, data: Any, *, mask_keys: bool = False) -> Any:
        """A copy of JSON-like data with secrets masked in every string.

        ``mask_keys`` also masks the value of every key named like a secret (``password``, ``token``...).
        """
        if isinstance(data, str):
            return self.mask(data)
        if isinstance(data, dict):
            masked = {}
            for key, value in data.items():
                skey = self.mask(key) if isinstance(key, str) else key
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


class MaskingFormatter(logging.Formatter):
    """A log formatter that masks secrets in the final text (message and traceback)."""

    def __init__(self, masker: Masker, fmt: str | None = None) -> None:
        super().__init__(fmt)
        self.masker = masker

    def format(self, record: logging.LogRecord) -> str:
        return self.masker.mask(super().format(record))
