"""YAML models (``format: doge-dist/model-1``): the file ``doge-dist fit`` writes and people edit.

A model file holds what a generator needs without Python: states, the initial state, transitions
(percent per tick, optionally times a profile) and arrivals. ``load_model`` turns it into a
:class:`DataOnlineGenerator` whose subjects are small records carrying their index (``id``) and
whose events, for sinks built from a spec, are records
``{timestamp, subject, event, from_state, to_state}``. Everything here pickles (module-level
classes, no lambdas), because models travel to Ray workers.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import yaml

from .._errors import ModelError
from ._arrivals import ArrivalStream, make_arrival_stream
from ._profiles import Profile, profile_from_dict
from ._vocabulary import SubjectFactory, Transition

__all__ = [
    "MODEL_FORMAT",
    "ModelSubject",
    "IndexSubjectFactory",
    "EventRecord",
    "ModelTransition",
    "YamlModel",
    "parse_model",
    "read_model",
    "load_model",
    "dump_model",
    "model_to_text",
    "is_model_file",
]

MODEL_FORMAT = "doge-dist/model-1"
_TOP_KEYS = ("format", "description", "tick_ms", "states", "initial_state", "transitions", "arrivals", "fit")
_TRANSITION_KEYS = ("trigger", "from", "to", "probability", "profile", "event")
_ARRIVAL_KEYS = ("rate", "profile", "limit", "state")


# -- what a YAML model's subjects and events are ---------------------------------------------------


class ModelSubject:
    """The default subject of a YAML model: just its global index (``id``)."""

    __slots__ = ("id",)

    def __init__(self, id: int) -> None:  # noqa: A002 - the record's field is called id
        self.id = id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModelSubject) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"ModelSubject(id={self.id})"


class IndexSubjectFactory(SubjectFactory[ModelSubject]):
    """Creates ``ModelSubject(index)`` for every global index."""

    def create(self, index: int) -> ModelSubject:
        return ModelSubject(index)


class EventRecord:
    """``(timestamp, subject, transition) -> {timestamp, subject, event, from_state, to_state}``.

    ``subject`` is the subject's ``id`` (the subject itself when it has none); ``event`` is the
    transition's event name, which is its trigger unless the model names it otherwise (``event:``).
    """

    __slots__ = ("events",)

    def __init__(self, events: Mapping[tuple[str, str], str] | None = None) -> None:
        self.events = dict(events or {})  # (from_state, trigger) -> event name, where they differ

    def __call__(self, timestamp: int, subject: Any, transition: Transition) -> dict[str, Any]:
        trigger = transition.trigger
        event = self.events.get((transition.from_state, trigger), trigger) if self.events else trigger
        return {"timestamp": timestamp, "subject": getattr(subject, "id", subject), "event": event,
                "from_state": transition.from_state, "to_state": transition.to_state}

    def __getstate__(self) -> dict[str, Any]:
        return {"events": self.events}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.events = state["events"]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EventRecord) and other.events == self.events

    def __repr__(self) -> str:
        return f"EventRecord({self.events!r})"


# -- the model as data -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelTransition:
    """One transition of a YAML model (``event``: the name written to events, default the trigger)."""

    trigger: str
    from_state: str
    to_state: str
    probability: float
    profile: Profile | None = None
    event: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"trigger": self.trigger, "from": self.from_state, "to": self.to_state,
                                "probability": self.probability}
        if self.event is not None and self.event != self.trigger:
            data["event"] = self.event
        if self.profile is not None:
            data["profile"] = self.profile.to_dict()
        return data


@dataclass
class YamlModel:
    """A parsed ``doge-dist/model-1`` file."""

    tick_ms: int
    states: list[str]
    initial_state: str
    transitions: list[ModelTransition]
    arrivals: list[ArrivalStream] = field(default_factory=list)
    fit: dict[str, Any] | None = None
    description: str | None = None
    source: str = "<model>"

    def event_record(self) -> EventRecord:
        """The record function for this model's events (picklable)."""
        return EventRecord({(t.from_state, t.trigger): t.event for t in self.transitions
                            if t.event is not None and t.event != t.trigger})

    def default_timestamp_start(self) -> int:
        """The fitted log's first timestamp when the ``fit:`` section records it, else 0."""
        span = (self.fit or {}).get("time_span") if isinstance(self.fit, dict) else None
        start = span.get("start_ms") if isinstance(span, dict) else None
        return int(start) if isinstance(start, Integral) and not isinstance(start, bool) else 0

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"format": MODEL_FORMAT}
        if self.description:
            data["description"] = self.description
        data.update(tick_ms=self.tick_ms, states=list(self.states), initial_state=self.initial_state,
                    transitions=[t.to_dict() for t in self.transitions])
        if self.arrivals:
            arrivals = [_arrival_dict(a, self.initial_state) for a in self.arrivals]
            data["arrivals"] = arrivals[0] if len(arrivals) == 1 else arrivals
        if self.fit:
            data["fit"] = self.fit
        return data

    def build(self, subject_factory: SubjectFactory | None = None, sinks: Iterable[Any] | None = None, *,
              subjects_num: int = 1000, ticks_num: int | None = 1000, timestamp_start: int | None = None,
              seed: int | None = None) -> Any:
        """A DataOnlineGenerator of this model; every transition sends its events to ``sinks``."""
        from ._generator import DataOnlineGenerator

        sinks = list(sinks or [])
        start = self.default_timestamp_start() if timestamp_start is None else timestamp_start
        factory = subject_factory or IndexSubjectFactory()
        generator = DataOnlineGenerator(self.states, self.initial_state, factory, subjects_num, self.tick_ms,
                                        ticks_num, start, seed=seed)
        for t in self.transitions:
            generator.add_transition(t.trigger, t.from_state, t.to_state, t.probability,
                                     event_sinks=sinks, profile=t.profile)
        for stream in self.arrivals:
            generator.add_arrivals(stream.rate_per_tick, stream.profile, stream.limit, stream.state)
        return generator


