"""Checkpoints and resume for ``doge-dist run``: checks before the run, what the summary and the report say
after it, and the command that continues (or finishes) a run.

Before the run (exit 2 on a problem, nothing started): the checkpoint folder can be written (local) or its
fsspec protocol is installed (URL); it holds no other run's checkpoints; the checkpoint to resume exists, is
complete and belongs to this model (what differs is named: ``seed (checkpoint 7, now 8)``); and a folder
whose run did not complete is resumed only into itself (that finishes the run) -- continuing elsewhere from
a stopped or failed run would silently shift every later segment (a nightly job's day N+1 would start
mid-day N), so that needs the tick folder named explicitly.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import ModelError
from ._errors import UsageError
from ._mask import is_secret_var

__all__ = ["CheckpointRun", "plan_checkpoints", "resume_command", "checkpoint_lines", "finish_hint",
           "checkpoint_report", "is_url"]

_TICK_FOLDER = re.compile(r"^tick-(\d+)$")


def is_url(location: str) -> bool:
    return "://" in location and not location.startswith("file://")


def _absolute(location: str) -> str:
    """Local folders as absolute paths (Ray workers may run elsewhere); URLs unchanged."""
    if is_url(location):
        return location.rstrip("/")
    plain = location[len("file://"):] if location.startswith("file://") else location
    return os.path.abspath(os.path.expanduser(plain))


def _split_tick_folder(location: str) -> tuple[str, int | None]:
    """(checkpoint folder, tick) for ``.../tick-000000000300``; (location, None) for a folder."""
    base, _, last = location.rstrip("/").rpartition("/")
    match = _TICK_FOLDER.match(last)
    if match and base:
        return base, int(match.group(1))
    return location.rstrip("/"), None


@dataclass
class CheckpointRun:
    """What ``start()`` gets for checkpoints and resume, and what the run's messages need to know."""

    dir: str | None = None            # absolute folder or URL the run checkpoints into
    every: int | None = None
    keep: int = 2
    resume_given: str | None = None   # as the user wrote it
    resume_from: str | None = None    # the exact tick folder passed to start()
    resume_tick: int | None = None
    resume_folder: str | None = None
    max_restarts: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return bool(self.dir or self.resume_from or self.max_restarts)

    def start_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"max_restarts": self.max_restarts}
        if self.dir is not None:
            kwargs.update(checkpoint_dir=self.dir, checkpoint_every=self.every, checkpoint_keep=self.keep)
        if self.resume_from is not None:
            kwargs["resume_from"] = self.resume_from
        return kwargs

    def end_tick(self, ticks: int | None) -> int | None:
        return None if ticks is None else (self.resume_tick or 0) + ticks


# -- before the run ------------------------------------------------------------------------------------


def _check_writable(location: str, what: str) -> None:
    """A local folder that exists or can be created, and can be written; a URL whose protocol is installed."""
    if is_url(location):
        protocol = location.split("://", 1)[0]
        try:
            import fsspec

            fsspec.get_filesystem_class(protocol)
        except ImportError as exc:
            raise UsageError(f"{what} {location}: the {protocol}:// protocol needs a package that is not "
                             f"installed ({exc}); e.g. pip install s3fs for s3://, gcsfs for gs://") from None
        except ValueError:
            raise UsageError(f"{what} {location}: unknown protocol {protocol}://") from None
        return
    target = Path(location)
    try:
        if target.exists() and not target.is_dir():
            raise UsageError(f"{what} {location}: exists and is not a folder")
        existing = target
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise UsageError(f"{what} {location}: {existing} is not a folder")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise UsageError(f"{what} {location}: cannot write there: {exc.strerror or exc}") from None


def _run_status(store: Any) -> dict[str, Any] | None:
    try:
        if store.exists("RUN.json"):
            return json.loads(store.read("RUN.json"))
    except (OSError, ValueError):
        return None
    return None


def _complete_ticks(store: Any) -> list[int]:
    from ..run._checkpoint import tick_dir

    return [t for t in store.ticks() if store.exists(f"{tick_dir(t)}/MANIFEST.json")]


def plan_checkpoints(spec: Any, generator: Any) -> CheckpointRun:
    """Check the spec's checkpoint settings against the storage and the model (UsageError: exit 2)."""
    section = spec.extras.get("checkpoint") or {}
    plan = CheckpointRun(every=section.get("every"), keep=section.get("keep", 2),
                         max_restarts=int(spec.settings.get("max_restarts") or 0))
    if section.get("dir"):
        plan.dir = _absolute(section["dir"])
        _check_writable(plan.dir, "checkpoint.dir")
    if section.get("resume"):
        plan.resume_given = section["resume"]
        _plan_resume(plan, generator)
    if plan.dir is not None:
        _check_target_folder(plan)
    return plan


