"""JsonLinesSink and CsvSink: content, gzip, {shard} paths, pickling, errors."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import errno
import gc
import gzip
import json
import os
import pickle
import subprocess
import sys
from decimal import Decimal

import pytest
from conftest import REPO_ROOT

from doge_dist import ModelError, Transition
from doge_dist._context import ShardInfo, shard_scope
from doge_dist.sinks._files import CsvSink, JsonLinesSink, default_row

LOGIN = Transition("login", "offline", "online", 0.1)
SPEND = Transition("spending", "offline", "offline", 0.1)


@dataclasses.dataclass(slots=True)
class User:  # like examples/banking.py's User
    user_id: int
    balance: int
    loan_balance: int
    last_payment: int


@dataclasses.dataclass
class Plain:
    name: str
    trigger: str  # shadows an event field: the event's value wins


class Slotted:
    __slots__ = ("a", "b")

    def __init__(self) -> None:
        self.a, self.b = 1, "two"


def events(n: int = 50):
    return [(i * 60_000, User(i % 7, 1000 - i, 10 * i, i % 3), LOGIN if i % 2 else SPEND) for i in range(n)]


def expected_dicts(evs):
    return [{"timestamp": ts, "trigger": t.trigger, "from_state": t.from_state, "to_state": t.to_state,
             **dataclasses.asdict(u)} for ts, u, t in evs]


def feed(sink, evs) -> None:
    for ts, subject, transition in evs:
        sink.collect(ts, subject, transition)
    sink.close()


# ---------------------------------------------------------------------------- default row


def test_default_row_for_each_kind_of_subject():
    base = {"timestamp": 5, "trigger": "login", "from_state": "offline", "to_state": "online"}
    assert default_row(5, User(1, 2, 3, 4), LOGIN) == {**base, "user_id": 1, "balance": 2, "loan_balance": 3,
                                                       "last_payment": 4}
    assert default_row(5, Plain("x", "bogus"), LOGIN) == {**base, "name": "x"} | {"trigger": "login"}
    assert default_row(5, Slotted(), LOGIN) == {**base, "a": 1, "b": "two"}
    assert default_row(5, {"k": 1}, LOGIN) == {**base, "k": 1}
    assert default_row(5, 42, LOGIN) == {**base, "subject": 42}
    assert list(default_row(5, User(1, 2, 3, 4), LOGIN))[:4] == list(base)


# ---------------------------------------------------------------------------- JSON Lines


def test_json_lines_round_trip_with_the_default_mapper(tmp_path):
    path = tmp_path / "deep" / "dir" / "events.jsonl"  # parent directories are created
    sink = JsonLinesSink(path)
    evs = events()
    feed(sink, evs)
    assert sink.name == f"jsonl:{path}"
    assert sink.stats() == {"delivered": len(evs), "failed": 0}
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == expected_dicts(evs)


def test_json_lines_with_a_mapper_and_unusual_values(tmp_path):
    @dataclasses.dataclass
    class Address:
        city: str

    def mapper(ts, subject, transition):
        return {"ts": ts, "when": dt.datetime(2024, 1, 2, 3, 4, 5), "amount": Decimal("1.10"),
                "address": Address("Zürich"), "tags": {"x"}, "text": 'quote " and\nnewline'}

    path = tmp_path / "mapped.jsonl"
    feed(JsonLinesSink(path, mapper), events(3))
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert first == {"ts": 0, "when": "2024-01-02T03:04:05", "amount": "1.10", "address": {"city": "Zürich"},
                     "tags": ["x"], "text": 'quote " and\nnewline'}


def test_json_lines_unencodable_value_is_a_clear_error(tmp_path):
    sink = JsonLinesSink(tmp_path / "x.jsonl", lambda ts, s, t: {"obj": object()})
    with pytest.raises(TypeError, match="cannot encode a value of type object.*mapper"):
        sink.collect(1, None, LOGIN)
    sink.close()


@pytest.mark.parametrize("how", ["suffix", "option"])
def test_json_lines_gzip(tmp_path, how):
    path = tmp_path / ("events.jsonl.gz" if how == "suffix" else "events.jsonl")
    sink = JsonLinesSink(path, compress="gzip") if how == "option" else JsonLinesSink(path)
    evs = events(500)
    feed(sink, evs)
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        assert [json.loads(line) for line in fh] == expected_dicts(evs)


def test_empty_file_exists_after_close_and_close_is_idempotent(tmp_path):
    sink = JsonLinesSink(tmp_path / "sub" / "empty-{shard}.jsonl")
    sink.close()
    sink.close()
    assert (tmp_path / "sub" / "empty-0.jsonl").read_text() == ""
    gz = JsonLinesSink(tmp_path / "empty.jsonl.gz")
    gz.close()
    assert gzip.open(tmp_path / "empty.jsonl.gz").read() == b""


def test_shard_template_gives_each_shard_its_own_file(tmp_path):
    template = tmp_path / "events-{shard}.jsonl"
    evs = events(30)
    for index in range(3):
        sink = pickle.loads(pickle.dumps(JsonLinesSink(template)))  # as shipped to a worker
        with shard_scope(ShardInfo(index=index, count=3, start=index * 10, stop=index * 10 + 10)):
            feed(sink, evs[index * 10:index * 10 + 10])
        assert sink.name == f"jsonl:{template}"  # one name for all shards
    for index in range(3):
        lines = (tmp_path / f"events-{index}.jsonl").read_text().splitlines()
        assert [json.loads(x) for x in lines] == expected_dicts(evs[index * 10:index * 10 + 10])


def test_shard_template_with_a_format_spec(tmp_path):
    sink = CsvSink(tmp_path / "part-{shard:03d}.csv.gz")
    with shard_scope(ShardInfo(index=7, count=12)):
        feed(sink, events(2))
        assert sink.resolved_path() == str(tmp_path / "part-007.csv.gz")
    assert len(gzip.open(tmp_path / "part-007.csv.gz", "rt").read().splitlines()) == 3


@pytest.mark.parametrize("cls", [JsonLinesSink, CsvSink])
def test_several_shards_without_placeholder_is_refused(tmp_path, cls):
    sink = cls(tmp_path / "events.out")
    with shard_scope(ShardInfo(index=1, count=2)):
        with pytest.raises(ModelError, match=r"no \{shard\} placeholder.*2 shards.*add \{shard\}") as info:
            sink.collect(1, User(1, 2, 3, 4), LOGIN)
        assert "events-{shard}.out" in str(info.value)
        with pytest.raises(ModelError, match="add {shard}"):
            sink.close()  # nothing written: opening at close is refused the same way
    assert not (tmp_path / "events.out").exists()


def test_pickle_round_trip_before_and_after_use(tmp_path):
    sink = JsonLinesSink(tmp_path / "a.jsonl", compress="gzip")
    clone = pickle.loads(pickle.dumps(sink))
    assert (clone.path, clone.compress, clone.name) == (sink.path, "gzip", sink.name)
    sink.collect(1, User(1, 2, 3, 4), LOGIN)  # file now open: pickling must drop it
    mid = pickle.loads(pickle.dumps(sink))
    assert mid.stats() == {"delivered": 0, "failed": 0}
    sink.close()
    after = pickle.loads(pickle.dumps(sink))
    feed(after, events(2))
    assert len(gzip.open(tmp_path / "a.jsonl", "rt").read().splitlines()) == 2


def test_collect_after_close_appends_instead_of_truncating(tmp_path):
    sink = JsonLinesSink(tmp_path / "runs.jsonl")
    feed(sink, events(3))
    feed(sink, events(2))  # e.g. a second start() in the same process
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == 5
    assert sink.stats() == {"delivered": 5, "failed": 0}


@pytest.mark.parametrize("second_cls", [JsonLinesSink, CsvSink])
def test_a_second_open_sink_on_the_same_resolved_path_is_refused(tmp_path, monkeypatch, second_cls):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    target = tmp_path / "real" / "events.out"
    first = JsonLinesSink(target)
    first.collect(1, User(1, 2, 3, 4), LOGIN)  # opens the file

    monkeypatch.chdir(tmp_path)
    for other in (second_cls(tmp_path / "link" / "events.out"),  # through a symlink
                  second_cls("real/../real/events.out"),  # relative, not normalised
                  pickle.loads(pickle.dumps(first))):  # a copy of the same description
        with pytest.raises(ModelError, match="already open for writing by another sink") as info:
            other.collect(2, User(5, 6, 7, 8), SPEND)
        assert str(target) in str(info.value) and first.name in str(info.value)
        assert other.stats()["delivered"] == 0
    first.collect(3, User(1, 2, 3, 4), LOGIN)  # the holder was not truncated or disturbed
    first.close()
    assert len(target.read_text().splitlines()) == 2

    later = second_cls(tmp_path / "link" / "events.out")  # released on close: free again
    feed(later, events(2))
    assert later.stats() == {"delivered": 2, "failed": 0}
    reopened = JsonLinesSink(target)
    reopened.collect(1, User(1, 2, 3, 4), LOGIN)
    del reopened  # dropped without close(): its file is closed and the path let go
    gc.collect()
    feed(JsonLinesSink(target), events(1))
    assert len(target.read_text().splitlines()) == 1


def test_bad_arguments(tmp_path):
    with pytest.raises(ModelError, match="compress"):
        JsonLinesSink(tmp_path / "x.jsonl", compress="zip")
    with pytest.raises(ModelError, match="callable"):
        JsonLinesSink(tmp_path / "x.jsonl", mapper="nope")
    with pytest.raises(ModelError, match="empty"):
        CsvSink("")
    with pytest.raises(ModelError, match="duplicates"):
        CsvSink(tmp_path / "x.csv", fieldnames=["a", "a"])


# ---------------------------------------------------------------------------- CSV


def test_csv_round_trip_with_the_default_mapper(tmp_path):
    path = tmp_path / "events.csv"
    sink = CsvSink(path)
    evs = events()
    feed(sink, evs)
    assert sink.name == f"csv:{path}" and sink.stats() == {"delivered": len(evs), "failed": 0}
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows == [{k: str(v) for k, v in d.items()} for d in expected_dicts(evs)]


def test_csv_fieldnames_missing_and_extra_keys(tmp_path):
    path = tmp_path / "fixed.csv.gz"
    sink = CsvSink(path, lambda ts, s, t: {"ts": ts, "text": 'a,"b"\nc'} if ts else {"ts": ts},
                   fieldnames=["ts", "text", "unused"])
    sink.collect(1, None, LOGIN)
    sink.collect(0, None, LOGIN)  # missing keys: empty cells
    with pytest.raises(ModelError, match=r"\['other'\].*fieldnames"):
        sink.mapper = lambda ts, s, t: {"ts": ts, "other": 1}
        sink.collect(2, None, LOGIN)
    sink.close()
    with gzip.open(path, "rt", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows == [["ts", "text", "unused"], ["1", 'a,"b"\nc', ""], ["0", "", ""]]


def test_csv_header_only_once_when_appending_and_header_for_empty_file_with_fieldnames(tmp_path):
    sink = CsvSink(tmp_path / "e.csv")
    feed(sink, events(2))
    feed(sink, events(2))
    lines = (tmp_path / "e.csv").read_text().splitlines()
    assert len(lines) == 5 and lines[0].startswith("timestamp,trigger")
    empty = CsvSink(tmp_path / "h.csv", fieldnames=("a", "b"))
    empty.close()
    assert (tmp_path / "h.csv").read_text().splitlines() == ["a,b"]


# ---------------------------------------------------------------------------- imports


def test_importing_the_sinks_does_not_import_heavy_clients():
    code = ("import sys, doge_dist, doge_dist.sinks._files, doge_dist.sinks._db; "
            "print(sorted(m for m in ('sqlalchemy', 'confluent_kafka', 'fastavro', 'psycopg') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_a_relative_path_is_relative_to_where_the_sink_was_made(tmp_path, monkeypatch):
    (tmp_path / "here").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    sink = pickle.loads(pickle.dumps(JsonLinesSink("out/rel-{shard}.jsonl")))
    assert sink.name == "jsonl:out/rel-{shard}.jsonl"
    monkeypatch.chdir(tmp_path / "elsewhere")  # e.g. a worker process started in another directory
    feed(sink, events(3))
    assert len((tmp_path / "here" / "out" / "rel-0.jsonl").read_text().splitlines()) == 3
    assert not (tmp_path / "elsewhere" / "out").exists()


def test_a_multi_shard_plan_without_shard_placeholder_is_refused_before_any_event(tmp_path):
    from doge_dist import JsonLinesSink, ModelError
    from examples.banking import build_generator

    gen = build_generator(JsonLinesSink(str(tmp_path / "one.jsonl")), subjects=10, ticks=10)
    with pytest.raises(ModelError, match=r"no \{shard\} placeholder but the run has 2 shards"):
        gen.start(workers=2)  # refused by check_plan while planning: no Ray needed, no file written
    assert not (tmp_path / "one.jsonl").exists()


# ---------------------------------------------------------------------------- a full disk


FAULT_KINDS = {
    "jsonl": lambda path: JsonLinesSink(path + ".jsonl"),
    "csv": lambda path: CsvSink(path + ".csv"),
    "gzip": lambda path: JsonLinesSink(path + ".jsonl.gz"),
}


def _noisy_events(n: int):
    """Events whose lines compress badly (so gzip files fill a small disk too)."""
    import random

    rng = random.Random(7)
    return [(i, User(i, rng.getrandbits(62), rng.getrandbits(62), rng.getrandbits(62)), LOGIN)
            for i in range(n)]


def _fill(sink, limit: int = 400_000):
    """Collect events until the sink raises (it must, well before ``limit``); return (error, collected)."""
    from doge_dist import SinkError

    collected = 0
    for ts, subject, transition in _noisy_events(limit):
        try:
            sink.collect(ts, subject, transition)
        except SinkError as exc:
            return exc, collected + 1
        collected += 1
    try:
        sink.close()
    except SinkError as exc:
        return exc, collected
    raise AssertionError(f"{sink.name}: {limit} events fitted on the small disk")


def _read_records(path: str) -> tuple[list, bytes]:
    """The file's records and its raw (decompressed) text; fails on a partial record or bad gzip."""
    if path.endswith(".gz"):
        with gzip.open(path, "rb") as fh:  # raises on a truncated member
            raw = fh.read()
    else:
        with open(path, "rb") as fh:
            raw = fh.read()
    text = raw.decode()
    if path.endswith(".csv"):
        rows = list(csv.reader(text.splitlines()))
        assert not text or text.endswith("\r\n"), text[-50:]
        assert all(len(row) == len(rows[0]) for row in rows), "a partial CSV row"
        return rows[1:], raw
    assert not text or text.endswith("\n"), text[-50:]
    return [json.loads(line) for line in text.splitlines()], raw