def _arrival_dict(stream: ArrivalStream, initial_state: str) -> dict[str, Any]:
    data = stream.to_dict()
    if data.get("state") == initial_state:
        del data["state"]
    return data


# -- parsing ---------------------------------------------------------------------------------------


class _Doc:
    """YAML data plus the line of every mapping value and list item (for error messages)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: dict[tuple, int] = {}

    def error(self, path: tuple, message: str) -> ModelError:
        where = _path_text(path)
        line = self.lines.get(path)
        while line is None and path:
            path = path[:-1]
            line = self.lines.get(path)
        at = f" (line {line})" if line is not None else ""
        if where:
            return ModelError(f"{self.source}: {where}{at}: {message}")
        return ModelError(f"{self.source}{at}: {message}")

    def construct(self, node: yaml.Node, path: tuple, loader: yaml.SafeLoader) -> Any:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = loader.construct_object(key_node, deep=True)
                if isinstance(key, (dict, list)):
                    raise self.error(path, f"keys must be names, got {key!r}")
                if key in out:
                    raise self.error(path + (key,), f"duplicate key {key!r}")
                out[key] = self.construct(value_node, path + (key,), loader)
                self.lines[path + (key,)] = key_node.start_mark.line + 1
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.construct(item, path + (i,), loader) for i, item in enumerate(node.value)]
        return loader.construct_object(node, deep=True)


def _path_text(path: tuple) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _check_keys(doc: _Doc, path: tuple, data: dict, allowed: tuple[str, ...], what: str) -> None:
    for key in data:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            extra = f"; did you mean '{hint[0]}'?" if hint else f" (known: {', '.join(allowed)})"
            raise doc.error(path + (key,), f"unknown key '{key}' in {what}{extra}")


def _text(doc: _Doc, path: tuple, value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise doc.error(path, f"{what} must be a non-empty string, got {value!r}")
    return value


def _number(doc: _Doc, path: tuple, value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise doc.error(path, f"{what} must be a finite number, got {value!r}")
    return float(value)


def parse_model(text: str, source: str = "<model>") -> YamlModel:
    """Parse and validate model-1 YAML text; ModelError naming the key and its line otherwise."""
    doc = _Doc(source)
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise doc.error((), f"the model file is empty (expected a mapping with format: {MODEL_FORMAT})")
        if not isinstance(root, yaml.MappingNode):
            raise ModelError(f"{source} (line {root.start_mark.line + 1}): a model must be a mapping of keys")
        data = doc.construct(root, (), loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise ModelError(f"{source}{at}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    finally:
        loader.dispose()
    _check_keys(doc, (), data, _TOP_KEYS, "a model")
    if data.get("format") != MODEL_FORMAT:
        raise doc.error(("format",), f"expected format: {MODEL_FORMAT}, got {data.get('format')!r}")
    for key in ("tick_ms", "states", "initial_state", "transitions"):
        if key not in data:
            raise doc.error((), f"missing key '{key}'")
    tick_ms = data["tick_ms"]
    if isinstance(tick_ms, bool) or not isinstance(tick_ms, Integral) or tick_ms <= 0:
        raise doc.error(("tick_ms",), f"tick_ms must be a positive integer (milliseconds per tick), "
                        f"got {tick_ms!r}")
    states = data["states"]
    if not isinstance(states, list) or not states:
        raise doc.error(("states",), f"states must be a non-empty list of state names, got {states!r}")
    seen: set[str] = set()
    for i, state in enumerate(states):
        _text(doc, ("states", i), state, "a state name")
        if state in seen:
            raise doc.error(("states", i), f"duplicate state {state!r}")
        seen.add(state)
    initial = _text(doc, ("initial_state",), data["initial_state"], "initial_state")
    if initial not in seen:
        raise doc.error(("initial_state",), f"initial_state {initial!r} is not one of the states {states}")
    description = data.get("description")
    if description is not None and not isinstance(description, str):
        raise doc.error(("description",), f"description must be text, got {description!r}")
    fit = data.get("fit")
    if fit is not None and not isinstance(fit, dict):
        raise doc.error(("fit",), f"fit must be a mapping, got {type(fit).__name__}")

    transitions = data["transitions"]
    if not isinstance(transitions, list):
        raise doc.error(("transitions",), "transitions must be a list of "
                        "{trigger, from, to, probability} mappings")
    parsed: list[ModelTransition] = []
    totals: dict[str, float] = {}
    triggers: set[tuple[str, str]] = set()
    for i, item in enumerate(transitions):
        path = ("transitions", i)
        if not isinstance(item, dict):
            raise doc.error(path, f"a transition must be a mapping {{trigger, from, to, probability}}, "
                            f"got {item!r}")
        _check_keys(doc, path, item, _TRANSITION_KEYS, "a transition")
        for key in ("trigger", "from", "to", "probability"):
            if key not in item:
                raise doc.error(path, f"missing key '{key}'")
        trigger = _text(doc, path + ("trigger",), item["trigger"], "trigger")
        source_state = _text(doc, path + ("from",), item["from"], "from")
        target = _text(doc, path + ("to",), item["to"], "to")
        for key, state in (("from", source_state), ("to", target)):
            if state not in seen:
                raise doc.error(path + (key,), f"state {state!r} is not one of the states {states}")
        if (source_state, trigger) in triggers:
            raise doc.error(path + ("trigger",), f"trigger {trigger!r} is already defined from state "
                            f"{source_state!r} (use another trigger name and event: {trigger})")
        triggers.add((source_state, trigger))
        probability = _number(doc, path + ("probability",), item["probability"], "probability")
        if not 0 <= probability <= 100:
            raise doc.error(path + ("probability",), f"probability is percent per tick (0..100), got "
                            f"{item['probability']!r}")
        profile = None
        if item.get("profile") is not None:
            try:
                profile = profile_from_dict(item["profile"], "profile")
            except ModelError as exc:
                raise doc.error(path + ("profile",), str(exc)) from None
        event = item.get("event")
        if event is not None:
            event = _text(doc, path + ("event",), event, "event")
        if profile is None:
            totals[source_state] = totals.get(source_state, 0.0) + probability
            if totals[source_state] > 100 + 1e-9:
                raise doc.error(path + ("probability",), f"the probabilities out of state {source_state!r} "
                                f"add up to {totals[source_state]:g}% (over 100%)")
        parsed.append(ModelTransition(trigger, source_state, target, probability, profile, event))

    arrivals = _parse_arrivals(doc, data.get("arrivals"), initial, states)
    return YamlModel(int(tick_ms), list(states), initial, parsed, arrivals, fit, description, source)


def _parse_arrivals(doc: _Doc, value: Any, initial: str, states: list[str]) -> list[ArrivalStream]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    streams = []
    for i, item in enumerate(items):
        path = ("arrivals", i) if isinstance(value, list) else ("arrivals",)
        if not isinstance(item, dict):
            raise doc.error(path, "arrivals must be a mapping {rate: subjects per tick} (or a list of them), "
                            f"got {item!r}")
        _check_keys(doc, path, item, _ARRIVAL_KEYS, "arrivals")
        if "rate" not in item:
            raise doc.error(path, "missing key 'rate' (new subjects per tick)")
        try:
            streams.append(make_arrival_stream(item["rate"], item.get("profile"), item.get("limit"),
                                               item.get("state", initial), states))
        except ModelError as exc:
            key = next((k for k in _ARRIVAL_KEYS if k in str(exc) and k in item), None)
            raise doc.error(path + ((key,) if key else ()), str(exc).replace("add_arrivals: ", "")) from None
    return streams


def read_model(path: str | os.PathLike[str]) -> YamlModel:
    """Read and validate a model file."""
    model_path = Path(path)
    try:
        text = model_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(f"model file not found: {model_path}") from None
    except OSError as exc:
        raise ModelError(f"cannot read model file {model_path}: {exc.strerror or exc}") from None
    return parse_model(text, str(model_path))


def is_model_file(path: str | os.PathLike[str]) -> bool:
    """True when the YAML file at ``path`` is a model (it has a top-level ``format`` key), not a job spec."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError:
        return False
    try:
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.YAMLError:
        return False
    return isinstance(root, yaml.MappingNode) and any(
        isinstance(k, yaml.ScalarNode) and k.value == "format" for k, _ in root.value)


