"""Per-run sink state: a second ``start()`` of one generator reports only its own counts, and file
sinks start their files afresh on every run in one process, as each Ray run does."""

from __future__ import annotations

import gzip
import pickle
import uuid

import pytest
from test_kafka_sink import TS0, consume, new_topic

from doge_dist import CountingSink, DataOnlineGenerator, PrintingSink
from doge_dist.sinks import CsvSink, JsonLinesSink, KafkaSinkFactory


class Account:
    def __init__(self, index: int) -> None:
        self.account_id = index
        self.moves = 0


class AccountFactory:
    """Subjects from their index only: every run of a seeded generator is the same."""

    def create(self, index: int = 0) -> Account:
        return Account(index)


def count_move(account: Account, transition) -> bool:
    account.moves += 1
    return True


def row(ts, account, transition) -> dict:
    return {"ts": ts, "account": account.account_id, "trigger": transition.trigger, "moves": account.moves}


def model(sinks, subjects: int = 40, ticks: int = 60) -> DataOnlineGenerator:
    gen = DataOnlineGenerator(["idle", "busy"], "idle", AccountFactory(), subjects, 60_000, ticks, TS0,
                              seed=11)
    gen.add_transition("start", "idle", "busy", 20, action_callback=count_move, event_sinks=sinks)
    gen.add_transition("stop", "busy", "idle", 30, action_callback=count_move, event_sinks=sinks)
    return gen


def file_sinks(tmp_path) -> list:
    return [JsonLinesSink(tmp_path / "run.jsonl", row), CsvSink(tmp_path / "run.csv", row),
            JsonLinesSink(tmp_path / "run.jsonl.gz", row)]


def test_a_second_start_reports_only_its_own_counts(tmp_path, capsys):
    counting = CountingSink("counting")
    printing = PrintingSink(lambda ts, account, transition: f"{ts} {account.account_id}")
    files = file_sinks(tmp_path)
    gen = model([counting, printing, *files])
    first = gen.start()
    assert first.total_events > 50
    for name in ("counting", "print", *(s.name for s in files)):
        assert first.sink_stats[name]["delivered"] == first.total_events, name
    gen.configure(ticks_num=20)
    second = gen.start()
    assert 0 < second.total_events < first.total_events
    for name in ("counting", "print", *(s.name for s in files)):
        assert second.sink_stats[name]["delivered"] == second.total_events, (name, second.sink_stats[name])
    assert counting.count == second.total_events
    assert (tmp_path / "run.jsonl").read_text().count("\n") == second.total_events  # not appended
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == first.total_events + second.total_events


def test_an_in_process_rerun_writes_the_same_file_bytes(tmp_path):
    gen = model(file_sinks(tmp_path))
    gen.start()
    first = {name: (tmp_path / name).read_bytes() for name in ("run.jsonl", "run.csv", "run.jsonl.gz")}
    assert all(first.values())
    gen.start()
    for name, data in first.items():
        assert (tmp_path / name).read_bytes() == data, name
    assert gzip.decompress(first["run.jsonl.gz"]) == first["run.jsonl"]


def test_a_rerun_without_events_leaves_an_empty_file(tmp_path):
    sink = JsonLinesSink(tmp_path / "run.jsonl", row)
    gen = model([sink])
    assert gen.start().total_events > 0
    gen.configure(ticks_num=0)
    result = gen.start()
    assert result.total_events == 0 and result.sink_stats[sink.name] == {"delivered": 0, "failed": 0}
    assert (tmp_path / "run.jsonl").read_text() == ""


def test_begin_run_zeroes_a_copy_made_mid_run():
    sink = CountingSink("c")
    sink.collect(1, None, None)
    copy = pickle.loads(pickle.dumps(sink))  # as shipped to a worker: counts stay behind
    assert (copy.count, copy.closed, copy.name) == (0, 0, "c")
    sink.begin_run()
    assert sink.count == 0


@pytest.mark.services
def test_a_second_start_into_kafka_reports_only_its_own_counts(kafka_broker):
    topic = new_topic(kafka_broker, 1)
    sink = KafkaSinkFactory(kafka_broker.bootstrap, f"runs-{uuid.uuid4().hex[:6]}").create(
        topic, lambda account, t: str(account.account_id), lambda ts, account, t: f"{ts}:{t.trigger}")
    gen = model([sink])
    first = gen.start()
    assert first.sink_stats[sink.name]["delivered"] == first.total_events > 0
    gen.configure(ticks_num=20)
    second = gen.start()
    assert second.sink_stats[sink.name] == {"produced": second.total_events, "delivered": second.total_events,
                                            "failed": 0, "undelivered": 0}
    gen.configure(ticks_num=0)  # a run that never opens the producer still reports its own (none)
    third = gen.start()
    assert third.sink_stats[sink.name] == {"produced": 0, "delivered": 0, "failed": 0, "undelivered": 0}
    expected = first.total_events + second.total_events
    assert len(consume(kafka_broker.bootstrap, topic, expected)) == expected
