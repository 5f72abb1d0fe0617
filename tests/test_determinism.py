"""Seeded runs are reproducible, and every draw is a function of (seed, subject index, tick) only.

So splitting the population into shards, or the ticks into windows, cannot change the output.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

import pytest

from doge_dist import DataOnlineGenerator, EventSink, SimulationError, SubjectFactory, rand
from doge_dist.engine import _shard_engine as _engine
from doge_dist.engine._keyed import seed_key
from doge_dist.engine._shard_engine import ShardEngine
from examples.banking import UserFactory, build_generator


class EventList(EventSink):
    """Records a snapshot of each banking event (the user object is mutable, so copy its fields)."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.closed = 0

    def collect(self, timestamp, user, transition) -> None:
        self.events.append((timestamp, user.user_id, transition.trigger, user.balance, user.loan_balance,
                            user.last_payment))

    def close(self) -> None:
        self.closed += 1

    def by_subject(self) -> dict[int, list[tuple]]:
        out: dict[int, list[tuple]] = defaultdict(list)
        for event in self.events:
            out[event[1]].append(event)
        return dict(out)


def banking_events(seed, subjects=300, ticks=1000) -> list[tuple]:
    sink = EventList()
    build_generator(sink, subjects=subjects, ticks=ticks, seed=seed).start()
    return sink.events


@pytest.fixture(autouse=True)
def keep_global_random():
    """Tests below drive ShardEngine directly with reseed_python_random=True; leave no trace."""
    state = random.getstate()
    yield
    random.setstate(state)


# -- whole runs ------------------------------------------------------------------------------


def test_same_seed_same_events_different_seed_different_events():
    first = banking_events(seed=42)
    second = banking_events(seed=42)
    other = banking_events(seed=43)
    assert len(first) > 100
    assert first == second
    assert first != other
    # the callbacks' draws (Python's random) are part of what is reproduced
    assert any(event[2] == "spending" and event[5] > 0 for event in first)


def test_factory_draws_are_reproduced():
    class Recording(UserFactory):
        def __init__(self) -> None:
            super().__init__()
            self.balances: list[int] = []

        def create(self):
            user = super().create()
            self.balances.append(user.balance)
            return user

    runs = []
    for seed in (5, 5, 6):
        gen = build_generator(EventList(), subjects=200, ticks=1, seed=seed)
        gen.subject_factory = Recording()
        gen.start()
        runs.append(gen.subject_factory.balances)
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert len(set(runs[0])) > 100  # really random balances, not a constant


def test_global_random_state_is_restored_after_a_seeded_run():
    random.seed(2024)
    before = random.getstate()
    banking_events(seed=1, subjects=50, ticks=200)
    assert random.getstate() == before


def test_global_random_state_is_restored_when_a_callback_fails():
    def failing(subject, transition):
        random.random()
        raise KeyError("nope")

    gen = DataOnlineGenerator(["a"], "a", UserFactory(), 3, 1000, 5, seed=1)
    gen.add_transition("loop", "a", "a", 100, failing)
    random.seed(7)
    before = random.getstate()
    with pytest.raises(SimulationError):
        gen.start()
    assert random.getstate() == before


def test_doge_dist_rand_draws_in_callbacks_are_reproducible():
    def build(seed: int, reseed_python_random: bool) -> tuple[DataOnlineGenerator, EventList]:
        sink = EventList()

        def spend(user, transition):
            user.last_payment = rand.randrange(1, 1_000_000)
            user.balance += rand.randint(-5, 5)
            return rand.random() < 0.8

        # the factory draws nothing: with reseed_python_random=False Python's random is not keyed
        gen = DataOnlineGenerator(["a", "b"], "a", FixedAccounts(), 100, 1000, 100, seed=seed,
                                  reseed_python_random=reseed_python_random)
        gen.add_transition("spend", "a", "b", 20, spend, [sink])
        gen.add_transition("back", "b", "a", 50, spend, [sink])
        return gen, sink

    for reseed in (True, False):
        results = []
        for seed in (8, 8, 9):
            gen, sink = build(seed, reseed)
            vetoed = gen.start().total_vetoed
            results.append((sink.events, vetoed))
        assert results[0] == results[1], reseed
        assert results[0][0] != results[2][0], reseed
        assert results[0][1] > 0  # some draws vetoed


def test_random_seed_before_start_repeats_an_unseeded_run():
    """doge-datagen's way: ``random.seed(42)`` before ``start()``, no ``seed=``. The engine's key is one
    ``getrandbits(64)`` from Python's random, and the factory and callbacks draw from it too."""
    runs = []
    for _ in range(2):
        random.seed(42)
        runs.append(banking_events(seed=None, subjects=300, ticks=1000))
    random.seed(43)
    other = banking_events(seed=None, subjects=300, ticks=1000)
    assert len(runs[0]) > 100
    assert runs[0] == runs[1]
    assert runs[0] != other
    # the values the factory (opening balance) and the callbacks (payments) drew are reproduced
    assert len({event[3] for event in runs[0]}) > 50
    assert any(event[2] == "spending" and event[5] > 0 for event in runs[0])


def test_unseeded_runs_differ():
    first = banking_events(seed=None, subjects=300, ticks=500)
    second = banking_events(seed=None, subjects=300, ticks=500)
    # ~1,000 events each; two independent runs agreeing on all of them has negligible probability
    assert len(first) > 100 and len(second) > 100
    assert first != second


# -- the keyed property: shards and windows do not change the draws ---------------------------


@dataclass
class Account:
    user_id: int
    balance: int
    loan_balance: int = 0
    last_payment: int = 0


class IndexedAccounts(SubjectFactory):
    """create(self, index): numbers accounts by global index, balance from Python's random."""

    def create(self, index):
        return Account(index, random.randrange(0, 1000))


