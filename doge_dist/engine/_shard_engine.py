"""The event-driven tick engine for one shard: pure computation, no I/O of its own, no clock.

Each subject carries the tick at which it next acts. The delay until then is drawn from the
geometric distribution of its state's total outgoing probability, so a subject costs work only
when it acts, and the distribution of events equals the per-tick rule of doge-datagen.
All draws are pure functions of (seed, subject index, tick), so sharding cannot change them.

Time-varying probabilities (profiles) are handled exactly by thinning: candidate ticks are drawn
with the state's largest total probability over the run, q_max, and the uniform that would pick
the transition is compared with the cumulative probabilities *at that tick*: below q(t) it picks
a transition with probability p_k(t) / q_max, above it the subject stays. Per tick the chance of
transition k is q_max * p_k(t) / q_max = p_k(t), as the per-tick rule says.
"""

from __future__ import annotations

import random as _py_random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import rand as _doge_rand
from .._errors import SimulationError
from ..model._compiled import CompiledModel, factory_takes_index
from ..model._vocabulary import sink_flag
from ._arrivals import ArrivalSchedule
from ._keyed import GOLDEN, mix64, mix64_int, subject_keys
from ._layout import ShardLayout

__all__ = ["ShardEngine", "EngineSettings", "NEVER", "FACTORY_BLOCK", "CreationStopped", "PartState",
           "ShardSnapshot"]

NEVER = np.int64(2**62)
FACTORY_BLOCK = 1024
_S32 = np.uint64(32)
_LOW32 = np.uint64(0xFFFFFFFF)
_TWO_M32 = 2.0 ** -32
_FACTORY_SALT = 0xE7037ED1A0B428DB
_ARRIVAL_FACTORY_SALT = 0x3C6EF372FE94F82B


class CreationStopped(Exception):
    """A stop was requested while the shard was still creating its subjects."""


@dataclass(frozen=True)
class EngineSettings:
    """How one shard's engine runs (plain data, the same for every shard of a run)."""

    run_key: int
    tick_ms: int
    timestamp_start: int
    reseed_python_random: bool = False
    keyed_callbacks: bool = True
    drop_final: bool = False
    timeline_bucket: int = 1        # ticks per bucket of the per-trigger event timeline
    record_output_keys: bool = False  # remember (tick, subject) of events sent to driver-output sinks
    track_changes: bool = False  # note which subjects change (incremental checkpoints need it)


@dataclass
class PartState:
    """The subjects of one part at a window boundary (sorted by global index); a delta (``since`` set)
    holds only those that changed since that checkpoint, and ``removed`` those that left since."""

    gidx: np.ndarray
    state: np.ndarray
    next_tick: np.ndarray
    subjects: list[Any]
    removed: np.ndarray | None = None
    since: int | None = None
    subject_gidx: np.ndarray | None = None  # a delta: the global indices of ``subjects`` (changed ones)

    @staticmethod
    def rebuild(chain: list[PartState]) -> PartState:
        """A part from its full snapshot and the deltas after it, in order."""
        base = chain[0]
        gidx, state, next_tick = base.gidx, base.state, base.next_tick
        subjects = dict(zip(base.gidx.tolist(), base.subjects))
        for delta in chain[1:]:
            drop = np.isin(gidx, delta.gidx)
            if delta.removed is not None and delta.removed.size:
                drop |= np.isin(gidx, delta.removed)
                for g in delta.removed.tolist():
                    subjects.pop(g, None)
            keep = np.flatnonzero(~drop)
            merged = np.concatenate((gidx[keep], delta.gidx))
            order = np.argsort(merged, kind="stable")
            state = np.concatenate((state[keep], delta.state))[order]
            next_tick = np.concatenate((next_tick[keep], delta.next_tick))[order]
            gidx = merged[order]
            subjects.update(zip(delta.subject_gidx.tolist(), delta.subjects))
        return PartState(gidx, state, next_tick, [subjects[g] for g in gidx.tolist()])


@dataclass
class ShardSnapshot:
    """A shard's state at a window boundary: its parts plus what recovery of the shard needs."""

    ticks_done: int
    parts: dict[int, PartState]
    events: np.ndarray
    vetoed: np.ndarray
    created: int
    departed: int
    factory: Any
    arrivals: dict | None
    rand_state: Any = None


