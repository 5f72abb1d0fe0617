"""The README's examples run as written, and its commands name real files and flags."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_the_model_example_runs_as_written(tmp_path):
    block = blocks("python")[0]
    assert "DataOnlineGenerator" in block
    proc = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    events = [line for line in lines if line.startswith("[")]
    total, counts, rate = lines[-1].split(" ", 1)[0], lines[-1], lines[-1]
    assert int(total) == len(events) > 1000
    assert "'login':" in counts and "events/s" in rate


@pytest.mark.parametrize("index", range(1, len(blocks("python"))))
def test_every_other_python_example_runs_as_written(index, tmp_path):
    """Every ```python block is a whole program (fragments use ```py)."""
    proc = subprocess.run([sys.executable, "-c", blocks("python")[index]], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip(), "an example prints what it made"


def readme_commands() -> list[list[str]]:
    """The doge-dist commands of the ```bash blocks (leading VAR=value assignments dropped)."""
    out = []
    for block in blocks("bash"):
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip()
            if "doge-dist " not in line:
                continue
            words = shlex.split(line[line.index("doge-dist "):].split("&&")[0])
            out.append(words)
    return out


def test_readme_commands_name_real_files_and_flags():
    from doge_dist.cli import build_parser

    parser = build_parser()
    commands = readme_commands()
    assert len(commands) >= 15
    for words in commands:
        args = [a.replace("HEAD", "127.0.0.1") for a in words[1:]]
        parser.parse_args(args)  # exits (fails the test) on an unknown command or flag
        for arg in args:
            if arg.startswith("examples/"):
                assert (REPO / arg.split(":")[0]).exists(), arg
