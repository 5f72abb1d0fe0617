"""Checkpoints between full snapshots store only what changed; rebuilding a part from its chain gives
exactly the full state, and subjects are stored column by column when they are plain records."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from doge_dist import CountingSink, DataOnlineGenerator, SubjectFactory, Transition
from doge_dist.rand import randrange
from doge_dist.run._checkpoint import MAX_CHAIN, load_manifest, read_part
from doge_dist.run._pacer import Pacing
from doge_dist.run._plan import RunPlan
from doge_dist.run._shard import ShardWorker
from doge_dist.run._subject_codec import decode_subjects, encode_subjects


@dataclasses.dataclass(slots=True)
class Account:
    id: int
    balance: int
    tag: str = "x"


class Accounts(SubjectFactory):
    def create(self, index):
        return Account(index, randrange(0, 100))


def spend(account: Account, transition: Transition) -> bool:
    account.balance += randrange(1, 5)
    return True


def build(ticks: int = 400, subjects: int = 3000) -> DataOnlineGenerator:
    gen = DataOnlineGenerator(["idle", "busy", "gone"], "idle", Accounts(), subjects, 60_000, ticks, seed=3,
                              drop_final=True)
    sink = CountingSink()
    gen.add_transition("pay", "idle", "idle", 2, action_callback=spend, event_sinks=[sink])  # a callback
    gen.add_transition("work", "idle", "busy", 1, event_sinks=[sink])                     # none
    gen.add_transition("rest", "busy", "idle", 20, event_sinks=[sink])
    gen.add_transition("quit", "busy", "gone", 1, event_sinks=[sink])
    gen.add_arrivals(1.0)
    return gen


def state_of(worker: ShardWorker) -> dict[int, tuple]:
    """Each live subject's engine state and attributes, by global index."""
    engine = worker.engine
    out = {}
    for i, g in enumerate(engine.gidx.tolist()):
        subject = engine.subjects[i]
        if subject is not None:
            out[g] = (int(engine.state[i]), int(engine.next_tick[i]), dataclasses.astuple(subject))
    return out


def test_a_delta_chain_rebuilds_exactly_the_state_a_full_snapshot_holds(tmp_path):
    gen = build()
    plan = RunPlan.build(gen, workers=1, window=100, pacing=Pacing(), run_key=7, checkpoint_dir=str(tmp_path))
    worker = ShardWorker(plan, plan.layouts[0], in_driver=True)
    worker.begin()
    for t0 in range(0, 400, 100):
        worker.engine.run_window(t0, t0 + 100)
        worker.checkpoint(t0 + 100, inline=True)
    infos = [i for i in worker.writer.poll(wait=True)]
    assert [i["delta"] for i in infos] == [False, True, True, True]
    assert infos[1]["subjects"] < infos[0]["subjects"]  # only subjects whose callback ran, or new ones
    # the driver's manifest names the chain; write one as it would, then rebuild the part
    tick = 400
    manifest_data = {"format": "doge-dist/checkpoint-1", "tick": tick, "parts": 1, "bounds": [0, 3000],
                     "chains": {"0": infos[-1]["chain"]}}
    (tmp_path / f"tick-{tick:012d}" / "MANIFEST.json").write_text(json.dumps(manifest_data))
    rebuilt = read_part(load_manifest(str(tmp_path / f"tick-{tick:012d}")), 0)
    expected = state_of(worker)
    rows = zip(rebuilt.gidx.tolist(), rebuilt.state, rebuilt.next_tick, rebuilt.subjects)
    got = {g: (int(s), int(n), dataclasses.astuple(subj)) for g, s, n, subj in rows}
    assert got == expected
    assert max(got) >= 3000 and len(got) < 3000 + worker.engine.created - 3000  # arrivals in, departed out
    assert worker.engine.departed > 0
    assert infos[-1]["chain"] == [100, 200, 300, 400]


def test_a_full_snapshot_every_max_chain_checkpoints(tmp_path):
    gen = build(ticks=(MAX_CHAIN + 3) * 10, subjects=300)
    plan = RunPlan.build(gen, workers=1, window=10, pacing=Pacing(), run_key=7, checkpoint_dir=str(tmp_path))
    worker = ShardWorker(plan, plan.layouts[0], in_driver=True)
    worker.begin()
    for k in range(MAX_CHAIN + 3):
        worker.engine.run_window(10 * k, 10 * k + 10)
        worker.checkpoint(10 * k + 10, inline=True)
    deltas = [i["delta"] for i in worker.writer.poll(wait=True)]
    assert deltas[0] is False and deltas[MAX_CHAIN] is False and all(deltas[1:MAX_CHAIN])


def test_plain_records_are_stored_as_columns_and_come_back_equal():
    accounts = [Account(i, i * 3, "t" if i % 2 else "u") for i in range(1000)]
    data = encode_subjects(accounts)
    assert b"Account" in data and decode_subjects(data) == accounts
    dicts = [{"id": i, "score": i / 7} for i in range(100)]
    assert decode_subjects(encode_subjects(dicts)) == dicts
    mixed = [Account(1, 2), {"id": 3}, np.int64(4)]  # not one kind of record: pickled as it is
    back = decode_subjects(encode_subjects(mixed))
    assert back[0] == mixed[0] and back[1] == mixed[1] and back[2] == 4
    big = [Account(i, 2**70) for i in range(3)]  # an int that no int64 column holds
    assert decode_subjects(encode_subjects(big)) == big
