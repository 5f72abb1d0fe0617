"""The ``doge-dist`` command line: run, graph, inspect and submit models and job specs; fit and compare logs.

Exit statuses: 0 success (also an unbounded run stopped by SIGINT/SIGTERM), 1 the run (or render,
or submission) failed, 2 bad input (target, spec, flag, model, --report path, a run too large for
this machine), 128 + the signal number (130 SIGINT, 143 SIGTERM) a bounded run stopped by a signal
(partial data) or interrupted by a second Ctrl-C. Data (print sinks, DOT, inspect) goes to stdout,
diagnostics to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import textwrap
import traceback
from collections.abc import Callable, Iterator, Sequence

from ._checkpoint_spec import CHECKPOINT_HELP, add_checkpoint_options
from ._errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_RUN_FAILED, RunFailed, UsageError
from ._mask import MASKING_RULE, Masker, install_log_masking
from ._pacing import PACING_RULE
from ._schema import SETTINGS_RULE

__all__ = ["main", "build_parser"]


def _paragraphs(*paragraphs: str) -> str:
    return "\n\n".join(textwrap.fill(paragraph, 100) for paragraph in paragraphs)


_TARGET = ("TARGET is a model function 'package.module:function' or 'path/to/file.py:function' returning a "
           "DataOnlineGenerator, a YAML model (MODEL.yaml with format: doge-dist/model-1), or a YAML job "
           "spec (JOB.yaml). Flags override the spec.")
SECURITY_NOTE = ("Security: a job spec's 'model:' (and a TARGET) is Python code that run, graph and inspect "
                 "import and call with your permissions ('model: subprocess:run' would run a program): run "
                 "only specs and models you trust, as you would a script.")
_EXAMPLES = """examples:
  doge-dist run examples/jobs/banking-jsonl.yaml --report out/report.json
  doge-dist run examples/banking.py:build_generator --subjects 1000 --ticks 500 --seed 1 > events.txt
  doge-dist run examples/jobs/banking-jsonl.yaml --workers auto
  doge-dist run examples/jobs/banking-dynamics.yaml --report-html out/banking-dynamics.html
  doge-dist run examples/jobs/load-test.yaml --report out/load.json
  doge-dist run examples/jobs/banking-print.yaml --rate 500 --ticks unbounded
  doge-dist graph examples/banking.py:build_generator -o model.svg
  doge-dist inspect examples/jobs/banking-print.yaml --json
  doge-dist submit examples/jobs/banking-jsonl.yaml --address http://HEAD:8265 --wait
  doge-dist fit examples/clickstream/clickstream.jsonl.gz --subject user --event event --time ts \\
      --tick-ms 1000 --population 10000 -o out/clickstream.yaml
  doge-dist compare examples/clickstream/clickstream.jsonl.gz out/clickstream-*.jsonl --subject user \\
      --event event --time ts --gen-subject subject --gen-time timestamp --html out/compare.html

