"""The commands: run, graph, inspect (submit lives in _submit)."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .._errors import ModelError, RunInterrupted
from ..model._yaml_model import is_model_file
from ._auto import WorkersChoice, choose_workers
from ._checkpoint_spec import apply_checkpoint_flags
from ._errors import EXIT_INTERRUPTED, EXIT_OK, RunFailed, SpecError, UsageError
from ._html_report import check_report_html, write_report_html
from ._interpolate import typed_scalar
from ._mask import MASKING_RULE, InstallLogMasking, Masker
from ._pacing import apply_rate_flag, check_spec_pacing, pacing_options, rate_workers_choice
from ._progress import ProgressPrinter
from ._report import build_report, describe_counts, summary_table, write_report
from ._resume import checkpoint_lines, checkpoint_report, finish_hint, plan_checkpoints
from ._schema import AUTO, GENERATOR_ATTRIBUTES, resolve_timestamp
from ._sink_spec import is_yaml_model_ref, load_yaml_target, python_model_params
from ._spec import JobSpec, load_spec
from ._target import Target, build_model, load_target

__all__ = ["cmd_run", "cmd_graph", "cmd_inspect", "load_job", "prepare_model", "GRAPH_FORMATS",
           "describe_failure", "parse_param", "check_report_path", "runs_on_this_machine", "SignalStop"]

GRAPH_FORMATS = ("svg", "png", "pdf", "dot")

#: command-line flag -> spec field, for the flags each command accepts.
_SETTING_FLAGS = {"subjects": "--subjects", "ticks": "--ticks", "tick_ms": "--tick-ms",
                  "timestamp_start": "--timestamp-start", "seed": "--seed"}
_RUN_FLAGS = {"workers": "--workers", "ray_address": "--address", "window": "--window",
              "realtime": "--realtime", "speed": "--speed", "max_restarts": "--max-restarts"}


# -- shared: spec + flags -> generator -----------------------------------------------------------


def is_spec_path(text: str) -> bool:
    """A TARGET argument naming a YAML job spec rather than a model function."""
    return text.lower().endswith((".yaml", ".yml"))


def parse_param(text: str) -> tuple[str, Any]:
    """``key=value`` from ``--param``: numbers, true/false and null are typed, the rest stays text."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise SpecError(f"expected key=value with a Python identifier as key, got {text!r}",
                        field="params (--param)")
    return key, typed_scalar(value)


def load_job(args: argparse.Namespace, masker: Masker, *, run_flags: bool) -> JobSpec:
    """The job spec (or a bare target) with command-line flags applied on top."""
    if is_spec_path(args.target) and not is_model_file(args.target):  # a model file is a TARGET
        spec = load_spec(args.target, masker=masker)
    else:
        spec = JobSpec(masker=masker)
        spec.override("model", args.target, "TARGET")
    for text in getattr(args, "param", None) or []:
        key, value = parse_param(text)
        spec.set_param(key, value)
    flags = dict(_SETTING_FLAGS, **(_RUN_FLAGS if run_flags else {}))
    for name, flag in flags.items():
        value = getattr(args, name, None)
        if value is not None:
            spec.override(name, value, flag)
    if run_flags:  # --rate replaces the spec's rate or load; flags may not combine speed with them
        apply_rate_flag(spec, getattr(args, "rate", None), getattr(args, "speed", None),
                        getattr(args, "realtime", None))
        check_spec_pacing(spec.settings, {}, None)
    if run_flags and getattr(args, "speed", None) is not None and spec.settings.get("realtime") is not True:
        raise UsageError("--speed needs --realtime (or 'realtime: true' in the job spec): the speed only "
                         "paces realtime runs")
    return spec


