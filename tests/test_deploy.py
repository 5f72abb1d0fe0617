"""The deploy files (deploy/) parse, and every image, command, path, module and field they name exists.

No network, no Docker engine, no Kubernetes: the checks read the files. Each check returns a list
of problems, so one run reports every mistake, and the tests at the end feed the checks
deliberately wrong input to show that they fail.

Commands are found in parsed YAML strings, in command lists (compose ``command``, Kubernetes
``command`` + ``args``), in Dockerfile ``RUN`` lines, in fenced code blocks of the Markdown files,
and in comment lines indented by two or more spaces after ``#`` (the files' usage examples). A
``doge-dist`` command is parsed with the CLI's own argparse parser when ``doge_dist.cli`` imports.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import io
import json
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
DOCS = [DEPLOY / "README.md", REPO / "docs" / "scaling.md"]
COMPOSE = DEPLOY / "docker-compose.yml"
REQUIRED_FILES = ["Dockerfile", "README.md", "docker-compose.yml", "ray-cluster.yaml",
                  "kuberay/raycluster.yaml", "kuberay/rayjob.yaml", "kuberay/cronjob.yaml"]

#: Subcommands when the CLI cannot be imported; test_fallback_subcommands_match_the_parser keeps it in sync.
FALLBACK_SUBCOMMANDS = ("run", "graph", "inspect", "submit", "fit", "compare")
#: Third-party images the deploy files may use (repository -> why); each must carry a pinned tag.
THIRD_PARTY_IMAGES = {
    "rayproject/ray": "Ray's base image (deploy/Dockerfile, the cluster launcher)",
    "apache/kafka": "compose: Kafka in KRaft mode",
    "bitnami/kafka": "compose: Kafka in KRaft mode",
    "confluentinc/cp-schema-registry": "compose: Schema Registry",
    "postgres": "compose: PostgreSQL",
    "registry.k8s.io/kubectl": "cronjob: the steps that create and watch RayJobs",
}
#: Environment variables doge-dist containers may set that no job spec reads.
OTHER_ENV = {"PYTHONUNBUFFERED", "RAY_ADDRESS", "HOME"}
#: Fields of the ray.io/v1 API types (KubeRay's raycluster_types.go / rayjob_types.go).
RAYCLUSTER_SPEC_FIELDS = {"headGroupSpec", "workerGroupSpecs", "rayVersion", "enableInTreeAutoscaling",
                          "autoscalerOptions", "headServiceAnnotations", "suspend",
                          "gcsFaultToleranceOptions"}
HEAD_GROUP_FIELDS = {"serviceType", "headService", "enableIngress", "rayStartParams", "template"}
WORKER_GROUP_FIELDS = {"groupName", "replicas", "minReplicas", "maxReplicas", "numOfHosts", "rayStartParams",
                       "template", "scaleStrategy", "suspend", "idleTimeoutSeconds"}
RAYJOB_SPEC_FIELDS = {"activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate",
                      "metadata", "clusterSelector", "submitterConfig", "managedBy", "deletionStrategy",
                      "entrypoint", "runtimeEnvYAML", "jobId", "submissionMode", "entrypointResources",
                      "entrypointNumCpus", "entrypointNumGpus", "ttlSecondsAfterFinished",
                      "shutdownAfterJobFinishes", "suspend", "schedule"}
_SHELL_BREAKS = {">", ">>", "<", "2>", "2>&1", "&", "|", "||", "&&", ";"}


# -- loading ------------------------------------------------------------------------------------


def deploy_yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def load_docs(path: Path) -> list[Any]:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def project_image() -> str:
    return f"doge-dist:{pyproject()['project']['version']}"


def logical_lines(text: str) -> list[str]:
    """Lines with backslash continuations joined."""
    out: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append(pending + line)
        pending = ""
    if pending:
        out.append(pending)
    return out


def parse_dockerfile(text: str) -> dict[str, Any]:
    """ARG defaults, FROM images (ARGs substituted), WORKDIR, COPY sources and RUN lines."""
    info: dict[str, Any] = {"args": {}, "from": [], "workdir": None, "copy_sources": [], "run": []}
    for raw in logical_lines(text):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        rest = rest.strip()
        if instruction == "ARG":
            name, _, default = rest.partition("=")
            info["args"].setdefault(name.strip(), default.strip())
        elif instruction == "FROM":
            info["from"].append(_substitute(rest.split()[0], info["args"]))
        elif instruction == "WORKDIR":
            info["workdir"] = rest
        elif instruction in ("COPY", "ADD"):
            words = [w for w in shlex.split(rest) if not w.startswith("--")]
            info["copy_sources"].extend(words[:-1])
        elif instruction == "RUN":
            info["run"].append(_substitute(rest, info["args"]))
    return info


def _substitute(text: str, args: dict[str, str]) -> str:
    """``${NAME}`` replaced by the ARG's default, as docker build does without --build-arg."""
    return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), text)


def dockerfile() -> dict[str, Any]:
    return parse_dockerfile((DEPLOY / "Dockerfile").read_text())


def ray_version() -> str:
    return dockerfile()["args"]["RAY_VERSION"]


def workdir() -> str:
    return dockerfile()["workdir"] or "/app"


