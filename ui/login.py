"""A rate limit on failed logins (RAG_AUTH), as ASGI middleware in front of the app's ``/login`` route.

Each client (its IP address) may fail RAG_LOGIN_MAX_FAILURES times in a row; every further failure locks it out
for RAG_LOGIN_LOCKOUT seconds, doubled for each failure after that (at most an hour). A locked-out client gets
429 with ``Retry-After`` and its password is not even checked, so guessing gets no answer faster than the
lockout allows. A successful login clears the count. Gradio's login callback never sees the client, hence the
middleware (``start`` passes it to the app it launches; ``middleware_for(settings)``).
"""

from __future__ import annotations

import json
import logging
import threading
import time

log = logging.getLogger("rag.ui")

MAX_LOCKOUT_S = 3600.0
MAX_CLIENTS = 10_000  # clients remembered at once; the oldest are forgotten beyond that


class LoginThrottle:
    """Pure ASGI middleware: counts failed ``POST .../login`` answers (4xx) per client address."""

    def __init__(self, app, max_failures: int = 5, lockout_s: float = 30.0, clock=time.monotonic):
        self.app = app
        self.max_failures = max_failures
        self.lockout_s = lockout_s
        self.clock = clock
        self._failures: dict[str, tuple[int, float]] = {}  # client -> (failures in a row, locked until)
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> float:
        """Seconds ``client`` must still wait (0: it may try)."""
        with self._lock:
            _, until = self._failures.get(client, (0, 0.0))
        return max(0.0, until - self.clock())

    def _record(self, client: str, failed: bool) -> None:
        with self._lock:
            if not failed:
                self._failures.pop(client, None)
                return
            count = self._failures.get(client, (0, 0.0))[0] + 1
            until = 0.0
            if count >= self.max_failures:
                delay = min(self.lockout_s * 2 ** (count - self.max_failures), MAX_LOCKOUT_S)
                until = self.clock() + delay
                log.warning("login: %d failed attempts in a row from %s; locked out for %.0f s", count, client, delay)
            self._failures.pop(client, None)  # re-inserted last: the dict stays ordered oldest first
            self._failures[client] = (count, until)
            while len(self._failures) > MAX_CLIENTS:
                self._failures.pop(next(iter(self._failures)))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST" or not scope.get("path", "").rstrip("/").endswith("/login"):
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        wait = self.retry_after(client)
        if wait > 0:
            body = json.dumps({"detail": f"too many failed logins; try again in {wait:.0f} s"}).encode()
            await send({"type": "http.response.start", "status": 429,
                        "headers": [(b"content-type", b"application/json"), (b"retry-after", str(int(wait) + 1).encode()),
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

    return [Middleware(LoginThrottle, max_failures=settings.login_max_failures, lockout_s=settings.login_lockout)]