def prepare_model(spec: JobSpec) -> tuple[Target, Any]:
    """Resolve the target, build the generator and apply the spec's settings to it (all at once, so
    the combined checks such as the int64 time range see the final values)."""
    if is_yaml_model_ref(spec.model or ""):
        target, generator = load_yaml_target(spec)
    else:
        target = load_target(spec.model or "", spec.base_dir)
        params = spec.params if spec.extras.get("sink") is None else python_model_params(spec, target)
        generator = build_model(target, params)
    updates: dict[str, Any] = {}
    for name, attribute in GENERATOR_ATTRIBUTES.items():
        if name in spec.settings:
            value = spec.settings[name]
            updates[attribute] = resolve_timestamp(value) if name == "timestamp_start" else value
    if not updates:
        return target, generator
    try:
        _configure(generator, updates)
    except (ValueError, TypeError, AttributeError) as exc:
        name = _named_setting(str(exc), [n for n in GENERATOR_ATTRIBUTES if n in spec.settings])
        raise SpecError(f"the model rejected it: {exc}", field=name, line=spec.lines.get(name or ""),
                        source=str(spec.path) if spec.path else None) from None
    return target, generator


def _named_setting(message: str, names: list[str]) -> str | None:
    """The spec field an error message is about (the first one it names), for its line number."""
    for name in names:
        if name in message or GENERATOR_ATTRIBUTES[name] in message:
            return name
    return names[0] if len(names) == 1 else None


def _configure(generator: Any, updates: dict[str, Any]) -> None:
    configure = getattr(generator, "configure", None)
    if callable(configure):
        configure(**updates)
    else:
        for attribute, value in updates.items():
            setattr(generator, attribute, value)


def describe_failure(exc: BaseException) -> str:
    """The error's message plus its direct cause (what a user needs without a traceback)."""
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text += f" (caused by {type(cause).__name__}: {cause})"
    return text


def generator_settings(generator: Any) -> dict[str, Any]:
    """The settings the run actually used (for reports)."""
    return {"subjects_num": generator.subjects_num, "ticks_num": generator.ticks_num,
            "tick_ms": generator.tick_ms, "timestamp_start": generator.timestamp_start,
            "seed": generator.seed, "states": list(generator.states),
            "initial_state": generator.initial_state,
            "transitions": len(generator.transitions)}


def runs_on_this_machine(ray_address: str | None) -> bool:
    """Every process of the run is on this machine: in-process, or a Ray this run starts."""
    address = ray_address or os.environ.get("RAY_ADDRESS")
    return not address or address == "local"


# -- run -----------------------------------------------------------------------------------------


class SignalStop:
    """SIGINT/SIGTERM ask the run to stop at the next tick boundary; a second SIGINT interrupts the
    run at once -- but only while it runs: once :meth:`finishing` is called (the run has returned),
    signals are only recorded, so the summary and the report are always written."""

    def __init__(self, stop: threading.Event, stream: Any) -> None:
        self.stop = stop
        self.stream = stream
        self.received: list[int] = []
        self._finishing = False

    def __call__(self, signum: int, frame: Any) -> None:  # noqa: ARG002
        self.received.append(signum)
        if self._finishing:
            return
        if self.stop.is_set():
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.stop.set()
        name = signal.Signals(signum).name
        self.stream.write(f"\ndoge-dist: {name} received: stopping at the next tick boundary "
                          "(Ctrl-C again to interrupt at once)\n")
        self.stream.flush()

    def finishing(self) -> None:
        self._finishing = True

    @property
    def first(self) -> int | None:
        return self.received[0] if self.received else None


@contextmanager
def _stop_on_signals(stop: threading.Event, stream: Any) -> Iterator[SignalStop]:
    """Install a SignalStop for SIGINT and SIGTERM (main thread only); restore the old handlers after."""
    handler = SignalStop(stop, stream)
    if threading.current_thread() is not threading.main_thread():
        yield handler
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield handler
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _check_graph_out(path: str | None) -> None:
    if path is None:
        return
    fmt = Path(path).suffix.lstrip(".").lower()
    if fmt not in GRAPH_FORMATS:
        raise UsageError(f"--graph-out {path!r}: the file name must end in one of "
                         f"{', '.join('.' + f for f in GRAPH_FORMATS)}")
    if fmt != "dot" and shutil.which("dot") is None:
        raise UsageError(f"--graph-out {path!r}: Graphviz's `dot` program is not installed (apt-get install "
                         "graphviz), or write the DOT source with a .dot file name")


