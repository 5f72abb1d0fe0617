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

    def __reduce__(self):  # keep attributes across pickling (Ray ships errors back to the driver)
        return (
            _rebuild_simulation_error,
            (self.args[0], self.tick, self.subject_index, self.trigger, self.shard),
        )


def _rebuild_simulation_error(message, tick, subject_index, trigger, shard) -> SimulationError:
    return SimulationError(message, tick=tick, subject_index=subject_index, trigger=trigger, shard=shard)


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
