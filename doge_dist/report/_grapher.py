"""Draw the model with Graphviz: states as nodes, transitions as edges labelled with their probability."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import ModelError

if TYPE_CHECKING:
    import graphviz

    from ..model._generator import DataOnlineGenerator
    from ..run._result import RunResult

__all__ = ["DataOnlineGeneratorGrapher", "GraphvizMissingError", "DEFAULT_RENDER_PATH", "LABEL_STYLES"]

_FORMATS = ("svg", "png", "pdf", "dot")
DEFAULT_RENDER_PATH = "doctest-output/out.gv"  # where doge-datagen's render() writes
LABEL_STYLES = ("spaced", "doge")


class GraphvizMissingError(RuntimeError):
    """Graphviz's ``dot`` program is not installed."""


# rankdir=LR: edges between states leave and enter on the east and west sides, so self-loops go
# north and south first. The initial state has only the start marker to its west (it enters at
# the north-west corner when a loop needs the west side), so its third loop goes there instead of
# stacking a third loop (and its label) on the north or south side of the node.
_LOOP_PORTS = ("n", "s", "ne", "se", "nw", "sw")
_INITIAL_LOOP_PORTS = ("n", "s", "w", "ne", "se", "sw")


def _fmt(probability: float) -> str:
    return f"{float(probability):g}"


def _label(trigger: str, probability: float | str, style: str) -> str:
    if style == "doge":  # doge-datagen's graph.py: f"{trigger}(P={probability}%)"
        return f"{trigger}(P={probability}%)"
    return f"{trigger} (P={_fmt(probability)}%)"