def _register_pickle_by_value(target: Target) -> None:
    """Ray workers cannot import a model loaded from a file path: ship its module by value."""
    if not target.loaded_from_file:
        return
    try:
        from ray import cloudpickle
    except ImportError:  # pragma: no cover - ray is a dependency
        return
    try:
        cloudpickle.register_pickle_by_value(target.module)
    except ValueError:  # already registered
        pass


def check_report_path(path: str, flag: str = "--report") -> None:
    """Refuse (exit 2) an output path (``--report``, ``--report-html``) that could not be written, before
    anything runs."""
    target = Path(path).absolute()
    try:
        if target.is_dir():
            example = Path(path) / ("report.html" if flag.endswith("html") else "report.json")
            raise UsageError(f"{flag} {path}: is a directory; name a file, e.g. {example}")
        if target.exists() and not os.access(target, os.W_OK):
            raise UsageError(f"{flag} {path}: the file exists and is not writable")
        existing = target.parent
        while not existing.exists():
            existing = existing.parent
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot check the path: {exc.strerror or exc}") from None
    if not existing.is_dir():
        raise UsageError(f"{flag} {path}: {existing} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot write in {existing}: {exc.strerror or exc}") from None


def _choose_workers(spec: JobSpec, generator: Any, realtime: bool,
                    speed: float) -> tuple[int, WorkersChoice | None]:
    workers = spec.settings.get("workers", 1)
    if workers != AUTO:
        return workers, None
    choice = rate_workers_choice(spec.settings) or choose_workers(generator, realtime=realtime, speed=speed)
    return choice.workers, choice


def _check_memory(generator: Any, workers: int, ray_address: str | None, spec: JobSpec) -> None:
    """Refuse (exit 2) a run that cannot fit this machine, before any subject exists."""
    if not runs_on_this_machine(ray_address):
        return
    from ..run._memory import check_memory, estimate_run_memory

    try:
        check_memory(estimate_run_memory(generator, workers))
    except ModelError as exc:
        line = spec.lines.get("subjects")
        raise UsageError(f"{spec.path.name + ': ' if spec.path else ''}field 'subjects'"
                         f"{f' (line {line})' if line else ''}: {exc}") from None


