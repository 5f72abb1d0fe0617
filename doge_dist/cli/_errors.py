"""How the command line maps failures to exit statuses, and the error of a bad job spec."""

from __future__ import annotations

__all__ = ["UsageError", "RunFailed", "SpecError", "EXIT_OK", "EXIT_RUN_FAILED", "EXIT_BAD_INPUT",
           "EXIT_INTERRUPTED"]

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class UsageError(ValueError):
    """Bad input (target, spec, flag or model): exit status 2."""


class RunFailed(RuntimeError):
    """The work itself failed (run, render, submission): exit status 1."""


class SpecError(ValueError):
    """A job spec (or a command-line override) is invalid; the message names the field and line."""

    def __init__(self, message: str, *, field: str | None = None, line: int | None = None,
                 source: str | None = None) -> None:
        self.reason = message
        self.field = field
        self.line = line
        self.source = source
        where = []
        if field:
            where.append(f"field '{field}'")
        if line is not None:
            where.append(f"(line {line})")
        text = f"{' '.join(where)}: {message}" if where else message
        super().__init__(f"{source}: {text}" if source else text)
