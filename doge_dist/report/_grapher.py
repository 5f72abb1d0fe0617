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

__all__ = ["DataOnlineGeneratorGrapher", "GraphvizMissingError"]

_FORMATS = ("svg", "png", "pdf", "dot")


class GraphvizMissingError(RuntimeError):
    """Graphviz's ``dot`` program is not installed."""


_LOOP_PORTS = ("n", "s", "ne", "se", "nw", "sw")  # rankdir=LR: e/w carry the edges


class _Stay:
    """A stand-in transition for a stay self-loop (only its states matter for port placement)."""

    def __init__(self, state: str) -> None:
        self.from_state = self.to_state = state


def _loop_ports(tr: object, loops_at: dict[str, int]) -> dict[str, str]:
    """Spread a state's self-loops around it (Graphviz stacks them on one side otherwise)."""
    if tr.from_state != tr.to_state:
        return {}
    k = loops_at.get(tr.from_state, 0)
    loops_at[tr.from_state] = k + 1
    if k >= len(_LOOP_PORTS):
        return {}
    return {"tailport": _LOOP_PORTS[k], "headport": _LOOP_PORTS[k]}


def _fmt(probability: float) -> str:
    return f"{float(probability):g}"


class DataOnlineGeneratorGrapher:
    """Builds a ``graphviz.Digraph`` of a generator's state machine."""

    def __init__(self, generator: DataOnlineGenerator) -> None:
        self.generator = generator

    def generate_graph(self, *, show_stay: bool = False, observed: RunResult | None = None,
                       name: str = "doge") -> graphviz.Digraph:
        """One node per state (the initial one marked), one edge per transition.

        ``show_stay`` adds a dashed self-loop with each state's stay probability; ``observed``
        (a RunResult) adds the counted events and per-tick rate to each edge label.
        """
        import graphviz

        gen = self.generator
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
        graph.edge("__start", gen.initial_state)
        counts = observed.events_by_transition if observed is not None else None
        loops_at: dict[str, int] = {}
        for tr in gen.transitions:
            label = f"{tr.trigger} (P={_fmt(tr.probability)}%)"
            if counts is not None:
                n = counts.get(f"{tr.from_state}:{tr.trigger}", 0)
                per_tick = n / observed.ticks if observed.ticks else 0.0
                label += f"\\n{n:,} events ({per_tick:.3g}/tick)"
            graph.edge(tr.from_state, tr.to_state, label=label, **_loop_ports(tr, loops_at))
        if show_stay:
            totals: dict[str, float] = {s: 0.0 for s in gen.states}
            for tr in gen.transitions:
                totals[tr.from_state] += float(tr.probability)
            for state, total in totals.items():
                if total >= 100:
                    continue  # no chance of staying
                ports = _loop_ports(_Stay(state), loops_at)
                graph.edge(state, state, label=f"stay (P={_fmt(100 - total)}%)", style="dashed",
                           color="gray50", fontcolor="gray40", **ports)
        return graph

    def render(self, path: str | Path, format: str | None = None, *, show_stay: bool = False,  # noqa: A002
               observed: RunResult | None = None, view: bool = False) -> str:
        """Write the graph to ``path`` (svg, png, pdf, or dot source) and return the path written."""
        path = Path(path)
        fmt = (format or path.suffix.lstrip(".") or "svg").lower()
        if fmt not in _FORMATS:
            raise ModelError(f"unsupported graph format {fmt!r}; use one of {', '.join(_FORMATS)}")
        if path.suffix.lstrip(".").lower() != fmt:
            path = path.with_name(path.name + "." + fmt)
        graph = self.generate_graph(show_stay=show_stay, observed=observed)
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "dot":
            path.write_text(graph.source)
            return str(path)
        if shutil.which("dot") is None:
            raise GraphvizMissingError(
                "Graphviz's `dot` program is not installed, so the graph cannot be rendered to "
                f"{fmt}. Install it (Debian/Ubuntu: `apt-get install -y graphviz`; macOS: "
                "`brew install graphviz`) or render with format='dot' to get the DOT source.")
        data: Any = graph.pipe(format=fmt)
        path.write_bytes(data)
        if view:
            import webbrowser

            webbrowser.open(path.resolve().as_uri())
        return str(path)