def cmd_run(args: argparse.Namespace, masker: Masker) -> int:
    """``doge-dist run``: build the model, run it, print the summary, write report and graph.

    A bounded run stopped by SIGINT/SIGTERM exits 128 + the signal number (its data is partial);
    an unbounded (streaming) run stopped that way exits 0. Data goes to stdout (print sinks), every
    diagnostic (progress, summary, messages) to stderr.
    """
    started_at = _dt.datetime.now(_dt.timezone.utc)
    t_build = time.perf_counter()
    spec = load_job(args, masker, run_flags=True)
    apply_checkpoint_flags(spec, args)
    _check_graph_out(args.graph_out)
    if args.report:
        check_report_path(args.report)
    html_out = getattr(args, "report_html", None)
    if html_out:
        check_report_html(html_out)
    target, generator = prepare_model(spec)
    checkpoints = plan_checkpoints(spec, generator)
    for warning in checkpoints.warnings:
        sys.stderr.write(masker.mask(f"doge-dist: warning: {warning}") + "\n")
    argv = list(getattr(args, "argv", None) or [])
    ck_args = {"ticks": generator.ticks_num, "argv": argv, "env_vars": spec.env_vars}
    settings = spec.settings
    ray_address = settings.get("ray_address")
    pacing = pacing_options(settings)  # rate / load: realtime, paced to a target event rate
    realtime = pacing.pop("realtime", settings.get("realtime", False))
    speed = settings.get("speed", 1.0)
    workers, choice = _choose_workers(spec, generator, realtime, speed)
    _check_memory(generator, workers, ray_address, spec)
    if workers > 1 or ray_address is not None:
        _register_pickle_by_value(target)
    build_s = time.perf_counter() - t_build

    tty = sys.stderr.isatty()
    printer = None
    if not args.quiet and (tty or args.progress):
        tick_s = generator.tick_ms / 1000.0 / speed if realtime and not pacing else None
        printer = ProgressPrinter(sys.stderr, masker, tty=tty, tick_s=tick_s)
    log_level = logging.DEBUG if args.debug else logging.WARNING

    stop = threading.Event()
    result = None
    status = "completed"
    error: str | None = None
    exit_code = EXIT_OK
    failure: BaseException | None = None
    report_error: str | None = None
    html_error: str | None = None
    with _stop_on_signals(stop, sys.stderr) as signals:  # kept until the report is on disk
        t_run = time.perf_counter()
        try:
            result = generator.start(workers=workers, ray_address=ray_address, window=settings.get("window"),
                                     realtime=realtime, speed=speed, progress=printer, stop_event=stop,
                                     worker_setup=InstallLogMasking(masker, log_level), **pacing,
                                     **checkpoints.start_kwargs())
        except RunInterrupted as exc:  # the engine's own Ctrl-C handling (not in the main thread)
            result = exc.result
            signals.received.append(signal.SIGINT)
        except KeyboardInterrupt:
            status, exit_code = "interrupted", EXIT_INTERRUPTED
            error = "interrupted by a second Ctrl-C; sinks were closed"
        except Exception as exc:  # the run's own failure: exit 1 with its message (2 for a bad model)
            failure = exc
            result = getattr(exc, "result", None)  # a partial result: every shard's counts so far
            status, error = "failed", describe_failure(exc)
            if result is not None:
                error += f" ({describe_counts(result)} before the failure)"
            hint = finish_hint(checkpoints, result, **ck_args) if not isinstance(exc, ModelError) else None
            if hint:
                error += f"; {hint}"
        finally:
            signals.finishing()
            if printer:
                printer.finish()
        run_s = time.perf_counter() - t_run
        stopped_by = signal.Signals(signals.first).name if signals.first is not None else None
        if failure is None and result is not None and result.stopped:
            status = "stopped"
            if generator.ticks_num is not None and signals.first is not None:  # cut short: partial data
                exit_code = 128 + signals.first
                error = (f"stopped by {stopped_by} after {result.ticks:,} of {generator.ticks_num:,} ticks; "
                         "the sinks were closed, the data is partial")
                hint = finish_hint(checkpoints, result, **ck_args)
                if hint:
                    error += f"; {hint}"

        if result is not None and not args.quiet:
            summary = summary_table(result, status=status, tick_ms=generator.tick_ms, realtime=realtime,
                                    speed=speed, mask=masker.mask, wall_s=run_s,
                                    workers_choice=choice.reason if choice else None)
            if checkpoints.active:  # paths and commands: masked like messages
                lines = checkpoint_lines(checkpoints, result, status=status, **ck_args)
                summary = "\n".join([summary, *(masker.mask(line) for line in lines)])
            sys.stderr.write(summary + "\n")
            sys.stderr.flush()
        if result is not None and realtime and result.max_lag_s > generator.tick_ms / 1000.0 / speed:
            sys.stderr.write(f"doge-dist: warning: the run fell behind the wall clock by up to "
                             f"{result.max_lag_s:.3f} s (more than one tick)\n")
        if args.report:
            report = build_report(
                status=status, masker=masker, spec=spec.resolved(), fingerprint=generator.model_fingerprint(),
                seed=result.seed if result is not None else generator.seed, result=result,
                started_at=started_at, finished_at=_dt.datetime.now(_dt.timezone.utc), build_s=build_s,
                run_s=run_s, error=error, generator=generator_settings(generator),
                masked=spec.masked_fields(), masked_variables=spec.masked_variables(), masking=MASKING_RULE,
                stopped_by=stopped_by, workers_choice=choice.to_dict() if choice else None)
            if checkpoints.active:
                report["checkpoint"] = masker.mask_data(checkpoint_report(checkpoints, result, status=status,
                                                                          **ck_args))
            try:
                write_report(args.report, report)
            except OSError as exc:
                report_error = f"could not write --report {args.report}: {exc.strerror or exc}"
                if failure is not None or exit_code != EXIT_OK:
                    sys.stderr.write(masker.mask(f"doge-dist: error: {report_error}") + "\n")
        if html_out and result is not None:
            html_error = write_report_html(html_out, result, generator, spec=spec, masker=masker)
            if html_error is None and not args.quiet:
                sys.stderr.write(masker.mask(f"doge-dist: HTML report written to {html_out}") + "\n")
            elif html_error is not None and (failure is not None or exit_code != EXIT_OK):
                sys.stderr.write(masker.mask(f"doge-dist: error: {html_error}") + "\n")
    if isinstance(failure, ModelError):  # raised by start() before the run began: bad input
        raise UsageError(f"model {spec.model!r} is invalid for this run: {error}") from failure
    if failure is not None:
        raise RunFailed(f"run failed: {error}") from failure
    if result is None:  # interrupted by a second Ctrl-C
        hint = finish_hint(checkpoints, None, **ck_args)
        sys.stderr.write(masker.mask(f"doge-dist: {error}" + (f"; {hint}" if hint else "")) + "\n")
        return exit_code
    if report_error is not None and exit_code == EXIT_OK:
        raise RunFailed(report_error)
    if html_error is not None and exit_code == EXIT_OK:
        raise RunFailed(html_error)
    if args.graph_out:
        try:
            from ..report._grapher import DataOnlineGeneratorGrapher

            written = DataOnlineGeneratorGrapher(generator).render(args.graph_out, observed=result)
        except Exception as exc:
            raise RunFailed(f"could not draw --graph-out {args.graph_out}: {describe_failure(exc)}") from exc
        if not args.quiet:
            message = f"doge-dist: graph with observed counts written to {written}"
            sys.stderr.write(masker.mask(message) + "\n")
    if exit_code != EXIT_OK:  # a bounded run stopped by a signal
        sys.stderr.write(masker.mask(f"doge-dist: {error}") + "\n")
    return exit_code


