"""The event-driven tick engine for one shard: pure computation, no I/O of its own.

Each subject carries the tick at which it next acts. The delay until then is drawn from the
geometric distribution of its state's total outgoing probability, so a subject costs work only
when it acts, and the distribution of events equals the per-tick rule of doge-datagen.
All draws are pure functions of (seed, subject index, tick), so sharding cannot change them.
"""

from __future__ import annotations

import random as _py_random
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import rand as _doge_rand
from .._errors import SimulationError
from ..model._compiled import CompiledModel, factory_takes_index
from ._keyed import GOLDEN, mix64, mix64_int, subject_keys

__all__ = ["ShardEngine", "NEVER"]

NEVER = np.int64(2**62)
FACTORY_BLOCK = 1024
_S32 = np.uint64(32)
_LOW32 = np.uint64(0xFFFFFFFF)
_TWO_M32 = 2.0 ** -32
_FACTORY_SALT = 0xE7037ED1A0B428DB


class ShardEngine:
    """Runs subjects ``[start, stop)`` of a compiled model, window by window."""

    def __init__(
        self,
        model: CompiledModel,
        factory: Any,
        start: int,
        stop: int,
        *,
        run_key: int,
        tick_ms: int,
        timestamp_start: int,
        reseed_python_random: bool = False,
        keyed_callbacks: bool = True,
        shard: int = 0,
    ) -> None:
        self.model = model
        self.factory = factory
        self.start = start
        self.stop = stop
        self.shard = shard
        self.tick_ms = tick_ms
        self.timestamp_start = timestamp_start
        self.reseed_python_random = reseed_python_random
        self.keyed_callbacks = keyed_callbacks or reseed_python_random
        self.run_key = run_key
        n = stop - start
        self.keys = subject_keys(run_key, start, stop)
        self.state = np.full(n, model.initial, dtype=model.to_state.dtype)
        self.next_tick = np.empty(n, dtype=np.int64)
        self.subjects: list[Any] = []
        self.events = np.zeros(max(len(model.transitions), 1), dtype=np.int64)
        self.vetoed = np.zeros(max(len(model.transitions), 1), dtype=np.int64)
        self.ticks_done = 0
        self._chosen: list[np.ndarray] = []   # transition ids drawn this window (vetoed included)
        self._refused: list[np.ndarray] = []  # transition ids vetoed this window
        self._dispatch = model.dispatch_table()
        self._reseed = self._make_reseeder()
        self._has_final = bool(model.final.any())

    # -- setup -------------------------------------------------------------------------------

    def _make_reseeder(self) -> Callable[[int], None] | None:
        """What to call before each factory block and callback; None in unseeded runs."""
        if not self.keyed_callbacks:
            return None
        rekey = _doge_rand.rekey
        if not self.reseed_python_random:
            return rekey
        py_seed = _py_random.seed

        def reseed(key: int) -> None:
            py_seed(key)
            rekey(key)

        return reseed

    def create_subjects(self) -> None:
        """Call the factory once per subject, in global index order, and draw first action ticks.

        Randomness for the factory is keyed per block of FACTORY_BLOCK global indices, so a shard
        that starts inside a block replays the block's earlier subjects (and discards them).
        """
        factory, start, stop = self.factory, self.start, self.stop
        takes_index = factory_takes_index(factory)
        first_block = start // FACTORY_BLOCK
        replay_from = first_block * FACTORY_BLOCK
        if not takes_index and replay_from > 0:
            self._advance_factory(replay_from)
        create = factory.create
        reseed = self._reseed
        subjects = self.subjects
        index = replay_from
        try:
            for block in range(first_block, -(-stop // FACTORY_BLOCK)):
                if reseed is not None:
                    reseed(self._factory_key(block))
                lo = block * FACTORY_BLOCK
                hi = min(lo + FACTORY_BLOCK, stop)
                index = lo
                made = []
                if takes_index:
                    for index in range(lo, hi):
                        made.append(create(index))
                else:
                    for index in range(lo, hi):  # noqa: B007 - index names the subject on error
                        made.append(create())
                subjects.extend(made[start - lo:] if lo < start else made)
        except Exception as exc:
            raise SimulationError(
                f"subject factory {type(factory).__name__}.create failed near subject {index}: {exc!r}",
                subject_index=index, shard=self.shard,
            ) from exc
        local = np.arange(stop - start)
        self.next_tick[:] = self._draw_next(-1, local, self.state)

    def _factory_key(self, block: int) -> int:
        return mix64_int(self.run_key ^ _FACTORY_SALT ^ ((block + 1) * GOLDEN))

    def _advance_factory(self, count: int) -> None:
        """Bring a zero-argument factory to the state it would have after ``count`` subjects."""
        advance = getattr(self.factory, "advance", None)
        if callable(advance):
            advance(count)
            return
        create, reseed = self.factory.create, self._reseed
        for block in range(count // FACTORY_BLOCK):
            if reseed is not None:
                reseed(self._factory_key(block))
            for _ in range(FACTORY_BLOCK):
                create()

    # -- randomness --------------------------------------------------------------------------

    def _tick_hash(self, t: int, local: np.ndarray) -> np.ndarray:
        h = self.keys[local]
        h += np.uint64((t + 1) * 0xD1B54A32D192ED03 & 0xFFFFFFFFFFFFFFFF)
        return mix64(h)

    def _draw_next(self, t: int, local: np.ndarray, states: np.ndarray,
                   h: np.ndarray | None = None) -> np.ndarray:
        """Next action tick for each subject, from tick ``t + 1`` on, given its current state.

        The delay is geometric with the state's total outgoing probability q: the inverse CDF
        floor(log(u) / log(1 - q)) of a uniform u in (0, 1] taken from the hash's high 32 bits
        (the low 32 bits pick the transition; the tail cut at u = 2**-32 has probability < 1e-9).
        """
        if h is None:
            h = self._tick_hash(t, local)
        u = (h >> _S32).astype(np.float64)
        u += 1.0
        u *= _TWO_M32
        delay = np.log(u)
        delay *= self.model.inv_log_stay[states]
        np.floor(delay, out=delay)  # <= 22.2 * 1e17 < 2**62 thanks to the clip in compile_model
        nxt = delay.astype(np.int64)
        nxt += t + 1
        if self._has_final:
            nxt[self.model.final[states]] = NEVER
        return nxt

    # -- running -----------------------------------------------------------------------------

    def run_window(self, t0: int, t1: int) -> None:
        """Simulate ticks ``t0 .. t1-1``."""
        next_tick = self.next_tick
        cand = np.flatnonzero(next_tick < t1)
        width = t1 - t0
        base: list[np.ndarray | None] = [None] * width
        extra: list[list[int]] = [[] for _ in range(width)]
        if cand.size:
            ticks = next_tick[cand]
            order = np.argsort(ticks, kind="stable")
            cand = cand[order]
            bounds = np.searchsorted(ticks[order], np.arange(t0, t1 + 1)).tolist()
            for k in range(width):
                if bounds[k] != bounds[k + 1]:
                    base[k] = cand[bounds[k]:bounds[k + 1]]
        for k in range(width):
            due = base[k]
            if extra[k]:
                more = np.array(extra[k], dtype=np.int64)
                due = more if due is None else np.concatenate((due, more))
                due.sort()
            if due is None:
                continue
            t = t0 + k
            nxt = self._tick(t, due)
            next_tick[due] = nxt
            soon = nxt < t1
            if soon.any():
                for i, tick in zip(due[soon].tolist(), nxt[soon].tolist()):
                    extra[tick - t0].append(i)
        self.ticks_done = t1
        self._count_window()

    def _count_window(self) -> None:
        """Fold the window's chosen and refused transitions into the per-transition counters."""
        size = self.events.size
        if self._chosen:
            self.events += np.bincount(np.concatenate(self._chosen), minlength=size)
            self._chosen.clear()
        if self._refused:
            refused = np.bincount(np.concatenate(self._refused), minlength=size)
            self.vetoed += refused
            self.events -= refused
            self._refused.clear()

    def _tick(self, t: int, due: np.ndarray) -> np.ndarray:
        """Process the subjects acting at tick ``t`` (sorted local indices); return their next ticks."""
        model = self.model
        states = self.state[due]
        h = self._tick_hash(t, due)
        threshold = (h & _LOW32).astype(np.float64)
        threshold *= model.out_total_scaled[states]
        threshold += model.state_base[states]
        pos = np.searchsorted(model.flat_cum, threshold, side="right")
        np.minimum(pos, model.state_last[states], out=pos)
        tids = model.flat_tid[pos]
        vetoed = self._dispatch_events(t, due, tids, h)
        self._chosen.append(tids)
        if vetoed:
            accepted = np.ones(due.size, dtype=bool)
            accepted[vetoed] = False
            new_states = np.where(accepted, model.to_state[tids], states)
            self._refused.append(tids[~accepted])
        else:
            new_states = model.to_state[tids]
        self.state[due] = new_states
        return self._draw_next(t, due, new_states, h)

    def _dispatch_events(self, t: int, due: np.ndarray, tids: np.ndarray, h: np.ndarray) -> list[int]:
        """Run callbacks and sinks in subject order; return positions of vetoed transitions."""
        timestamp = self.timestamp_start + t * self.tick_ms
        subjects = self.subjects
        dispatch = self._dispatch
        reseed = self._reseed
        vetoed: list[int] = []
        keys = (h ^ np.uint64(GOLDEN)).tolist() if self.model.has_callbacks and reseed else None
        j = 0
        local_list = due.tolist()
        tid_list = tids.tolist()
        try:
            for j, (i, k) in enumerate(zip(local_list, tid_list)):
                transition, callback, collects = dispatch[k]
                subject = subjects[i]
                if callback is not None:
                    if keys is not None:
                        reseed(keys[j])
                    if not callback(subject, transition):
                        vetoed.append(j)
                        continue
                for collect in collects:
                    collect(timestamp, subject, transition)
        except Exception as exc:
            transition = dispatch[tid_list[j]][0]
            index = self.start + local_list[j]
            raise SimulationError(
                f"shard {self.shard}: tick {t}, subject {index}, trigger {transition.trigger!r} "
                f"({transition.from_state} -> {transition.to_state}): {type(exc).__name__}: {exc}",
                tick=t, subject_index=index, trigger=transition.trigger, shard=self.shard,
            ) from exc
        return vetoed

    # -- reporting ---------------------------------------------------------------------------

    def counts_by_trigger(self) -> tuple[dict[str, int], dict[str, int]]:
        events: dict[str, int] = {}
        vetoed: dict[str, int] = {}
        for tid, tr in enumerate(self.model.transitions):
            events[tr.trigger] = events.get(tr.trigger, 0) + int(self.events[tid])
            vetoed[tr.trigger] = vetoed.get(tr.trigger, 0) + int(self.vetoed[tid])
        return events, vetoed

    def counts_by_transition(self) -> dict[str, int]:
        return {f"{tr.from_state}:{tr.trigger}": int(self.events[tid])
                for tid, tr in enumerate(self.model.transitions)}

    def counts_by_sink(self) -> dict[str, int]:
        counts = [0] * len(self.model.sinks)
        for tid, sink_ids in enumerate(self.model.sink_ids_by_transition):
            for sid in sink_ids:
                counts[sid] += int(self.events[tid])
        return dict(zip(self.model.sink_names, counts))

    def total_events(self) -> int:
        return int(self.events.sum())


