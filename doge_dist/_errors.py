"""Error types. Each subclasses the builtin that doge-datagen users already catch."""

from __future__ import annotations

__all__ = ["ModelError", "SimulationError", "SinkError", "RunInterrupted"]


class ModelError(ValueError):
    """The model (states, transitions, population, sinks) is invalid; raised before any work starts."""


class SimulationError(RuntimeError):
    """A callback, factory or sink raised while the simulation ran.

    Names where it happened; the original exception is chained as ``__cause__``.
    """

    def __init__(
        self,
        message: str,
        *,
        tick: int | None = None,
        subject_index: int | None = None,
        trigger: str | None = None,
        shard: int | None = None,
    ) -> None:
        super().__init__(message)
        self.tick = tick
        self.subject_index = subject_index
        self.trigger = trigger
        self.shard = shard

    def __reduce__(self):  # keep attributes and the cause across pickling (Ray ships errors to the driver)
        return (
            _rebuild_simulation_error,
            (type(self), self.args[0], self.tick, self.subject_index, self.trigger, self.shard,
             _portable_cause(self.__cause__), getattr(self, "__notes__", None)),
        )


def _portable_cause(cause: BaseException | None) -> BaseException | None:
    """The cause itself if it pickles, else a RuntimeError carrying its repr and traceback."""
    if cause is None:
        return None
    import pickle
    import traceback

    text = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
    try:
        pickle.dumps(cause)
        portable = cause
    except Exception:  # noqa: BLE001 - any unpicklable cause is replaced
        portable = RuntimeError(repr(cause))
    if hasattr(portable, "add_note") and "Original traceback" not in "".join(
            getattr(portable, "__notes__", []) or []):
        portable.add_note("Original traceback (in the worker):\n" + text.rstrip())
    return portable


def _rebuild_simulation_error(cls, message, tick, subject_index, trigger, shard, cause=None,
                              notes=None) -> SimulationError:
    err = cls(message, tick=tick, subject_index=subject_index, trigger=trigger, shard=shard)
    err.__cause__ = cause
    for note in notes or ():
        err.add_note(note)
    return err


class SinkError(RuntimeError):
    """A sink could not deliver everything it was given (counts are in the message and attributes)."""

    def __init__(self, message: str, *, sink: str = "", delivered: int = 0, failed: int = 0,
                 undelivered: int = 0) -> None:
        super().__init__(message)
        self.sink = sink
        self.delivered = delivered
        self.failed = failed
        self.undelivered = undelivered

    def __reduce__(self):
        return (_rebuild_sink_error,
                (self.args[0], self.sink, self.delivered, self.failed, self.undelivered))


def _rebuild_sink_error(message, sink, delivered, failed, undelivered) -> SinkError:
    return SinkError(message, sink=sink, delivered=delivered, failed=failed, undelivered=undelivered)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the run at a window boundary, sinks closed; ``result`` holds how far it got."""

    def __init__(self, message: str, result=None) -> None:
        super().__init__(message)
        self.result = result
