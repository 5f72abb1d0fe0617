"""Install doge-datagen 1.0.4 (the reference) into benchmarks/.peer without touching the environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PEER_DIR = Path(__file__).resolve().parent / ".peer"


def ensure_doge_datagen() -> Path:
    """pip install --no-deps --target benchmarks/.peer doge-datagen==1.0.4 (once); return the path.

    --no-deps: 1.0.4 pins old confluent-kafka/fastavro releases that no longer build; the
    engine itself needs none of them, and the installed clients satisfy its imports.
    """
    if not (PEER_DIR / "doge_datagen" / "doge.py").exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                        str(PEER_DIR), "doge-datagen==1.0.4"], check=True)
    return PEER_DIR