def load_model(path: str | os.PathLike[str], subject_factory: SubjectFactory | None = None,
               sinks: Iterable[Any] | None = None, *, subjects_num: int = 1000, ticks_num: int | None = 1000,
               timestamp_start: int | None = None, seed: int | None = None) -> Any:
    """A DataOnlineGenerator from a ``doge-dist/model-1`` YAML file.

    ``subject_factory``: default :class:`IndexSubjectFactory` (subjects are ``ModelSubject(id)``).
    ``sinks``: event sinks for every transition; each is a sink object, or a sink description as
    in a job spec's ``sink:`` (``{"type": "jsonl", "path": "out/ev-{part}.jsonl", "parts": 4}``), which gets
    the model's event records ``{timestamp, subject, event, from_state, to_state}``.
    ``timestamp_start``: default the fitted log's first timestamp (``fit.time_span.start_ms``), else 0.
    """
    model = read_model(path)
    built = []
    for i, sink in enumerate(sinks or []):
        if isinstance(sink, Mapping):
            from ..sinks._spec import build_sink

            sink = build_sink(dict(sink), record=model.event_record(), for_model=True,
                              where=f"sinks[{i}]")
        built.append(sink)
    return model.build(subject_factory, built, subjects_num=subjects_num, ticks_num=ticks_num,
                       timestamp_start=timestamp_start, seed=seed)


