"""Resolve a model target (``package.module:function`` or ``path/to/file.py:function``) and build it."""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["TargetError", "ModelBuildError", "Target", "parse_target", "load_target", "build_model",
           "is_file_target"]


class TargetError(ValueError):
    """The target cannot be found, imported or called."""


class ModelBuildError(ValueError):
    """The model function rejected its parameters or built an invalid model."""


@dataclass
class Target:
    """A resolved target: the object, its module, and the file it was loaded from (if any)."""

    text: str
    obj: Any
    module: ModuleType
    file: Path | None
    loaded_from_file: bool


def is_file_target(module_part: str) -> bool:
    """True for ``path/to/file.py`` (rather than a dotted module name)."""
    return module_part.endswith(".py") or "/" in module_part or os.sep in module_part


def parse_target(text: str) -> tuple[str, str]:
    """Split ``module_or_path:attribute``; TargetError naming what is missing."""
    module_part, sep, attr = text.strip().rpartition(":")
    if not sep or not module_part or not attr:
        raise TargetError(f"bad target {text!r}: expected 'package.module:function' or "
                          "'path/to/file.py:function'")
    return module_part, attr


def load_target(text: str, base_dir: Path | None = None) -> Target:
    """Import the module (or load the file, relative to ``base_dir``) and get the attribute."""
    module_part, attr = parse_target(text)
    if is_file_target(module_part):
        path = Path(module_part)
        if not path.is_absolute():
            path = (base_dir or Path.cwd()) / path
        module, file = _load_file(path.resolve(), text), path.resolve()
        from_file = True
    else:
        module = _import_module(module_part, text)
        file = Path(module.__file__).resolve() if getattr(module, "__file__", None) else None
        from_file = False
    obj: Any = module
    for i, part in enumerate(attr.split(".")):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            owner = module_part if i == 0 else ".".join(attr.split(".")[:i])
            names = [n for n in dir(obj) if not n.startswith("_")]
            hint = difflib.get_close_matches(part, names, n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            raise TargetError(f"bad target {text!r}: {owner} has no attribute {part!r}{extra}") from None
    return Target(text=text, obj=obj, module=module, file=file, loaded_from_file=from_file)


def _import_module(name: str, text: str) -> ModuleType:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:  # the console script does not put the cwd on sys.path
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise TargetError(f"bad target {text!r}: no module named {exc.name!r} (searched the current "
                              "directory and sys.path)") from None
        raise TargetError(f"bad target {text!r}: importing {name} failed: {exc}") from exc
    except SyntaxError as exc:
        raise TargetError(f"bad target {text!r}: syntax error in {exc.filename} line {exc.lineno}: "
                          f"{exc.msg}") from None
    except (Exception, SystemExit) as exc:
        raise TargetError(f"bad target {text!r}: importing {name} failed: {_what(exc)}") from exc


def _load_file(path: Path, text: str) -> ModuleType:
    if not path.is_file():
        raise TargetError(f"bad target {text!r}: file not found: {path}")
    if path.suffix != ".py":
        raise TargetError(f"bad target {text!r}: {path} is not a .py file")
    directory = str(path.parent)
    if directory not in sys.path:  # sibling imports of the model file
        sys.path.insert(0, directory)
    _extend_pythonpath(directory)  # local Ray workers inherit it
    name = path.stem if path.stem.isidentifier() else "doge_model"
    existing = sys.modules.get(name)
    if existing is not None:
        if Path(getattr(existing, "__file__", "") or "").resolve() == path:
            return existing
        name = f"{name}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TargetError(f"bad target {text!r}: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[name]
        raise TargetError(f"bad target {text!r}: syntax error in {exc.filename} line {exc.lineno}: "
                          f"{exc.msg}") from None
    except (Exception, SystemExit) as exc:  # importing the model must not end the command silently
        del sys.modules[name]
        raise TargetError(f"bad target {text!r}: loading {path} failed: {_what(exc)}") from exc
    return module


def _what(exc: BaseException) -> str:
    """What went wrong, in words: ``KeyError: 'x'`` or ``it called sys.exit(3)``."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    return f"{type(exc).__name__}: {exc}"


def _extend_pythonpath(directory: str) -> None:
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if directory not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([directory, *parts])


def build_model(target: Target, params: dict[str, Any]) -> Any:
    """Call the target with ``params`` (or use it as is) and check that it is a DataOnlineGenerator."""
    from ..model._generator import DataOnlineGenerator

    obj = target.obj
    if isinstance(obj, DataOnlineGenerator):
        if params:
            raise TargetError(f"target {target.text!r} is a generator, not a function: it takes no params "
                              f"(got {sorted(params)})")
        return obj
    if not callable(obj):
        raise TargetError(f"target {target.text!r} is a {type(obj).__name__}, not a function returning a "
                          "DataOnlineGenerator")
    _check_params(target, obj, params)
    try:
        generator = obj(**params)
    except ValueError as exc:  # ModelError included
        raise ModelBuildError(f"the model function {target.text} failed: the model is invalid: {exc}") \
            from exc
    except (Exception, SystemExit) as exc:  # sys.exit() there must not end the command silently
        raise ModelBuildError(f"the model function {target.text} failed: {_what(exc)}") from exc
    if not isinstance(generator, DataOnlineGenerator):
        raise ModelBuildError(f"model function {target.text!r} returned {type(generator).__name__}, "
                              "expected a DataOnlineGenerator")
    return generator


def _check_params(target: Target, func: Any, params: dict[str, Any]) -> None:
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return
    accepted = signature.parameters
    if any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        return
    names = [n for n, p in accepted.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key in params:
        if key not in names:
            hint = difflib.get_close_matches(key, names, n=1)
            extra = f"; did you mean '{hint[0]}'?" if hint else f" (it accepts: {', '.join(names) or 'none'})"
            raise TargetError(f"field 'params': model function {target.text!r} has no parameter "
                              f"'{key}'{extra}")
    missing = [n for n, p in accepted.items()
               if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
               and n not in params]
    if missing:
        raise TargetError(f"field 'params': model function {target.text!r} needs parameter(s) "
                          f"{', '.join(repr(m) for m in missing)}")
