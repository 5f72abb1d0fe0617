"""``${VAR}`` and ``${VAR:-default}`` in job specs: substitution, typing of a lone ``${VAR}``, and
which substituted values are secrets (see :data:`doge_dist.cli._mask.MASKING_RULE`)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import SpecError
from ._mask import MASK, is_secret_key, is_secret_var

__all__ = ["typed_scalar", "Substitution", "Interpolator", "interpolate", "path_text", "Path"]

Path = tuple[Any, ...]  # keys and list indices from the spec's top level down to a value

_VAR = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_VAR_BODY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$", re.DOTALL)
_INT = re.compile(r"^[-+]?\d+$")
_FLOAT = re.compile(r"^[-+]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][-+]?\d+)$")
_URL_BEFORE_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:[^@/\s]*$")
_URL_AFTER_PASSWORD = re.compile(r"[^@/\s]*@")


def typed_scalar(text: str) -> Any:
    """Decimal integers and floats, true/false and null/none are typed; anything else stays text.

    The rule of ``--param key=value`` and of a param scalar that is one whole ``${VAR}``.
    """
    stripped = text.strip()
    lowered = stripped.lower()
    if _INT.match(stripped):
        return int(stripped)
    if _FLOAT.match(stripped):
        return float(stripped)
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none"):
        return None
    return text


def path_text(path: Path) -> str:
    """``("params", "hosts", 0)`` -> ``params.hosts[0]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@dataclass(frozen=True)
class Substitution:
    """One ``${VAR}`` replaced by ``value`` at ``path``; ``secret`` when the value must be masked."""

    var: str
    value: str
    path: str
    secret: bool


def _in_url_password(text: str, match: re.Match[str]) -> bool:
    """The reference stands where ``scheme://user:PASSWORD@host`` has its password."""
    return bool(_URL_BEFORE_PASSWORD.search(text[:match.start()])
                and _URL_AFTER_PASSWORD.match(text[match.end():]))


def _secret_path(path: Path) -> bool:
    return any(is_secret_key(part) for part in path[1:])


class Interpolator:
    """Substitutes ``${VAR}`` / ``${VAR:-default}`` (``$${`` is a literal ``${``) and records every
    substitution, so the caller knows what to mask.

    ``run()`` returns the value and the value as reports show it (secret substitutions ``***``).
    A scalar under ``params`` that is exactly one ``${...}`` is typed with :func:`typed_scalar`, quoted
    or not (flow mappings need the quotes); top-level fields are typed by their validators.
    """

    def __init__(self, environ: Mapping[str, str], used: list[str],
                 declared_secrets: Iterable[str] = ()) -> None:
        self.environ = environ
        self.used = used
        self.declared = frozenset(declared_secrets)
        self.substitutions: list[Substitution] = []

    def run(self, value: Any, path: Path) -> tuple[Any, Any]:
        if isinstance(value, str):
            return self._text(value, path)
        if isinstance(value, dict):
            result, shown = {}, {}
            for key, item in value.items():
                result[key], shown[key] = self.run(item, (*path, key))
            return result, shown
        if isinstance(value, list):
            pairs = [self.run(item, (*path, i)) for i, item in enumerate(value)]
            return [p[0] for p in pairs], [p[1] for p in pairs]
        return value, value

    def _text(self, text: str, path: Path) -> tuple[Any, Any]:
        matches = list(_VAR.finditer(text))
        if not matches:
            return text, text
        secret_place = _secret_path(path)
        parts: list[str] = []
        shown: list[str] = []
        pos = 0
        for match in matches:
            parts.append(text[pos:match.start()])
            shown.append(text[pos:match.start()])
            pos = match.end()
            if match.group(0) == "$${":
                parts.append("${")
                shown.append("${")
                continue
            name, value = self._resolve(match, path)
            secret = secret_place or is_secret_var(name, self.declared) or _in_url_password(text, match)
            self.substitutions.append(Substitution(name, value, path_text(path), secret))
            parts.append(value)
            shown.append(MASK if secret and value else value)
        parts.append(text[pos:])
        shown.append(text[pos:])
        result: Any = "".join(parts)
        shown_text: Any = "".join(shown)
        whole = len(matches) == 1 and matches[0].span() == (0, len(text)) and matches[0].group(0) != "$${"
        if whole and path[:1] == ("params",) and len(path) > 1:  # top-level fields have validators
            typed = typed_scalar(result)
            if not isinstance(typed, str):
                result = typed
                if shown_text != MASK:
                    shown_text = typed
        return result, shown_text

    def _resolve(self, match: re.Match[str], path: Path) -> tuple[str, str]:
        body = match.group(1)
        parsed = _VAR_BODY.match(body) if body is not None else None
        if parsed is None:
            raise SpecError(f"malformed variable reference {match.group(0)!r}: use ${{NAME}} or "
                            f"${{NAME:-default}}", field=path_text(path))
        name, default = parsed.group(1), parsed.group(2)
        if name not in self.used:
            self.used.append(name)
        current = self.environ.get(name)
        if current is None or (current == "" and default is not None):
            if default is None:
                raise SpecError(f"environment variable {name} is not set (use ${{{name}:-default}} "
                                "for a default)", field=path_text(path))
            current = default
        return name, current

    def secret_values(self) -> list[str]:
        return [s.value for s in self.substitutions if s.secret and s.value]

    def secret_vars(self) -> list[str]:
        return list(dict.fromkeys(s.var for s in self.substitutions if s.secret))


def interpolate(value: Any, where: str, environ: Mapping[str, str], used: list[str] | None = None,
                declared_secrets: Iterable[str] = ()) -> tuple[Any, Interpolator]:
    """``value`` with every ``${VAR}`` replaced, and the Interpolator that knows what was secret."""
    interpolator = Interpolator(environ, [] if used is None else used, declared_secrets)
    result, _ = interpolator.run(value, tuple(where.split(".")))
    return result, interpolator
