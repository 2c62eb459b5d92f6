"""A rate limit on failed logins (RAG_AUTH), as ASGI middleware in front of the app's ``/login`` route.

Each client (its IP address) may fail RAG_LOGIN_MAX_FAILURES times in a row; every further failure locks it out
for RAG_LOGIN_LOCKOUT seconds, doubled for each failure after that (at most an hour). A locked-out client gets
429 with ``Retry-After`` and its password is not even checked, so guessing gets no answer faster than the
lockout allows. A successful login clears the count. Gradio's login callback never sees the client, hence the
middleware (``start`` passes it to the app it launches; ``middleware_for(settings)``).

The counts live in a small SQLite file beside the indexes (``RAG_INDEX_DIR/.login-failures.sqlite3``,
``shared_failures(settings)``), so every process of one machine serving those settings counts together: the
workers of ``rag serve --workers N``, the app's login page and the JSON API's Basic auth, and a restarted server
(a lockout outlives a restart). The client is the connection's peer address: behind a reverse proxy every client
has the proxy's address (see the README's "Limits and safety").
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("rag.ui")

MAX_LOCKOUT_S = 3600.0
MAX_CLIENTS = 10_000  # clients remembered at once; the oldest are forgotten beyond that


class MemoryFailures:
    """Failure counts of one process: client -> (failures in a row, locked until)."""

    def __init__(self):
        self._failures: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def get(self, client: str) -> tuple[int, float]:
        with self._lock:
            return self._failures.get(client, (0, 0.0))

    def fail(self, client: str, until_for: Callable[[int], float]) -> tuple[int, float]:
        """Count one more failure of ``client``; ``until_for(count)`` gives its lockout end."""
        with self._lock:
            count = self._failures.get(client, (0, 0.0))[0] + 1
            until = until_for(count)
            self._failures.pop(client, None)  # re-inserted last: the dict stays ordered oldest first
            self._failures[client] = (count, until)
            while len(self._failures) > MAX_CLIENTS:
                self._failures.pop(next(iter(self._failures)))
            return count, until

    def clear(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


class SqliteFailures:
    """Failure counts shared by the processes of one machine, in one SQLite file (each change is one
    ``BEGIN IMMEDIATE`` transaction, so two processes counting the same client never lose a failure). Should the
    file become unusable (a read-only folder, a damaged file), counting goes on in this process's memory, with a
    warning."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fallback: MemoryFailures | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.execute("CREATE TABLE IF NOT EXISTS failures (client TEXT PRIMARY KEY, count INTEGER NOT NULL, "
                           "until REAL NOT NULL, updated REAL NOT NULL)")
            os.chmod(self.path, 0o600)  # client addresses: readable by the server's user only
        except (OSError, sqlite3.Error) as exc:
            self._give_up(exc)

    def _connect(self) -> _Connection:
        return _Connection(self.path)

    def _give_up(self, exc: Exception) -> MemoryFailures:
        if self._fallback is None:
            log.warning("login: cannot use %s (%s); failed logins are counted per process", self.path, exc)
            self._fallback = MemoryFailures()
        return self._fallback

    def get(self, client: str) -> tuple[int, float]:
        if self._fallback is not None:
            return self._fallback.get(client)
        try:
            with self._connect() as db:
                row = db.execute("SELECT count, until FROM failures WHERE client = ?", (client,)).fetchone()
        except sqlite3.Error as exc:
            return self._give_up(exc).get(client)
        return (int(row[0]), float(row[1])) if row else (0, 0.0)

    def fail(self, client: str, until_for: Callable[[int], float]) -> tuple[int, float]:
        if self._fallback is not None:
            return self._fallback.fail(client, until_for)
        try:
            with self._connect() as db:
                db.execute("BEGIN IMMEDIATE")
                row = db.execute("SELECT count FROM failures WHERE client = ?", (client,)).fetchone()
                count = (int(row[0]) if row else 0) + 1
                until = until_for(count)
                db.execute("INSERT OR REPLACE INTO failures (client, count, until, updated) VALUES (?, ?, ?, ?)",
                           (client, count, until, time.time()))
                if db.execute("SELECT COUNT(*) FROM failures").fetchone()[0] > MAX_CLIENTS:
                    db.execute("DELETE FROM failures WHERE client NOT IN "
                               "(SELECT client FROM failures ORDER BY updated DESC LIMIT ?)", (MAX_CLIENTS,))
                db.execute("COMMIT")
                return count, until
        except sqlite3.Error as exc:
            return self._give_up(exc).fail(client, until_for)

    def clear(self, client: str) -> None:
        if self._fallback is not None:
            self._fallback.clear(client)
            return
        try:
            with self._connect() as db:
                db.execute("DELETE FROM failures WHERE client = ?", (client,))
        except sqlite3.Error as exc:
            self._give_up(exc).clear(client)


