"""Checkpoints: a run's state at window boundaries, written atomically, read back to recover or resume.

Layout under the checkpoint folder (a local path or any fsspec URL, e.g. ``s3://bucket/run1``)::

    tick-000000000300/part-00000.npz    engine arrays of part 0 (global index, state, next action tick)
    tick-000000000300/part-00000.pkl    the part's subjects (pickled)
    tick-000000000300/shard-00000.pkl   a shard's counters, factory and arrival state (for recovery)
    tick-000000000300/MANIFEST.json     written last, by the driver: the checkpoint is complete
    LATEST.json                         the newest complete checkpoint
    RUN.json                            how the run that writes here ended (or that it is running)

Every file is written to a temporary name, flushed to disk and renamed, so a half-written file is
never read; a tick folder without its MANIFEST.json is ignored. Workers write their own parts (a
forked child does it while the shard goes on, like Redis' BGSAVE), the driver the manifest.
"""

from __future__ import annotations

import datetime as _dt
import gc
import io
import json
import os
import pickle
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._errors import ModelError
from ..engine._shard_engine import PartState, ShardSnapshot
from ._subject_codec import decode_subjects, encode_subjects

__all__ = ["FORMAT", "Store", "Manifest", "SnapshotWriter", "write_manifest", "load_manifest", "read_part",
           "read_shard", "write_run_status", "tick_dir"]

FORMAT = "doge-dist/checkpoint-1"
KEEP = 2  # complete checkpoints kept; older ones are deleted once a newer one is complete
MAX_CHAIN = 10  # a full snapshot every this many checkpoints of a shard; deltas in between


def tick_dir(tick: int) -> str:
    return f"tick-{tick:012d}"


class Store:
    """A folder for checkpoint files: local (with fsync) or any fsspec URL."""

    def __init__(self, url: str) -> None:
        self.url = str(url).rstrip("/") or "/"
        self.local = "://" not in self.url or self.url.startswith("file://")
        if self.local:
            plain = self.url[len("file://"):] if self.url.startswith("file://") else self.url
            self.root = os.path.abspath(plain)
            self.fs = None
        else:
            try:
                import fsspec
            except ImportError as exc:  # pragma: no cover - an extra
                raise ModelError(f"checkpoint folder {self.url}: remote paths need fsspec "
                                 "(pip install 'doge-dist[remote]')") from exc
            self.fs, self.root = fsspec.core.url_to_fs(self.url)

    def path(self, *names: str) -> str:
        return "/".join([self.root.rstrip("/"), *names])

    def write(self, name: str, data: bytes) -> int:
        """Write ``data`` atomically under ``name`` (relative); return its size."""
        final = self.path(name)
        temp = f"{final}.tmp-{uuid.uuid4().hex[:8]}"
        if self.fs is None:
            os.makedirs(os.path.dirname(final), exist_ok=True)
            with open(temp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temp, final)
            _fsync_dir(os.path.dirname(final))
        else:
            self.fs.makedirs(os.path.dirname(final), exist_ok=True)
            with self.fs.open(temp, "wb") as fh:
                fh.write(data)
            self.fs.mv(temp, final)
        return len(data)

    def read(self, name: str) -> bytes:
        if self.fs is None:
            with open(self.path(name), "rb") as fh:
                return fh.read()
        with self.fs.open(self.path(name), "rb") as fh:
            return fh.read()

    def exists(self, name: str) -> bool:
        return os.path.exists(self.path(name)) if self.fs is None else self.fs.exists(self.path(name))

    def ticks(self) -> list[int]:
        """Ticks of the checkpoint folders present (complete or not)."""
        try:
            names = os.listdir(self.root) if self.fs is None else [
                os.path.basename(p.rstrip("/")) for p in self.fs.ls(self.root, detail=False)]
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            if name.startswith("tick-") and name[5:].isdigit():
                out.append(int(name[5:]))
        return sorted(out)

    def remove_tick(self, tick: int) -> None:
        target = self.path(tick_dir(tick))
        if self.fs is None:
            import shutil

            shutil.rmtree(target, ignore_errors=True)
        else:
            try:
                self.fs.rm(target, recursive=True)
            except FileNotFoundError:
                pass


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _dumps(value: Any) -> bytes:
    """Pickle, falling back to cloudpickle for classes defined in modules loaded by file path."""
    try:
        return pickle.dumps(value, protocol=5)
    except (pickle.PicklingError, AttributeError, TypeError):
        from ray import cloudpickle

        return cloudpickle.dumps(value, protocol=5)