class DataOnlineGeneratorGrapher:
    """Builds a ``graphviz.Digraph`` of a generator's state machine."""

    def __init__(self, generator: DataOnlineGenerator) -> None:
        self.generator = generator

    def generate_graph(self, *, show_stay: bool = False, observed: RunResult | None = None,
                       name: str = "doge", label_style: str = "spaced") -> graphviz.Digraph:
        """One node per state (the initial one marked), one edge per transition.

        ``show_stay`` adds a dashed self-loop with each state's stay probability; ``observed``
        (a RunResult) adds the counted events and per-tick rate to each edge label.
        ``label_style="doge"`` writes labels as doge-datagen does (``login(P=0.1%)``) instead of
        the default ``login (P=0.1%)``.
        """
        import graphviz

        if label_style not in LABEL_STYLES:
            raise ModelError(f"label_style must be one of {', '.join(map(repr, LABEL_STYLES))}, "
                             f"got {label_style!r}")
        gen = self.generator
        loops = self._loops(show_stay)
        graph = graphviz.Digraph(name=name, graph_attr={"rankdir": "LR"},
                                 node_attr={"shape": "ellipse", "fontname": "Helvetica"},
                                 edge_attr={"fontname": "Helvetica", "fontsize": "10"})
        final = set(gen.final_states())
        graph.node("__start", label="", shape="point")
        for state in gen.states:
            attrs: dict[str, str] = {}
            if state == gen.initial_state:
                attrs.update(style="bold,filled", fillcolor="#dbeafe", xlabel="initial")
            if state in final:
                attrs.update(shape="doublecircle")
            graph.node(state, label=state, **attrs)
        ports = {state: iter(_INITIAL_LOOP_PORTS if state == gen.initial_state else _LOOP_PORTS)
                 for state in gen.states}
        start_attrs = {"headport": "nw"} if loops.get(gen.initial_state, 0) > 2 else {}
        graph.edge("__start", gen.initial_state, **start_attrs)
        counts = observed.events_by_transition if observed is not None else None
        for tr in gen.transitions:
            label = _label(tr.trigger, tr.probability, label_style)
            if counts is not None:
                n = counts.get(f"{tr.from_state}:{tr.trigger}", 0)
                per_tick = n / observed.ticks if observed.ticks else 0.0
                label += f"\\n{n:,} events ({per_tick:.3g}/tick)"
            attrs = self._port(ports, tr.from_state) if tr.from_state == tr.to_state else {}
            graph.edge(tr.from_state, tr.to_state, label=label, **attrs)
        if show_stay:
            for state, stay in self._stay_probabilities().items():
                if stay is None:
                    continue  # no chance of staying
                graph.edge(state, state, label=_label("stay", _fmt(stay), label_style), style="dashed",
                           color="gray50", fontcolor="gray40", **self._port(ports, state))
        return graph

    def _stay_probabilities(self) -> dict[str, float | None]:
        """Each state's chance of staying put per tick in percent (None when it cannot stay)."""
        totals: dict[str, float] = {s: 0.0 for s in self.generator.states}
        for tr in self.generator.transitions:
            totals[tr.from_state] += float(tr.probability)
        return {state: (100 - total if total < 100 else None) for state, total in totals.items()}

    def _loops(self, show_stay: bool) -> dict[str, int]:
        """How many self-loops each state gets."""
        loops: dict[str, int] = {}
        for tr in self.generator.transitions:
            if tr.from_state == tr.to_state:
                loops[tr.from_state] = loops.get(tr.from_state, 0) + 1
        if show_stay:
            for state, stay in self._stay_probabilities().items():
                if stay is not None:
                    loops[state] = loops.get(state, 0) + 1
        return loops

    @staticmethod
    def _port(ports: dict[str, Any], state: str) -> dict[str, str]:
        """The next free side of ``state`` for a self-loop (Graphviz stacks them on one side otherwise)."""
        port = next(ports[state], None)
        return {"tailport": port, "headport": port} if port else {}

    def render(self, path: str | Path | None = None, format: str | None = None, *,  # noqa: A002
               show_stay: bool = False, observed: RunResult | None = None, view: bool = False,
               label_style: str = "spaced") -> str:
        """Write the graph and return the path of the file rendered.

        ``render(path)`` writes svg, png, pdf or DOT source (``format``, else the suffix, else svg).
        ``render()`` with no path does what doge-datagen's does: the DOT source to
        ``doctest-output/out.gv`` (relative to the current directory) and its rendering next to it,
        ``out.gv.pdf`` (or ``out.gv.<format>``). Any ``*.gv`` path works the same way.
        ``view=True`` opens the rendered file with the desktop's viewer (doge-datagen always did;
        here it is off by default, so nothing tries to open a window on a headless machine).
        """
        path = Path(DEFAULT_RENDER_PATH if path is None else path)
        source_path: Path | None = None
        if path.suffix.lower() == ".gv":  # graphviz's convention: source here, rendering beside it
            source_path = path
            fmt = (format or "pdf").lower()
            out = path if fmt == "dot" else path.with_name(f"{path.name}.{fmt}")
        else:
            fmt = (format or path.suffix.lstrip(".") or "svg").lower()
            out = path if path.suffix.lstrip(".").lower() == fmt else path.with_name(f"{path.name}.{fmt}")
        if fmt not in _FORMATS:
            raise ModelError(f"unsupported graph format {fmt!r}; use one of {', '.join(_FORMATS)}")
        graph = self.generate_graph(show_stay=show_stay, observed=observed, label_style=label_style)
        if fmt != "dot" and shutil.which("dot") is None:
            raise GraphvizMissingError(
                "Graphviz's `dot` program is not installed, so the graph cannot be rendered to "
                f"{fmt}. Install it (Debian/Ubuntu: `apt-get install -y graphviz`; macOS: "
                "`brew install graphviz`) or render with format='dot' to get the DOT source.")
        out.parent.mkdir(parents=True, exist_ok=True)
        if source_path is not None:
            source_path.write_text(graph.source)
        if fmt == "dot":
            out.write_text(graph.source)
            return str(out)
        data: Any = graph.pipe(format=fmt)
        out.write_bytes(data)
        if view:
            import webbrowser

            webbrowser.open(out.resolve().as_uri())
        return str(out)
