"""The ``doge-dist`` command line: run, graph, inspect and submit models and job specs; fit and compare logs.

Exit statuses: 0 success (also an unbounded run stopped by SIGINT/SIGTERM), 1 the run (or render,
or submission) failed, 2 bad input (target, spec, flag, model or --report path), 128 + the signal
number (130 SIGINT, 143 SIGTERM) a bounded run stopped by a signal (partial data) or interrupted by
a second Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
import traceback
from collections.abc import Callable, Sequence

from ._errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_RUN_FAILED, RunFailed, UsageError
from ._mask import MASKING_RULE, Masker, MaskingFormatter

__all__ = ["main", "build_parser"]

_EPILOG = ("TARGET is a model function 'package.module:function' or 'path/to/file.py:function' returning a "
           "DataOnlineGenerator, a YAML model (MODEL.yaml with format: doge-dist/model-1), or a YAML job "
           "spec (JOB.yaml). Flags override the spec.")
_RUN_EPILOG = "\n\n".join(textwrap.fill(paragraph, 100) for paragraph in (
    _EPILOG,
    f"Secrets: {MASKING_RULE}. The report lists the masked spec fields under \"masked\".",
    "A param that is exactly one ${VAR} is typed like --param values (42, 2.5, true, null; anything "
    "else stays text); ${VAR} inside a longer text stays text.",
    "Exit status: 0 done, also an unbounded (streaming) run stopped by SIGINT/SIGTERM; 1 the run failed; "
    "2 bad input (target, spec, flag, model, --report path); 128+N a bounded run stopped by signal N "
    "(130 SIGINT, 143 SIGTERM): sinks closed, summary and report written, data partial.",
))


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="debug logging and full tracebacks on errors")


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET|JOB.yaml", help="model function or job spec")
    parser.add_argument("--param", "-p", action="append", metavar="KEY=VALUE",
                        help="keyword parameter for the model function (repeatable)")
    parser.add_argument("--subjects", metavar="N", help="number of subjects")
    parser.add_argument("--ticks", metavar="N",
                        help="number of ticks, or 'unbounded' to stream until stopped")
    parser.add_argument("--tick-ms", dest="tick_ms", metavar="MS", help="milliseconds per tick")
    parser.add_argument("--timestamp-start", dest="timestamp_start", metavar="T",
                        help="first timestamp: epoch ms, an ISO-8601 date-time, or 'now'")
    parser.add_argument("--seed", metavar="S", help="seed for a reproducible run")


def _run_options(parser: argparse.ArgumentParser, *, address: bool) -> None:
    parser.add_argument("--workers", metavar="N", help="shards (Ray actors); 1 runs in this process")
    if address:
        parser.add_argument("--address", dest="ray_address", metavar="ADDR",
                            help="Ray address ('auto', 'local', 'ray://HEAD:10001')")
    parser.add_argument("--window", metavar="K", help="ticks per lockstep window (default: adaptive)")
    parser.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=None,
                        help="pace ticks to the wall clock (tick k at start + k*tick_ms/speed)")
    parser.add_argument("--speed", metavar="X", help="realtime speed-up factor (default 1; needs --realtime)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``doge-dist``."""
    parser = argparse.ArgumentParser(
        prog="doge-dist", description="Simulate subjects walking a probabilistic state machine and emit "
        "their events.", epilog=_EPILOG)
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"doge-dist {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="run a model or job spec", epilog=_RUN_EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    _model_options(run)
    _run_options(run, address=True)
    run.add_argument("--report", metavar="OUT.json",
                     help="write a JSON report of the run (the path is checked before the run)")
    run.add_argument("--graph-out", dest="graph_out", metavar="RUN.svg",
                     help="draw the model with observed counts (svg, png, pdf or dot)")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress and no summary table")
    run.add_argument("--progress", action="store_true",
                     help="show progress even when stderr is not a terminal")
    _common(run)

    graph = sub.add_parser("graph", help="draw the model's state machine", epilog=_EPILOG)
    _model_options(graph)
    graph.add_argument("-o", "--output", metavar="FILE",
                       help="model.svg, .png, .pdf or .dot (DOT source); stdout gets DOT when omitted")
    graph.add_argument("--format", choices=["svg", "png", "pdf", "dot"], help="override the file suffix")
    graph.add_argument("--stay", action="store_true", help="draw each state's stay self-loop")
    _common(graph)

    inspect = sub.add_parser("inspect", help="validate and analyse the model (Markov chain)", epilog=_EPILOG)
    _model_options(inspect)
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    _common(inspect)

    from ._learn import add_compare_parser, add_fit_parser

    add_fit_parser(sub)
    add_compare_parser(sub)

    submit = sub.add_parser("submit", help="run a job spec on a Ray cluster as a Ray Job")
    _model_options(submit)
    _run_options(submit, address=False)
    submit.add_argument("--address", required=True, metavar="http://HEAD:8265", help="Ray Jobs API address")
    submit.add_argument("--working-dir", dest="working_dir", metavar="DIR",
                        help="upload this directory (default: the smallest one holding the spec and "
                        "the model)")
    submit.add_argument("--submission-id", dest="submission_id", metavar="ID", help="the job's id")
    submit.add_argument("--no-forward-env", dest="forward_env", action="store_false",
                        help="do not forward the environment variables the spec interpolates (forwarded "
                        "values are visible in the Ray dashboard; set secrets on the cluster instead)")
    submit.add_argument("--wait", action="store_true", help="wait for the job to finish and print its logs")
    submit.add_argument("--timeout", type=float, default=600.0, metavar="S", help="--wait at most S seconds")
    _common(submit)
    return parser


def _configure_logging(debug: bool, masker: Masker) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(MaskingFormatter(masker, "%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.WARNING)


def _command_table() -> dict[str, Callable[[argparse.Namespace, Masker], int]]:
    from ._commands import cmd_graph, cmd_inspect, cmd_run
    from ._learn import cmd_compare, cmd_fit
    from ._submit import cmd_submit

    return {"run": cmd_run, "graph": cmd_graph, "inspect": cmd_inspect, "submit": cmd_submit,
            "fit": cmd_fit, "compare": cmd_compare}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``doge-dist`` console script; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors (status 2)
        return int(exc.code or 0)
    masker = Masker()
    _configure_logging(args.debug, masker)
    try:
        return _command_table()[args.command](args, masker)
    except (UsageError, ValueError, ImportError) as exc:  # SpecError, TargetError, ModelError, ...
        return _fail(exc, EXIT_BAD_INPUT, masker, args.debug)
    except RunFailed as exc:
        return _fail(exc, EXIT_RUN_FAILED, masker, args.debug)
    except KeyboardInterrupt:
        sys.stderr.write("doge-dist: interrupted\n")
        return EXIT_INTERRUPTED
    except Exception as exc:  # unexpected: still one line unless --debug
        return _fail(exc, EXIT_RUN_FAILED, masker, args.debug, prefix=f"{type(exc).__name__}: ")


def _fail(exc: BaseException, status: int, masker: Masker, debug: bool, prefix: str = "") -> int:
    if debug:
        sys.stderr.write(masker.mask("".join(traceback.format_exception(exc))))
    sys.stderr.write(masker.mask(f"doge-dist: error: {prefix}{exc}") + "\n")
    sys.stderr.flush()
    return status
