"""How the command line maps failures to exit statuses."""

from __future__ import annotations

__all__ = ["UsageError", "RunFailed", "EXIT_OK", "EXIT_RUN_FAILED", "EXIT_BAD_INPUT", "EXIT_INTERRUPTED"]

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class UsageError(ValueError):
    """Bad input (target, spec, flag or model): exit status 2."""


class RunFailed(RuntimeError):
    """The work itself failed (run, render, submission): exit status 1."""
