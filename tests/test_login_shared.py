"""Issue 14, the login rate limit across processes: failed logins are counted in one SQLite file per index folder,
so N worker processes (or N app instances, or the app and its JSON API) give an attacker no more attempts than
one. The per-client doubling and reset are tested in tests/test_hostile_api.py."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import make_fake_pipeline
from ui.login import LoginThrottle, SqliteFailures, failures_file, shared_failures


def _attempt(throttle: LoginThrottle, outcome: dict, client: str = "10.0.0.1") -> int:
    sent: list[int] = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": outcome["status"], "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def send(message):
        if message["type"] == "http.response.start":
            sent.append(message["status"])

    throttle.app = app
    asyncio.run(throttle({"type": "http", "method": "POST", "path": "/login", "client": (client, 1234)}, None, send))
    return sent[0]


def test_two_throttles_on_one_file_count_together(tmp_path):
    now = [1000.0]
    outcome = {"status": 400}
    first, second = (LoginThrottle(None, max_failures=3, lockout_s=10.0, clock=lambda: now[0],
                                   store=SqliteFailures(tmp_path / "failures.sqlite3")) for _ in range(2))
    assert [_attempt(first, outcome), _attempt(second, outcome), _attempt(first, outcome)] == [400, 400, 400]
    assert _attempt(second, outcome) == 429 and second.retry_after("10.0.0.1") == 10.0  # third failure: locked
    assert _attempt(first, outcome) == 429
    assert _attempt(second, outcome, "10.0.0.2") == 400  # another client is not locked out
    now[0] += 10.0
    assert _attempt(first, outcome) == 400 and second.retry_after("10.0.0.1") == 20.0  # doubled, seen by both
    now[0] += 20.0
    outcome["status"] = 200
    assert _attempt(second, outcome) == 200 and first.retry_after("10.0.0.1") == 0.0  # a success resets both
    assert (tmp_path / "failures.sqlite3").stat().st_mode & 0o077 == 0


@pytest.mark.slow  # starts processes that import the app or load an index
def test_failures_from_another_process_count(tmp_path):
    """A failure recorded by another Python process (a second worker) locks the client out here."""
    path = tmp_path / "failures.sqlite3"
    here = LoginThrottle(None, max_failures=2, lockout_s=60.0, store=SqliteFailures(path))
    here._record("10.0.0.9", failed=True)
    code = ("import sys; from ui.login import LoginThrottle, SqliteFailures; "
            "LoginThrottle(None, max_failures=2, lockout_s=60.0, store=SqliteFailures(sys.argv[1]))"
            "._record('10.0.0.9', failed=True)")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=60,
                   cwd=os.path.dirname(os.path.dirname(__file__)))
    assert 55.0 < here.retry_after("10.0.0.9") <= 60.0


def test_an_unusable_file_falls_back_to_counting_in_memory(tmp_path, caplog):
    folder = tmp_path / "not-a-folder"
    folder.write_text("a file where the index folder should be")
    store = SqliteFailures(folder / "failures.sqlite3")
    throttle = LoginThrottle(None, max_failures=1, lockout_s=5.0, store=store)
    throttle._record("10.0.0.3", failed=True)
    assert throttle.retry_after("10.0.0.3") > 4.0
    assert "failed logins are counted per process" in caplog.text


def test_the_servers_share_one_store_per_index_folder(tmp_path):
    from tests.conftest import make_settings

    settings = make_settings(tmp_path)
    assert shared_failures(settings) is shared_failures(settings.model_copy())
    assert shared_failures(settings).path == failures_file(settings).absolute()
    assert failures_file(settings).parent == settings.index_dir


# ------------------------------------------------------------------ two real app instances


def _login(url: str, password: str) -> int:
    return httpx.post(f"{url}login", data={"username": "editor", "password": password}, timeout=30).status_code


@pytest.mark.slow  # starts processes that import the app or load an index
def test_two_app_instances_sharing_the_index_folder_share_the_lockout(tmp_path, fake_embedder):
    """Two Gradio apps (as two workers would be), each with its own middleware, on two loopback ports: failures
    at either count toward one lockout of the client."""
    from ui.app import build_app, start

    pipeline = make_fake_pipeline(tmp_path, fake_embedder)
    settings = pipeline.settings.model_copy(update={"host": "127.0.0.1", "port": 0, "auth": "editor:s3cret-Pass",
                                                    "login_max_failures": 4, "login_lockout": 30.0})
    apps, urls = [], []
    try:
        for _ in range(2):
            app = build_app(pipeline)
            _, url, _ = start(app, settings, block=False, quiet=True)
            apps.append(app)
            urls.append(url)
        first, second = urls
        assert _login(first, "s3cret-Pass") == 200
        assert [_login(first, "a"), _login(second, "b"), _login(first, "c")] == [400, 400, 400]
        assert _login(second, "d") == 400  # the fourth failure in a row, at either app: locked out
        assert _login(first, "s3cret-Pass") == 429 and _login(second, "s3cret-Pass") == 429
        assert failures_file(settings).exists()
        # The client is the peer address as uvicorn reports it: from a trusted peer (FORWARDED_ALLOW_IPS, loopback
        # by default, i.e. a reverse proxy on this machine) that is the address X-Forwarded-For names (README).
        forwarded = httpx.post(f"{first}login", data={"username": "editor", "password": "s3cret-Pass"},
                               headers={"X-Forwarded-For": "203.0.113.7"}, timeout=30)
        assert forwarded.status_code == 200
    finally:
        for app in apps:
            app.close()


@pytest.mark.slow
def test_rag_serve_with_two_workers_gives_no_more_attempts_than_one(tmp_path, pipeline, rag_executable):
    """`rag serve --workers 2`: the kernel spreads the connections over two processes; with per-process counts an
    attacker had 2 × RAG_LOGIN_MAX_FAILURES tries, now exactly RAG_LOGIN_MAX_FAILURES."""
    import shutil

    from rag.net import free_port, stop_process

    shutil.copytree(pipeline.settings.corpus_dir, tmp_path / "corpus")
    shutil.copytree(pipeline.settings.index_dir, tmp_path / "index", symlinks=True)
    port = free_port()
    env = {**os.environ, "RAG_CORPUS_DIR": str(tmp_path / "corpus"), "RAG_INDEX_DIR": str(tmp_path / "index"),
           "RAG_AUTH": "editor:s3cret-Pass", "RAG_LOGIN_MAX_FAILURES": "3", "RAG_LOGIN_LOCKOUT": "60"}
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen([rag_executable, "serve", "--port", str(port), "--workers", "2"], env=env,
                              stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}/api/v1/documents"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url, auth=("editor", "s3cret-Pass"), timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text(errors="replace")
            time.sleep(0.5)
        # A new connection per request, so both workers take some of them.
        statuses = [httpx.get(url, auth=("editor", f"guess-{i}"), timeout=10).status_code for i in range(12)]
        assert statuses[:3] == [401, 401, 401]
        assert set(statuses[3:]) == {429}
        assert httpx.get(url, auth=("editor", "s3cret-Pass"), timeout=10).status_code == 429
    finally:
        stop_process(server)
        log.close()