class _Connection:
    """A short-lived autocommit connection, closed on leaving the ``with`` block (sqlite3's own context manager
    only commits)."""

    def __init__(self, path: Path):
        self._db = sqlite3.connect(path, timeout=10.0, isolation_level=None)

    def __enter__(self) -> sqlite3.Connection:
        return self._db

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None and self._db.in_transaction:
            self._db.execute("ROLLBACK")
        self._db.close()


def failures_file(settings) -> Path:
    """Where the servers of these settings count failed logins together."""
    return Path(settings.index_dir) / ".login-failures.sqlite3"


_shared: dict[Path, SqliteFailures] = {}
_shared_lock = threading.Lock()


def shared_failures(settings) -> SqliteFailures:
    """The failure counts shared by every server of these settings on this machine (one object per file and
    process)."""
    path = failures_file(settings).absolute()
    with _shared_lock:
        if path not in _shared:
            _shared[path] = SqliteFailures(path)
        return _shared[path]


class LoginThrottle:
    """Pure ASGI middleware: counts failed ``POST .../login`` answers (4xx) per client address, in ``store``
    (default: this process's memory; the servers pass ``shared_failures(settings)``)."""

    def __init__(self, app, max_failures: int = 5, lockout_s: float = 30.0, clock=time.time,
                 store: MemoryFailures | SqliteFailures | None = None):
        self.app = app
        self.max_failures = max_failures
        self.lockout_s = lockout_s
        self.clock = clock  # wall-clock seconds: a shared store compares them across processes
        self.store = store if store is not None else MemoryFailures()

    def retry_after(self, client: str) -> float:
        """Seconds ``client`` must still wait (0: it may try)."""
        _, until = self.store.get(client)
        return max(0.0, until - self.clock())

    def _record(self, client: str, failed: bool) -> None:
        if not failed:
            self.store.clear(client)
            return

        def until_for(count: int) -> float:
            if count < self.max_failures:
                return 0.0
            delay = min(self.lockout_s * 2 ** (count - self.max_failures), MAX_LOCKOUT_S)
            log.warning("login: %d failed attempts in a row from %s; locked out for %.0f s", count, client, delay)
            return self.clock() + delay

        self.store.fail(client, until_for)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST" or not scope.get("path", "").rstrip("/").endswith("/login"):
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        wait = self.retry_after(client)
        if wait > 0:
            seconds = math.ceil(wait)  # the same whole number in the header and the message (were 2 and "1 s")
            # "detail": the key Gradio's login page shows
            body = json.dumps({"detail": f"too many failed logins; try again in {seconds} s"}).encode()
            await send({"type": "http.response.start", "status": 429,
                        "headers": [(b"content-type", b"application/json"), (b"retry-after", str(seconds).encode()),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        status: list[int] = []

        async def recording_send(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, receive, recording_send)
        if status and status[0] < 300:
            self._record(client, failed=False)
        elif status and 400 <= status[0] < 500:
            self._record(client, failed=True)


def middleware_for(settings) -> list:
    """The middleware list for a FastAPI/Gradio app serving ``settings`` (empty without RAG_AUTH)."""
    if not settings.auth:
        return []
    from starlette.middleware import Middleware

    return [Middleware(LoginThrottle, max_failures=settings.login_max_failures, lockout_s=settings.login_lockout,
                       store=shared_failures(settings))]
