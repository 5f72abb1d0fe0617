"""DataOnlineGeneratorGrapher: DOT source, rendered SVG, a clear error without Graphviz."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import webbrowser
from pathlib import Path

import pytest

from doge_dist import CountingSink, DataOnlineGeneratorGrapher
from doge_dist.report._grapher import GraphvizMissingError
from examples.banking import build_generator

REPO_ROOT = Path(__file__).resolve().parent.parent

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
    # the start marker points only at the initial state
    starts = [(src, dst) for src, dst, _ in edges if src.startswith("__")]
    assert starts == [("__start", "offline")]


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


# -- doge-datagen's render() and labels --------------------------------------------------------


def test_render_without_a_path_writes_what_doge_datagen_writes(tmp_path, monkeypatch, dot_binary):
    """doge-datagen's ``render()``: DOT source in doctest-output/out.gv, its PDF rendering beside it."""
    monkeypatch.chdir(tmp_path)
    out = DataOnlineGeneratorGrapher(banking()).render()
    assert out == str(Path("doctest-output") / "out.gv.pdf")
    source = (tmp_path / "doctest-output" / "out.gv").read_text()
    assert source.startswith("digraph") and "login (P=0.1%)" in source
    assert (tmp_path / "doctest-output" / "out.gv.pdf").read_bytes().startswith(b"%PDF")


def test_render_gv_path_takes_a_format(tmp_path, dot_binary):
    out = DataOnlineGeneratorGrapher(banking()).render(tmp_path / "g" / "model.gv", format="svg")
    assert out == str(tmp_path / "g" / "model.gv.svg")
    assert (tmp_path / "g" / "model.gv").read_text().startswith("digraph")
    assert "<svg" in (tmp_path / "g" / "model.gv.svg").read_text()