# -- writing ---------------------------------------------------------------------------------------


class _FlowList(list):
    """A list written in flow style ([a, b, c])."""


class _FlowDict(dict):
    """A mapping written in flow style ({a: 1, b: 2})."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_FlowList, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v,
                                                                      flow_style=True))
_Dumper.add_representer(_FlowDict, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v.items(),
                                                                    flow_style=True))


def _flow(value: Any) -> Any:
    """Lists of scalars and small mappings of scalars in flow style, the rest in block style."""
    if isinstance(value, dict):
        items = {k: _flow(v) for k, v in value.items()}
        if all(not isinstance(v, (dict, list)) for v in value.values()) and len(value) <= 8:
            return _FlowDict(items)
        return items
    if isinstance(value, list):
        items = [_flow(v) for v in value]
        scalars = all(not isinstance(v, (dict, list)) for v in value)
        if scalars or all(isinstance(v, _FlowList) for v in items):
            return _FlowList(items)
        return items
    return value


def model_to_text(model: YamlModel, header: str | None = None) -> str:
    """The model as YAML text (``header``: comment lines put first)."""
    data = model.to_dict()
    body: dict[str, Any] = {}
    for key, value in data.items():
        if key == "transitions":
            body[key] = [_transition_flow(t) for t in value]
        else:
            body[key] = _flow(value)
    text = yaml.dump(body, Dumper=_Dumper, sort_keys=False, width=110, allow_unicode=True)
    if header:
        text = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()) + text
    return text


def _transition_flow(data: dict[str, Any]) -> Any:
    flat = {k: v for k, v in data.items() if k != "profile"}
    if "profile" not in data:
        return _FlowDict(flat)
    return {**flat, "profile": _flow(data["profile"])}


def dump_model(model: YamlModel | Any, path: str | os.PathLike[str] | None = None, *,
               header: str | None = None) -> str:
    """Write ``model`` (a YamlModel, or a DataOnlineGenerator without callbacks) as model-1 YAML.

    Returns the text; writes it to ``path`` when given. Callbacks and sinks are not part of the
    format: a generator with callbacks is refused (ModelError) rather than written without them.
    """
    if not isinstance(model, YamlModel):
        model = _from_generator(model)
    text = model_to_text(model, header)
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


def _from_generator(generator: Any) -> YamlModel:
    from ._generator import DataOnlineGenerator

    if not isinstance(generator, DataOnlineGenerator):
        raise ModelError(f"dump_model: expected a YamlModel or a DataOnlineGenerator, got "
                         f"{type(generator).__name__}")
    with_callbacks = [t.trigger for t in generator.transitions if t.action_callback is not None]
    if with_callbacks:
        raise ModelError(f"dump_model: transitions {with_callbacks} have action callbacks, which a YAML "
                         "model cannot hold; remove them first")
    transitions = [ModelTransition(t.trigger, t.from_state, t.to_state, float(t.probability), t.profile)
                   for t in generator.transitions]
    return YamlModel(generator.tick_ms, list(generator.states), generator.initial_state, transitions,
                     list(generator.arrivals))