def _plan_resume(plan: CheckpointRun, generator: Any) -> None:
    from ..run._checkpoint import Store, load_manifest, tick_dir
    from ..run._plan import check_resumable

    given = plan.resume_given or ""
    location = _absolute(given)
    folder, tick = _split_tick_folder(location)
    try:
        manifest = load_manifest(location)
    except ModelError as exc:
        raise UsageError(f"--resume {given}: {exc}") from None
    except FileNotFoundError as exc:
        raise UsageError(f"--resume {given}: no such checkpoint ({exc})") from None
    except OSError as exc:
        raise UsageError(f"--resume {given}: cannot read the checkpoint: {exc}") from None
    try:
        check_resumable(manifest, generator.fingerprint_components())
    except ModelError as exc:
        raise UsageError(f"--resume {given}: {exc}") from None
    store = Store(folder)
    plan.resume_folder = store.url
    plan.resume_tick = manifest.tick
    plan.resume_from = store.path(tick_dir(manifest.tick))
    status = _run_status(store)
    if tick is not None or status is None or status.get("status") == "completed":
        return
    same = plan.dir is not None and _same_location(plan.dir, store.url)
    if status.get("status") == "running":
        plan.warnings.append(f"{store.path('RUN.json')} says a run is still writing there (or was killed); "
                             "make sure no other run uses that folder")
    if not same:
        ended = status.get("status", "unknown")
        raise UsageError(
            f"--resume {given}: the run that wrote it did not complete ({ended} at tick "
            f"{status.get('ticks_reached')}; latest checkpoint: tick {manifest.tick}). Finish that run by "
            f"resuming it into the same folder (--checkpoint-dir {given}), or name the tick folder "
            f"({store.path(tick_dir(manifest.tick))}) to continue from that checkpoint elsewhere")


def _same_location(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def _check_target_folder(plan: CheckpointRun) -> None:
    """The checkpoint folder holds no checkpoints, or is the lineage this run continues (from its latest)."""
    from ..run._checkpoint import Store

    assert plan.dir is not None
    try:
        store = Store(plan.dir)
        complete = _complete_ticks(store)
        present = store.ticks()
    except ModelError as exc:
        raise UsageError(f"checkpoint.dir {plan.dir}: {exc}") from None
    except OSError as exc:
        raise UsageError(f"checkpoint.dir {plan.dir}: cannot list it: {exc}") from None
    if not present and not complete:
        return
    if plan.resume_folder is not None and _same_location(plan.resume_folder, store.url):
        if complete and plan.resume_tick == complete[-1]:
            return
        raise UsageError(f"checkpoint.dir {plan.dir}: this run would resume its checkpoint at tick "
                         f"{plan.resume_tick}, but the folder already holds later ones (up to tick "
                         f"{complete[-1] if complete else present[-1]}); checkpoint into another folder")
    status = _run_status(store) or {}
    latest = complete[-1] if complete else None
    other = f"run {status.get('run_id', '?')}, {status.get('status', 'status unknown')}"
    raise UsageError(
        f"checkpoint.dir {plan.dir}: already holds checkpoints of another run ({other}, latest complete "
        f"checkpoint: tick {latest}); continue "
        f"it with --resume {plan.dir}, or use another folder (or delete this one)")


# -- after the run -------------------------------------------------------------------------------------


def resume_command(argv: Sequence[str], *, resume: str, ticks: int | None, env_vars: Sequence[str] = (),
                   environ: Mapping[str, str] | None = None) -> str:
    """The ``doge-dist run ...`` command line that resumes ``resume`` for ``ticks`` more ticks: the
    original arguments with ``--resume`` (and ``--ticks`` when given) replaced, prefixed by the values of
    the environment variables the spec read (secrets left out: set them as before)."""
    environ = os.environ if environ is None else environ
    drop = {"--resume"} | ({"--ticks"} if ticks is not None else set())
    kept: list[str] = []
    skip = False
    for word in argv:
        if skip:
            skip = False
            continue
        name = word.split("=", 1)[0]
        if name in drop:
            skip = "=" not in word
            continue
        kept.append(word)
    kept += ["--resume", resume] + (["--ticks", str(ticks)] if ticks is not None else [])
    prefix = [f"{name}={shlex.quote(environ[name])}" for name in env_vars
              if name in environ and not is_secret_var(name)]
    return " ".join([*prefix, "doge-dist", *(shlex.quote(w) for w in kept)])


def _latest(result: Any, plan: CheckpointRun) -> int | None:
    info = getattr(result, "checkpoint", None) or {}
    if info.get("latest_tick") is not None:
        return int(info["latest_tick"])
    if plan.dir is not None:  # no result (a second Ctrl-C): the folder's RUN.json says
        from ..run._checkpoint import Store

        status = _run_status(Store(plan.dir)) or {}
        if status.get("latest_checkpoint") is not None:
            return int(status["latest_checkpoint"])
    return None


def _finish(plan: CheckpointRun, result: Any, *, ticks: int | None, argv: Sequence[str],
            env_vars: Sequence[str]) -> tuple[int, str] | None:
    """(tick, command) of the checkpoint that finishes a stopped or failed run (None: there is none)."""
    latest = _latest(result, plan)
    if latest is not None and plan.dir is not None:
        source, at = plan.dir, latest
    elif plan.resume_from is not None:  # nothing completed in this run: the checkpoint it started from
        source, at = plan.resume_from, plan.resume_tick or 0
    else:
        return None
    end = plan.end_tick(ticks)
    remaining = None if end is None else max(end - at, 0)
    return at, resume_command(argv, resume=source, ticks=remaining, env_vars=env_vars)


def finish_hint(plan: CheckpointRun, result: Any, *, ticks: int | None, argv: Sequence[str],
                env_vars: Sequence[str]) -> str | None:
    """For a stopped or failed run: which checkpoint finishes it, and the command (None: no checkpoints)."""
    if plan.dir is None and plan.resume_from is None:
        return None
    try:
        found = _finish(plan, result, ticks=ticks, argv=argv, env_vars=env_vars)
    except Exception as exc:  # noqa: BLE001 - the run's own outcome is reported whatever happens here
        return f"see {plan.dir or plan.resume_folder}/RUN.json for the checkpoint that finishes it ({exc})"
    if found is None:
        return f"no checkpoint was completed in {plan.dir}: run it again from the start"
    at, command = found
    return f"finish it from the checkpoint at tick {at:,} with: {command}"


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:,.0f} {unit}" if unit == "B" else f"{count:,.1f} {unit}"
        count /= 1000
    return f"{count:,.1f} GB"  # pragma: no cover


