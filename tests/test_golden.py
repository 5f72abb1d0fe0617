"""A seeded run reproduces a committed stream byte for byte, in this process and on 2 Ray workers.

The golden file pins the seed rule across versions: the engine's own draws (which transition, when
a subject next acts) and ``doge_dist.rand`` in the factory and callbacks. If a change is *meant* to
alter seeded output, regenerate it deliberately (see REGENERATE) and say why in the commit.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
REGENERATE = ("If the seeded output is meant to change, regenerate the golden file deliberately with "
              "`PYTHONPATH=. python3 tests/golden/regenerate.py` and commit it, saying why every seeded "
              "run changes. Otherwise this is a reproducibility bug: same model + same seed must give "
              "the same events.")


def _load_model():
    spec = importlib.util.spec_from_file_location("golden_model", GOLDEN_DIR / "golden_model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling need the module registered
    spec.loader.exec_module(module)
    return module


golden_model = sys.modules.get("golden_model") or _load_model()


def first_difference(expected: bytes, got: bytes) -> str:
    want, have = expected.splitlines(), got.splitlines()
    for number, (a, b) in enumerate(zip(want, have), start=1):
        if a != b:
            return f"first difference at line {number}:\n  golden: {a.decode()}\n  now:    {b.decode()}"
    return f"the golden file has {len(want)} lines, the run wrote {len(have)}"


def assert_golden(stream: bytes, where: str) -> None:
    golden = golden_model.GOLDEN_FILE.read_bytes()
    if stream != golden:
        pytest.fail(f"the seeded stream {where} differs from {golden_model.GOLDEN_FILE.name}: "
                    f"{first_difference(golden, stream)}\n{REGENERATE}", pytrace=False)


def test_golden_file_is_small_and_rich():
    golden = golden_model.GOLDEN_FILE.read_bytes()
    assert len(golden) < 300_000
    for trigger in (b"income", b"spending", b"login", b"logout", b"open_loan_screen", b"close_loan_screen",
                    b"take_loan"):
        assert b'"trigger":"%s"' % trigger in golden, trigger
    assert b'"i":1100' in golden  # a subject beyond the first factory block


def test_in_process_run_matches_the_golden_stream(tmp_path):
    assert_golden(golden_model.run(tmp_path), "in this process")


@pytest.mark.ray
def test_two_ray_workers_match_the_golden_stream(tmp_path, ray_session):
    ray_session.cloudpickle.register_pickle_by_value(golden_model)
    assert_golden(golden_model.run(tmp_path, workers=2), "on 2 Ray workers")
