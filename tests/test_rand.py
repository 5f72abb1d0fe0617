"""doge_dist.rand follows the seed rule: every draw is a function of (seed, subject index, tick).

Every public function is drawn in the callbacks (and the factory) of a seeded model, and the
events must be identical on a rerun in the same process and on 1 or 2 Ray workers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from doge_dist import DataOnlineGenerator, JsonLinesSink, SubjectFactory, rand
from doge_dist.rand import KeyedRandom

REPO_ROOT = Path(__file__).resolve().parent.parent

# the functions a callback can draw from; KeyedRandom and rekey are the machinery
PUBLIC_FUNCTIONS = ["random", "randrange", "randint", "choice", "choices", "uniform", "gauss",
                    "normalvariate", "expovariate", "shuffle", "sample", "getrandbits"]


def test_every_public_function_is_covered_here():
    assert set(rand.__all__) - {"KeyedRandom", "rekey"} == set(PUBLIC_FUNCTIONS)
    assert set(DRAWS) == set(PUBLIC_FUNCTIONS)


# -- unit: the stream after rekey(k) is a function of k only -----------------------------------


def test_rekey_drops_the_gaussian_left_over_by_the_previous_key():
    rand.rekey(11)
    first = rand.gauss()  # gauss makes two values and keeps the second for the next call
    rand.rekey(11)
    assert rand.gauss() == first
    rand.rekey(12)
    other = rand.gauss()
    rand.rekey(11)
    rand.gauss()
    rand.rekey(12)
    assert rand.gauss() == other


def test_keyed_random_rekey_method_drops_the_left_over_gaussian_too():
    gen = KeyedRandom(5)
    gen.rekey(99)
    first = gen.gauss(10, 2)
    gen.rekey(99)
    assert gen.gauss(10, 2) == first
    assert gen.gauss(10, 2) != first  # the second of the pair, from the same key: still allowed


@pytest.mark.parametrize("seed", ["abc", b"abc", bytearray(b"abc")])
def test_string_seed_gives_the_same_stream_in_every_process(seed):
    """``hash()`` of a str differs per process (PYTHONHASHSEED); the key must come from the bytes."""
    code = (f"from doge_dist.rand import KeyedRandom\n"
            f"r = KeyedRandom({seed!r})\n"
            "print([r.random(), r.randrange(10**6), r.gauss()])\n")
    outputs = set()
    for hash_seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                              cwd=REPO_ROOT, timeout=60, check=True)
        outputs.add(done.stdout.strip())
    here = KeyedRandom(seed)
    assert outputs == {str([here.random(), here.randrange(10**6), here.gauss()])}
    assert KeyedRandom("abc").random() != KeyedRandom("abd").random()


def test_seed_types_like_random_seed():
    assert KeyedRandom(1.5).random() == KeyedRandom(1.5).random()
    assert KeyedRandom(7).random() == KeyedRandom(7).random() != KeyedRandom(8).random()
    with pytest.raises(TypeError, match="supported seed types"):
        KeyedRandom([1, 2])


def test_state_round_trips_including_the_left_over_gaussian():
    gen = KeyedRandom("state")
    gen.gauss()
    copy = KeyedRandom()
    copy.setstate(gen.getstate())
    assert [copy.gauss(), copy.random()] == [gen.gauss(), gen.random()]


# -- a seeded model drawing every function -----------------------------------------------------


@dataclass
class Account:
    index: int
    opening: float
    draws: dict[str, Any] | None = None


class Accounts(SubjectFactory):
    def create(self, index):
        return Account(index, rand.random())


def _shuffled() -> list[int]:
    items = list(range(10))
    rand.shuffle(items)
    return items


DRAWS = {
    "random": lambda: rand.random(),
    # the inlined small-range path, the path through Random.randrange, a step
    "randrange": lambda: [rand.randrange(1_000_000), rand.randrange(10, 10**30), rand.randrange(0, 1000, 7)],
    "randint": lambda: rand.randint(-50, 50),
    "choice": lambda: rand.choice("abcdefghij"),
    "choices": lambda: rand.choices(range(100), k=3) + rand.choices("xyz", weights=[1, 2, 3], k=2),
    "uniform": lambda: rand.uniform(2.5, 7.5),
    "gauss": lambda: rand.gauss(100, 15),  # one per call: the pair's second value is left over
    "normalvariate": lambda: rand.normalvariate(0, 1),
    "expovariate": lambda: rand.expovariate(0.5),
    "shuffle": _shuffled,
    "sample": lambda: rand.sample(range(1000), 4),
    "getrandbits": lambda: [rand.getrandbits(20), rand.getrandbits(64), rand.getrandbits(130)],
}


def draw_everything(account: Account, transition) -> bool:
    account.draws = {name: draw() for name, draw in DRAWS.items()}
    return rand.random() < 0.9  # and some vetoes


def record(timestamp: int, account: Account, transition) -> dict[str, Any]:
    return {"t": timestamp, "i": account.index, "trigger": transition.trigger, "opening": account.opening,
            **(account.draws or {})}


SUBJECTS, TICKS = 1_500, 40  # more than one factory block (1,024), so shards split a block


def run_model(out: Path, workers: int | None) -> list[dict[str, Any]]:
    """Run the model (in this process when ``workers`` is None, else on Ray); events sorted."""
    sink = JsonLinesSink(str(out / "events-{shard}.jsonl"), record)
    gen = DataOnlineGenerator(["a", "b"], "a", Accounts(), SUBJECTS, 1000, TICKS, seed=2024,
                              reseed_python_random=False)
    gen.add_transition("go", "a", "b", 15, draw_everything, [sink])
    gen.add_transition("back", "b", "a", 40, draw_everything, [sink])
    gen.add_transition("plain", "b", "b", 10, event_sinks=[sink])
    result = gen.start() if workers is None else gen.start(workers=workers, backend="ray")
    events = [json.loads(line) for path in sorted(out.glob("events-*.jsonl"))
              for line in path.read_text().splitlines()]
    assert len(events) == result.total_events
    return sorted(events, key=lambda e: (e["t"], e["i"]))


@pytest.fixture(scope="module")
def in_process(tmp_path_factory) -> list[dict[str, Any]]:
    return run_model(tmp_path_factory.mktemp("in-process"), None)


def test_model_draws_every_function_and_vetoes_some(in_process):
    drawn = [e for e in in_process if e["trigger"] != "plain"]
    assert len(drawn) > 2_000
    assert all(set(PUBLIC_FUNCTIONS) <= set(e) for e in drawn)
    assert len({e["gauss"] for e in drawn}) == len(drawn)  # really random, not a constant
    assert len({e["opening"] for e in in_process}) > 1_000


def test_rerun_in_the_same_process_gives_the_same_values(in_process, tmp_path):
    rand.rekey(123)
    rand.gauss()  # leave a Gaussian behind, as a callback outside the run might
    again = run_model(tmp_path, None)
    for name in ["opening", *PUBLIC_FUNCTIONS]:
        differing = [e for e, f in zip(in_process, again) if e.get(name) != f.get(name)]
        assert not differing, f"rand.{name} gave other values on a rerun, e.g. {differing[0]}"
    assert again == in_process


@pytest.mark.ray
@pytest.mark.parametrize("workers", [1, 2])
def test_same_values_on_ray_workers(in_process, tmp_path, ray_session, workers):
    ray_session.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    on_ray = run_model(tmp_path, workers)
    assert len(on_ray) == len(in_process)
    for name in ["opening", *PUBLIC_FUNCTIONS]:
        differing = [(e, f) for e, f in zip(in_process, on_ray) if e.get(name) != f.get(name)]
        assert not differing, f"rand.{name} differs on {workers} worker(s), e.g. {differing[0]}"
    assert on_ray == in_process