def write_shard_files(store: Store, tick: int, shard: int, snapshot: ShardSnapshot,
                      positions: dict[str, Any], extra: dict[str, Any] | None = None,
                      chain: list[int] | None = None) -> dict[str, Any]:
    """Write one shard's parts and its own file for ``tick``; return what was written. ``chain``: the
    ticks whose part files rebuild these parts, oldest (a full snapshot) first, ending with ``tick``."""
    folder = tick_dir(tick)
    started = time.perf_counter()
    sizes: dict[str, int] = {}
    subjects = 0
    for part, state in snapshot.parts.items():
        buf = io.BytesIO()
        empty = np.empty(0, dtype=np.int64)
        np.savez(buf, gidx=state.gidx, state=state.state, next_tick=state.next_tick,
                 removed=state.removed if state.removed is not None else empty,
                 subject_gidx=state.subject_gidx if state.subject_gidx is not None else empty,
                 since=np.array(-1 if state.since is None else state.since, dtype=np.int64))
        sizes[f"part-{part:05d}.npz"] = store.write(f"{folder}/part-{part:05d}.npz", buf.getvalue())
        sizes[f"part-{part:05d}.pkl"] = store.write(f"{folder}/part-{part:05d}.pkl",
                                                    encode_subjects(state.subjects))
        subjects += len(state.subjects)
    own = {"ticks_done": snapshot.ticks_done, "events": snapshot.events, "vetoed": snapshot.vetoed,
           "created": snapshot.created, "departed": snapshot.departed, "factory": snapshot.factory,
           "arrivals": snapshot.arrivals, "rand_state": snapshot.rand_state, "positions": positions,
           **(extra or {})}
    sizes[f"shard-{shard:05d}.pkl"] = store.write(f"{folder}/shard-{shard:05d}.pkl", _dumps(own))
    info = {"tick": tick, "shard": shard, "files": sizes, "bytes": sum(sizes.values()), "subjects": subjects,
            "seconds": time.perf_counter() - started, "chain": chain or [tick],
            "delta": bool(chain and len(chain) > 1)}
    store.write(f"{folder}/shard-{shard:05d}.json", json.dumps(info).encode())
    return info


@dataclass
class _Pending:
    tick: int
    pid: int
    started: float


