"""Transactional Kafka sinks: one transaction per window, committed counts kept inside the transactions.

``KafkaSinkFactory(..., transactional=True)`` makes its sinks ``TransactionalKafkaSink``: each has a
producer of its own with a stable ``transactional.id`` per (run, topic, shard), calls
``init_transactions`` (bounded) where it writes, and commits one transaction per window
(``end_window()``), at checkpoints and at ``close()``; a transaction older than a third of
``transaction.timeout.ms`` is committed early, so the broker never times it out. A failed produce or
commit aborts the transaction and raises ``SinkError`` (its messages count as failed).

Exactly-once replays: the sink is told each event's part (``uses_parts``) and, inside every
transaction, commits each part's running message count as the offset of a consumer group named
``<prefix>.<run id>.<topic>.part-<p>`` (``send_offsets_to_transaction``, on partition 0 of the topic,
which always exists). Offsets commit or abort atomically with the messages. ``resume(positions)``
first calls ``init_transactions`` with the lost worker's id, which fences it and aborts its open
transaction, then reads the groups' offsets and skips, per part, the events committed since the
checkpoint while the shard replays.

What holds where (tested against Tansu 0.6 in tests/test_recovery.py):

* Apache Kafka (and brokers that implement KIP-98 aborts): consumers with
  ``isolation.level=read_committed`` see every event exactly once after a recovery or a resume.
  Read-uncommitted consumers also see the aborted transaction of the lost worker.
* Tansu (0.6): fencing, ``init_transactions``, transactional offsets (committed with the transaction,
  discarded on abort or fencing) work, so committed windows are never re-sent; but aborted messages
  stay visible to every consumer, so the lost worker's open transaction (at most one window, or one
  early commit's worth, of that shard) shows up twice.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from .._context import current_shard
from .._errors import ModelError, SinkError
from ..model._vocabulary import Transition
from ._kafka import KafkaSink, _call, _ProducerHandle
from ._kafka_conf import ProducerSettings

__all__ = ["TransactionalKafkaSink", "check_transactional", "DEFAULT_TRANSACTION_TIMEOUT_MS"]

#: librdkafka's default ``transaction.timeout.ms``; the sink commits a transaction after a third of it.
DEFAULT_TRANSACTION_TIMEOUT_MS = 60_000
_OFFSET_INVALID = -1001

# transactional ids open in this process -> the sink that holds each (two holders would fence each other)
_ACTIVE_IDS: dict[str, int] = {}
_ACTIVE_LOCK = threading.Lock()


def check_transactional(owner: str, settings: ProducerSettings, transactional: Any,
                        prefix: Any) -> tuple[bool, str | None]:
    """``(transactional, prefix)`` checked against the producer settings; ModelError naming the problem."""
    if not isinstance(transactional, bool):
        raise ModelError(f"{owner}: transactional must be True or False, got {transactional!r}")
    if "transactional.id" in settings.conf:
        raise ModelError(f"{owner}: do not set conf['transactional.id']: pass transactional=True (each sink "
                         "gets a stable id per run, topic and shard; transactional_id= sets its prefix)")
    if not transactional:
        if prefix is not None:
            raise ModelError(f"{owner}: transactional_id= needs transactional=True")
        return False, None
    if prefix is None:
        prefix = settings.client_id
    if not isinstance(prefix, str) or not prefix.strip() or len(prefix) > 100:
        raise ModelError(f"{owner}: transactional_id must be a non-empty string of at most 100 characters, "
                         f"got {prefix!r}")
    if str(settings.conf.get("enable.idempotence", True)).lower() in ("false", "0"):
        raise ModelError(f"{owner}: transactional=True needs the idempotent producer; remove "
                         "conf['enable.idempotence']=False")
    timeout = settings.conf.get("transaction.timeout.ms", DEFAULT_TRANSACTION_TIMEOUT_MS)
    if isinstance(timeout, bool) or not str(timeout).isdigit() or int(timeout) < 1000:
        raise ModelError(f"{owner}: conf['transaction.timeout.ms'] must be an integer >= 1000, "
                         f"got {timeout!r}")
    return True, prefix


class _PartCount:
    __slots__ = ("committed", "pending")

    def __init__(self, committed: int = 0) -> None:
        self.committed = committed  # messages of this part in committed transactions (this run)
        self.pending = 0            # messages of this part in the open transaction


class TransactionalKafkaSink(KafkaSink):
    """A ``KafkaSink`` writing in transactions, exactly once across recoveries and resumed runs.

    ``stats()``: ``produced``; ``delivered`` = messages in committed transactions; ``failed`` =
    messages in aborted transactions; ``undelivered`` = in the open one; ``skipped`` (after a
    recovery or resume) = replayed events that were already committed.
    """

    uses_parts = True

    def begin_run(self) -> None:
        super().begin_run()
        self._counts: dict[int | None, _PartCount] = {}
        self._part: int | None = None
        self._current = self._counts[None] = _PartCount()
        self._mark = 0            # self._produced when the current part's pending count was last folded
        self._skip = 0            # events of the current part still to skip while replaying
        self._skips: dict[int | None, int] = {}
        self._skipped = 0
        self._committed = 0
        self._aborted = 0
        self._in_txn = False
        self._txn_started = 0.0
        self._groups: dict[int, bytes] = {}  # part -> consumer group metadata for its progress group

    # -- identity ------------------------------------------------------------------------------

    def transactional_id(self) -> str:
        shard = current_shard()
        run = shard.run_id or self._standalone_id()
        return f"{self.factory.transactional_id}.{run}.{self.topic}.{shard.index}"

    def _standalone_id(self) -> str:
        if not getattr(self, "_own_id", None):
            self._own_id = uuid.uuid4().hex[:16]
        return self._own_id

    def progress_group(self, part: int) -> str:
        """The consumer group whose offset (partition 0 of the topic) is part ``part``'s committed count."""
        return f"{self.factory.transactional_id}.{current_shard().run_id}.{self.topic}.part-{part}"

    def _txn_timeout_s(self) -> float:
        return int(self.factory.conf.get("transaction.timeout.ms", DEFAULT_TRANSACTION_TIMEOUT_MS)) / 1000

    # -- the producer --------------------------------------------------------------------------

    def _acquire_handle(self) -> _ProducerHandle:
        """A transactional producer of this sink's own, with ``init_transactions`` done (bounded)."""
        factory = self.factory
        tid = self.transactional_id()
        with _ACTIVE_LOCK:
            holder = _ACTIVE_IDS.get(tid)
            if holder is not None and holder != id(self):
                raise SinkError(f"{self.name}: another sink in this process uses transactional id {tid!r} "
                                "(two transactional sinks writing one topic need factories with distinct "
                                "transactional_id=)", sink=self.name)
            _ACTIVE_IDS[tid] = id(self)
        try:
            conf = factory.producer_conf()
            shard = current_shard()
            if shard.count > 1:
                conf["client.id"] = f"{factory.client_id}-shard{shard.index}"
            conf["transactional.id"] = tid
            user_cb = conf.pop("error_cb", None)
            handle = _ProducerHandle(conf, user_cb)
            handle.producer.init_transactions(factory.close_timeout_s)
        except BaseException:
            self._forget_id(tid)
            raise
        self._tid = tid
        return handle

    def _forget_id(self, tid: str) -> None:
        with _ACTIVE_LOCK:
            if _ACTIVE_IDS.get(tid) == id(self):
                del _ACTIVE_IDS[tid]

    def _release_handle(self, handle: _ProducerHandle) -> None:
        self._forget_id(getattr(self, "_tid", ""))
        handle.shutdown()

    def _open(self) -> None:
        super()._open()
        self._begin()

    def _begin(self) -> None:
        _, failure = _call(self._producer.begin_transaction)
        if failure is not None:
            raise self._librdkafka_error("begin_transaction()", failure) from failure.cause
        self._in_txn = True
        self._txn_started = time.monotonic()

    # -- parts ---------------------------------------------------------------------------------

    def _fold(self) -> None:
        """Count the messages produced since the last fold for the current part."""
        produced = self._produced
        self._current.pending += produced - self._mark
        self._mark = produced

    def select_part(self, part: int) -> None:
        """The events that follow belong to ``part`` (the engine calls this)."""
        if part == self._part:
            return
        self._fold()
        self._skips[self._part] = self._skip
        state = self._counts.get(part)
        if state is None:
            state = self._counts[part] = _PartCount()
        self._current, self._part = state, part
        self._skip = self._skips.pop(part, 0)

    # -- writing -------------------------------------------------------------------------------

    def collect(self, timestamp: int, subject: Any, transition: Transition) -> None:
        if self._skip:  # replaying events that a lost worker (or an earlier run) committed
            self._skip -= 1
            self._skipped += 1
            return
        KafkaSink.collect(self, timestamp, subject, transition)

    def _check_health(self) -> None:
        super()._check_health()
        if self._in_txn and time.monotonic() - self._txn_started > self._txn_timeout_s() / 3:
            self._commit()  # long windows: never let the broker time a transaction out
            self._begin()

    def _commit(self) -> None:
        """Commit the open transaction with each touched part's new count (as its group's offset);
        on failure abort it (its messages count as failed) and raise ``SinkError``."""
        if not self._in_txn:
            return
        from confluent_kafka import TopicPartition

        self._fold()
        touched = [(p, c) for p, c in self._counts.items() if c.pending]
        messages = sum(c.pending for _, c in touched)
        producer = self._producer
        timeout = self.factory.close_timeout_s
        failure = None
        what = "commit_transaction()"
        if current_shard().run_id:
            for part, count in touched:
                if part is None:
                    continue
                offsets = [TopicPartition(self.topic, 0, count.committed + count.pending)]
                _, failure = _call(producer.send_offsets_to_transaction, offsets, self._group_metadata(part),
                                   timeout)
                if failure is not None:
                    what = "send_offsets_to_transaction()"
                    break
        if failure is None:
            _, failure = _call(producer.commit_transaction, timeout)
        self._in_txn = False
        if failure is None:
            for _, count in touched:
                count.committed += count.pending
                count.pending = 0
            self._committed += messages
            return
        _call(producer.abort_transaction, min(timeout, 10.0))  # a fenced or fatal producer cannot; fine
        for _, count in touched:
            count.pending = 0
        self._aborted += messages
        raise self._librdkafka_error(f"{what} (the transaction of {messages} messages was aborted)",
                                     failure) from failure.cause

    def _group_metadata(self, part: int) -> Any:
        metadata = self._groups.get(part)
        if metadata is None:
            from confluent_kafka import Consumer

            consumer = Consumer(self._consumer_conf(part))
            try:
                metadata = self._groups[part] = consumer.consumer_group_metadata()
            finally:
                consumer.close()
        return metadata

    def _consumer_conf(self, part: int) -> dict[str, Any]:
        conf = {k: v for k, v in self.factory.producer_conf().items()
                if k.startswith(("bootstrap.", "security.", "sasl.", "ssl.", "client.", "socket.",
                                 "broker.address."))}
        conf.update({"group.id": self.progress_group(part), "enable.auto.commit": False,
                     "isolation.level": "read_committed", "log_level": 3})
        return conf

    def _has_pending(self) -> bool:
        return self._in_txn and (self._produced > self._mark or any(c.pending for c in self._counts.values()))

    def end_window(self) -> None:
        """After every complete window: commit its transaction (consumers see the window now)."""
        if self._has_pending():
            self._commit()
            self._begin()

    def checkpoint_positions(self) -> dict[str, Any]:
        """Commit the open transaction and return each part's committed count."""
        if self._has_pending():
            self._commit()
            self._begin()
        shard = current_shard()
        out = {}
        for part in range(shard.first_part, shard.stop_part):
            count = self._counts.get(part)
            out[f"part:{part}"] = {"committed": count.committed if count is not None else 0,
                                   "group": self.progress_group(part)}
        return out

    def resume(self, positions: dict[str, Any]) -> None:
        """Go on from a checkpoint (``{}``: from the start of this run): take over the transactional id
        (fencing a lost worker and aborting its open transaction), read each part's committed count
        and skip, per part, the events committed since the checkpoint as the shard replays them."""
        self.begin_run()
        shard = current_shard()
        if not shard.run_id:
            return
        self._open()
        for part in range(shard.first_part, shard.stop_part):
            now = self._read_committed(part)
            at = int((positions.get(f"part:{part}") or {}).get("committed", 0))
            if now < at:
                raise SinkError(f"{self.name}: cannot resume part {part}: the checkpoint recorded {at} "
                                f"committed messages but group {self.progress_group(part)!r} says {now} (was "
                                "the topic or its group offsets deleted, or is this another cluster?)",
                                sink=self.name)
            self._counts[part] = _PartCount(now)
            self._skips[part] = now - at

    def _read_committed(self, part: int) -> int:
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        consumer = Consumer(self._consumer_conf(part))
        try:
            self._groups[part] = consumer.consumer_group_metadata()
            try:
                [position] = consumer.committed([TopicPartition(self.topic, 0)],
                                                timeout=self.factory.close_timeout_s)
            except KafkaException as exc:
                raise SinkError(f"{self.name}: cannot read the committed count of part {part} (group "
                                f"{self.progress_group(part)!r}): {exc}", sink=self.name) from exc
        finally:
            consumer.close()
        return 0 if position.offset == _OFFSET_INVALID or position.offset < 0 else int(position.offset)

    def close(self) -> None:
        """Commit the open transaction, then close the producer (bounded)."""
        handle = self._handle
        if handle is None:
            return
        try:
            if self._has_pending() and handle.fatal is None and not handle.gave_up:
                self._commit()
        finally:
            self._in_txn = False
            self._handle = None
            self._producer = self._produce = self._dr = None
            self._release_handle(handle)
        if self._aborted:
            raise self._error("a transaction was aborted")

    def stats(self) -> dict[str, int]:
        stats = {"produced": self._produced, "delivered": self._committed, "failed": self._aborted,
                 "undelivered": self._produced - self._committed - self._aborted}
        if self._skipped:
            stats["skipped"] = self._skipped
        return stats

    def _error(self, reason: str) -> SinkError:
        detail = f"; first delivery error: {self._first_error}" if self._first_error else ""
        undelivered = self._produced - self._committed - self._aborted
        return SinkError(
            f"{self.name} (bootstrap {self.factory.bootstrap_servers}, transactional id "
            f"{getattr(self, '_tid', '?')}): {reason}: {self._produced} produced, {self._committed} "
            f"committed, {self._aborted} aborted, {undelivered} undelivered{detail}",
            sink=self.name, delivered=self._committed, failed=self._aborted, undelivered=undelivered)
