"""DataOnlineGeneratorGrapher: DOT source, rendered SVG, a clear error without Graphviz."""

from __future__ import annotations

import re

import pytest

from doge_dist import CountingSink, DataOnlineGeneratorGrapher
from doge_dist.report._grapher import GraphvizMissingError
from examples.banking import build_generator

STATES = ["offline", "online", "loan_screen"]
TRIGGERS = ["income", "spending", "login", "logout", "open_loan_screen", "close_loan_screen", "take_loan"]

NODE = re.compile(r"^\s*(\w+) \[(.*)\]$")
EDGE = re.compile(r"^\s*(\w+) -> (\w+)(?: \[(.*)\])?$")


def banking(seed=1, subjects=10, ticks=100):
    return build_generator(CountingSink(), subjects=subjects, ticks=ticks, seed=seed)


def parse(source: str) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    nodes: dict[str, str] = {}
    edges: list[tuple[str, str, str]] = []
    for line in source.splitlines():
        if m := EDGE.match(line):
            edges.append((m.group(1), m.group(2), m.group(3) or ""))
        elif (m := NODE.match(line)) and m.group(1) not in ("graph", "node", "edge"):
            assert m.group(1) not in nodes, f"node {m.group(1)} declared twice"
            nodes[m.group(1)] = m.group(2)
    return nodes, edges


def label(attrs: str) -> str:
    m = re.search(r'label="([^"]*)"', attrs)
    return m.group(1) if m else ""


def test_one_node_per_state_and_initial_marked():
    nodes, edges = parse(DataOnlineGeneratorGrapher(banking()).generate_graph().source)
    state_nodes = {name: attrs for name, attrs in nodes.items() if not name.startswith("__")}
    assert sorted(state_nodes) == sorted(STATES)
    marked = [name for name, attrs in state_nodes.items() if "initial" in attrs]
    assert marked == ["offline"]
    # the start marker (if any) points only at the initial state
    starts = [(src, dst) for src, dst, _ in edges if src.startswith("__")]
    assert starts in ([], [("__start", "offline")])


def test_one_edge_per_transition_labelled_with_probability():
    _, edges = parse(DataOnlineGeneratorGrapher(banking()).generate_graph().source)
    transitions = [(src, dst, label(attrs)) for src, dst, attrs in edges if not src.startswith("__")]
    assert transitions == [
        ("offline", "offline", "income (P=0.01%)"),
        ("offline", "offline", "spending (P=0.1%)"),
        ("offline", "online", "login (P=0.1%)"),
        ("online", "offline", "logout (P=70%)"),
        ("online", "loan_screen", "open_loan_screen (P=30%)"),
        ("loan_screen", "online", "close_loan_screen (P=40%)"),
        ("loan_screen", "online", "take_loan (P=10%)"),
    ]


def test_show_stay_adds_self_loops_with_stay_probability():
    plain = parse(DataOnlineGeneratorGrapher(banking()).generate_graph().source)[1]
    _, edges = parse(DataOnlineGeneratorGrapher(banking()).generate_graph(show_stay=True).source)
    stays = {src: label(attrs) for src, dst, attrs in edges if label(attrs).startswith("stay")}
    assert stays["offline"] == "stay (P=99.79%)"
    assert stays["loan_screen"] == "stay (P=50%)"
    assert set(stays) <= set(STATES)
    assert all(src == dst for src, dst, attrs in edges if label(attrs).startswith("stay"))
    assert len(edges) == len(plain) + len(stays)


def test_observed_counts_are_added_to_labels():
    gen = banking(seed=4, subjects=500, ticks=300)
    result = gen.start()
    _, edges = parse(DataOnlineGeneratorGrapher(gen).generate_graph(observed=result).source)
    labels = {label(attrs).split(" ")[0]: label(attrs) for src, _, attrs in edges if not src.startswith("__")}
    assert set(labels) == set(TRIGGERS)
    for trigger in TRIGGERS:
        count = result.events_by_trigger[trigger]
        assert f"{count:,} events" in labels[trigger], (trigger, labels[trigger])
    assert result.events_by_trigger["login"] > 0


def test_render_svg(tmp_path, dot_binary):
    out = DataOnlineGeneratorGrapher(banking()).render(tmp_path / "m.svg")
    text = (tmp_path / "m.svg").read_text()
    assert out.endswith("m.svg")
    assert text.lstrip().startswith("<?xml") or text.lstrip().startswith("<svg")
    assert "<svg" in text and "</svg>" in text
    for state in STATES:
        assert state in text
    assert "login (P=0.1%)" in text


def test_render_format_argument_adds_suffix(tmp_path, dot_binary):
    out = DataOnlineGeneratorGrapher(banking()).render(tmp_path / "model", format="svg")
    assert out.endswith("model.svg")
    assert "<svg" in (tmp_path / "model.svg").read_text()


def test_render_dot_source_needs_no_graphviz(tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    out = DataOnlineGeneratorGrapher(banking()).render(tmp_path / "m.dot", format="dot")
    text = (tmp_path / "m.dot").read_text()
    assert out.endswith("m.dot")
    assert text.startswith("digraph")
    assert "logout (P=70%)" in text


def test_missing_dot_raises_a_clear_error(tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(GraphvizMissingError) as info:
        DataOnlineGeneratorGrapher(banking()).render(tmp_path / "m.svg")
    message = str(info.value)
    assert "Graphviz" in message
    assert "apt-get install" in message and "graphviz" in message
    assert "format='dot'" in message
    assert not (tmp_path / "m.svg").exists()


def test_unknown_format_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="unsupported graph format 'gif'"):
        DataOnlineGeneratorGrapher(banking()).render(tmp_path / "m.gif")