def _assert_cut_back(error, sink, path: str, collected: int, reason: str) -> None:
    from doge_dist import SinkError

    assert isinstance(error, SinkError)
    message = str(error)
    assert error.sink == sink.name and sink.name in message and path in message
    assert reason in message and "last whole record" in message
    records, _ = _read_records(path)
    assert len(records) == error.delivered > 0  # the file ends with the last whole record
    assert error.delivered + error.failed == collected
    assert sink.stats() == {"delivered": error.delivered, "failed": error.failed}
    sink.close()  # already reported: closing adds nothing
    assert len(_read_records(path)[0]) == error.delivered


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs (needs root; skipped elsewhere, where the EFBIG test still runs)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
                          capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield str(mount_point)
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=30)


@pytest.mark.parametrize("kind", sorted(FAULT_KINDS))
def test_a_full_disk_is_a_sink_error_and_leaves_whole_records(small_disk, kind):
    sink = FAULT_KINDS[kind](os.path.join(small_disk, "events"))
    error, collected = _fill(sink)
    path = sink.resolved_path()
    assert error.__cause__ is not None and getattr(error.__cause__, "errno", None) == errno.ENOSPC
    _assert_cut_back(error, sink, path, collected, "No space left on device (ENOSPC)")
    os.remove(path)  # room again: the next run starts the file afresh
    sink.begin_run()
    feed(sink, events(5))
    assert len(_read_records(path)[0]) == 5 and sink.stats() == {"delivered": 5, "failed": 0}