class _DispatchFailed(Exception):
    """Internal: a callback or sink raised after ``done`` events of a slice were dispatched."""

    def __init__(self, error: SimulationError, done: int, refused: list[int]) -> None:
        super().__init__(str(error))
        self.error = error
        self.done = done
        self.refused = refused


class _Columns:
    """Per-subject arrays that grow at the end (arrivals) with amortised doubling.

    ``touched`` holds the last tick at which each subject was due or made, ``mutated`` the last tick
    at which a callback ran for it or it was made (-1: not since the start or the restore), so a
    checkpoint can store only what changed since the previous one."""

    NAMES = ("keys", "gidx", "state", "next_tick", "touched", "mutated")

    def __init__(self, keys: np.ndarray, gidx: np.ndarray, state: np.ndarray, next_tick: np.ndarray) -> None:
        self.n = gidx.size
        self.keys, self.gidx, self.state, self.next_tick = keys, gidx, state, next_tick
        self.touched = np.full(self.n, -1, dtype=np.int64)
        self.mutated = np.full(self.n, -1, dtype=np.int64)

    def grow(self, extra: int) -> None:
        need = self.n + extra
        if need <= self.gidx.size:
            return
        size = max(need, 2 * self.gidx.size, 1024)
        for name in self.NAMES:
            old = getattr(self, name)
            new = np.empty(size, dtype=old.dtype)
            new[: self.n] = old[: self.n]
            if name == "next_tick":
                new[self.n:] = NEVER
            setattr(self, name, new)

    def compact(self, keep: np.ndarray) -> None:
        for name in self.NAMES:
            setattr(self, name, getattr(self, name)[: self.n][keep].copy())
        self.n = self.gidx.size


