"""Rewrite ``banking-seed7.jsonl`` deliberately, when the seeded output is meant to change.

    PYTHONPATH=. python3 tests/golden/regenerate.py

Run it from the repository root, look at ``git diff --stat tests/golden``, and commit the new file
with a message saying why the stream changed (every seeded run of every user changes with it).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

__all__ = ["main"]

sys.path.insert(0, str(Path(__file__).resolve().parent))

import golden_model  # noqa: E402 - found through the path set just above


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stream = golden_model.run(Path(tmp))
    golden_model.GOLDEN_FILE.write_bytes(stream)
    events = stream.count(b"\n")
    print(f"wrote {golden_model.GOLDEN_FILE} ({events} events, {len(stream):,} bytes)")


if __name__ == "__main__":
    main()