Each command has its own help: doge-dist run --help."""
_TOP_EPILOG = _EXAMPLES + "\n\n" + _paragraphs(_TARGET, SECURITY_NOTE)
_RUN_EPILOG = _paragraphs(
    _TARGET,
    "Output: events of print sinks go to stdout and nothing else does; progress, the summary and every "
    "message go to stderr (--quiet keeps only errors).",
    f"Settings: {SETTINGS_RULE}. workers is a number or 'auto' (in this process for small runs, every "
    "core for large ones, decided from the expected events and subject-ticks; the summary says which "
    "and why).",
    f"Pacing: {PACING_RULE}.",
    f"Secrets: {MASKING_RULE}.",
    CHECKPOINT_HELP,
    "A param that is exactly one ${VAR} is typed like --param values (42, 2.5, true, null; anything "
    "else stays text); ${VAR} inside a longer text stays text.",
    "Exit status: 0 done, also an unbounded (streaming) run stopped by SIGINT/SIGTERM; 1 the run failed; "
    "2 bad input (target, spec, flag, model, --report path, a run too large for this machine's memory); "
    "128+N a bounded run stopped by signal N (130 SIGINT, 143 SIGTERM): sinks closed, summary and report "
    "written, data partial.",
    SECURITY_NOTE,
)
_GRAPH_EPILOG = _paragraphs(
    _TARGET,
    "Draws the states and transitions (with their probabilities) of the model; the run settings of a "
    "job spec play no part. Without -o the DOT source goes to stdout.",
    "Exit status: 0 done; 1 rendering failed; 2 bad input.",
    SECURITY_NOTE,
)
_INSPECT_EPILOG = _paragraphs(
    _TARGET,
    "Validates the model and prints its Markov-chain analysis: unreachable and final states, long-run "
    "share of subjects per state, expected stays, expected events per trigger and sink for the given "
    "subjects and ticks. With profiles: expected events per trigger in each hour of day and each day of "
    "the week (over the run, or one week when it is unbounded); with arrivals: the expected arrivals, "
    "departures and live subjects over the run. Derived from the model, not simulated.",
    "Exit status: 0 valid; 2 bad input or an invalid model.",
    SECURITY_NOTE,
)
_SUBMIT_EPILOG = _paragraphs(
    "Uploads only what the job needs: the spec and the model (its package directory, or the single file "
    "of a top-level module), without dotfiles and __pycache__ (--include-dotfiles to add them), at most "
    "--max-upload-mb; the list and total size go to stderr. Relative output paths land inside the job's "
    "unpacked copy on the cluster (Ray's package cache): use absolute paths on a shared filesystem. "
    "Every request to the Jobs API waits at most --http-timeout seconds.",
    "Exit status: 0 submitted (with --wait: succeeded); 1 submission or job failed, or the API did not "
    "answer in time; 2 bad input (also an upload over the limit).",
    SECURITY_NOTE,
)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="debug logging and full tracebacks on errors")


def _target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET|JOB.yaml", help="model function or job spec")
    parser.add_argument("--param", "-p", action="append", metavar="KEY=VALUE",
                        help="keyword parameter for the model function (repeatable)")


def _population_options(parser: argparse.ArgumentParser, *, seed: bool = True) -> None:
    parser.add_argument("--subjects", metavar="N", help="number of subjects (an integer >= 0)")
    parser.add_argument("--ticks", metavar="N",
                        help="number of ticks (an integer >= 0), or 'unbounded' to stream until stopped")
    parser.add_argument("--tick-ms", dest="tick_ms", metavar="MS", help="milliseconds per tick (> 0)")
    parser.add_argument("--timestamp-start", dest="timestamp_start", metavar="T",
                        help="first timestamp: epoch ms, an ISO-8601 date-time, or 'now'")
    if seed:
        parser.add_argument("--seed", metavar="S", help="seed for a reproducible run (0..2**64-1)")


def _run_options(parser: argparse.ArgumentParser, *, address: bool) -> None:
    parser.add_argument("--workers", metavar="N|auto",
                        help="shards (Ray actors); 1 runs in this process; 'auto' decides from the run's "
                        "size")
    if address:
        parser.add_argument("--address", dest="ray_address", metavar="ADDR",
                            help="Ray address ('auto', 'local', 'ray://HEAD:10001')")
    parser.add_argument("--window", metavar="K", help="ticks per lockstep window (default: adaptive)")
    parser.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=None,
                        help="pace ticks to the wall clock (tick k at start + k*tick_ms/speed)")
    parser.add_argument("--speed", metavar="X", help="realtime speed-up factor (default 1; needs --realtime)")
    parser.add_argument("--rate", metavar="R",
                        help="emit R events per wall-clock second (implies --realtime; not with --speed); "
                        "the summary and report show target, achieved and shortfall")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``doge-dist``."""
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="doge-dist", description="Simulate subjects walking a probabilistic state machine and emit "
        "their events.", epilog=_TOP_EPILOG, formatter_class=raw)
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"doge-dist {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="run a model or job spec", epilog=_RUN_EPILOG, formatter_class=raw)
    _target_options(run)
    _population_options(run)
    _run_options(run, address=True)
    run.add_argument("--report", metavar="OUT.json",
                     help="write a JSON report of the run (the path is checked before the run)")
    run.add_argument("--report-html", dest="report_html", metavar="OUT.html",
                     help="write a self-contained HTML page with charts: events over time per trigger "
                     "(observed and expected), live subjects, target vs achieved rate (needs matplotlib)")
    run.add_argument("--graph-out", dest="graph_out", metavar="RUN.svg",
                     help="draw the model with observed counts (svg, png, pdf or dot)")
    run.add_argument("--quiet", "-q", action="store_true",
                     help="no progress, no summary: stderr gets only errors")
    run.add_argument("--progress", action="store_true",
                     help="show progress even when stderr is not a terminal")
    add_checkpoint_options(run)
    _common(run)

    graph = sub.add_parser("graph", help="draw the model's state machine", epilog=_GRAPH_EPILOG,
                           formatter_class=raw)
    _target_options(graph)
    graph.add_argument("-o", "--output", metavar="FILE",
                       help="model.svg, .png, .pdf or .dot (DOT source); stdout gets DOT when omitted")
    graph.add_argument("--format", choices=["svg", "png", "pdf", "dot"], help="override the file suffix")
    graph.add_argument("--stay", action="store_true", help="draw each state's stay self-loop")
    _common(graph)

    inspect = sub.add_parser("inspect", help="validate and analyse the model (Markov chain)",
                             epilog=_INSPECT_EPILOG, formatter_class=raw)
    _target_options(inspect)
    _population_options(inspect, seed=False)
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    _common(inspect)

    from ._learn import add_compare_parser, add_fit_parser

    add_fit_parser(sub)
    add_compare_parser(sub)

    submit = sub.add_parser("submit", help="run a job spec on a Ray cluster as a Ray Job",
                            epilog=_SUBMIT_EPILOG, formatter_class=raw)
    _target_options(submit)
    _population_options(submit)
    _run_options(submit, address=False)
    submit.add_argument("--address", required=True, metavar="http://HEAD:8265", help="Ray Jobs API address")
    submit.add_argument("--working-dir", dest="working_dir", metavar="DIR",
                        help="upload this whole directory instead of only the spec and the model")
    submit.add_argument("--include-dotfiles", dest="include_dotfiles", action="store_true",
                        help="also upload dotfiles and __pycache__ directories")
    submit.add_argument("--max-upload-mb", dest="max_upload_mb", type=float, default=100.0, metavar="MB",
                        help="refuse to upload more than this (default 100)")
    submit.add_argument("--http-timeout", dest="http_timeout", type=float, default=30.0, metavar="S",
                        help="wait at most S seconds for each answer of the Jobs API (default 30)")
    submit.add_argument("--submission-id", dest="submission_id", metavar="ID", help="the job's id")
    submit.add_argument("--no-forward-env", dest="forward_env", action="store_false",
                        help="do not forward the environment variables the spec interpolates (forwarded "
                        "values are visible in the Ray dashboard; set secrets on the cluster instead)")
    submit.add_argument("--wait", action="store_true", help="wait for the job to finish and print its logs")
    submit.add_argument("--timeout", type=float, default=600.0, metavar="S", help="--wait at most S seconds")
    _common(submit)
    return parser