def walk(obj: Any) -> Iterator[Any]:
    """Every value in a nested YAML document (dicts, lists, scalars), depth first."""
    yield obj
    if isinstance(obj, dict):
        for value in obj.values():
            yield from walk(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from walk(value)


# -- checks: paths, targets, commands -----------------------------------------------------------

_PATH_RE = re.compile(r"(?<![\w.-])((?:\.\./)*(?:/app/|~/doge-dist/)?"
                      r"(?:examples|deploy|docs|benchmarks|tests)/[\w./*-]*[\w*])")
_TARGET_RE = re.compile(r"(?<![\w./-])((?:examples|doge_dist)(?:\.\w+)+:\w+)")


def resolve_repo_path(text: str, base: Path = REPO) -> Path:
    """A path as written in a deploy file, mapped into the repository.

    The image's WORKDIR (``/app``) and the cluster launcher's mount (``~/doge-dist``) hold the
    repository; ``../`` paths are relative to ``base`` (the file that names them).
    """
    for prefix in (workdir().rstrip("/") + "/", "~/doge-dist/"):
        if text.startswith(prefix):
            return REPO / text[len(prefix):]
    if text.startswith("../"):
        return (base / text).resolve()
    return REPO / text


def check_paths_in_text(text: str, base: Path = REPO) -> list[str]:
    """Every examples/, deploy/, docs/, benchmarks/ or tests/ path in ``text`` exists (globs match)."""
    problems = []
    for match in _PATH_RE.finditer(text):
        written = match.group(1)
        path = resolve_repo_path(written, base)
        if "*" in written:
            if not list(path.parent.glob(path.name)):
                problems.append(f"{written}: matches no file")
        elif not path.exists():
            problems.append(f"{written}: no such file or directory ({path})")
    return problems


def check_markdown_links(path: Path) -> list[str]:
    problems = []
    for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        if not (path.parent / target.split("#")[0]).exists():
            problems.append(f"{path.name}: link target {target} does not exist")
    return problems


def check_target(target: str, base: Path = REPO) -> list[str]:
    """``package.module:function`` imports, or ``path/to/file.py:function`` loads, and is callable."""
    module_part, sep, attr = target.rpartition(":")
    if not sep or not module_part or not attr:
        return [f"model target {target!r}: expected 'module:function' or 'file.py:function'"]
    try:
        if module_part.endswith(".py"):
            path = (base / module_part).resolve()
            if not path.is_file():
                return [f"model target {target!r}: file {path} does not exist"]
            name = f"_deploy_check_{path.stem}"
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # dataclasses look their module up while the file runs
            try:
                spec.loader.exec_module(module)
            finally:
                sys.modules.pop(name, None)
        else:
            if str(REPO) not in sys.path:
                sys.path.insert(0, str(REPO))
            module = importlib.import_module(module_part)
    except Exception as exc:
        return [f"model target {target!r}: cannot import {module_part}: {type(exc).__name__}: {exc}"]
    if not callable(getattr(module, attr, None)):
        return [f"model target {target!r}: {module_part} has no callable {attr!r}"]
    return []


def check_targets_in_text(text: str) -> list[str]:
    problems = []
    for target in set(_TARGET_RE.findall(text)):
        problems += check_target(target)
    return problems


def cli_parser() -> Any | None:
    try:
        from doge_dist.cli import build_parser
    except ImportError:
        return None
    return build_parser()


def subcommands(parser: Any | None) -> tuple[str, ...]:
    if parser is None:
        return FALLBACK_SUBCOMMANDS
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return tuple(action.choices)
    raise AssertionError("the doge-dist parser has no subcommands")


def job_spec_problems(spec_path: Path) -> list[str]:
    """A job spec referenced by a deploy file loads and names a model that imports."""
    try:
        spec = yaml.safe_load(spec_path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        return [f"{spec_path}: cannot read the job spec: {exc}"]
    if not isinstance(spec, dict) or not isinstance(spec.get("model"), str):
        return [f"{spec_path}: a job spec needs a 'model' field"]
    return check_target(spec["model"], spec_path.parent)


def check_argv(argv: list[str]) -> list[str]:
    """``doge-dist ARGV...`` parses with the CLI's parser; its spec or model target exists."""
    shown = "doge-dist " + " ".join(argv)
    parser = cli_parser()
    if not argv or argv[0] not in subcommands(parser):
        return [f"{shown}: {argv[0] if argv else '(nothing)'!r} is not a doge-dist subcommand "
                f"({', '.join(subcommands(parser))})"]
    if parser is None:
        return []
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = parser.parse_args(argv)
    except SystemExit:
        reason = err.getvalue().strip().splitlines()[-1:] or ["rejected"]
        return [f"{shown}: {reason[0]}"]
    target = getattr(args, "target", None)
    if not target:
        return []
    if target.lower().endswith((".yaml", ".yml")):
        path = resolve_repo_path(target)
        if not path.is_file():
            return [f"{shown}: job spec {target} does not exist ({path})"]
        return job_spec_problems(path)
    return check_target(target)


def argv_from_tokens(tokens: list[str]) -> list[str] | None:
    """The doge-dist arguments of a tokenized shell command, or None when it runs no doge-dist.

    doge-dist must be the command itself (after ``VAR=value`` assignments), ``python -m doge_dist``,
    or the command a ``docker run`` / ``docker compose run`` starts in its container; elsewhere
    the word is a name (a namespace, a service, a label) and is left alone.
    """
    words = list(tokens)
    while words and re.match(r"^[A-Za-z_]\w*=", words[0]):
        words.pop(0)
    if not words:
        return None
    rest: list[str] | None = None
    if words[0] == "doge-dist":
        rest = words[1:]
    elif words[:3] == ["python", "-m", "doge_dist"]:
        rest = words[3:]
    elif words[0] == "docker":
        for i in range(1, len(words)):
            if words[i] == "doge-dist" and i + 1 < len(words) and words[i + 1] != "doge-dist":
                rest = words[i + 1:]  # a trailing service or image name runs its default command
                break
    if rest is None:
        return None
    cut = next((k for k, t in enumerate(rest) if t in _SHELL_BREAKS or t.startswith((">", "2>"))), len(rest))
    return rest[:cut]


def commands_in_shell(text: str) -> list[list[str]]:
    """doge-dist argument lists of each command in shell text (lines, ``&&``, ``;``, ``|``)."""
    found = []
    for line in logical_lines(text):
        for segment in re.split(r"&&|\|\||;|\|", line):
            try:
                tokens = shlex.split(segment, comments=True)
            except ValueError:
                continue
            argv = argv_from_tokens(tokens)
            if argv is not None:
                found.append(argv)
    return found


def example_lines(text: str) -> str:
    """Usage examples in comments: lines with two or more spaces after '#'."""
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") and stripped[1:3] == "  ":
            lines.append(stripped[1:])
    return "\n".join(lines)


def code_blocks(markdown: str) -> str:
    return "\n".join(re.findall(r"```(?:sh|bash|console|shell)?\n(.*?)```", markdown, flags=re.S))


def commands_in_yaml_doc(doc: Any) -> list[list[str]]:
    found = []
    for value in walk(doc):
        if isinstance(value, str) and re.search(r"\s", value.strip()):  # a bare name is no command
            found += commands_in_shell(value)
        elif isinstance(value, dict):
            command, args = value.get("command") or [], value.get("args") or []
            words = [*command, *args] if isinstance(command, list) and isinstance(args, list) else []
            if words and all(isinstance(w, str) for w in words):
                argv = argv_from_tokens(words)
                if argv is not None:
                    found.append(argv)
    return found


def all_commands() -> dict[str, list[list[str]]]:
    """file -> the doge-dist argument lists it contains."""
    found: dict[str, list[list[str]]] = {}
    for path in deploy_yaml_files():
        cmds = [argv for doc in load_docs(path) for argv in commands_in_yaml_doc(doc)]
        cmds += commands_in_shell(example_lines(path.read_text()))
        found[str(path.relative_to(REPO))] = cmds
    docker = dockerfile()
    found["deploy/Dockerfile"] = [argv for run in docker["run"] for argv in commands_in_shell(run)]
    found["deploy/Dockerfile"] += commands_in_shell(example_lines((DEPLOY / "Dockerfile").read_text()))
    for path in DOCS:
        found[str(path.relative_to(REPO))] = commands_in_shell(code_blocks(path.read_text()))
    return found


def spec_vars_with_local_defaults() -> dict[str, set[str]]:
    """job spec file name -> variables it reads whose default points at this machine."""
    out = {}
    for spec in sorted((REPO / "examples" / "jobs").glob("*.yaml")):
        text = spec.read_text()
        out[spec.name] = {m.group(1) for m in re.finditer(r"\$\{(\w+):-([^}]*)\}", text)
                          if re.search(r"localhost|127\.0\.0\.1", m.group(2))}
    return out


def spec_vars() -> set[str]:
    names = set()
    for spec in (REPO / "examples" / "jobs").glob("*.yaml"):
        names |= set(re.findall(r"\$\{(\w+)", spec.read_text()))
    return names


# -- checks: images ------------------------------------------------------------------------------


def check_image(image: str) -> list[str]:
    repo, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
    if not tag:
        return [f"image {image!r}: no tag (pin one)"]
    if tag == "latest":
        return [f"image {image!r}: 'latest' is not reproducible (pin a version)"]
    if repo.rsplit("/", 1)[-1] == "doge-dist":
        if image.rsplit("/", 1)[-1] != project_image():
            return [f"image {image!r}: the project's image is tagged with the package version: "
                    f"{project_image()}"]
        return []
    if repo not in THIRD_PARTY_IMAGES:
        return [f"image {image!r}: not the project's image ({project_image()}) nor a known third-party "
                f"image ({', '.join(sorted(THIRD_PARTY_IMAGES))})"]
    if repo == "rayproject/ray" and tag != f"{ray_version()}-py311":
        return [f"image {image!r}: must be rayproject/ray:{ray_version()}-py311 "
                "(deploy/Dockerfile RAY_VERSION)"]
    return []


def images_in(doc: Any) -> list[str]:
    return [value["image"] for value in walk(doc)
            if isinstance(value, dict) and isinstance(value.get("image"), str)]


# -- checks: Kubernetes and KubeRay --------------------------------------------------------------


def cpu_quantity(value: Any) -> float:
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def check_container(container: dict, where: str) -> list[str]:
    problems = []
    if not container.get("name"):
        problems.append(f"{where}: container without a name")
    if not isinstance(container.get("image"), str):
        problems.append(f"{where}: container {container.get('name')!r} has no image")
    resources = container.get("resources") or {}
    for kind in ("requests", "limits"):
        missing = {"cpu", "memory"} - set(resources.get(kind) or {})
        if missing:
            problems.append(f"{where}: container {container.get('name')!r} resources.{kind} lacks "
                            f"{', '.join(sorted(missing))}")
    for env in container.get("env") or []:
        ref = (env.get("valueFrom") or {}).get("secretKeyRef")
        if ref is not None and not (ref.get("name") and ref.get("key")):
            problems.append(f"{where}: env {env.get('name')} secretKeyRef needs name and key")
    if (container.get("image") or "").rsplit("/", 1)[-1].startswith("doge-dist:"):
        unknown = {e.get("name") for e in container.get("env") or []} - spec_vars() - OTHER_ENV
        if unknown:
            problems.append(f"{where}: env {', '.join(sorted(unknown))} is read by no job spec in "
                            "examples/jobs (typo?)")
    return problems


def pod_containers(template: Any) -> list[dict]:
    spec = (template or {}).get("spec") or {}
    return list(spec.get("containers") or [])


def check_raycluster_spec(spec: Any, where: str) -> list[str]:
    if not isinstance(spec, dict):
        return [f"{where}: the RayCluster spec is missing"]
    problems = [f"{where}: unknown RayCluster field {k!r}" for k in set(spec) - RAYCLUSTER_SPEC_FIELDS]
    if str(spec.get("rayVersion")) != ray_version():
        problems.append(f"{where}: rayVersion {spec.get('rayVersion')!r} differs from the image's Ray "
                        f"{ray_version()} (deploy/Dockerfile RAY_VERSION)")
    head = spec.get("headGroupSpec")
    groups = spec.get("workerGroupSpecs")
    if not isinstance(head, dict):
        return [*problems, f"{where}: headGroupSpec is missing"]
    if not isinstance(groups, list) or not groups:
        problems.append(f"{where}: workerGroupSpecs is missing or empty (the shards run on workers)")
        groups = []
    problems += [f"{where}: unknown headGroupSpec field {k!r}" for k in set(head) - HEAD_GROUP_FIELDS]
    labelled = [("headGroupSpec", head), *((f"workerGroupSpecs[{i}]", g) for i, g in enumerate(groups))]
    for label, group in labelled:
        params = group.get("rayStartParams")
        if not isinstance(params, dict):
            problems.append(f"{where}: {label}.rayStartParams is required (may be {{}})")
        elif any(not isinstance(v, str) for v in params.values()):
            problems.append(f"{where}: {label}.rayStartParams values must be strings, got {params}")
        containers = pod_containers(group.get("template"))
        if not containers:
            problems.append(f"{where}: {label}.template.spec.containers is empty")
        for container in containers:
            problems += check_container(container, f"{where} {label}")
            problems += check_image(container.get("image", ""))
    if (head.get("rayStartParams") or {}).get("num-cpus") != "0":
        problems.append(f"{where}: the head should set rayStartParams num-cpus: \"0\" "
                        "(no shards beside the driver)")
    for i, group in enumerate(groups):
        problems += [f"{where}: unknown workerGroupSpecs[{i}] field {k!r}"
                     for k in set(group) - WORKER_GROUP_FIELDS]
        if not group.get("groupName"):
            problems.append(f"{where}: workerGroupSpecs[{i}] needs a groupName")
        counts = [group.get(k) for k in ("minReplicas", "replicas", "maxReplicas")]
        if not all(isinstance(c, int) for c in counts) or not counts[0] == counts[1] == counts[2]:
            problems.append(f"{where}: workerGroupSpecs[{i}] minReplicas/replicas/maxReplicas {counts} "
                            "should be equal ints (a run sizes its shards once, at the start)")
    return problems


def worker_cpus(spec: dict) -> float:
    total = 0.0
    for group in spec.get("workerGroupSpecs") or []:
        for container in pod_containers(group.get("template")):
            total += (group.get("replicas") or 0) * cpu_quantity(container["resources"]["limits"]["cpu"])
    return total


def option(argv: list[str], flag: str) -> str | None:
    for i, word in enumerate(argv):
        if word == flag and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith(flag + "="):
            return word.split("=", 1)[1]
    return None


def check_rayjob(doc: Any, where: str) -> list[str]:
    if not isinstance(doc, dict) or doc.get("apiVersion") != "ray.io/v1" or doc.get("kind") != "RayJob":
        return [f"{where}: expected apiVersion ray.io/v1, kind RayJob"]
    spec = doc.get("spec") or {}
    name = (doc.get("metadata") or {}).get("name")
    problems = [] if name else [f"{where}: RayJob without metadata.name"]
    problems += [f"{where}: unknown RayJob field {k!r}" for k in set(spec) - RAYJOB_SPEC_FIELDS]
    problems += check_raycluster_spec(spec.get("rayClusterSpec"), f"{where} rayClusterSpec")
    entry = spec.get("entrypoint")
    commands = commands_in_shell(entry) if isinstance(entry, str) else []
    if len(commands) != 1:
        return [*problems, f"{where}: the entrypoint must run one doge-dist command, got {entry!r}"]
    argv = commands[0]
    problems += check_argv(argv)
    if spec.get("shutdownAfterJobFinishes") is not True:
        problems.append(f"{where}: shutdownAfterJobFinishes should be true (free the cluster after the run)")
    if spec.get("backoffLimit") != 0:
        problems.append(f"{where}: backoffLimit should be 0 (a retry writes every event again)")
    workers = option(argv, "--workers")
    cluster = spec.get("rayClusterSpec")
    cpus = worker_cpus(cluster) if isinstance(cluster, dict) else 0
    if workers is not None and int(workers) > cpus:
        problems.append(f"{where}: --workers {workers} exceeds the {cpus:g} worker CPUs: "
                        "shards would share CPUs")
    problems += check_reproducible(argv, where)
    return problems


def check_reproducible(argv: list[str], where: str) -> list[str]:
    """The run fixes its seed and its first timestamp (flags or the spec's fields)."""
    spec_path = resolve_repo_path(argv[1]) if len(argv) > 1 else None
    spec = yaml.safe_load(spec_path.read_text()) if spec_path and spec_path.is_file() else {}
    seed = option(argv, "--seed") or (spec or {}).get("seed")
    start = option(argv, "--timestamp-start") or (spec or {}).get("timestamp_start")
    problems = []
    if seed is None:
        problems.append(f"{where}: no --seed (nor a seed in the spec): runs would differ")
    if start is None or str(start).lower() == "now":
        problems.append(f"{where}: timestamp start {start!r} is not fixed: pass --timestamp-start")
    return problems


def check_cronjob_file(docs: list[Any], where: str = "cronjob.yaml") -> list[str]:
    problems = []
    by_kind: dict[str, list[dict]] = {}
    for doc in docs:
        by_kind.setdefault(doc.get("kind"), []).append(doc)
    crons = by_kind.get("CronJob", [])
    if len(crons) != 1:
        return [f"{where}: expected one CronJob, found {len(crons)}"]
    cron = crons[0]
    spec = cron.get("spec") or {}
    if cron.get("apiVersion") != "batch/v1":
        problems.append(f"{where}: CronJob apiVersion must be batch/v1")
    if len(str(spec.get("schedule", "")).split()) != 5:
        problems.append(f"{where}: schedule {spec.get('schedule')!r} is not a 5-field cron expression")
    if spec.get("concurrencyPolicy") != "Forbid":
        problems.append(f"{where}: concurrencyPolicy must be Forbid (never two runs at once)")
    job = (spec.get("jobTemplate") or {}).get("spec") or {}
    pod = (job.get("template") or {}).get("spec") or {}
    if not pod.get("containers"):
        return [*problems, f"{where}: jobTemplate.spec.template.spec.containers is empty"]
    if pod.get("restartPolicy") not in ("Never", "OnFailure"):
        problems.append(f"{where}: a Job pod needs restartPolicy Never or OnFailure")
    if job.get("backoffLimit") != 0:
        problems.append(f"{where}: jobTemplate backoffLimit should be 0 (a retry writes the data twice)")
    steps = [*(pod.get("initContainers") or []), *pod["containers"]]
    for step in steps:
        problems += check_image(step.get("image", ""))
    # the RayJob manifest comes from a ConfigMap of this file, through a volume mount
    configmaps = {d["metadata"]["name"]: d for d in by_kind.get("ConfigMap", [])}
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    rayjobs: dict[str, dict] = {}
    for step in steps:
        words = [*(step.get("command") or []), *(step.get("args") or [])]
        if "create" not in words:
            continue
        filename = option(words, "--filename") or option(words, "-f")
        mount = next((m for m in step.get("volumeMounts") or []
                      if filename and filename.startswith(m["mountPath"].rstrip("/") + "/")), None)
        volume = volumes.get(mount["name"]) if mount else None
        cm_name = ((volume or {}).get("configMap") or {}).get("name")
        if cm_name not in configmaps:
            problems.append(f"{where}: step {step.get('name')!r} creates {filename!r}, which is not "
                            "a mounted ConfigMap of this file")
            continue
        key = filename[len(mount["mountPath"].rstrip("/")) + 1:]
        text = (configmaps[cm_name].get("data") or {}).get(key)
        if text is None:
            problems.append(f"{where}: ConfigMap {cm_name} has no key {key!r}")
            continue
        manifest = yaml.safe_load(text)
        problems += check_rayjob(manifest, f"{where} ConfigMap {cm_name}/{key}")
        rayjobs[(manifest.get("metadata") or {}).get("name")] = manifest
    if not rayjobs:
        return [*problems, f"{where}: no step creates a RayJob from a ConfigMap"]
    for step in steps:
        words = [*(step.get("command") or []), *(step.get("args") or [])]
        for i, word in enumerate(words):
            named = word.split("/", 1)[1] if word.startswith("rayjob/") else (
                words[i + 1] if word == "rayjob" and i + 1 < len(words) else None)
            if named is not None and named not in rayjobs:
                problems.append(f"{where}: step {step.get('name')!r} names rayjob {named!r}; the ConfigMap "
                                f"creates {', '.join(sorted(rayjobs))}")
    # RBAC: the pod's service account may do what the steps do
    account = pod.get("serviceAccountName")
    if account not in {d["metadata"]["name"] for d in by_kind.get("ServiceAccount", [])}:
        problems.append(f"{where}: serviceAccountName {account!r} is not defined in this file")
    roles = {d["metadata"]["name"]: d for d in by_kind.get("Role", [])}
    verbs: set[str] = set()
    for binding in by_kind.get("RoleBinding", []):
        subjects = binding.get("subjects", [])
        if any(s.get("kind") == "ServiceAccount" and s.get("name") == account for s in subjects):
            for rule in (roles.get(binding["roleRef"]["name"]) or {}).get("rules", []):
                if "ray.io" in rule.get("apiGroups", []) and "rayjobs" in rule.get("resources", []):
                    verbs |= set(rule.get("verbs", []))
    missing = {"get", "watch", "list", "create", "delete"} - verbs
    if missing:
        problems.append(f"{where}: the service account may not {', '.join(sorted(missing))} rayjobs")
    return problems


# -- checks: compose and the cluster launcher ------------------------------------------------------


def host_ports(service: dict) -> set[int]:
    ports = set()
    for entry in service.get("ports") or []:
        text = str(entry.get("published") if isinstance(entry, dict) else entry)
        ports.add(int(text.split(":")[-2] if text.count(":") >= 1 else text))
    return ports


def check_compose(doc: dict) -> list[str]:
    problems = []
    services = doc.get("services") or {}
    expected = {"kafka": (("apache/kafka", "bitnami/kafka"), 9092),
                "schema-registry": (("confluentinc/cp-schema-registry",), 8081),
                "postgres": (("postgres",), 5432)}
    for name, (repos, port) in expected.items():
        service = services.get(name)
        if service is None:
            problems.append(f"compose: service {name!r} is missing")
            continue
        image = service.get("image", "")
        if image.rpartition(":")[0] not in repos:
            problems.append(f"compose: {name} image {image!r} should be one of {', '.join(repos)}")
        if port not in host_ports(service):
            problems.append(f"compose: {name} does not publish port {port}")
    for name, service in services.items():
        if not service.get("image") and not service.get("build"):
            problems.append(f"compose: service {name!r} has neither image nor build")
        if service.get("image"):
            problems += check_image(service["image"])
        for dep in service.get("depends_on") or []:
            if dep not in services:
                problems.append(f"compose: {name} depends on unknown service {dep!r}")
    runners = {n: s for n, s in services.items() if (s.get("image") or "").startswith("doge-dist:")}
    if not runners:
        return [*problems, "compose: no service runs the doge-dist image"]
    kafka_env = (services.get("kafka") or {}).get("environment") or {}
    advertised = str(kafka_env.get("KAFKA_ADVERTISED_LISTENERS", ""))
    for name, service in runners.items():
        build = service.get("build") or {}
        context = (COMPOSE.parent / build.get("context", ".")).resolve()
        if context != REPO:
            problems.append(f"compose: {name} build context {context} is not the repository root")
        if not (context / build.get("dockerfile", "Dockerfile")).is_file():
            problems.append(f"compose: {name} dockerfile {build.get('dockerfile')} does not exist "
                            f"in {context}")
        env = service.get("environment") or {}
        env = dict(e.split("=", 1) for e in env) if isinstance(env, list) else env
        for spec_name, names in spec_vars_with_local_defaults().items():
            for var in sorted(names - set(env)):
                problems.append(f"compose: {name} does not set {var}; {spec_name} would connect to localhost "
                                "inside the container")
        unknown = set(env) - spec_vars() - OTHER_ENV
        if unknown:
            problems.append(f"compose: {name} sets {', '.join(sorted(unknown))}, which no job spec reads")
        kafka = env.get("KAFKA_BOOTSTRAP")
        if kafka and f"//{kafka}" not in advertised:
            problems.append(f"compose: {name} KAFKA_BOOTSTRAP={kafka} is not an advertised listener "
                            f"({advertised})")
        for var in ("SCHEMA_REGISTRY_URL", "PGHOST"):
            value = env.get(var)
            host = re.sub(r"^\w+://", "", str(value or "")).split(":")[0].split("/")[0]
            if value and host not in services:
                problems.append(f"compose: {name} {var}={value}: {host!r} is not a compose service")
        command = service.get("command")
        words = shlex.split(command) if isinstance(command, str) else list(command or [])
        argv = argv_from_tokens(words)
        if argv is None:
            problems.append(f"compose: {name} command {command!r} runs no doge-dist command")
    return problems


def check_ray_cluster(cfg: dict) -> list[str]:
    problems = []
    try:
        import jsonschema
        import ray

        schema_path = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
        if schema_path.is_file():
            validator = jsonschema.Draft7Validator(json.loads(schema_path.read_text()))
            problems += [f"ray-cluster.yaml: {'/'.join(map(str, e.path)) or '(top)'}: {e.message}"
                         for e in validator.iter_errors(cfg)]
    except ImportError:  # pragma: no cover - ray and jsonschema are dependencies
        pass
    types = cfg.get("available_node_types") or {}
    if cfg.get("head_node_type") not in types:
        problems.append(f"ray-cluster.yaml: head_node_type {cfg.get('head_node_type')!r} is not a node type")
    for name, node in types.items():
        if name != cfg.get("head_node_type") and node.get("min_workers") != node.get("max_workers"):
            problems.append(f"ray-cluster.yaml: {name} min_workers != max_workers "
                            "(keep the cluster a fixed size)")
    image = (cfg.get("docker") or {}).get("image")
    if image:
        problems += check_image(image)
    for remote, local in (cfg.get("file_mounts") or {}).items():
        if not (REPO / local / "pyproject.toml").is_file():
            problems.append(f"ray-cluster.yaml: file_mounts {remote}: {local!r} is not the repository root "
                            "(run `ray up` from it)")
    setup = " ".join(cfg.get("setup_commands") or [])
    if "pip install" not in setup:
        problems.append("ray-cluster.yaml: setup_commands do not pip install the package")
    for pin in re.findall(r"ray\[default\]==([\w.]+)", setup):
        if pin != ray_version():
            problems.append(f"ray-cluster.yaml: setup_commands pin ray {pin}, the image has {ray_version()}")
    heads = " ".join(cfg.get("head_start_ray_commands") or [])
    if "--num-cpus=0" not in heads:
        problems.append("ray-cluster.yaml: the head should start with --num-cpus=0 "
                        "(no shards beside the driver)")
    return problems


def check_dockerfile(info: dict[str, Any]) -> list[str]:
    problems = []
    for source in info["copy_sources"]:
        if not (REPO / source).exists():
            problems.append(f"Dockerfile: COPY source {source} does not exist in the build context "
                            "(the repository root)")
    version = info["args"].get("RAY_VERSION")
    if not version:
        return [*problems, "Dockerfile: no ARG RAY_VERSION"]
    if info["from"] != [f"rayproject/ray:{version}-py311"]:
        problems.append(f"Dockerfile: FROM {info['from']} should be rayproject/ray:{version}-py311")
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    project = pyproject()["project"]
    ray_req = next(Requirement(r) for r in project["dependencies"] if Requirement(r).name == "ray")
    if version not in ray_req.specifier:
        problems.append(f"Dockerfile: Ray {version} does not satisfy the package's requirement {ray_req}")
    if "3.11" not in SpecifierSet(project.get("requires-python", "")):
        problems.append("Dockerfile: the image's Python 3.11 is outside requires-python "
                        f"{project['requires-python']}")
    pip = " ".join(run for run in info["run"] if "pip install" in run)
    extras = re.findall(r"\"\.\[([\w,-]+)\]\"", pip)
    if not extras:
        problems.append("Dockerfile: no `pip install \".[extras]\"` of the package")
    for extra in (e for group in extras for e in group.split(",")):
        if extra not in project.get("optional-dependencies", {}):
            problems.append(f"Dockerfile: extra [{extra}] is not in pyproject's optional-dependencies")
    if f"ray[default]=={version}" not in pip:
        problems.append(f"Dockerfile: pip install should pin ray[default]=={version}")
    return problems


# -- tests ---------------------------------------------------------------------------------------


def _report(problems: list[str]) -> str:
    return "\n".join(problems)


@pytest.mark.parametrize("name", REQUIRED_FILES)
def test_deploy_file_exists(name: str) -> None:
    assert (DEPLOY / name).is_file(), f"deploy/{name} is missing"


@pytest.mark.parametrize("path", deploy_yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses_and_names_only_existing_things(path: Path) -> None:
    docs = load_docs(path)
    assert docs, f"{path} holds no YAML document"
    text = path.read_text()
    problems = check_paths_in_text(text, path.parent) + check_targets_in_text(text)
    for doc in docs:
        problems += [p for image in images_in(doc) for p in check_image(image)]
    assert not problems, _report(problems)


def test_every_doge_dist_command_parses() -> None:
    commands = all_commands()
    problems = [f"{where}: {p}" for where, cmds in commands.items()
                for argv in cmds for p in check_argv(argv)]
    assert not problems, _report(problems)
    # the files do run doge-dist: the check above must have had something to check
    for where in ("deploy/kuberay/rayjob.yaml", "deploy/docker-compose.yml", "deploy/README.md"):
        assert commands[where], f"no doge-dist command found in {where}"


def test_console_script_exists() -> None:
    scripts = pyproject()["project"].get("scripts", {})
    assert "doge-dist" in scripts, "pyproject [project.scripts] has no doge-dist"
    assert not check_target(scripts["doge-dist"]), check_target(scripts["doge-dist"])


def test_fallback_subcommands_match_the_parser() -> None:
    parser = cli_parser()
    if parser is None:
        pytest.skip("doge_dist.cli is not importable; the fallback list is in use")
    assert set(subcommands(parser)) == set(FALLBACK_SUBCOMMANDS)


def test_dockerfile() -> None:
    problems = check_dockerfile(dockerfile())
    problems += check_paths_in_text((DEPLOY / "Dockerfile").read_text(), DEPLOY)
    assert not problems, _report(problems)


def test_ray_cluster_launcher_config() -> None:
    (cfg,) = load_docs(DEPLOY / "ray-cluster.yaml")
    assert not check_ray_cluster(cfg), _report(check_ray_cluster(cfg))


def test_kuberay_raycluster() -> None:
    (doc,) = load_docs(DEPLOY / "kuberay" / "raycluster.yaml")
    assert (doc.get("apiVersion"), doc.get("kind")) == ("ray.io/v1", "RayCluster")
    problems = check_raycluster_spec(doc.get("spec"), "raycluster.yaml")
    assert not problems, _report(problems)


def test_kuberay_rayjob() -> None:
    (doc,) = load_docs(DEPLOY / "kuberay" / "rayjob.yaml")
    problems = check_rayjob(doc, "rayjob.yaml")
    assert not problems, _report(problems)


def test_kuberay_cronjob() -> None:
    problems = check_cronjob_file(load_docs(DEPLOY / "kuberay" / "cronjob.yaml"))
    assert not problems, _report(problems)


def test_kuberay_namespaces_agree() -> None:
    namespaces = set()
    for path in (DEPLOY / "kuberay").glob("*.yaml"):
        for doc in load_docs(path):
            namespaces.add((doc.get("metadata") or {}).get("namespace"))
            if doc.get("kind") == "ConfigMap":
                for text in (doc.get("data") or {}).values():
                    namespaces.add((yaml.safe_load(text).get("metadata") or {}).get("namespace"))
    assert len(namespaces) == 1 and None not in namespaces, f"namespaces differ or are missing: {namespaces}"


def test_compose_stack() -> None:
    (doc,) = load_docs(COMPOSE)
    problems = check_compose(doc)
    assert not problems, _report(problems)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_docs_name_existing_files(path: Path) -> None:
    problems = check_paths_in_text(path.read_text(), path.parent) + check_markdown_links(path)
    assert not problems, _report(problems)


# -- the checks fail on wrong input --------------------------------------------------------------


def test_checks_catch_a_wrong_path() -> None:
    assert check_paths_in_text("run /app/examples/jobs/no-such-spec.yaml")
    assert check_paths_in_text("see examples/jobs/nothing-*.yaml")
    assert not check_paths_in_text("run /app/examples/jobs/banking-print.yaml")


def test_checks_catch_wrong_commands() -> None:
    assert check_argv(["frobnicate", "examples/jobs/banking-print.yaml"])
    assert check_argv(["run", "examples/jobs/no-such-spec.yaml"])
    assert not check_argv(["run", "examples/jobs/banking-print.yaml", "--workers", "2"])
    if cli_parser() is not None:
        assert check_argv(["run", "examples/jobs/banking-print.yaml", "--wrokers", "2"])
    assert argv_from_tokens(shlex.split("docker compose run --rm doge-dist doge-dist run x.yaml > out")) == \
        ["run", "x.yaml"]


def test_checks_catch_a_wrong_model_target() -> None:
    assert not check_target("examples.banking:build_generator")
    assert check_target("examples.banking:no_such_function")
    assert check_target("examples/no_such_file.py:build")


def test_checks_catch_wrong_images() -> None:
    assert check_image("doge-dist:0.0.0-wrong")
    assert check_image("rayproject/ray:latest")
    assert check_image("somebody/unknown:1.0")
    assert check_image("apache/kafka")
    assert not check_image(project_image())


def test_checks_catch_a_broken_dockerfile() -> None:
    info = parse_dockerfile((DEPLOY / "Dockerfile").read_text().replace("COPY --chown=1000:100 examples",
                                                                          "COPY --chown=1000:100 exmaples"))
    assert any("exmaples" in p for p in check_dockerfile(info))


def test_checks_catch_broken_kuberay_manifests() -> None:
    (job,) = load_docs(DEPLOY / "kuberay" / "rayjob.yaml")
    for breakage in (
        lambda d: d["spec"].pop("entrypoint"),
        lambda d: d["spec"]["rayClusterSpec"].pop("workerGroupSpecs"),
        lambda d: d["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"].clear(),
        lambda d: d["spec"]["rayClusterSpec"].update(rayVersion="2.9.0"),
        lambda d: d["spec"].update(entrypoint=d["spec"]["entrypoint"].replace("--seed 42", "")
                                   .replace("2024-01-01T00:00:00Z", "now")),
        lambda d: d["spec"].update(entrypoint=d["spec"]["entrypoint"].replace("--workers 16",
                                                                              "--workers 64")),
        lambda d: d["spec"].update(entrpoint="x"),
    ):
        broken = copy.deepcopy(job)
        breakage(broken)
        assert check_rayjob(broken, "broken"), f"not caught: {broken['spec'].get('entrypoint')}"
    docs = load_docs(DEPLOY / "kuberay" / "cronjob.yaml")
    broken_docs = copy.deepcopy(docs)
    cron = next(d for d in broken_docs if d["kind"] == "CronJob")
    cron["spec"]["concurrencyPolicy"] = "Allow"
    assert check_cronjob_file(broken_docs)
    broken_docs = copy.deepcopy(docs)
    next(d for d in broken_docs if d["kind"] == "Role")["rules"][0]["verbs"].remove("create")
    assert check_cronjob_file(broken_docs)


def test_checks_catch_a_broken_compose_file() -> None:
    (doc,) = load_docs(COMPOSE)
    broken = copy.deepcopy(doc)
    broken["services"]["postgres"]["ports"] = []
    assert check_compose(broken)
    broken = copy.deepcopy(doc)
    runner = next(s for s in broken["services"].values() if str(s.get("image", "")).startswith("doge-dist:"))
    runner["environment"].pop("KAFKA_BOOTSTRAP")
    assert check_compose(broken)
