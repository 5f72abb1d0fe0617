"""``doge-dist submit``: run a job spec on a Ray cluster as a Ray Job.

What travels: only the spec and the model's code (its package directory, or the single file of a
top-level module), copied into a staging directory in the same relative layout, without dotfiles and
``__pycache__``, and at most ``--max-upload-mb``. Every request to the Jobs API is bounded by
``--http-timeout``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import EXIT_OK, EXIT_RUN_FAILED, RunFailed, UsageError
from ._mask import SECRET_VAR_RE, Masker, is_secret_key
from ._spec import JobSpec
from ._target import is_file_target, parse_target

__all__ = ["cmd_submit", "UploadPlan", "plan_upload", "stage_upload", "build_entrypoint", "wait_for_job",
           "connect", "bounded_client_class", "ApiTimeout", "local_auth_token", "secret_env_warning",
           "secret_param_warning", "relative_path_warnings", "is_hidden"]

_TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
AGENT_RETRY_S = 60.0
_LISTED_FILES = 12

#: run flags passed through to the job's ``doge-dist run`` (spec field -> flag).
_PASS_THROUGH = {"subjects": "--subjects", "ticks": "--ticks", "tick_ms": "--tick-ms",
                 "timestamp_start": "--timestamp-start", "seed": "--seed", "workers": "--workers",
                 "window": "--window", "speed": "--speed", "rate": "--rate"}
_FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".gz", ".txt", ".log", ".db", ".sqlite", ".parquet", ".avro")


# -- what to upload ------------------------------------------------------------------------------


def is_hidden(relative: Path) -> bool:
    """A dotfile, or anything inside a dot-directory or ``__pycache__`` (or a ``.pyc``)."""
    return any(part.startswith(".") or part == "__pycache__" for part in relative.parts) \
        or relative.suffix == ".pyc"


@dataclass
class UploadPlan:
    """The files to upload (absolute source -> path inside the job's working_dir)."""

    files: dict[Path, str] = field(default_factory=dict)
    spec_path: str = ""
    skipped_hidden: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(source.stat().st_size for source in self.files)

    def add_file(self, source: Path, relative: str) -> None:
        self.files[source] = relative

    def add_tree(self, directory: Path, base: Path, include_hidden: bool) -> None:
        for source in _walk(directory):
            relative = source.relative_to(base)
            if not include_hidden and is_hidden(source.relative_to(directory)):
                self.skipped_hidden += 1
                continue
            self.files[source] = relative.as_posix()

    def describe(self, limit: int = _LISTED_FILES) -> str:
        names = sorted(self.files.values())
        shown = ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
        text = f"uploading {len(names)} file(s), {_size(self.total_bytes)}: {shown}"
        if self.skipped_hidden:
            text += f" ({self.skipped_hidden} dotfile(s)/__pycache__ left out; --include-dotfiles adds them)"
        return text


def _walk(directory: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(directory, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            if path.is_file():
                yield path


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:,.0f} {unit}" if unit == "B" else f"{count:,.1f} {unit}"
        count /= 1024
    return f"{count:,.1f} GiB"  # pragma: no cover


def _module_location(module_part: str) -> Path | None:
    """A module target's code: its top package directory, or the file of a top-level module; None when
    it is installed (site-packages) or built in."""
    top = module_part.split(".")[0]
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        found = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.origin or found.origin in ("built-in", "frozen"):
        return None
    origin = Path(found.origin).resolve()
    if "site-packages" in origin.parts or "dist-packages" in origin.parts:
        return None
    return origin.parent if origin.name == "__init__.py" else origin


def plan_upload(spec: JobSpec, *, working_dir: Path | None = None,
                include_hidden: bool = False) -> UploadPlan:
    """What the job needs: the spec and the model's code, in the layout that keeps the spec's relative
    model path valid; or the whole ``working_dir`` when one is given."""
    assert spec.path is not None
    plan = UploadPlan()
    if working_dir is not None:
        plan.add_tree(working_dir, working_dir, include_hidden)
        plan.add_file(spec.path, spec.path.relative_to(working_dir).as_posix())
        plan.spec_path = spec.path.relative_to(working_dir).as_posix()
        return plan
    if (spec.model or "").strip().lower().endswith((".yaml", ".yml")):  # a YAML model file
        path = Path(spec.model.strip())
        path = path if path.is_absolute() else spec.base_dir / path
        if not path.is_file():
            raise UsageError(f"field 'model': file not found: {path.resolve()}")
        return path.resolve().parent
    module_part, _ = parse_target(spec.model or "")
    if is_file_target(module_part):
        written = Path(module_part)
        model = (written if written.is_absolute() else spec.base_dir / written).resolve()
        if not model.is_file():
            raise UsageError(f"field 'model': file not found: {model}")
        if written.is_absolute():
            plan.notes.append(f"the spec names its model by the absolute path {written}: the job finds it "
                              "only if that path exists on the cluster (write it relative to the spec to "
                              "upload it)")
            plan.add_file(spec.path, spec.path.name)
            plan.spec_path = spec.path.name
            return plan
        package = model.parent if (model.parent / "__init__.py").is_file() else None
        code = package if package is not None else model
        base = Path(os.path.commonpath([spec.path.parent, code.parent]))
        if package is not None:
            plan.add_tree(package, base, include_hidden)
        else:
            plan.add_file(model, model.relative_to(base).as_posix())
        plan.spec_path = spec.path.relative_to(base).as_posix()
        plan.add_file(spec.path, plan.spec_path)
        return plan
    location = _module_location(module_part)
    if location is None:
        plan.notes.append(f"the model's module {module_part.split('.')[0]} is not uploaded (installed or not "
                          "found here): it must be importable on the cluster")
    elif location.is_dir():
        plan.add_tree(location, location.parent, include_hidden)
    else:
        plan.add_file(location, location.name)
    plan.spec_path = spec.path.name
    plan.add_file(spec.path, plan.spec_path)
    return plan


def stage_upload(plan: UploadPlan, directory: Path) -> Path:
    """Copy the planned files into ``directory`` (the job's working_dir)."""
    for source, relative in plan.files.items():
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return directory


def relative_path_warnings(spec: JobSpec) -> list[str]:
    """Params that look like relative file paths: on the cluster they resolve inside the job's unpacked
    working_dir (Ray's package cache), where the files are hard to find and do not last."""
    shown = spec.resolved().get("params", {})
    found = []
    for key, value in spec.params.items():
        if not isinstance(value, str) or is_secret_key(key):
            continue
        text = value.strip()
        sqlite = re.match(r"sqlite[+\w]*:///(?!/)", text)
        if "://" in text and not sqlite:
            continue
        if sqlite or (not os.path.isabs(text) and ("/" in text or text.lower().endswith(_FILE_SUFFIXES))):
            found.append(f"params.{key} = {shown.get(key, value)}")
    if not found:
        return []
    return [f"doge-dist: warning: relative output path(s) {'; '.join(found)}: the job runs in its unpacked "
            "copy of the working_dir inside Ray's package cache on the cluster "
            "(/tmp/ray/session_*/runtime_resources/working_dir_files/...), so the files land there; use "
            "absolute paths on a shared filesystem (or a database or Kafka sink)"]


def build_entrypoint(spec_path: str, spec: JobSpec, args: argparse.Namespace) -> str:
    """``python -m doge_dist run <spec inside the working_dir> [flags]``."""
    words = ["python", "-m", "doge_dist", "run", spec_path]
    for name, flag in _PASS_THROUGH.items():
        value = getattr(args, name, None)
        if value is not None:
            words += [flag, str(value)]
    if getattr(args, "realtime", None) is not None:
        words.append("--realtime" if args.realtime else "--no-realtime")
    for text in getattr(args, "param", None) or []:
        words += ["--param", text]
    workers = spec.settings.get("workers") or 1
    if spec.settings.get("ray_address") is not None or workers == "auto" or workers > 1:
        words += ["--address", "auto"]  # inside a Ray Job the driver joins its own cluster
    return " ".join(shlex.quote(w) for w in words)


# -- the Jobs API --------------------------------------------------------------------------------


class ApiTimeout(RuntimeError):
    """The Jobs API did not answer within the timeout."""


def bounded_client_class(base: Any, timeout_s: float) -> Any:
    """``base`` (Ray's JobSubmissionClient) with a connect and a read timeout on every request."""
    import requests

    class BoundedJobSubmissionClient(base):
        def _do_request(self, method: str, endpoint: str, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", (timeout_s, timeout_s))
            try:
                return super()._do_request(method, endpoint, **kwargs)
            except requests.exceptions.Timeout as exc:
                raise ApiTimeout(f"the Ray Jobs API at {self._address} did not answer {method} {endpoint} "
                                 f"within {timeout_s:g} s (--http-timeout)") from exc

    return BoundedJobSubmissionClient


def local_auth_token() -> str | None:
    """Ray's token for this machine: $RAY_AUTH_TOKEN, the file $RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token."""
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if token:
        return token
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def connect(client_class: Any, address: str, masker: Masker) -> Any:
    """A JobSubmissionClient for ``address``.

    A cluster started with ``ray start`` turns token authentication on when this machine has a Ray
    token, but Ray's client sends the token only when RAY_AUTH_MODE=token: when the server asks
    for authentication, retry once with the local token (never sent unasked).
    """
    try:
        return client_class(address)
    except Exception as exc:
        first = exc
    token = local_auth_token()
    if token is not None and ("Authentication required" in str(first)
                              or re.search(r"(?<![\d:.])401(?!\d)", str(first))):
        masker.add(token)
        try:
            return client_class(address, headers={"Authorization": f"Bearer {token}"})
        except Exception as exc:
            raise RunFailed(f"cannot use the Ray Jobs API at {address} (with this machine's Ray token): "
                            f"{masker.mask(str(exc))}") from exc
    raise RunFailed(f"cannot reach the Ray Jobs API at {address}: {masker.mask(str(first))}") from first


def submit_with_retry(client: Any, masker: Masker, address: str, *, retry_s: float = AGENT_RETRY_S,
                      **kwargs: Any) -> str:
    """``client.submit_job(**kwargs)``, retried while a just-started head has no job agent yet."""
    deadline = time.monotonic() + retry_s
    while True:
        try:
            return client.submit_job(**kwargs)
        except Exception as exc:
            transient = "No available agent" in str(exc)
            if not transient or time.monotonic() >= deadline:
                hint = (f" (still after {retry_s:g} s: the head's dashboard agent is not running; see its "
                        "dashboard_agent.log, e.g. a port clash with another Ray on that machine)"
                        if transient else "")
                raise RunFailed(f"submitting to {address} failed: {masker.mask(str(exc))}{hint}") from exc
            time.sleep(1.0)


def wait_for_job(client: Any, job_id: str, timeout: float, poll: float = 0.5) -> str:
    """Poll until the job reaches a terminal status or ``timeout`` seconds pass; return the status."""
    deadline = time.monotonic() + timeout
    status = "PENDING"
    while time.monotonic() < deadline:
        current = client.get_job_status(job_id)
        status = str(getattr(current, "value", current))
        if status in _TERMINAL:
            return status
        time.sleep(poll)
    return status


def secret_env_warning(spec: JobSpec, forwarded: list[str]) -> str | None:
    """A warning naming the forwarded variables that look secret, or None."""
    secret = [name for name in sorted(forwarded) if name in spec.secret_vars or name in spec.secrets
              or SECRET_VAR_RE.search(name)]
    if not secret:
        return None
    return (f"doge-dist: warning: forwarding {', '.join(secret)} to the Ray job in clear text (runtime_env "
            "env_vars, visible to anyone who can open the Ray dashboard or the Jobs API); use "
            "--no-forward-env and set them on the cluster instead (e.g. from a Kubernetes Secret)")


def secret_param_warning(params: list[str]) -> str | None:
    """A warning naming ``--param`` keys that look secret: they travel in the job's entrypoint."""
    keys = [text.partition("=")[0].strip() for text in params]
    secret = [key for key in keys if is_secret_key(key)]
    if not secret:
        return None
    return (f"doge-dist: warning: --param {', '.join(secret)} is part of the Ray job's entrypoint, in clear "
            "text in the Ray dashboard; put it in the job spec as ${VAR} and set VAR on the cluster instead")


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _api(call: Any, what: str, masker: Masker) -> Any:
    try:
        return call()
    except Exception as exc:
        raise RunFailed(f"{what}: {masker.mask(str(exc))}") from exc


def cmd_submit(args: argparse.Namespace, masker: Masker) -> int:
    """Submit the spec as a Ray Job; optionally wait for it and print its logs."""
    from ._commands import is_spec_path, load_job

    if not is_spec_path(args.target):
        raise UsageError(f"submit needs a YAML job spec, got {args.target!r}")
    if args.http_timeout <= 0 or args.max_upload_mb <= 0:
        raise UsageError("--http-timeout and --max-upload-mb must be positive")
    spec = load_job(args, masker, run_flags=True)
    assert spec.path is not None
    working_dir = None
    if args.working_dir:
        working_dir = Path(args.working_dir).resolve()
        if not working_dir.is_dir():
            raise UsageError(f"--working-dir {args.working_dir}: not a directory")
        if working_dir not in spec.path.parents:
            raise UsageError(f"--working-dir {working_dir} must contain the job spec {spec.path}")
    plan = plan_upload(spec, working_dir=working_dir, include_hidden=args.include_dotfiles)
    limit = int(args.max_upload_mb * 1_000_000)
    if plan.total_bytes > limit:
        biggest = sorted(plan.files, key=lambda p: p.stat().st_size, reverse=True)[:3]
        raise UsageError(f"the upload would be {_size(plan.total_bytes)}, more than --max-upload-mb "
                         f"{args.max_upload_mb:g} (largest: "
                         f"{', '.join(f'{plan.files[p]} {_size(p.stat().st_size)}' for p in biggest)}); "
                         "raise the limit or upload less")
    _say(f"doge-dist: {plan.describe()}")
    for note in plan.notes:
        _say(f"doge-dist: note: {note}")
    for warning in relative_path_warnings(spec):
        _say(warning)
    entrypoint = build_entrypoint(plan.spec_path, spec, args)
    env_vars = {}
    if args.forward_env:
        env_vars = {name: os.environ[name] for name in spec.env_vars if name in os.environ}
    for warning in (secret_env_warning(spec, list(env_vars)) if env_vars else None,
                    secret_param_warning(getattr(args, "param", None) or [])):
        if warning:
            _say(warning)

    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError as exc:  # pragma: no cover - ray[default] is a dependency
        raise RunFailed(f"Ray's job submission client is not available: {exc}") from exc
    client = connect(bounded_client_class(JobSubmissionClient, args.http_timeout), args.address, masker)
    with tempfile.TemporaryDirectory(prefix="doge-submit-") as staging:
        runtime_env: dict[str, Any] = {"working_dir": str(stage_upload(plan, Path(staging)))}
        if env_vars:
            runtime_env["env_vars"] = env_vars
        job_id = submit_with_retry(client, masker, args.address, entrypoint=entrypoint,
                                   runtime_env=runtime_env, submission_id=args.submission_id,
                                   metadata={"doge_dist_spec": spec.path.name})

    print(f"submitted Ray job {job_id} to {args.address}")
    print(f"  entrypoint:  {masker.mask(entrypoint)}")
    if env_vars:
        print(f"  environment forwarded: {', '.join(sorted(env_vars))} (values not shown)")
    print(f"follow its logs: ray job logs -f {job_id} --address {args.address}")
    print(f"status:          ray job status {job_id} --address {args.address}")
    sys.stdout.flush()
    if not args.wait:
        return EXIT_OK
    status = _api(lambda: wait_for_job(client, job_id, args.timeout), f"waiting for job {job_id}", masker)
    logs = _api(lambda: client.get_job_logs(job_id), f"reading the logs of job {job_id}", masker)
    if logs:
        print("---- job logs ----")
        print(masker.mask(logs).rstrip())
        print("------------------")
    if status not in _TERMINAL:
        _say(f"doge-dist: job {job_id} still {status} after {args.timeout:g} s; follow it with "
             f"ray job logs -f {job_id} --address {args.address}")
        return EXIT_RUN_FAILED
    print(f"job {job_id}: {status}")
    if status != "SUCCEEDED":
        info = _api(lambda: client.get_job_info(job_id), f"reading job {job_id}", masker)
        message = getattr(info, "message", "") or ""
        _say(f"doge-dist: job {job_id} {status}: {masker.mask(message)}")
        return EXIT_RUN_FAILED
    return EXIT_OK
