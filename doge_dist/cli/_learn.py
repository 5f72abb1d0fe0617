"""``doge-dist fit`` (log -> YAML model) and ``doge-dist compare`` (real log vs generated log)."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from ._errors import EXIT_OK, RunFailed, UsageError
from ._mask import Masker

__all__ = ["add_fit_parser", "add_compare_parser", "cmd_fit", "cmd_compare", "ReadProgress"]

_FIT_EPILOG = (
    "Each subject is in one state and acts in ticks of --tick-ms; the per-tick probability of an event out "
    "of a state is (events out of the state) / (ticks spent in it), the maximum-likelihood estimate. "
    "Without --state the state is the last event (before it: --start-state). Without --population every "
    "subject arrives with its first event (the model gets arrivals); with it, N subjects exist from the "
    "log's start. Each subject's events must be in time order. Exit status 2 for bad input.")


_INSTALL = ("fit and compare need the learn extra (pyarrow, scipy, matplotlib): python3 -m pip install "
            "'doge-dist[learn]' (in a source checkout: python3 -m pip install -e '.[learn]')")


def _learn_imports() -> Any:
    try:
        import pyarrow  # noqa: F401

        from .. import learn
    except ImportError as exc:
        raise UsageError(f"{_INSTALL}; {exc}") from exc
    return learn


def _field_options(parser: argparse.ArgumentParser, *, state: bool) -> None:
    parser.add_argument("--subject", required=True, metavar="FIELD",
                        help="field naming the subject (user id)")
    parser.add_argument("--event", required=True, metavar="FIELD", help="field naming the event")
    parser.add_argument("--time", required=True, metavar="FIELD",
                        help="field with the time: epoch milliseconds or ISO-8601")
    if state:
        parser.add_argument("--state", metavar="FIELD", help="field naming the state the event leads to")


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--progress", action="store_true",
                        help="show progress even when stderr is not a terminal")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress")
    parser.add_argument("--debug", action="store_true", help="debug logging and full tracebacks on errors")


def add_fit_parser(sub: Any) -> None:
    fit = sub.add_parser("fit", help="fit a YAML model to an event log (JSON Lines, CSV or SQL)",
                         epilog=_FIT_EPILOG)
    fit.add_argument("logs", nargs="*", metavar="LOG", help=".jsonl or .csv files, optionally .gz")
    _field_options(fit, state=True)
    fit.add_argument("--tick-ms", dest="tick_ms", required=True, metavar="MS", help="milliseconds per tick")
    fit.add_argument("--profile", default="none", metavar="KIND",
                     help="none (default), daily, weekly or hour_of_week: multipliers per slot (UTC)")
    fit.add_argument("--population", metavar="N", help="subjects present from the log's start, "
                     "including those that never act (default: subjects arrive with their first event)")
    fit.add_argument("--min-count", dest="min_count", default="5", metavar="K",
                     help="drop transitions seen fewer than K times; a profile needs K events per slot "
                     "(default 5)")
    fit.add_argument("--start-state", dest="start_state", default="start", metavar="NAME",
                     help="the state before a subject's first event (default: start)")
    fit.add_argument("--db-url", dest="db_url", metavar="URL", help="read a SQL query instead of files "
                     "(SQLAlchemy URL)")
    fit.add_argument("--query", metavar="SQL", help="the query to read with --db-url")
    fit.add_argument("-o", "--output", required=True, metavar="MODEL.yaml", help="where to write the model")
    _output_options(fit)


def add_compare_parser(sub: Any) -> None:
    compare = sub.add_parser(
        "compare", help="compare a real log with generated logs (event mix, next events, dwell times, hours)",
        epilog="Distances are in [0, 1] (0: the same). --gen-subject/--gen-event/--gen-time name the "
        "generated "
        "log's fields when they differ (a YAML model's events have subject, event, timestamp).")
    compare.add_argument("real", metavar="REAL", help="the real log (.jsonl or .csv, optionally .gz)")
    compare.add_argument("generated", nargs="+", metavar="GENERATED", help="the generated log's files")
    _field_options(compare, state=False)
    compare.add_argument("--gen-subject", dest="gen_subject", metavar="FIELD", help="default: --subject")
    compare.add_argument("--gen-event", dest="gen_event", metavar="FIELD", help="default: --event")
    compare.add_argument("--gen-time", dest="gen_time", metavar="FIELD", help="default: --time")
    compare.add_argument("--json", metavar="OUT.json", help="write the numbers as JSON")
    compare.add_argument("--html", metavar="OUT.html", help="write a page with the charts (self-contained)")
    _output_options(compare)


def _positive_int(text: Any, flag: str, minimum: int = 1) -> int:
    try:
        value = int(str(text).replace("_", ""))
    except ValueError:
        raise UsageError(f"{flag} must be an integer, got {text!r}") from None
    if value < minimum:
        raise UsageError(f"{flag} must be >= {minimum}, got {value}")
    return value


def check_output_path(path: str, flag: str) -> None:
    """Refuse (exit 2) an output path that could not be written, before any reading."""
    target = Path(path).absolute()
    if target.is_dir():
        raise UsageError(f"{flag} {path}: is a directory; name a file")
    if target.exists() and not os.access(target, os.W_OK):
        raise UsageError(f"{flag} {path}: the file exists and is not writable")
    existing = target.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise UsageError(f"{flag} {path}: cannot create files in {existing}")


def _write(path: str, text: str) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)


class ReadProgress:
    """Events read so far on stderr, for inputs that take more than a second."""

    def __init__(self, stream: TextIO, label: str, *, enabled: bool, tty: bool) -> None:
        self.stream = stream
        self.label = label
        self.enabled = enabled
        self.tty = tty
        self.started = time.monotonic()
        self.last = self.started
        self.shown = False
        self.offset = 0

    def __call__(self, events: int, source: str) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.started < 1.0 or now - self.last < (0.5 if self.tty else 10.0):
            return
        self.last = now
        total = self.offset + events
        rate = total / max(now - self.started, 1e-9)
        text = f"{self.label}: {total:,} events read ({rate:,.0f}/s), {os.path.basename(source)}"
        self.stream.write(f"\r{text}\033[K" if self.tty else text + "\n")
        self.stream.flush()
        self.shown = True

    def finish(self) -> None:
        if self.shown and self.tty:
            self.stream.write("\n")
            self.stream.flush()
        self.shown = False


def _progress(args: argparse.Namespace, label: str) -> ReadProgress:
    tty = sys.stderr.isatty()
    return ReadProgress(sys.stderr, label, enabled=not args.quiet and (tty or args.progress), tty=tty)


def cmd_fit(args: argparse.Namespace, masker: Masker) -> int:
    """``doge-dist fit``: read the log once, write the fitted model and print a summary."""
    learn = _learn_imports()
    from ..model._yaml_model import model_to_text

    options = learn.FitOptions(
        tick_ms=_positive_int(args.tick_ms, "--tick-ms"), profile=args.profile,
        population=None if args.population is None else _positive_int(args.population, "--population"),
        min_count=_positive_int(args.min_count, "--min-count"), start_state=args.start_state,
        use_state=args.state is not None)
    check_output_path(args.output, "-o")
    fields = learn.LogFields(args.subject, args.event, args.time, args.state)
    sources = list(args.logs) if args.logs else ([masker.mask(f"{args.db_url} :: {args.query}")]
                                                  if args.db_url else [])
    progress = _progress(args, "fit")
    try:
        batches = learn.read_log(args.logs, fields, db_url=args.db_url, query=args.query)
        result = learn.fit_log(batches, options, sources=sources,
                               fields={"subject": args.subject, "event": args.event, "time": args.time,
                                       "state": args.state, "tick_ms": options.tick_ms},
                               progress=progress)
    finally:
        progress.finish()
    span = result.model.fit["time_span"] if result.model.fit else {}
    start_iso = _dt.datetime.fromtimestamp(result.start_ms / 1000, _dt.timezone.utc) \
        .strftime("%Y-%m-%dT%H:%M:%SZ")
    if result.population is not None:
        subjects, note = result.population, ""
    else:  # subjects arrive; those present at the start would all act in the first tick
        subjects, note = 1, "  (the arrivals bring the others)"
    header = (f"doge-dist model fitted by `doge-dist fit` on {_dt.date.today().isoformat()}\n"
              f"from {', '.join(sources)}\n"
              f"generate the log's span again: doge-dist run {args.output} --subjects {subjects} "
              f"--ticks {span.get('ticks', result.ticks)} --timestamp-start {start_iso}{note}")
    try:
        _write(args.output, model_to_text(result.model, header))
    except OSError as exc:
        raise RunFailed(f"could not write -o {args.output}: {exc.strerror or exc}") from exc
    sys.stderr.write(masker.mask(result.summary()) + f"\nmodel written to {args.output}\n")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace, masker: Masker) -> int:
    """``doge-dist compare``: print the table; write --json and --html."""
    learn = _learn_imports()
    for path, flag in ((args.json, "--json"), (args.html, "--html")):
        if path:
            check_output_path(path, flag)
    real_fields = learn.LogFields(args.subject, args.event, args.time)
    gen_fields = learn.LogFields(args.gen_subject or args.subject, args.gen_event or args.event,
                                 args.gen_time or args.time)
    progress = _progress(args, "compare")
    try:
        real = learn.LogStats("real")
        for batch in learn.read_log([args.real], real_fields):
            real.add(batch)
            progress(real.n_events, batch.source)
        progress.offset = real.n_events
        generated = learn.LogStats("generated", seed=1)
        for batch in learn.read_log(args.generated, gen_fields):
            generated.add(batch)
            progress(generated.n_events, batch.source)
    finally:
        progress.finish()
    from ..learn._compare import compare_stats

    comparison = compare_stats(real, generated)
    print(comparison.table())  # the comparison is the command's data: stdout
    if args.json:
        _write(args.json, json.dumps(comparison.to_dict(), indent=2) + "\n")
        sys.stderr.write(f"numbers written to {args.json}\n")
    if args.html:
        _write(args.html, learn.render_html(comparison))
        sys.stderr.write(f"page written to {args.html}\n")
    return EXIT_OK