def test_render_gv_path_as_dot_needs_no_graphviz(tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.chdir(tmp_path)
    out = DataOnlineGeneratorGrapher(banking()).render(format="dot")
    assert out == str(Path("doctest-output") / "out.gv")
    assert (tmp_path / "doctest-output" / "out.gv").read_text().startswith("digraph")
    assert sorted(p.name for p in (tmp_path / "doctest-output").iterdir()) == ["out.gv"]


def test_render_opens_a_viewer_only_when_asked(tmp_path, monkeypatch, dot_binary):
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    grapher = DataOnlineGeneratorGrapher(banking())
    grapher.render(tmp_path / "quiet.svg")
    monkeypatch.chdir(tmp_path)
    grapher.render()
    assert opened == []  # doge-datagen always opened one; a headless machine must not try
    grapher.render(tmp_path / "shown.svg", view=True)
    assert opened == [(tmp_path / "shown.svg").resolve().as_uri()]


def test_doge_label_style_matches_doge_datagen():
    _, edges = parse(DataOnlineGeneratorGrapher(banking()).generate_graph(label_style="doge").source)
    labels = [label(attrs) for src, _, attrs in edges if not src.startswith("__")]
    # doge-datagen's graph.py: f"{transition.trigger}(P={transition.probability}%)"
    assert labels == ["income(P=0.01%)", "spending(P=0.1%)", "login(P=0.1%)", "logout(P=70%)",
                      "open_loan_screen(P=30%)", "close_loan_screen(P=40%)", "take_loan(P=10%)"]


def test_doge_label_style_in_render(tmp_path):
    DataOnlineGeneratorGrapher(banking()).render(tmp_path / "m.dot", label_style="doge", show_stay=True)
    text = (tmp_path / "m.dot").read_text()
    assert 'label="logout(P=70%)"' in text and 'label="stay(P=50%)"' in text


def test_unknown_label_style_is_rejected():
    with pytest.raises(ValueError, match="label_style must be one of 'spaced', 'doge', got 'fancy'"):
        DataOnlineGeneratorGrapher(banking()).generate_graph(label_style="fancy")


# -- layout -------------------------------------------------------------------------------------


def _laid_out(source: str) -> tuple[list[tuple[str, tuple[float, ...]]], list[tuple[float, ...]]]:
    """Text boxes of every label and xlabel, and boxes of the start marker and its arrow.

    From Graphviz's own layout (``dot -Tjson``): each text op gives its anchor point, alignment
    and width; the height is taken as the font size (from baseline -0.25 to +0.85 of it).
    """
    layout = json.loads(subprocess.run(["dot", "-Tjson"], input=source, capture_output=True, text=True,
                                       check=True, timeout=60).stdout)
    names = {obj["_gvid"]: obj["name"] for obj in layout["objects"]}
    texts: list[tuple[str, tuple[float, ...]]] = []
    start: list[tuple[float, ...]] = []

    def add_texts(ops):
        size = 14.0
        for op in ops:
            if op["op"] == "F":
                size = op["size"]
            elif op["op"] == "T":
                x, y = op["pt"]
                width = op["width"]
                left = {"c": x - width / 2, "l": x, "r": x - width}[op["align"]]
                texts.append((op["text"], (left, y - 0.25 * size, left + width, y + 0.85 * size)))

    for obj in layout["objects"]:
        add_texts(obj.get("_ldraw_", []) + obj.get("_xldraw_", []))  # the xlabel may be in either
        if obj["name"] == "__start":
            x, y = map(float, obj["pos"].split(","))
            r = float(obj["width"]) * 36
            start.append((x - r, y - r, x + r, y + r))
    for edge in layout["edges"]:
        add_texts(edge.get("_ldraw_", []))
        if names[edge["tail"]] == "__start":
            for op in edge["_draw_"] + edge.get("_hdraw_", []):
                if op.get("points"):
                    xs, ys = zip(*op["points"])
                    start.append((min(xs), min(ys), max(xs), max(ys)))
    assert start, "no start marker in the layout"
    return texts, start


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize("show_stay,observed", [(False, False), (True, False), (True, True)])
def test_labels_overlap_neither_each_other_nor_the_start_marker(show_stay, observed, dot_binary):
    gen = banking(seed=4, subjects=200, ticks=200)
    result = gen.start() if observed else None
    source = DataOnlineGeneratorGrapher(gen).generate_graph(show_stay=show_stay, observed=result).source
    texts, start = _laid_out(source)
    assert {"initial", "offline", "logout (P=70%)"} <= {text for text, _ in texts}
    for text, box in texts:
        for marker in start:
            assert not _overlap(box, marker), f"label {text!r} overlaps the start marker"
    for i, (text, box) in enumerate(texts):
        for other, other_box in texts[i + 1:]:
            assert not _overlap(box, other_box), f"labels {text!r} and {other!r} overlap"


def test_the_overlap_check_sees_an_overlap(dot_binary):
    """The check above can fail: a stay loop on the initial state's north-east corner puts its label
    on the start marker (the layout docs/banking.svg had before the fix)."""
    source = DataOnlineGeneratorGrapher(banking()).generate_graph(show_stay=True).source
    source = source.replace("__start -> offline [headport=nw]", "__start -> offline")
    source = source.replace("headport=w style=dashed tailport=w", "headport=ne style=dashed tailport=ne")
    texts, start = _laid_out(source)
    assert any(_overlap(box, marker) for _, box in texts for marker in start)


def test_docs_banking_svg_is_what_the_graph_command_draws(tmp_path, dot_binary):
    """docs/banking.svg is regenerated whenever the drawing changes (with the same Graphviz version)."""
    docs = REPO_ROOT / "docs" / "banking.svg"
    committed = docs.read_text()
    version = subprocess.run(["dot", "-V"], capture_output=True, text=True, timeout=30).stderr
    made_by = re.search(r"Generated by graphviz version ([^\s]+)", committed).group(1)
    if made_by not in version:
        pytest.skip(f"docs/banking.svg was drawn by Graphviz {made_by}, this is {version.strip()}")
    out = tmp_path / "banking.svg"
    subprocess.run([sys.executable, "-m", "doge_dist", "graph", "examples/banking.py:build_generator", "-o",
                    str(out), "--stay"], cwd=REPO_ROOT, check=True, capture_output=True, timeout=120)
    assert out.read_text() == committed, (
        "docs/banking.svg is out of date; regenerate it with `doge-dist graph "
        "examples/banking.py:build_generator -o docs/banking.svg --stay`")