class SnapshotWriter:
    """Writes a shard's snapshots: in a forked child when the platform allows (the shard pauses only
    for the fork and goes on; the child takes the snapshot of the state as it was, copy-on-write, and
    writes it), else inline. At most one writer per shard is in flight: a checkpoint that comes while
    the previous one is still being written waits for it (``waited_s`` adds up those waits), so
    writers never pile up on the cores or in memory (each child's pages are copied as it reads them)."""

    def __init__(self, url: str, shard: int) -> None:
        self.store = Store(url)
        self.shard = shard
        self.pending: list[_Pending] = []
        self.finished: list[dict[str, Any]] = []
        self.waited_s = 0.0
        self.chain: list[int] = []  # ticks written since the last full snapshot, that one first

    def start(self, tick: int, take: Callable[[int | None], ShardSnapshot], positions: dict[str, Any], *,
              inline: bool = False, extra: dict[str, Any] | None = None) -> bool:
        """Write the snapshot ``take(since)`` makes for ``tick`` (after the writer still in flight, if any):
        the changes since the previous snapshot of this shard, or everything every MAX_CHAIN checkpoints
        (and when the previous one failed)."""
        if self.pending:
            started = time.perf_counter()
            done = self.poll(wait=True)  # poll() hands over (and clears) what finished
            self.finished.extend(done)  # ... kept for the next report
            self.waited_s += time.perf_counter() - started
        if self.chain and len(self.chain) < MAX_CHAIN:
            since, chain = self.chain[-1], [*self.chain, tick]
        else:
            since, chain = None, [tick]
        self.chain = chain  # a failed write resets it (poll)
        if inline or not hasattr(os, "fork"):
            self._inline(tick, take(since), positions, extra, chain)
            return True
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads: the child touches none
            gc.freeze()  # the parent's collector then leaves its objects alone: fewer copied pages
            pid = os.fork()
        if pid == 0:  # the child: snapshot and write, then leave without running the parent's cleanup
            code = 1
            try:
                write_shard_files(self.store, tick, self.shard, take(since), positions, extra, chain)
                code = 0
            except BaseException as exc:  # noqa: BLE001 - reported through the exit status and a file
                try:
                    self.store.write(f"{tick_dir(tick)}/shard-{self.shard:05d}.error",
                                     f"{type(exc).__name__}: {exc}".encode())
                except BaseException:  # noqa: BLE001
                    pass
            finally:
                os._exit(code)
        self.pending.append(_Pending(tick, pid, time.perf_counter()))
        return True

    def _inline(self, tick: int, snapshot: ShardSnapshot, positions: dict[str, Any],
                extra: dict[str, Any] | None, chain: list[int]) -> None:
        try:
            info = write_shard_files(self.store, tick, self.shard, snapshot, positions, extra, chain)
            self.finished.append({**info, "ok": True})
        except Exception as exc:  # noqa: BLE001 - the driver reports it and keeps the older checkpoint
            self.chain = []
            self.finished.append({"tick": tick, "shard": self.shard, "ok": False,
                                  "error": f"{type(exc).__name__}: {exc}"})

    def poll(self, wait: bool = False) -> list[dict[str, Any]]:
        """Snapshots finished since the last call (``wait``: wait for every pending one)."""
        still = []
        for job in self.pending:
            pid, status = os.waitpid(job.pid, 0 if wait else os.WNOHANG)
            if pid == 0:
                still.append(job)
                continue
            folder = tick_dir(job.tick)
            if os.waitstatus_to_exitcode(status) == 0:
                try:
                    info = json.loads(self.store.read(f"{folder}/shard-{self.shard:05d}.json"))
                except (OSError, ValueError) as exc:  # e.g. its folder removed: the older checkpoint is kept
                    self.chain = []  # the next snapshot is a full one
                    self.finished.append({"tick": job.tick, "shard": self.shard, "ok": False,
                                          "error": f"{type(exc).__name__}: {exc}"})
                    continue
                self.finished.append({**info, "ok": True, "wall_s": time.perf_counter() - job.started})
            else:
                error = "the checkpoint writer process failed"
                if self.store.exists(f"{folder}/shard-{self.shard:05d}.error"):
                    error = self.store.read(f"{folder}/shard-{self.shard:05d}.error").decode(errors="replace")
                self.chain = []  # the next snapshot is a full one
                self.finished.append({"tick": job.tick, "shard": self.shard, "ok": False, "error": error})
        self.pending = still
        if not still and gc.get_freeze_count():
            gc.unfreeze()  # no writer shares the pages any more
        done, self.finished = self.finished, []
        return done


@dataclass
class Manifest:
    """A complete checkpoint, as the driver wrote it."""

    url: str
    tick: int
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def parts(self) -> int:
        return int(self.data["parts"])

    @property
    def bounds(self) -> tuple[int, ...]:
        return tuple(self.data["bounds"])

    @property
    def positions(self) -> dict[str, dict[str, Any]]:
        return self.data.get("positions", {})


def write_manifest(store: Store, tick: int, data: dict[str, Any], *, keep: int = KEEP,
                   writing: Collection[int] = ()) -> None:
    """Complete checkpoint ``tick`` (its MANIFEST.json, then LATEST.json) and delete older ones; the
    folders of ticks in ``writing`` (older checkpoints whose writers may still be at work) are left."""
    payload = {"format": FORMAT, "tick": tick, "written_at": _now(), **data}
    store.write(f"{tick_dir(tick)}/MANIFEST.json", json.dumps(payload, indent=1,
                                                              default=_json_default).encode())
    store.write("LATEST.json", json.dumps({"format": FORMAT, "tick": tick,
                                           "folder": tick_dir(tick)}).encode())
    complete = [t for t in store.ticks() if store.exists(f"{tick_dir(t)}/MANIFEST.json")]
    kept = complete[-keep:] if keep > 0 else complete
    needed = set(kept)  # and the folders their parts are rebuilt from (a full snapshot and deltas)
    for kept_tick in kept:
        needed.update(_chain_ticks(store, kept_tick) if kept_tick != tick else _chains_of(data))
    for old in complete:
        if old not in needed:
            store.remove_tick(old)
    for partial in store.ticks():  # folders of earlier ticks that never completed
        if partial < tick and partial not in complete and partial not in writing and partial not in needed:
            store.remove_tick(partial)


