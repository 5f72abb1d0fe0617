"""Credentials out of text the sinks print: URLs with ``user:password@`` and known secret values."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

__all__ = ["mask_url", "scrub", "url_passwords", "MASK"]

MASK = "***"

# scheme://user:password@ -- the password may not contain '@', '/' or whitespace (it would not be
# a URL's userinfo then); a user-only userinfo (scheme://user@host) is left as it is.
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:@/\s,]*):(?P<password>[^@/\s]*)@")


def mask_url(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` replaced by ``***``.

    Works on one URL, a comma separated list of URLs and on free text such as an error message.
    """
    return _USERINFO.sub(lambda m: f"{m.group('head')}:{MASK}@", text)


def url_passwords(urls: str) -> list[str]:
    """The passwords (as written and percent-decoded) in a comma separated list of URLs."""
    found: list[str] = []
    for part in urls.split(","):
        try:
            password = urlsplit(part.strip()).password
        except ValueError:
            continue
        if password:
            found += [password, unquote(password)]
    return found


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """``mask_url(text)`` with every non-empty value of ``secrets`` (longest first) replaced by ``***``."""
    text = mask_url(text)
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