class FixedAccounts(SubjectFactory):
    def create(self, index):
        return Account(index, 500)


class CountingAccounts(SubjectFactory):
    """Zero-argument and numbers accounts itself; ``advance`` is optional and counted."""

    def __init__(self, with_advance: bool = False) -> None:
        self.next_id = 0
        self.created = 0
        self.advanced = 0
        if with_advance:
            self.advance = self._advance

    def create(self):
        account = Account(self.next_id, random.randrange(0, 1000))
        self.next_id += 1
        self.created += 1
        return account

    def _advance(self, count: int) -> None:
        self.advanced += count
        self.next_id += count


def spend(account, transition):
    payment = random.randrange(10, 300) + rand.randrange(0, 5)
    if payment > account.balance:
        return False
    account.balance -= payment
    account.last_payment = payment
    return True


def earn(account, transition):
    account.balance += random.randrange(100, 500)
    return True


def keyed_model(sink: EventList):
    gen = DataOnlineGenerator(["offline", "online"], "offline", IndexedAccounts(), 1, 60_000, 1, seed=3)
    gen.add_transition("earn", "offline", "offline", 1, earn, [sink])
    gen.add_transition("spend", "offline", "offline", 3, spend, [sink])
    gen.add_transition("login", "offline", "online", 2, event_sinks=[sink])
    gen.add_transition("logout", "online", "offline", 40, event_sinks=[sink])
    gen.add_transition("pay", "online", "online", 20, spend, [sink])
    return gen.compile()


def run_engine(model, factory_cls, bounds, windows, *, sink: EventList, run_key: int, **factory_kw):
    """Run ShardEngine over each [start, stop) slice with a fresh factory; return per-subject events."""
    sink.events.clear()
    engines = []
    for shard, (start, stop) in enumerate(bounds):
        engine = ShardEngine.for_range(model, factory_cls(**factory_kw), start, stop, run_key=run_key,
                                       tick_ms=60_000, timestamp_start=1_000, reseed_python_random=True,
                                       shard=shard)
        engine.create_subjects()
        engines.append(engine)
    for engine in engines:  # shard by shard: order across shards must not matter
        for t0, t1 in windows:
            engine.run_window(t0, t1)
    vetoed = sum(int(e.vetoed.sum()) for e in engines)
    return sink.by_subject(), vetoed, engines


# The engine keys the factory's randomness per block of subjects (a shard starting inside a block
# replays the block's earlier subjects); use more subjects than one block so shards cross it.
BLOCK = getattr(_engine, "FACTORY_BLOCK", 1024)
N, T = max(2 * BLOCK + 100, 400), 150
WHOLE = [(0, T)]
WINDOWS = [(0, 1), (1, 37), (37, 100), (100, 149), (149, T)]


@pytest.mark.parametrize("factory_cls,factory_kw", [
    (IndexedAccounts, {}),
    (CountingAccounts, {}),                        # fast-forward by calling create() and discarding
    (CountingAccounts, {"with_advance": True}),    # fast-forward through advance(n)
])
def test_split_population_gives_the_same_per_subject_events(factory_cls, factory_kw):
    sink = EventList()
    model = keyed_model(sink)
    run_key = seed_key(3)
    whole, vetoed_whole, _ = run_engine(model, factory_cls, [(0, N)], WHOLE, sink=sink, run_key=run_key,
                                        **factory_kw)
    halves, vetoed_halves, engines = run_engine(model, factory_cls, [(0, N // 2), (N // 2, N)], WINDOWS,
                                                sink=sink, run_key=run_key, **factory_kw)
    uneven_bounds = [(0, 1), (1, BLOCK - 1), (BLOCK - 1, BLOCK + 1), (BLOCK + 1, BLOCK + 2), (BLOCK + 2, N)]
    uneven, _, _ = run_engine(model, factory_cls, uneven_bounds, WINDOWS,
                              sink=sink, run_key=run_key, **factory_kw)
    assert len(whole) > N * 0.9  # nearly every subject had events
    assert vetoed_whole > 0
    assert halves == whole
    assert uneven == whole
    assert vetoed_halves == vetoed_whole
    second = engines[1]
    assert [a.user_id for a in second.subjects] == list(range(N // 2, N))
    if factory_kw.get("with_advance"):  # skipped subjects went through advance(), none were lost
        assert second.factory.advanced + second.factory.created == N
        assert second.factory.advanced > 0


def test_split_matches_a_generator_run_with_the_same_seed():
    """The in-process start() of a seeded generator equals the two-shard engine run."""
    sink = EventList()
    gen = DataOnlineGenerator(["offline", "online"], "offline", IndexedAccounts(), N, 60_000, T, 1_000,
                              seed=3)
    gen.add_transition("earn", "offline", "offline", 1, earn, [sink])
    gen.add_transition("spend", "offline", "offline", 3, spend, [sink])
    gen.add_transition("login", "offline", "online", 2, event_sinks=[sink])
    gen.add_transition("logout", "online", "offline", 40, event_sinks=[sink])
    gen.add_transition("pay", "online", "online", 20, spend, [sink])
    gen.start()
    from_generator = sink.by_subject()
    split, _, _ = run_engine(gen.compile(), IndexedAccounts, [(0, N // 2), (N // 2, N)], WINDOWS, sink=sink,
                             run_key=seed_key(3))
    assert split == from_generator


def test_different_run_keys_give_different_events():
    sink = EventList()
    model = keyed_model(sink)
    a, _, _ = run_engine(model, IndexedAccounts, [(0, 100)], [(0, 100)], sink=sink, run_key=seed_key(1))
    b, _, _ = run_engine(model, IndexedAccounts, [(0, 100)], [(0, 100)], sink=sink, run_key=seed_key(2))
    assert a != b
