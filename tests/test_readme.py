"""The README's examples run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_the_model_example_runs_as_written(tmp_path):
    block = python_blocks()[0]
    assert "DataOnlineGenerator" in block
    proc = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    events = [line for line in lines if line.startswith("[")]
    total, counts, rate = lines[-1].split(" ", 1)[0], lines[-1], lines[-1]
    assert int(total) == len(events) > 1000
    assert "'login':" in counts and "events/s" in rate


def test_readme_commands_name_real_files_and_flags():
    from doge_dist.cli import build_parser

    parser = build_parser()
    commands = re.findall(r"^(doge-dist [^#\n]+?)\s*(?:#.*)?$", README, flags=re.M)
    commands += re.findall(r"&& (doge-dist [^\n`]+)", README)
    assert len(commands) >= 6
    for command in commands:
        args = command.split()[1:]
        if "HEAD" in command:
            args = [a.replace("HEAD", "127.0.0.1") for a in args]
        parser.parse_args(args)  # exits (fails the test) on an unknown command or flag
        for arg in args:
            if arg.startswith("examples/"):
                assert (REPO / arg.split(":")[0]).exists(), arg