def _chains_of(data: dict[str, Any]) -> set[int]:
    return {int(t) for chain in (data.get("chains") or {}).values() for t in chain}


def _chain_ticks(store: Store, tick: int) -> set[int]:
    try:
        return _chains_of(json.loads(store.read(f"{tick_dir(tick)}/MANIFEST.json")))
    except (OSError, ValueError):
        return set()


def write_run_status(store: Store, data: dict[str, Any]) -> None:
    store.write("RUN.json", json.dumps({"written_at": _now(), **data}, indent=1,
                                                           default=_json_default).encode())


def read_run_status(manifest: Manifest) -> dict[str, Any]:
    """RUN.json of the folder ``manifest`` belongs to ({} when there is none or it cannot be read)."""
    store = Store(manifest.url)
    try:
        return json.loads(store.read("RUN.json")) if store.exists("RUN.json") else {}
    except (OSError, ValueError):
        return {}


def load_manifest(url: str) -> Manifest:
    """The checkpoint at ``url``: a tick folder, or a checkpoint folder (its LATEST.json, else its newest
    complete tick folder). ModelError when there is none or it is incomplete."""
    url = str(url).rstrip("/")
    base, _, last = url.rpartition("/")
    if last.startswith("tick-") and last[5:].isdigit():
        store, tick = Store(base or "/"), int(last[5:])
    else:
        store = Store(url)
        tick = None
        if store.exists("LATEST.json"):
            tick = int(json.loads(store.read("LATEST.json"))["tick"])
        complete = [t for t in store.ticks() if store.exists(f"{tick_dir(t)}/MANIFEST.json")]
        if tick is None or tick not in complete:
            if not complete:
                raise ModelError(f"no complete checkpoint in {url} (a checkpoint is complete once its "
                                 "MANIFEST.json is written)")
            tick = complete[-1]
    name = f"{tick_dir(tick)}/MANIFEST.json"
    if not store.exists(name):
        raise ModelError(f"checkpoint {store.path(tick_dir(tick))} is incomplete (no MANIFEST.json): it was "
                         "being written when its run stopped; use an earlier one")
    data = json.loads(store.read(name))
    if data.get("format") != FORMAT:
        raise ModelError(f"checkpoint {store.path(tick_dir(tick))}: unknown format {data.get('format')!r}, "
                         f"expected {FORMAT}")
    return Manifest(store.url, tick, data)


def read_part(manifest: Manifest, part: int) -> PartState:
    """A part as it was at the manifest's tick: its full snapshot with the later deltas applied."""
    store = Store(manifest.url)
    chain = (manifest.data.get("chains") or {}).get(str(part)) or [manifest.tick]
    pieces = []
    for tick in chain:
        folder = tick_dir(tick)
        with np.load(io.BytesIO(store.read(f"{folder}/part-{part:05d}.npz"))) as arrays:
            since = int(arrays["since"]) if "since" in arrays.files else -1
            pieces.append(PartState(
                arrays["gidx"], arrays["state"], arrays["next_tick"],
                decode_subjects(store.read(f"{folder}/part-{part:05d}.pkl")),
                removed=arrays["removed"] if since >= 0 else None, since=None if since < 0 else since,
                subject_gidx=arrays["subject_gidx"] if since >= 0 else None))
    if pieces[0].since is not None:
        raise ModelError(f"checkpoint {store.path(tick_dir(manifest.tick))}: part {part}'s chain {chain} "
                         "does not start with a full snapshot")
    return PartState.rebuild(pieces) if len(pieces) > 1 else pieces[0]