class ShardEngine:
    """Runs the subjects a ShardLayout gives this shard, window by window."""

    def __init__(self, model: CompiledModel, factory: Any, layout: ShardLayout, settings: EngineSettings, *,
                 arrivals: ArrivalSchedule | None = None, route_parts: bool = False) -> None:
        self.model = model
        self.factory = factory
        self.layout = layout
        self.settings = settings
        self.shard = layout.index
        self.start, self.stop = layout.start, layout.stop
        self.tick_ms = settings.tick_ms
        self.timestamp_start = settings.timestamp_start
        self.run_key = settings.run_key
        self.reseed_python_random = settings.reseed_python_random
        self.keyed_callbacks = settings.keyed_callbacks or settings.reseed_python_random
        self.arrivals = arrivals
        n = self.stop - self.start
        self.cols = _Columns(subject_keys(self.run_key, self.start, self.stop),
                             np.arange(self.start, self.stop, dtype=np.int64),
                             np.full(n, model.initial, dtype=model.to_state.dtype),
                             np.empty(n, dtype=np.int64))
        self.subjects: list[Any] = []
        size = max(len(model.transitions), 1)
        self.events = np.zeros(size, dtype=np.int64)
        self.vetoed = np.zeros(size, dtype=np.int64)
        self.created = 0
        self.departed = 0
        self.dead = 0  # slots of departed subjects still in the arrays
        self._pending = 0  # events dispatched in the current window, not yet folded into ``events``
        self._tick_now = -1  # the tick being dispatched
        self.ticks_done = 0
        self._chosen: list[tuple[int, np.ndarray]] = []   # (tick, transition ids taken) this window
        self._refused: list[tuple[int, np.ndarray]] = []  # (tick, transition ids vetoed) this window
        self._born: list[tuple[int, int]] = []            # (tick, subjects created) this window
        self._gone: list[tuple[int, int]] = []            # (tick, subjects departed) this window
        self.timeline: dict[int, np.ndarray] = {}         # bucket -> events per transition (this window)
        self.population: dict[int, list[int]] = {}        # bucket -> [created, departed] (this window)
        self._dispatch = model.dispatch_table()
        self._reseed = self._make_reseeder()
        self._has_final = bool(model.final.any())
        self._track = settings.track_changes
        self._callback_of_tid = None
        if model.has_callbacks:
            self._callback_of_tid = np.array([tr.action_callback is not None for tr in model.transitions])
        self._final_target = model.final[model.to_state] if self._has_final else None
        self._budget: int | None = None
        self._steps: Iterator[None] | None = None
        self._takes_index = factory_takes_index(factory)
        # part routing: sinks that write one output per part are told the part before its events
        self._part_sinks = [s for s in model.sinks if sink_flag(s, "uses_parts")] if route_parts else []
        # driver-output sinks (print): remember which subject each of their lines belongs to
        self._output_sinks = ([k for k, s in enumerate(model.sinks) if sink_flag(s, "driver_output")]
                              if settings.record_output_keys else [])
        self._output_keys: dict[int, list[tuple[int, np.ndarray]]] = {k: [] for k in self._output_sinks}
        if self._output_sinks:
            self._sink_of_tid = np.zeros((len(model.sinks), size), dtype=bool)
            for tid, sink_ids in enumerate(model.sink_ids_by_transition):
                for sid in sink_ids:
                    self._sink_of_tid[sid, tid] = True

    @classmethod
    def for_range(cls, model: CompiledModel, factory: Any, start: int, stop: int, *, run_key: int,
                  tick_ms: int, timestamp_start: int, reseed_python_random: bool = False,
                  keyed_callbacks: bool = True, shard: int = 0) -> ShardEngine:
        """An engine for subjects ``[start, stop)`` of a population without arrivals (tests, benchmarks)."""
        bounds = (0, start, stop) if start > 0 else (0, stop)
        first = 1 if start > 0 else 0
        layout = ShardLayout(shard, shard + 1, len(bounds) - 1, first, first + 1, bounds)
        settings = EngineSettings(run_key=run_key, tick_ms=tick_ms, timestamp_start=timestamp_start,
                                  reseed_python_random=reseed_python_random, keyed_callbacks=keyed_callbacks)
        return cls(model, factory, layout, settings)

    # -- views ---------------------------------------------------------------------------------

    @property
    def state(self) -> np.ndarray:
        return self.cols.state[: self.cols.n]

    @property
    def next_tick(self) -> np.ndarray:
        return self.cols.next_tick[: self.cols.n]

    @property
    def keys(self) -> np.ndarray:
        return self.cols.keys[: self.cols.n]

    @property
    def gidx(self) -> np.ndarray:
        return self.cols.gidx[: self.cols.n]

    @property
    def live(self) -> int:
        return self.created - self.departed

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

    def create_subjects(self, should_stop: Callable[[], bool] | None = None) -> None:
        """Call the factory once per subject, in global index order, and draw first action ticks.

        Randomness for the factory is keyed per block of FACTORY_BLOCK global indices, so a shard
        that starts inside a block replays the block's earlier subjects (and discards them).
        ``should_stop`` is asked between blocks: a stop raises CreationStopped.
        """
        factory, start, stop = self.factory, self.start, self.stop
        takes_index = self._takes_index
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
                if should_stop is not None and should_stop():
                    raise CreationStopped(f"stopped after creating {len(subjects)} subjects")
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
        except (CreationStopped, SimulationError):
            raise
        except MemoryError as exc:
            raise SimulationError(
                f"shard {self.shard}: out of memory creating subject {index} (subjects {start}..{stop - 1} "
                f"on this shard): lower subjects_num, use more workers, or smaller subjects",
                subject_index=index, shard=self.shard) from exc
        except Exception as exc:
            raise SimulationError(
                f"subject factory {type(factory).__name__}.create failed near subject {index}: {exc!r}",
                subject_index=index, shard=self.shard,
            ) from exc
        self.created = len(subjects)
        local = np.arange(stop - start)
        self.next_tick[:] = self._draw_next(-1, local, self.state)
        if self.arrivals is not None and not takes_index:
            self._advance_factory_to(self.layout.initial)
        self._factory_at = self.layout.initial

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

    def _advance_factory_to(self, total: int) -> None:
        """After this shard's initial subjects, bring a zero-argument factory to ``total`` subjects
        made (the others' share), so arrival k is the factory's (initial + k)-th object."""
        done = self.stop
        if done >= total:
            return
        advance = getattr(self.factory, "advance", None)
        if callable(advance):
            advance(total - done)
            return
        create, reseed = self.factory.create, self._reseed
        for block in range(done // FACTORY_BLOCK, -(-total // FACTORY_BLOCK)):
            lo, hi = max(block * FACTORY_BLOCK, done), min((block + 1) * FACTORY_BLOCK, total)
            if reseed is not None and lo == block * FACTORY_BLOCK:
                reseed(self._factory_key(block))
            for _ in range(lo, hi):
                create()

    # -- checkpoints ---------------------------------------------------------------------------

    def snapshot(self, since: int | None = None) -> ShardSnapshot:
        """This shard's state at a window boundary, by part: what a checkpoint stores. With ``since``
        (the tick of the previous checkpoint), only the subjects due or made from that tick on, and
        the global indices of those that left (a delta to apply on top of that checkpoint).

        Holds references, not copies: take it in a process that will not change them (a forked
        child writes it while the parent goes on), or write it before the next window.
        """
        if self._steps is not None:
            raise RuntimeError("a snapshot is taken between windows, not inside one")
        n = self.cols.n
        every = self.subjects
        gone_all = None
        if self.settings.drop_final and self.dead:
            gone_all = np.fromiter((s is None for s in every), dtype=bool, count=n)
        if since is None:
            rows = np.flatnonzero(~gone_all) if gone_all is not None else np.arange(n)
            left = np.empty(0, dtype=np.int64)
            changed = rows  # every subject goes with its arrays
        else:
            touched = self.cols.touched[:n] >= since
            gone = touched & gone_all if gone_all is not None else np.zeros(n, dtype=bool)
            rows = np.flatnonzero(touched & ~gone)
            left = np.flatnonzero(gone)
            mutated = self.cols.mutated[:n] >= since
            changed = np.flatnonzero(mutated & ~gone_all if gone_all is not None else mutated)
        gidx_all = self.gidx
        row_parts = self.layout.parts_of(gidx_all[rows])
        left_parts = self.layout.parts_of(gidx_all[left])
        changed_parts = self.layout.parts_of(gidx_all[changed])
        parts: dict[int, PartState] = {}
        for part in self.layout.owned_parts:
            where = rows[row_parts == part]
            who = changed[changed_parts == part]
            parts[part] = PartState(
                gidx_all[where], self.state[where], self.next_tick[where], [every[i] for i in who.tolist()],
                removed=gidx_all[left[left_parts == part]] if since is not None else None, since=since,
                subject_gidx=gidx_all[who] if since is not None else None)
        return ShardSnapshot(
            ticks_done=self.ticks_done, parts=parts, events=self.events, vetoed=self.vetoed,
            created=self.created, departed=self.departed, factory=self.factory,
            arrivals=self.arrivals.state() if self.arrivals is not None else None,
            rand_state=_doge_rand._inst.getstate())

    def restore(self, parts: list[PartState], *, ticks_done: int, factory: Any = None,
                arrivals: dict | None = None, counters: ShardSnapshot | None = None) -> None:
        """Take the subjects of ``parts`` (instead of creating them) and go on from ``ticks_done``;
        ``counters`` restores this shard's counts too (recovery within a run, not a resumed run)."""
        gidx = np.concatenate([p.gidx for p in parts]) if parts else np.empty(0, dtype=np.int64)
        order = np.argsort(gidx, kind="stable")
        gidx = gidx[order]
        state = (np.concatenate([p.state for p in parts]) if parts else np.empty(0))[order]
        next_tick = (np.concatenate([p.next_tick for p in parts]) if parts else np.empty(0))[order]
        flat = [s for p in parts for s in p.subjects]
        keys = gidx.astype(np.uint64)
        keys *= np.uint64(GOLDEN)
        keys ^= np.uint64(self.run_key)
        self.cols = _Columns(mix64(keys), gidx, state.astype(self.model.to_state.dtype),
                             next_tick.astype(np.int64))
        self.subjects = [flat[i] for i in order.tolist()]
        self.ticks_done = ticks_done
        if factory is not None:
            self.factory = factory
        if arrivals is not None and self.arrivals is not None:
            self.arrivals.restore(arrivals)
        if counters is not None:
            self.events = np.array(counters.events, dtype=np.int64)
            self.vetoed = np.array(counters.vetoed, dtype=np.int64)
            self.created, self.departed = counters.created, counters.departed
        else:
            self.created = len(self.subjects)
        self.dead = 0

    # -- randomness --------------------------------------------------------------------------

    def _tick_hash(self, t: int, local: np.ndarray) -> np.ndarray:
        h = self.cols.keys[local]
        h += np.uint64((t + 1) * 0xD1B54A32D192ED03 & 0xFFFFFFFFFFFFFFFF)
        return mix64(h)

    def _draw_next(self, t: int, local: np.ndarray, states: np.ndarray,
                   h: np.ndarray | None = None) -> np.ndarray:
        """Next action (or candidate) tick for each subject, from tick ``t + 1`` on, given its state.

        The delay is geometric with the state's total outgoing probability q (its maximum over the
        run when profiles make it vary): the inverse CDF floor(log(u) / log(1 - q)) of a uniform u
        in (0, 1] taken from the hash's high 32 bits (the low 32 bits pick the transition; the
        tail cut at u = 2**-32 has probability < 1e-9).
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

    def run_window(self, t0: int, t1: int, budget: int | None = None) -> bool:
        """Simulate ticks ``t0 .. t1-1``; with a ``budget``, stop after about that many events and
        return False (call ``resume(budget)`` to go on). True once the window is complete."""
        self._steps = self._window(t0, t1)
        return self.resume(budget)

    def resume(self, budget: int | None = None) -> bool:
        """Continue the current window with a new event budget (None: to its end)."""
        if self._steps is None:
            return True
        self._budget = budget
        try:
            next(self._steps)
        except StopIteration:
            self._steps = None
            self._budget = None
            return True
        return False

    @property
    def in_window(self) -> bool:
        return self._steps is not None

    def abandon_window(self) -> int:
        """End the current window where it stands (a load shape has ended mid-window): its events so
        far are counted and no more are made. Returns the ticks started (the run's length)."""
        if self._steps is not None:
            self._steps.close()
            self._steps = None
            self._budget = None
            self.ticks_done = max(self.ticks_done, self._tick_now + 1)
            self._count_window()
        return self.ticks_done

    def _window(self, t0: int, t1: int) -> Iterator[None]:
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
        arriving = self.arrivals.draw(t0, t1).by_offset if self.arrivals is not None else {}
        rows = None
        if self.model.profiled:
            rows = self.model.cumulative_rows(self.timestamp_start + np.arange(t0, t1, dtype=np.int64)
                                              * self.tick_ms)
        for k in range(width):
            due = base[k]
            if extra[k]:
                more = np.array(extra[k], dtype=np.int64)
                due = more if due is None else np.concatenate((due, more))
                due.sort()
            t = t0 + k
            if due is not None:
                nxt = yield from self._tick(t, due, None if rows is None else rows[k])
                self.cols.next_tick[due] = nxt
                soon = nxt < t1
                if soon.any():
                    for i, tick in zip(due[soon].tolist(), nxt[soon].tolist()):
                        extra[tick - t0].append(i)
            if k in arriving:
                for i, tick in self._arrive(t, *arriving[k]):
                    if tick < t1:
                        extra[tick - t0].append(i)
        self.ticks_done = t1
        self._count_window()
        self._maybe_compact()

    def _arrive(self, t: int, indices: np.ndarray, streams: np.ndarray) -> list[tuple[int, int]]:
        """Create the subjects this shard owns among the arrivals of tick ``t``; they act from t + 1.
        Returns (local index, first action tick) of those acting within reach."""
        owned = self.layout.owns(indices)
        if not self._takes_index:  # a zero-argument factory must see every arrival, in order
            made = self._create_arrivals(indices, keep=owned)
        else:
            made = self._create_arrivals(indices[owned], keep=None)
        mine = indices[owned]
        if mine.size == 0:
            return []
        states = np.array([self.model.state_index[self.arrivals.streams[s].state]
                           for s in streams[owned].tolist()], dtype=self.cols.state.dtype)
        cols = self.cols
        cols.grow(mine.size)
        lo, hi = cols.n, cols.n + mine.size
        cols.gidx[lo:hi] = mine
        keys = mine.astype(np.uint64)
        keys *= np.uint64(GOLDEN)
        keys ^= np.uint64(self.run_key)
        cols.keys[lo:hi] = mix64(keys)
        cols.state[lo:hi] = states
        cols.touched[lo:hi] = t
        cols.mutated[lo:hi] = t
        cols.n = hi
        self.subjects.extend(made)
        local = np.arange(lo, hi)
        nxt = self._draw_next(t, local, states)
        cols.next_tick[lo:hi] = nxt
        self.created += mine.size
        self._born.append((t, int(mine.size)))
        return list(zip(local.tolist(), nxt.tolist()))

    def _create_arrivals(self, indices: np.ndarray, keep: np.ndarray | None) -> list[Any]:
        create, reseed = self.factory.create, self._reseed
        made: list[Any] = []
        index = -1
        try:
            if keep is None:
                for index in indices.tolist():
                    if reseed is not None:
                        reseed(mix64_int(self.run_key ^ _ARRIVAL_FACTORY_SALT ^ (index * GOLDEN)))
                    made.append(create(index))
            else:
                for index, own in zip(indices.tolist(), keep.tolist()):
                    if reseed is not None:
                        reseed(mix64_int(self.run_key ^ _ARRIVAL_FACTORY_SALT ^ (index * GOLDEN)))
                    subject = create()
                    if own:
                        made.append(subject)
        except Exception as exc:
            raise SimulationError(
                f"subject factory {type(self.factory).__name__}.create failed for arriving subject {index}: "
                f"{exc!r}", subject_index=index, shard=self.shard) from exc
        return made

    def _maybe_compact(self) -> None:
        """Drop the slots of departed subjects once they are most of the arrays (drop_final runs)."""
        if not self.settings.drop_final or self.dead < max(65_536, self.cols.n // 2):
            return
        keep = np.array([s is not None for s in self.subjects], dtype=bool)
        self.cols.compact(keep)
        self.subjects = [s for s in self.subjects if s is not None]
        self.dead = 0

    def _count_window(self) -> None:
        """Fold the window's chosen and refused transitions into the counters and the timeline."""
        size = self.events.size
        self._pending = 0
        bucket = self.settings.timeline_bucket
        timeline: dict[int, np.ndarray] = {}
        for entries, sign in ((self._chosen, 1), (self._refused, -1)):
            entries[:] = [entry for entry in entries if entry[1].size]
            if not entries:
                continue
            tids = np.concatenate([tids for _, tids in entries])
            counts = np.bincount(tids, minlength=size)
            if sign > 0:
                self.events += counts
            else:
                self.vetoed += counts
                self.events -= counts
            entry_buckets = np.array([t for t, _ in entries], dtype=np.int64) // bucket
            first = int(entry_buckets[0])
            if entry_buckets[-1] == first:  # the whole window in one bucket (the usual case)
                rows = {first: counts}
            else:
                buckets = np.repeat(entry_buckets - first, [len(t) for _, t in entries])
                span = int(entry_buckets[-1]) - first + 1
                flat = np.bincount(buckets * size + tids, minlength=span * size).reshape(-1, size)
                rows = {first + b: flat[b] for b in np.flatnonzero(flat.any(axis=1)).tolist()}
            for b, row in rows.items():
                slot = timeline.get(b)
                if slot is None:
                    timeline[b] = sign * row
                else:
                    slot += sign * row
            entries.clear()
        self.timeline = timeline
        population: dict[int, list[int]] = {}
        for t, count in self._born:
            population.setdefault(t // bucket, [0, 0])[0] += count
        for t, count in self._gone:
            population.setdefault(t // bucket, [0, 0])[1] += count
        self._born.clear()
        self._gone.clear()
        self.population = population

    def _tick(self, t: int, due: np.ndarray, row: np.ndarray | None) -> Iterator[None]:
        """Process the subjects acting at tick ``t`` (sorted local indices); return their next ticks."""
        model = self.model
        states = self.cols.state[due]
        h = self._tick_hash(t, due)
        threshold = (h & _LOW32).astype(np.float64)
        threshold *= model.out_total_scaled[states]
        threshold += model.state_base[states]
        if row is None:
            pos = np.searchsorted(model.flat_cum, threshold, side="right")
            np.minimum(pos, model.state_last[states], out=pos)
            acting = None
        else:  # thinning: above the state's total at this tick, the candidate does not act
            pos = np.searchsorted(row, threshold, side="right")
            hit = pos <= model.state_last[states]
            acting = None if hit.all() else np.flatnonzero(hit)
            np.minimum(pos, model.state_last[states], out=pos)
        tids = model.flat_tid[pos]
        if acting is None:
            act_due, act_tids, act_h = due, tids, h
        else:
            act_due, act_tids, act_h = due[acting], tids[acting], h[acting]
        if self._budget is None:  # the usual case: the whole tick at once, no generator in between
            vetoed = self._dispatch_slice(t, act_due, act_tids, act_h, 0, act_due.size)
        else:
            vetoed = yield from self._dispatch_budgeted(t, act_due, act_tids, act_h)
        accepted = None
        if vetoed:
            accepted = np.ones(act_due.size, dtype=bool)
            accepted[vetoed] = False
            moved = np.where(accepted, model.to_state[act_tids], states if acting is None else states[acting])
        else:
            moved = model.to_state[act_tids]
        if acting is None:
            new_states = moved
        else:
            new_states = states.copy()
            new_states[acting] = moved
        self.cols.state[due] = new_states
        if self._track:
            self.cols.touched[due] = t
            if self._callback_of_tid is not None and act_tids.size:  # callbacks may change their subject
                self.cols.mutated[act_due[self._callback_of_tid[act_tids]]] = t
        if (self._output_keys or self._has_final) and act_tids.size:  # the transitions taken
            self._after_taken(t, act_tids if accepted is None else act_tids[accepted],
                              act_due if accepted is None else act_due[accepted])
        return self._draw_next(t, due, new_states, h)

    def _after_taken(self, t: int, taken_tids: np.ndarray, taken_local: np.ndarray) -> None:
        """Remember print sinks' keys and let subjects that entered a final state depart."""
        if self._output_keys and taken_tids.size:
            gidx = self.cols.gidx[taken_local]
            for sid in self._output_sinks:
                mask = self._sink_of_tid[sid, taken_tids]
                if mask.any():
                    self._output_keys[sid].append((t, gidx[mask]))
        if self._has_final and taken_tids.size:
            leaving = self._final_target[taken_tids]
            if leaving.any():
                self._depart(t, taken_local[leaving])

    def _depart(self, t: int, local: np.ndarray) -> None:
        """Subjects that entered a final state leave the run (freed with drop_final)."""
        self.departed += int(local.size)
        self._gone.append((t, int(local.size)))
        if self.settings.drop_final:
            subjects = self.subjects
            for i in local.tolist():
                subjects[i] = None
            self.dead += int(local.size)

    def _dispatch_budgeted(self, t: int, due: np.ndarray, tids: np.ndarray, h: np.ndarray) -> Iterator[None]:
        """Dispatch in slices when an event budget is set, pausing (yield) when it is spent."""
        if self._budget is None:
            return self._dispatch_slice(t, due, tids, h, 0, due.size)
            yield  # pragma: no cover - makes this a generator
        vetoed: list[int] = []
        lo = 0
        while lo < due.size:
            while self._budget is not None and self._budget <= 0:
                yield
            hi = due.size if self._budget is None else min(due.size, lo + self._budget)
            refused = self._dispatch_slice(t, due, tids, h, lo, hi)
            vetoed.extend(refused)
            if self._budget is not None:
                self._budget -= (hi - lo) - len(refused)
            lo = hi
        return vetoed

    def _dispatch_slice(self, t: int, due: np.ndarray, tids: np.ndarray, h: np.ndarray, lo: int,
                        hi: int) -> list[int]:
        """Dispatch events ``lo .. hi-1`` and count them (taken and vetoed) for the window. When a
        callback or sink raises, the events before it were delivered: they are counted, then it raises."""
        self._tick_now = t
        if hi <= lo:  # every candidate of this tick was thinned away
            return []
        try:
            refused = self._dispatch_parts(t, due, tids, h, lo, hi)
        except _DispatchFailed as stop:
            self._count_slice(t, tids, lo, lo + stop.done, stop.refused)
            self._count_window()
            raise stop.error from stop.error.__cause__
        self._count_slice(t, tids, lo, hi, refused)
        return refused

    def _count_slice(self, t: int, tids: np.ndarray, lo: int, hi: int, refused: list[int]) -> None:
        if hi <= lo:
            return
        self._chosen.append((t, tids[lo:hi]))
        if refused:
            self._refused.append((t, tids[refused]))
        self._pending += (hi - lo) - len(refused)

    def _dispatch_parts(self, t: int, due: np.ndarray, tids: np.ndarray, h: np.ndarray, lo: int,
                        hi: int) -> list[int]:
        """Dispatch events ``lo .. hi-1``, telling part-routed sinks the part before its events."""
        if not self._part_sinks:
            return self._dispatch_events(t, due, tids, h, lo, hi)
        parts = self.layout.parts_of(self.cols.gidx[due[lo:hi]])
        cuts = np.flatnonzero(np.diff(parts)) + 1
        starts = [0, *cuts.tolist()]
        ends = [*cuts.tolist(), hi - lo]
        vetoed: list[int] = []
        for a, b in zip(starts, ends):
            part = int(parts[a])
            for sink in self._part_sinks:
                sink.select_part(part)
            try:
                vetoed.extend(self._dispatch_events(t, due, tids, h, lo + a, lo + b))
            except _DispatchFailed as stop:
                stop.done += a
                stop.refused = vetoed + stop.refused
                raise
        return vetoed

    def _dispatch_events(self, t: int, due: np.ndarray, tids: np.ndarray, h: np.ndarray, lo: int,
                         hi: int) -> list[int]:
        """Run callbacks and sinks of events ``lo .. hi-1`` in subject order; return vetoed positions."""
        timestamp = self.timestamp_start + t * self.tick_ms
        subjects = self.subjects
        dispatch = self._dispatch
        reseed = self._reseed
        vetoed: list[int] = []
        keys = (h[lo:hi] ^ np.uint64(GOLDEN)).tolist() if self.model.has_callbacks and reseed else None
        j = 0
        local_list = due[lo:hi].tolist()
        tid_list = tids[lo:hi].tolist()
        try:
            for j, (i, k) in enumerate(zip(local_list, tid_list)):
                transition, callback, collects = dispatch[k]
                subject = subjects[i]
                if callback is not None:
                    if keys is not None:
                        reseed(keys[j])
                    if not callback(subject, transition):
                        vetoed.append(lo + j)
                        continue
                for collect in collects:
                    collect(timestamp, subject, transition)
        except Exception as exc:
            transition = dispatch[tid_list[j]][0]
            index = int(self.cols.gidx[local_list[j]])
            error = SimulationError(
                f"shard {self.shard}: tick {t}, subject {index}, trigger {transition.trigger!r} "
                f"({transition.from_state} -> {transition.to_state}): {type(exc).__name__}: {exc}",
                tick=t, subject_index=index, trigger=transition.trigger, shard=self.shard,
            )
            error.__cause__ = exc
            raise _DispatchFailed(error, j, vetoed) from exc
        return vetoed

    # -- driver output -------------------------------------------------------------------------

    def take_output_keys(self, sink_id: int) -> np.ndarray:
        """(tick, subject index) of each event sent to a driver-output sink since the last call,
        in the order the sink saw them, as an int64 array of shape (n, 2)."""
        entries = self._output_keys.get(sink_id) or []
        if not entries:
            return np.empty((0, 2), dtype=np.int64)
        ticks = np.concatenate([np.full(g.size, t, dtype=np.int64) for t, g in entries])
        gidx = np.concatenate([g for _, g in entries])
        entries.clear()
        return np.stack((ticks, gidx), axis=1)

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
        """Events so far, including those of the current window (not yet in the per-trigger counts)."""
        return int(self.events.sum()) + self._pending
