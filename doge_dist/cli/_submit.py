"""``doge-dist submit``: run a job spec on a Ray cluster as a Ray Job."""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from ._errors import EXIT_OK, EXIT_RUN_FAILED, RunFailed, UsageError
from ._mask import SECRET_KEY_RE, SECRET_VAR_RE, Masker
from ._spec import JobSpec
from ._target import is_file_target, parse_target

__all__ = ["cmd_submit", "working_dir_for", "build_entrypoint", "EXCLUDES", "wait_for_job", "connect",
           "local_auth_token", "secret_env_warning", "secret_param_warning"]

EXCLUDES = [".git", ".venv", "venv", "__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache", ".mypy_cache",
            "*.egg-info", "node_modules"]
_TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
AGENT_RETRY_S = 60.0

#: run flags passed through to the job's ``doge-dist run`` (spec field -> flag).
_PASS_THROUGH = {"subjects": "--subjects", "ticks": "--ticks", "tick_ms": "--tick-ms",
                 "timestamp_start": "--timestamp-start", "seed": "--seed", "workers": "--workers",
                 "window": "--window", "speed": "--speed"}


def _model_root(spec: JobSpec) -> Path | None:
    """The directory that holds the model's code: the file's directory, or the package's sys.path root."""
    if (spec.model or "").strip().lower().endswith((".yaml", ".yml")):  # a YAML model file
        path = Path(spec.model.strip())
        path = path if path.is_absolute() else spec.base_dir / path
        if not path.is_file():
            raise UsageError(f"field 'model': file not found: {path.resolve()}")
        return path.resolve().parent
    module_part, _ = parse_target(spec.model or "")
    if is_file_target(module_part):
        path = Path(module_part)
        path = path if path.is_absolute() else spec.base_dir / path
        if not path.is_file():
            raise UsageError(f"field 'model': file not found: {path.resolve()}")
        return path.resolve().parent
    top = module_part.split(".")[0]
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        found = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.origin or found.origin in ("built-in", "frozen"):
        return None  # installed on the cluster, presumably
    origin = Path(found.origin).resolve()
    root = origin.parent.parent if origin.name == "__init__.py" else origin.parent
    if "site-packages" in root.parts or "dist-packages" in root.parts:
        return None  # an installed package: not part of the working_dir
    return root


def working_dir_for(spec: JobSpec) -> Path:
    """The smallest directory holding both the spec and the model's code."""
    assert spec.path is not None
    spec_dir = spec.path.parent
    root = _model_root(spec)
    if root is None:
        return spec_dir
    return Path(os.path.commonpath([spec_dir, root]))


def build_entrypoint(spec: JobSpec, working_dir: Path, args: argparse.Namespace) -> str:
    """``python -m doge_dist run <spec relative to working_dir> [flags]``."""
    assert spec.path is not None
    rel = spec.path.relative_to(working_dir).as_posix()
    words = ["python", "-m", "doge_dist", "run", rel]
    for name, flag in _PASS_THROUGH.items():
        value = getattr(args, name, None)
        if value is not None:
            words += [flag, str(value)]
    if getattr(args, "realtime", None) is not None:
        words.append("--realtime" if args.realtime else "--no-realtime")
    for text in getattr(args, "param", None) or []:
        words += ["--param", text]
    if spec.settings.get("ray_address") is not None or (spec.settings.get("workers") or 1) > 1:
        words += ["--address", "auto"]  # inside a Ray Job the driver joins its own cluster
    return " ".join(shlex.quote(w) for w in words)


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
    secret = [name for name in sorted(forwarded) if name in spec.secret_vars or SECRET_VAR_RE.search(name)]
    if not secret:
        return None
    return (f"doge-dist: warning: forwarding {', '.join(secret)} to the Ray job in clear text (runtime_env "
            "env_vars, visible to anyone who can open the Ray dashboard or the Jobs API); use "
            "--no-forward-env and set them on the cluster instead (e.g. from a Kubernetes Secret)")


def secret_param_warning(params: list[str]) -> str | None:
    """A warning naming ``--param`` keys that look secret: they travel in the job's entrypoint."""
    keys = [text.partition("=")[0].strip() for text in params]
    secret = [key for key in keys if SECRET_KEY_RE.search(key)]
    if not secret:
        return None
    return (f"doge-dist: warning: --param {', '.join(secret)} is part of the Ray job's entrypoint, in clear "
            "text in the Ray dashboard; put it in the job spec as ${VAR} and set VAR on the cluster instead")


def cmd_submit(args: argparse.Namespace, masker: Masker) -> int:
    """Submit the spec as a Ray Job; optionally wait for it and print its logs."""
    from ._commands import is_spec_path, load_job

    if not is_spec_path(args.target):
        raise UsageError(f"submit needs a YAML job spec, got {args.target!r}")
    spec = load_job(args, masker, run_flags=True)
    if args.working_dir:
        working_dir = Path(args.working_dir).resolve()
        assert spec.path is not None
        if not working_dir.is_dir():
            raise UsageError(f"--working-dir {args.working_dir}: not a directory")
        if working_dir not in spec.path.parents:
            raise UsageError(f"--working-dir {working_dir} must contain the job spec {spec.path}")
    else:
        working_dir = working_dir_for(spec)
    entrypoint = build_entrypoint(spec, working_dir, args)
    env_vars = {}
    if args.forward_env:
        env_vars = {name: os.environ[name] for name in spec.env_vars if name in os.environ}
    runtime_env: dict[str, Any] = {"working_dir": str(working_dir), "excludes": list(EXCLUDES)}
    if env_vars:
        runtime_env["env_vars"] = env_vars
    for warning in (secret_env_warning(spec, list(env_vars)) if env_vars else None,
                    secret_param_warning(getattr(args, "param", None) or [])):
        if warning:
            sys.stderr.write(warning + "\n")
            sys.stderr.flush()

    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError as exc:  # pragma: no cover - ray[default] is a dependency
        raise RunFailed(f"Ray's job submission client is not available: {exc}") from exc
    client = connect(JobSubmissionClient, args.address, masker)
    job_id = submit_with_retry(client, masker, args.address, entrypoint=entrypoint, runtime_env=runtime_env,
                               submission_id=args.submission_id,
                               metadata={"doge_dist_spec": spec.path.name if spec.path else ""})

    print(f"submitted Ray job {job_id} to {args.address}")
    print(f"  working_dir: {working_dir}")
    print(f"  entrypoint:  {masker.mask(entrypoint)}")
    if env_vars:
        print(f"  environment forwarded: {', '.join(sorted(env_vars))} (values not shown)")
    print(f"follow its logs: ray job logs -f {job_id} --address {args.address}")
    print(f"status:          ray job status {job_id} --address {args.address}")
    sys.stdout.flush()
    if not args.wait:
        return EXIT_OK
    status = wait_for_job(client, job_id, args.timeout)
    logs = client.get_job_logs(job_id)
    if logs:
        print("---- job logs ----")
        print(masker.mask(logs).rstrip())
        print("------------------")
    if status not in _TERMINAL:
        sys.stderr.write(f"doge-dist: job {job_id} still {status} after {args.timeout:g} s; follow it with "
                         f"ray job logs -f {job_id} --address {args.address}\n")
        return EXIT_RUN_FAILED
    print(f"job {job_id}: {status}")
    if status != "SUCCEEDED":
        info = client.get_job_info(job_id)
        message = getattr(info, "message", "") or ""
        sys.stderr.write(f"doge-dist: job {job_id} {status}: {masker.mask(message)}\n")
        return EXIT_RUN_FAILED
    return EXIT_OK