def read_shard(manifest: Manifest, shard: int) -> dict[str, Any]:
    return pickle.loads(Store(manifest.url).read(f"{tick_dir(manifest.tick)}/shard-{shard:05d}.pkl"))


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class CheckpointLog:
    """The driver's side: gathers each shard's positions and finished snapshots per tick and completes
    a checkpoint (its manifest) once every shard's part of it is on disk."""

    def __init__(self, url: str, shards: int, manifest_base: dict[str, Any], *, keep: int = KEEP) -> None:
        self.store = Store(url)
        self.keep = keep
        self.shards = shards
        self.base = manifest_base
        self.positions: dict[int, dict[int, dict[str, Any]]] = {}   # tick -> shard -> checkpoint record
        self.written: dict[int, dict[int, dict[str, Any]]] = {}     # tick -> shard -> snapshot info
        self.failed: dict[int, str] = {}
        self.latest: int | None = None
        self.completed: list[dict[str, Any]] = []  # per complete checkpoint: tick, bytes, seconds

    def add(self, reports: list[Any]) -> None:
        for report in reports:
            record = getattr(report, "checkpoint", None)
            if record:
                self.positions.setdefault(record["tick"], {})[record["shard"]] = record
            for info in getattr(report, "snapshots", None) or []:
                if info.get("ok"):
                    self.written.setdefault(info["tick"], {})[info["shard"]] = info
                else:
                    self.failed[info["tick"]] = f"shard {info['shard']}: {info.get('error')}"
        self._complete()

    def complete_from_store(self) -> None:
        """After the shards closed (their writers waited for): complete the checkpoints whose snapshots are
        on disk although no report carried them -- a failed run's last ones (the failing window's report,
        which would have carried them, never came)."""
        newer = [t for t, records in self.positions.items() if len(records) == self.shards
                 and t not in self.failed and (self.latest is None or t > self.latest)]
        for tick in newer:
            written = self.written.setdefault(tick, {})
            for shard in range(self.shards):
                name = f"{tick_dir(tick)}/shard-{shard:05d}.json"  # written last, after the shard's files
                if shard not in written and self.store.exists(name):
                    written[shard] = {**json.loads(self.store.read(name)), "ok": True}
        self._complete()

    def forget_shard(self, shard: int) -> None:
        """A lost shard's unfinished snapshots will not arrive (its replacement takes them again)."""
        for tick in list(self.written):
            if tick not in self.positions or len(self.written[tick]) < self.shards:
                self.written[tick].pop(shard, None)

    def _complete(self) -> None:
        ready = sorted(t for t, shards in self.written.items()
                       if len(shards) == self.shards and len(self.positions.get(t, {})) == self.shards)
        for tick in ready:
            if self.latest is not None and tick <= self.latest:
                self.written.pop(tick, None)
                self.positions.pop(tick, None)
                continue
            if tick in self.failed:
                continue
            records = self.positions.pop(tick)
            infos = self.written.pop(tick)
            positions: dict[str, dict[str, Any]] = {}
            for record in records.values():
                for sink, values in record["positions"].items():
                    positions.setdefault(sink, {}).update(values)
            arrivals = next(iter(records.values())).get("arrivals")
            total_bytes = sum(i["bytes"] for i in infos.values())
            subjects = sum(i["subjects"] for i in infos.values())
            delta = any(i.get("delta") for i in infos.values())
            live = sum(int(r.get("live", 0)) for r in records.values())
            chains = {str(part): infos[shard].get("chain", [tick])
                      for shard, (first, stop) in enumerate(self.base.get("shards", []))
                      for part in range(first, stop) if shard in infos}
            write_manifest(self.store, tick, {
                **self.base, "positions": positions, "arrivals": arrivals, "chains": chains, "delta": delta,
                "live": live,
                "shard_files": {str(s): i["files"] for s, i in infos.items()}, "bytes": total_bytes,
                "subjects": subjects, "events_by_shard": {str(s): r["total_events"] for s,
                                                                    r in records.items()},
                "events_by_sink_by_shard": {str(s): r["events_by_sink"] for s, r in records.items()},
            }, keep=self.keep, writing={*self.positions, *self.written})
            self.latest = tick
            write_s = max(i.get("seconds", 0.0) for i in infos.values())
            self.completed.append({"tick": tick, "bytes": total_bytes, "subjects": subjects, "delta": delta,
                                   "live": live, "write_s": write_s})

    def manifest(self) -> Manifest | None:
        """The newest checkpoint this run completed (None: none yet)."""
        return None if self.latest is None else load_manifest(self.store.path(tick_dir(self.latest)))
