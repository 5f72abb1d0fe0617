"""The model vocabulary shared with doge-datagen 1.0.4: subjects, factories, transitions and sinks."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

__all__ = ["Subject", "SubjectFactory", "EventSink", "Transition", "sink_name", "sink_flag"]

Subject = TypeVar("Subject")


class SubjectFactory(Generic[Subject]):
    """Creates the subjects that walk the state machine.

    ``create(self)`` as in doge-datagen, or ``create(self, index)`` to receive the subject's
    global index (0..subjects_num-1); the engine passes it when the signature accepts it.
    A zero-argument factory may define ``advance(n)`` to skip ``n`` subjects cheaply when a
    shard starts in the middle of the population (otherwise ``create()`` is called and discarded).
    """

    @abstractmethod
    def create(self, *args: Any) -> Subject:  # pragma: no cover - abstract
        """Return a new subject."""


class EventSink(ABC):
    """Receives every successful transition as ``collect(timestamp, subject, transition)``.

    Sinks travel to worker processes by pickling, so they must open files, producers or
    connections lazily on first use, not in ``__init__`` (building a model does no I/O).
    ``close()`` is called once per process at the end of a run and must be idempotent.

    Optional hooks, in the order a run calls them:

    - ``check_plan(shard_count)``: on the driver, before anything runs; raise ``ModelError``
      when the sink cannot work with that many shards (e.g. one file shared by processes);
    - ``prepare()``: on the driver, before any subject exists; the place for I/O that checks
      the sink can work (connect, reflect or create a table) so bad settings fail before work;
    - ``begin_run()``: in the process that writes, before its first event of each run; zero
      counters and start the output afresh (a second ``start()`` reports only its own counts);
    - ``stats()``: a dict of delivery counts (``delivered``, ``failed``, ...);
    - ``name``: a readable name used in results;
    - ``uses_parts = True`` and ``select_part(part)``: the engine names the part of the population
      (a fixed range of subject indices) that the following events belong to; within a part,
      events always come in the same order, however the run is split or repeated;
    - ``end_window()``: after every complete window (e.g. commit a transaction per window);
    - ``checkpoint_positions() -> dict``: at a checkpoint, after a complete window: make everything
      collected so far durable and return JSON-able positions keyed ``"part:<p>"`` (or
      ``"shard:<s>"``). A sink must not let an event collected before a checkpoint be lost after it;
    - ``resume(positions)``: called *instead of* ``begin_run()`` when a run continues from a
      checkpoint (a resumed run, or a replacement for a lost worker), with this shard's positions as
      ``checkpoint_positions()`` returned them then (``{}``: from the start of the run). The shard then
      replays the events since that checkpoint exactly as before; the sink puts itself back where
      the positions say so that the replay writes nothing twice (files truncate to the recorded
      length; SQL and transactional Kafka sinks skip, per part, what they committed since).
      A sink without ``resume`` starts afresh and is at-least-once after a recovery: the run
      counts what it may have sent twice in ``RunResult.possible_duplicates``.
    """

    @abstractmethod
    def collect(self, timestamp: int, subject: Any, transition: Transition) -> None:  # pragma: no cover
        """Handle one event."""

    def close(self) -> None:
        """Flush and release resources. Called once at the end of a run."""


class Transition:
    """A possible move from ``from_state`` to ``to_state`` with ``probability`` percent per tick."""

    __slots__ = ("trigger", "from_state", "to_state", "probability", "action_callback", "event_sinks",
                 "profile")

    def __init__(
        self,
        trigger: str,
        from_state: str,
        to_state: str,
        probability: float,
        action_callback: Callable[[Any, Transition], bool] | None = None,
        event_sinks: Iterable[EventSink] | None = None,
        profile: Any = None,
    ) -> None:
        self.trigger = trigger
        self.from_state = from_state
        self.to_state = to_state
        self.probability = probability
        self.action_callback = action_callback
        self.event_sinks = tuple(event_sinks or ())
        self.profile = profile  # a doge_dist.profiles.Profile: probability * profile(timestamp)

    def __getstate__(self):
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state):
        self.profile = None  # pickles of older versions have no profile
        for name, value in state.items():
            setattr(self, name, value)

    def __repr__(self) -> str:
        shape = "" if self.profile is None else f" x {self.profile!r}"
        return (f"Transition({self.trigger!r}, {self.from_state!r} -> {self.to_state!r}, "
                f"P={self.probability}%{shape})")


def sink_name(sink: object) -> str:
    """A readable name for a sink: its ``name`` attribute, else its class name."""
    name = getattr(sink, "name", None)
    if isinstance(name, str) and name:
        return name
    return type(sink).__name__


def sink_flag(sink: object, flag: str) -> bool:
    """Whether a sink declares ``flag`` (``uses_parts``, ``driver_output``): only a real True counts,
    so test doubles such as ``unittest.mock.Mock`` (whose every attribute is truthy) declare nothing."""
    return getattr(sink, flag, False) is True
