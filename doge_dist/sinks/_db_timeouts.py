"""Bounds on every wait of the SQL sink: driver connect arguments per backend and a watchdog thread.

``bounding_connect_args()`` gives the settings that make a database fail a statement instead of
hanging (server statement timeouts, lock wait bounds, TCP keepalives, client read timeouts);
:class:`Watchdog` cuts a connection whose statements still wait after their bound (a server that
accepts packets but never answers). ``describe_failure()`` says when a bound was what ended a wait.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy.engine import Connection

__all__ = ["DEFAULT_STATEMENT_TIMEOUT_S", "bounding_connect_args", "watchdog_seconds", "Watchdog",
           "bound_hit", "grace"]

#: The default bound on one statement (INSERT, COPY, COMMIT, reflection), in seconds.
DEFAULT_STATEMENT_TIMEOUT_S = 60.0

# error texts of a statement that hit its bound: PostgreSQL, MySQL/MariaDB server, pymysql
# read timeout, SQLite busy timeout
_STATEMENT_BOUND_HIT = ("statement timeout", "lock wait timeout", "during query (timed out)",
                        "database is locked")


def grace(statement_timeout_s: float) -> int:
    """Extra seconds client-side bounds wait beyond the server's, so the server's clear error wins."""
    return max(1, min(5, math.ceil(statement_timeout_s)))


def _libpq_version(driver: str) -> int:
    try:
        if driver == "psycopg":
            from psycopg import pq

            return pq.version()
        from psycopg2 import extensions

        return extensions.libpq_version()
    except Exception:  # driver missing (the engine will say so) or too old to tell
        return 0


def bounding_connect_args(backend: str, driver: str, connect_timeout: float | None,
                          statement_timeout_s: float | None) -> dict[str, Any]:
    """The driver connect arguments that bound waits on ``backend`` through ``driver``."""
    args: dict[str, Any] = {}
    timeout, statement = connect_timeout, statement_timeout_s
    if backend == "postgresql":
        if timeout is not None:
            args["connect_timeout"] = max(2, int(round(timeout)))  # libpq: whole seconds, minimum 2
        if statement is not None and driver in ("psycopg", "psycopg2"):
            ms = max(1, int(statement * 1000))
            probe = max(1, int(statement // 4))  # a dead peer is noticed after ~statement s
            args.update(options=f"-c statement_timeout={ms}", keepalives=1, keepalives_idle=probe,
                        keepalives_interval=probe, keepalives_count=3)
            if _libpq_version(driver) >= 120000:  # libpq 12 added tcp_user_timeout
                args["tcp_user_timeout"] = ms
    elif backend in ("mysql", "mariadb"):
        if timeout is not None:
            args["connect_timeout"] = timeout if driver == "pymysql" else max(1, math.ceil(timeout))
        if statement is not None and driver in ("pymysql", "mysqldb"):
            seconds = max(1, math.ceil(statement))
            client = seconds + grace(statement)
            # the server gives up on a lock first (a clear error); the client read/write bound
            # catches a server that stopped answering altogether
            args.update(init_command=f"SET SESSION lock_wait_timeout={seconds}, "
                                     f"innodb_lock_wait_timeout={seconds}",
                        read_timeout=client, write_timeout=client)
    elif backend == "sqlite" and statement is not None:
        args["timeout"] = float(statement)
    return args


def watchdog_seconds(statement_timeout_s: float | None, statements: int) -> float | None:
    """How long a unit of ``statements`` may wait before the watchdog cuts its connection."""
    if statement_timeout_s is None:
        return None
    return statement_timeout_s * statements + grace(statement_timeout_s)


def bound_hit(text: str) -> bool:
    """Whether an error text says a statement hit its bound (timeout, lock wait, busy database)."""
    lowered = text.lower()
    return any(mark in lowered for mark in _STATEMENT_BOUND_HIT)


class Watchdog:
    """Cuts a database connection (``shutdown()`` on its socket) that is still busy after ``seconds``.

    For drivers that expose the socket (psycopg 3, psycopg2: ``fileno()``); the blocked call then
    fails with a connection error. Works on a duplicate of the descriptor, so it never touches a
    socket the driver has already closed and the descriptor number reused. One thread per process
    (:class:`_WatchdogThread`) watches every armed guard.
    """

    __slots__ = ("seconds", "fired", "deadline", "_sock")

    def __init__(self, conn: Connection, seconds: float | None) -> None:
        self.seconds = seconds
        self.fired = False
        self.deadline = 0.0
        self._sock: socket.socket | None = None
        fileno = getattr(conn.connection.driver_connection, "fileno", None)
        if seconds is None or fileno is None:
            return
        try:
            self._sock = socket.socket(fileno=os.dup(fileno()))
        except (OSError, ValueError):
            return
        self.deadline = time.monotonic() + seconds
        _WATCHDOG.arm(self)

    def fire(self) -> None:
        """Called by the watchdog thread, holding its lock."""
        if self._sock is not None:
            self.fired = True
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        if self._sock is not None:
            _WATCHDOG.disarm(self)  # after this the thread no longer fires it
            self._sock.close()
            self._sock = None


class _WatchdogThread:
    """The process's watchdog: a daemon thread firing guards whose deadline passed."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        """Fresh state; also in a forked child, where the thread (and maybe the lock) did not survive."""
        self._cond = threading.Condition()
        self._guards: set[Watchdog] = set()
        self._started = False
        self._wake: float | None = None  # when the thread wakes next (None: when notified)

    def arm(self, guard: Watchdog) -> None:
        with self._cond:
            if not self._started:
                self._started = True
                threading.Thread(target=self._run, name="doge-dist-db-watchdog", daemon=True).start()
            self._guards.add(guard)
            if self._wake is None or guard.deadline < self._wake:  # else the thread wakes in time
                self._cond.notify()

    def disarm(self, guard: Watchdog) -> None:
        with self._cond:
            self._guards.discard(guard)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for guard in [g for g in self._guards if g.deadline <= now]:
                    self._guards.discard(guard)
                    guard.fire()
                self._wake = wake = min((g.deadline for g in self._guards), default=None)
                self._cond.wait(None if wake is None else wake - now)


_WATCHDOG = _WatchdogThread()
if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_WATCHDOG._reset)