@contextlib.contextmanager
def _logging_for_the_command(debug: bool, masker: Masker) -> Iterator[None]:
    """The command's logging (masked, to stderr) while it runs; afterwards the process's logging is
    as it was (``main()`` called in-process, e.g. by a test or a notebook, leaves nothing behind)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    filters = {id(h): list(h.filters) for lg in [root, *logging.Logger.manager.loggerDict.values()]
               if isinstance(lg, logging.Logger) for h in lg.handlers}
    install_log_masking(masker, logging.DEBUG if debug else logging.WARNING, replace_handlers=True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)
        for lg in [root, *logging.Logger.manager.loggerDict.values()]:
            for handler in getattr(lg, "handlers", []):
                if id(handler) in filters:
                    handler.filters[:] = filters[id(handler)]


def _command_table() -> dict[str, Callable[[argparse.Namespace, Masker], int]]:
    # (not named _commands: importing the submodule cli._commands would rebind that package attribute,
    # and a second main() in the same process would call the module)
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
    args.argv = list(sys.argv[1:] if argv is None else argv)  # to print the command that resumes a run
    masker = Masker()
    with _logging_for_the_command(args.debug, masker):
        return _run_command(args, masker)


def _run_command(args: argparse.Namespace, masker: Masker) -> int:
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