_EFBIG_SCRIPT = """
import json, resource, signal, sys
sys.path.insert(0, {tests!r})
from test_file_sinks import FAULT_KINDS, _fill
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
sink = FAULT_KINDS[{kind!r}]({base!r})
error, collected = _fill(sink)
cause = error.__cause__
print(json.dumps({{"message": str(error), "sink": error.sink, "delivered": error.delivered,
                  "failed": error.failed, "collected": collected, "path": sink.resolved_path(),
                  "errno": getattr(cause, "errno", None)}}))
"""


@pytest.mark.parametrize("kind", sorted(FAULT_KINDS))
def test_a_file_size_limit_is_a_sink_error_and_leaves_whole_records(tmp_path, kind):
    script = _EFBIG_SCRIPT.format(tests=str(REPO_ROOT / "tests"), kind=kind, base=str(tmp_path / "events"))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env=env)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["errno"] == errno.EFBIG
    message = got["message"]
    assert got["path"] in message and got["sink"] in message and "File too large (EFBIG)" in message
    records, _ = _read_records(got["path"])
    assert len(records) == got["delivered"] > 0
    assert got["delivered"] + got["failed"] == got["collected"]


def test_a_record_the_encoding_cannot_hold_is_a_sink_error_after_the_records_before_it(tmp_path):
    from doge_dist import SinkError

    path = tmp_path / "latin.csv"
    sink = CsvSink(path, lambda ts, s, t: {"ts": ts, "text": "snow ☃" if ts == 3 else "plain"},
                   encoding="latin-1")
    for ts in range(3):
        sink.collect(ts, None, LOGIN)
    with pytest.raises(SinkError) as info:
        sink.collect(3, None, LOGIN)
        sink.close()
    assert "record 4 cannot be encoded as latin-1" in str(info.value)
    assert (info.value.delivered, info.value.failed) == (3, 1)
    assert path.read_text(encoding="latin-1").splitlines() == ["ts,text", "0,plain", "1,plain", "2,plain"]