def checkpoint_lines(plan: CheckpointRun, result: Any, *, status: str, ticks: int | None,
                     argv: Sequence[str], env_vars: Sequence[str]) -> list[str]:
    """Summary lines: resumed from where, the latest checkpoint and its size, the command that continues
    the run, restarts, possible duplicates and notes."""
    lines: list[str] = []
    first = getattr(result, "first_tick", 0) or 0
    if plan.resume_from is not None:
        last = first + result.ticks - 1
        lines.append(f"  resumed: from {plan.resume_from} (this run: ticks {first:,}..{last:,})")
    info = getattr(result, "checkpoint", None) or {}
    written = info.get("written") or []
    latest = info.get("latest_tick")
    if plan.dir is not None:
        if latest is None:
            lines.append(f"  checkpoint: none completed in {plan.dir}")
        else:
            text = f"  checkpoint: tick {latest:,} in {plan.dir}"
            last = next((w for w in reversed(written) if w.get("tick") == latest), None)
            full = next((w for w in reversed(written) if not w.get("delta")), None)
            if last is not None:
                shape = (f"a delta of {last.get('subjects', 0):,} changed subjects" if last.get("delta")
                         else "a full snapshot")
                text += (f" ({len(written)} written in this run; latest {_size(last['bytes'])}, {shape}, "
                         f"written in {last.get('write_s', 0.0):.2f} s")
                if full is not None and full.get("subjects"):
                    text += f"; full snapshots {full['bytes'] / full['subjects']:,.0f} bytes/subject"
                text += ")"
            lines.append(text)
            if status == "completed" or (status == "stopped" and ticks is None):  # (else: the exit message)
                command = resume_command(argv, resume=plan.dir, ticks=ticks, env_vars=env_vars)
                lines.append(f"  continue with: {command}")
    restarts = getattr(result, "restarts", 0)
    if restarts:
        lines.append(f"  restarts: {restarts} lost shard(s) replaced and replayed")
    for sink, count in (getattr(result, "possible_duplicates", None) or {}).items():
        lines.append(f"  possible duplicates: {count:,} events in {sink} (replayed after a restart; this "
                     "sink does not resume exactly)")
    for note in getattr(result, "notes", None) or []:
        lines.append(f"  note: {note}")
    return lines


def checkpoint_report(plan: CheckpointRun, result: Any, *, status: str, ticks: int | None,
                      argv: Sequence[str], env_vars: Sequence[str]) -> dict[str, Any]:
    """The report's ``checkpoint`` section; ``resume_command`` continues a completed run or finishes a
    stopped or failed one."""
    info = getattr(result, "checkpoint", None) or {}
    latest = _latest(result, plan)
    command = None
    if status == "completed":
        if plan.dir is not None and latest is not None:
            command = resume_command(argv, resume=plan.dir, ticks=ticks, env_vars=env_vars)
    else:
        found = _finish(plan, result, ticks=ticks, argv=argv, env_vars=env_vars)
        command = found[1] if found is not None else None
    return {
        "dir": plan.dir, "every": plan.every, "keep": plan.keep, "latest_tick": latest,
        "run_status_file": None if plan.dir is None else f"{plan.dir.rstrip('/')}/RUN.json",
        "resumed_from": plan.resume_from, "first_tick": plan.resume_tick or 0,
        "end_tick": plan.end_tick(ticks), "resume_command": command,
        "written": info.get("written") or [], "max_restarts": plan.max_restarts,
        "restarts": getattr(result, "restarts", 0) if result is not None else 0,
        "possible_duplicates": dict(getattr(result, "possible_duplicates", None) or {}),
        "notes": list(getattr(result, "notes", None) or []),
    }
