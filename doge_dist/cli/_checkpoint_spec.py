"""The ``checkpoint:`` section of a job spec, ``max_restarts:``, and the flags that override them.

::

    checkpoint:
      dir: ${DOGE_DATA:-out}/checkpoints/${DAY}  # a folder or an fsspec URL (s3://bucket/run)
      every: 100                        # ticks between checkpoints (default: only at the end)
      keep: 2                           # complete checkpoints kept (default 2; 'all' keeps every one)
      resume: out/checkpoints/2024-05-01  # continue this checkpoint (a folder or one of its tick-... folders)
    max_restarts: 3                     # on Ray: replace a lost shard up to 3 times

Validation is pure (no I/O): where the folder is and whether it can be written is checked before the run by
:mod:`._resume`. Errors carry the key they are about, so the spec loader names its line.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from ._errors import SpecError

__all__ = ["CheckpointSpecError", "CHECKPOINT_KEYS", "CHECKPOINT_FLAGS", "DEFAULT_KEEP", "checkpoint_section",
           "max_restarts", "apply_checkpoint_flags"]

CHECKPOINT_KEYS = ("dir", "every", "keep", "resume")
DEFAULT_KEEP = 2
#: command-line flag (argparse dest) -> key of the checkpoint section
CHECKPOINT_FLAGS = {"checkpoint_dir": ("dir", "--checkpoint-dir"),
                    "checkpoint_every": ("every", "--checkpoint-every"),
                    "checkpoint_keep": ("keep", "--checkpoint-keep"), "resume": ("resume", "--resume")}
_EXAMPLE = "{dir: out/checkpoints, every: 100, keep: 2}"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


class CheckpointSpecError(ValueError):
    """A bad ``checkpoint:`` value; ``key`` names the key it is about (None: the whole section)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def _scalar(value: Any) -> Any:
    """Interpolated text ("100", "null") read as a YAML scalar would be."""
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[-+]?\d+", text):
            return int(text)
        if text.lower() in ("", "null", "none", "~"):
            return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _location(value: Any, key: str, what: str) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise CheckpointSpecError(f"must be {what} (a folder or an fsspec URL such as s3://bucket/run), "
                                  f"got {value!r}", key)
    text = value.strip()
    if "://" in text and not _SCHEME.match(text):
        raise CheckpointSpecError(f"{text!r} is not a folder or a URL such as s3://bucket/run", key)
    return text.rstrip("/") or "/"


def _every(value: Any) -> int | None:
    value = _scalar(value)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckpointSpecError(f"must be a number of ticks >= 1 between checkpoints, got {value!r}",
                                  "every")
    return value


def _keep(value: Any) -> int:
    value = _scalar(value)
    if value is None:
        return DEFAULT_KEEP
    if isinstance(value, str) and value.strip().lower() == "all":
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckpointSpecError(f"must be the number of complete checkpoints to keep (>= 1) or 'all', "
                                  f"got {value!r}", "keep")
    return value


def checkpoint_section(value: Any) -> dict[str, Any]:
    """The normalised section: ``dir`` (text or None), ``every`` (ticks or None), ``keep`` (0 = all),
    ``resume`` (text or None). CheckpointSpecError names the key that is wrong."""
    if not isinstance(value, dict):
        raise CheckpointSpecError(f"must be a mapping such as {_EXAMPLE}, got {value!r}")
    for key in value:
        if key not in CHECKPOINT_KEYS:
            hint = difflib.get_close_matches(str(key), CHECKPOINT_KEYS, n=1)
            suggestion = f"; did you mean '{hint[0]}'?" if hint else f" (known: {', '.join(CHECKPOINT_KEYS)})"
            raise CheckpointSpecError(f"unknown key '{key}'{suggestion}", str(key))
    section = {"dir": _location(value.get("dir"), "dir", "the checkpoint folder"),
               "every": _every(value.get("every")), "keep": _keep(value.get("keep")),
               "resume": _location(value.get("resume"), "resume", "the checkpoint to continue")}
    if section["dir"] is None:
        for key in ("every", "keep"):
            if value.get(key) is not None and _scalar(value.get(key)) is not None:
                raise CheckpointSpecError(f"needs 'dir', the folder the checkpoints go to (e.g. {_EXAMPLE})",
                                          key)
    return section


def max_restarts(value: Any) -> int:
    """``max_restarts:`` an integer >= 0 (replacements per shard for lost Ray workers)."""
    value = _scalar(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"must be an integer >= 0 (how often a lost shard is replaced), got {value!r}")
    return value


def apply_checkpoint_flags(spec: Any, args: Any) -> None:
    """Merge ``--checkpoint-dir/-every/-keep`` and ``--resume`` into the spec's checkpoint section
    (validated again as a whole; SpecError naming the flag)."""
    given = {key: (getattr(args, dest), flag) for dest, (key, flag) in CHECKPOINT_FLAGS.items()
             if getattr(args, dest, None) is not None}
    if not given:
        return
    current = dict(spec.extras.get("checkpoint") or {})
    shown = dict(spec.shown.get("checkpoint") or current)
    if current.get("keep") == 0:
        current["keep"] = "all"
    for key, (value, _) in given.items():
        current[key] = value
        shown[key] = value
    try:
        spec.extras["checkpoint"] = checkpoint_section(current)
    except CheckpointSpecError as exc:
        flag = given.get(exc.key or "", (None, None))[1]
        where = f"checkpoint.{exc.key}" + (f" ({flag})" if flag else "") if exc.key else "checkpoint"
        raise SpecError(str(exc), field=where, line=None if flag else spec.lines.get(f"checkpoint.{exc.key}"),
                        source=str(spec.path) if spec.path and not flag else None) from None
    if "checkpoint" in spec.shown:
        spec.shown["checkpoint"] = shown


CHECKPOINT_HELP = (
    "Checkpoints: 'checkpoint: {dir: DIR, every: TICKS, keep: N}' in the spec (or --checkpoint-dir/-every/"
    "-keep) writes the run's state to DIR (a folder or an fsspec URL) every TICKS ticks and at the end, also "
    "when the run is stopped; 'doge-dist run SPEC --resume DIR --ticks T' continues it for T more ticks with "
    "exactly the events one longer run would have made. The summary says where the latest checkpoint is and "
    "the command that continues (or, after a stop or a failure, finishes) the run; DIR/RUN.json says how the "
    "run ended. --max-restarts K (max_restarts:) replaces a lost Ray worker's shard up to K times, replaying "
    "it from the latest checkpoint.")


def add_checkpoint_options(parser: Any) -> None:
    """The ``run`` flags for checkpoints, resume and restarts."""
    group = parser.add_argument_group("checkpoints and resume")
    group.add_argument("--checkpoint-dir", dest="checkpoint_dir", metavar="DIR",
                       help="write checkpoints to this folder or fsspec URL (spec: checkpoint.dir)")
    group.add_argument("--checkpoint-every", dest="checkpoint_every", metavar="TICKS",
                       help="ticks between checkpoints (default: only at the end; spec: checkpoint.every)")
    group.add_argument("--checkpoint-keep", dest="checkpoint_keep", metavar="N|all",
                       help="complete checkpoints to keep (default 2; spec: checkpoint.keep)")
    group.add_argument("--resume", metavar="CHECKPOINT",
                       help="continue from this checkpoint folder (its latest checkpoint) or one of its "
                       "tick-... folders, for --ticks more ticks (spec: checkpoint.resume)")
    group.add_argument("--max-restarts", dest="max_restarts", metavar="K",
                       help="on Ray, replace a shard whose worker is lost up to K times (default 0)")