# -- graph ---------------------------------------------------------------------------------------


def cmd_graph(args: argparse.Namespace, masker: Masker) -> int:
    """``doge-dist graph``: draw the model (svg, png, pdf, or DOT source on stdout)."""
    spec = load_job(args, masker, run_flags=False)
    if args.output is not None:
        fmt = (args.format or Path(args.output).suffix.lstrip(".")).lower()
        if fmt not in GRAPH_FORMATS:
            raise UsageError(f"-o {args.output!r}: unsupported format {fmt!r}; use a file name ending in "
                             f"{', '.join('.' + f for f in GRAPH_FORMATS)} (or --format)")
        if fmt != "dot" and shutil.which("dot") is None:
            raise UsageError("Graphviz's `dot` program is not installed (apt-get install graphviz); "
                             "use a .dot file name to write the DOT source instead")
    _, generator = prepare_model(spec)
    from ..report._grapher import DataOnlineGeneratorGrapher

    grapher = DataOnlineGeneratorGrapher(generator)
    if args.output is None:
        sys.stdout.write(grapher.generate_graph(show_stay=args.stay).source)
        return EXIT_OK
    try:
        written = grapher.render(args.output, args.format, show_stay=args.stay)
    except ModelError as exc:
        raise UsageError(str(exc)) from exc
    except Exception as exc:
        raise RunFailed(f"could not render {args.output}: {describe_failure(exc)}") from exc
    sys.stderr.write(f"doge-dist: graph written to {written}\n")
    return EXIT_OK


# -- inspect -------------------------------------------------------------------------------------


def cmd_inspect(args: argparse.Namespace, masker: Masker) -> int:
    """``doge-dist inspect``: validate the model and print its Markov-chain analysis."""
    from ..model._analysis import analyze_generator
    from ._inspect import format_analysis

    spec = load_job(args, masker, run_flags=False)
    _, generator = prepare_model(spec)
    try:
        generator.compile()  # the engine's full validation
        analysis = analyze_generator(generator)
    except ModelError as exc:
        raise UsageError(f"model {spec.model!r} is invalid: {exc}") from exc
    if args.json:
        data = {"model": spec.model, "model_fingerprint": generator.model_fingerprint(),
                "tick_ms": generator.tick_ms, **analysis.to_dict()}
        print(masker.mask(json.dumps(data, indent=2)))
    else:
        print(masker.mask(format_analysis(analysis, target=spec.model or "", tick_ms=generator.tick_ms,
                                          fingerprint=generator.model_fingerprint())))
    return EXIT_OK
