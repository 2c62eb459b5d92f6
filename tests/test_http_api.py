"""The JSON HTTP API (ui/server.py): /api/v1/ask, /check, /search beside the Gradio app, with the app's
validation, login and limits; `rag serve --workers 2`; two servers on one PostgreSQL store."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest


def _serve(app):
    """Run a FastAPI app with uvicorn on a free loopback port in a thread; returns (url, server)."""
    import uvicorn

    from rag.net import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def call(url: str, path: str, body=None, auth: tuple[str, str] | None = None, raw: bytes | None = None):
    """(status, JSON) of a POST (with a body) or GET."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url + path, data=data, method="POST" if data is not None else "GET",
                                     headers={"Content-Type": "application/json"})
    if auth:
        import base64

        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@pytest.fixture(scope="module")
def served(pipeline):
    from ui.server import create_app

    url, server = _serve(create_app(pipeline.settings, pipeline=pipeline))
    yield url
    server.should_exit = True


def test_ask_check_search_return_the_pipelines_json(served, pipeline):
    from rag.types import search_json

    status, answer = call(served, "/api/v1/ask", {"question": "Who replaced Qassem Soleimani?"})
    expected = pipeline.ask("Who replaced Qassem Soleimani?").to_json()
    assert status == 200
    assert (answer["answer"], answer["citations"]) == (expected["answer"], expected["citations"])
    status, found = call(served, "/api/v1/search", {"query": "Green Zone protest", "k": 3})
    assert status == 200 and found == search_json("Green Zone protest", pipeline.search("Green Zone protest", k=3))
    status, checked = call(served, "/api/v1/check", {"claim": "Khazali told his supporters to wear black."})
    assert status == 200 and checked == pipeline.check("Khazali told his supporters to wear black.").to_json()
    status, documents = call(served, "/api/v1/documents")
    assert status == 200 and documents == pipeline.documents()


def test_openapi_docs_and_the_gradio_endpoints_stay(served):
    from gradio_client import Client

    status, spec = call(served, "/api/openapi.json")
    assert status == 200 and {"/api/v1/ask", "/api/v1/check", "/api/v1/search"} <= set(spec["paths"])
    with urllib.request.urlopen(served + "/api/docs", timeout=30) as response:
        assert response.status == 200 and b"swagger" in response.read().lower()
    with urllib.request.urlopen(served + "/", timeout=30) as response:
        assert response.status == 200
    client = Client(served + "/", verbose=False)
    assert client.predict("Green Zone protest", 2, api_name="/search")["hits"][0]["chunk_id"]


@pytest.mark.parametrize(("path", "body", "status", "message"), [
    ("/api/v1/ask", {"question": "   "}, 400, "question is empty"),
    ("/api/v1/ask", {"question": "x" * 2001}, 400, "the limit is 2,000 (RAG_MAX_QUESTION_CHARS)"),
    ("/api/v1/ask", {"question": "Who?", "k": 2.5}, 400, "k must be a whole number from 1 to 50"),
    ("/api/v1/ask", {"question": "Who?", "k": -1}, 400, "k must be a whole number from 1 to 50"),
    ("/api/v1/ask", {"question": "Who?", "backend": "openai-compatible:http://evil.example/v1"}, 400,
     "is not enabled on this server"),
    ("/api/v1/check", {"claim": ""}, 400, "claim is empty"),
    ("/api/v1/search", {"query": "\x00\x01"}, 400, "query is empty"),
])
def test_the_same_validation_as_the_app(served, path, body, status, message):
    got, reply = call(served, path, body)
    assert got == status and message in reply["error"]


def test_malformed_and_oversized_requests(served):
    assert call(served, "/api/v1/ask", {"question": ["not", "text"]})[0] == 422
    assert call(served, "/api/v1/ask", raw=b"{not json")[0] == 422
    import http.client
    from urllib.parse import urlsplit

    where = urlsplit(served)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
    conn.putrequest("POST", "/api/v1/ask")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", "1100000")
    conn.endheaders()  # refused from its headers, before a byte of the body is read
    response = conn.getresponse()
    assert response.status == 413 and "request body over" in json.loads(response.read())["error"]
    conn.close()


def test_other_paths_and_methods_under_the_api_are_json_errors(served):
    """Were Gradio's 404 {"detail": "Not Found"} (the app mounted at "/" answered them)."""
    assert call(served, "/api/v1/ask") == (405, {"error": "GET is not allowed on /api/v1/ask; use POST"})
    request = urllib.request.Request(served + "/api/v1/documents", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 405 and refused.value.headers["Allow"] == "GET"
    assert json.loads(refused.value.read())["error"] == "POST is not allowed on /api/v1/documents; use GET"
    assert call(served, "/api/v1/nothing") == (
        404, {"error": "no such endpoint: /api/v1/nothing (the endpoints: /api/docs)"})
    assert call(served, "/api/v1/nothing", {"x": 1})[0] == 404
    assert call(served, "/api/openapi.json")[0] == 200  # outside the prefix: as before


def test_login_and_busy(pipeline, tmp_path):
    import httpx

    from rag.pipeline import Pipeline
    from ui.server import Busy, Gate, create_app

    # Failed logins are counted in a file of the index folder (ui/login.py): a private one, so this lockout of
    # 127.0.0.1 does not reach other tests' servers over the session's index.
    settings = pipeline.settings.model_copy(update={"auth": "editor:s3cret", "login_max_failures": 3,
                                                    "index_dir": tmp_path / "index"})
    locked = Pipeline(settings, pipeline.embedder, pipeline.index)
    url, server = _serve(create_app(settings, pipeline=locked))
    try:
        assert call(url, "/api/v1/search", {"query": "Green Zone"})[0] == 401
        assert call(url, "/api/v1/search", {"query": "Green Zone"}, auth=("editor", "s3cret"))[0] == 200
        wrong = [call(url, "/api/v1/search", {"query": "Green Zone"}, auth=("editor", f"guess{i}"))[0]
                 for i in range(4)]
        assert wrong == [401, 401, 401, 429]
        assert call(url, "/api/v1/search", {"query": "Green Zone"}, auth=("editor", "s3cret"))[0] == 429
        # The mounted app's login page is rate-limited too, with the same count: the client is locked out there.
        logins = [httpx.post(f"{url}/login", data={"username": "editor", "password": f"g{i}"}, timeout=30).status_code
                  for i in range(4)]
        assert logins == [429] * 4
    finally:
        server.should_exit = True
    gate = Gate(limit=1, queue=0)
    with gate(), pytest.raises(Busy), gate():
        pass
    with gate():  # released
        pass


@pytest.mark.slow
def test_rag_serve_with_two_workers(tmp_path, pipeline, rag_executable):
    """Two API workers on one port, and the web app in a process of its own on --ui-port: a browser's Gradio
    calls work there, and the app's process ends with the server."""
    import shutil

    from gradio_client import Client

    from rag.net import free_port

    shutil.copytree(pipeline.settings.corpus_dir, tmp_path / "corpus")
    shutil.copytree(pipeline.settings.index_dir, tmp_path / "index", symlinks=True)
    port, ui_port = free_port(), free_port()
    env = {**os.environ, "RAG_CORPUS_DIR": str(tmp_path / "corpus"), "RAG_INDEX_DIR": str(tmp_path / "index")}
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen([rag_executable, "serve", "--port", str(port), "--workers", "2", "--ui-port",
                               str(ui_port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url, app_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}"
    try:
        _wait(url, server, tmp_path / "serve.log")
        answers = {json.dumps(call(url, "/api/v1/ask", {"question": "Who replaced Qassem Soleimani?"})[1]["citations"])
                   for _ in range(8)}
        assert len(answers) == 1
        assert f"the web app at {app_url}/" in (tmp_path / "serve.log").read_text()
        with pytest.raises(urllib.error.HTTPError):  # the workers serve the API only
            urllib.request.urlopen(url + "/", timeout=10)
        _wait(app_url, server, tmp_path / "serve.log")
        with urllib.request.urlopen(app_url + "/", timeout=10) as page:
            assert b"gradio" in page.read().lower()
        answer = Client(app_url + "/", verbose=False, download_files=False).predict(
            "Who replaced Qassem Soleimani?", api_name="/ask")
        assert json.dumps(answer["citations"]) in answers
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    deadline = time.monotonic() + 15
    while True:  # the app's process is gone with the server: its port refuses connections
        try:
            urllib.request.urlopen(app_url + "/", timeout=2).close()
        except OSError:
            break
        assert time.monotonic() < deadline, "the web app's process outlived the server"
        time.sleep(0.2)


def _wait(url, server, log_file, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert server.poll() is None, log_file.read_text(errors="replace")
        try:
            urllib.request.urlopen(url + "/api/openapi.json", timeout=5).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "rag serve did not start"
            time.sleep(0.25)


@pytest.mark.slow
def test_two_servers_on_one_postgres_store(tmp_path, pg_url, rag_executable):  # noqa: F811
    """Two `rag serve` processes on one PostgreSQL store; a document added with `rag index add` (a third
    process) is found by both within seconds."""
    from tests.conftest import make_settings
    from tests.test_pgstore import SECOND

    settings = make_settings(tmp_path)
    env = {**os.environ, "RAG_STORE": pg_url, "RAG_INDEX_NAME": "served", "RAG_CORPUS_DIR": str(settings.corpus_dir),
           "RAG_INDEX_DIR": str(tmp_path / "index")}
    subprocess.run([rag_executable, "index", "build"], env=env, check=True, capture_output=True, timeout=300)
    from rag.net import free_port

    servers, urls = [], []
    try:
        for i in range(2):
            port = free_port()
            log = (tmp_path / f"serve{i}.log").open("wb")
            servers.append(subprocess.Popen([rag_executable, "serve", "--port", str(port)], env=env, stdout=log,
                                            stderr=subprocess.STDOUT))
            urls.append(f"http://127.0.0.1:{port}")
        for i, (url, server) in enumerate(zip(urls, servers, strict=True)):
            _wait(url, server, tmp_path / f"serve{i}.log")
        new_file = tmp_path / "2026-04-02-baghdad-floods.txt"
        new_file.write_text(SECOND, encoding="utf-8")
        subprocess.run([rag_executable, "index", "add", str(new_file)], env=env, check=True, capture_output=True,
                       timeout=300)
        added = time.monotonic()
        pending = set(urls)
        while pending and time.monotonic() - added < 15:
            for url in list(pending):
                hits = call(url, "/api/v1/search", {"query": "Tigris flood barriers cost", "k": 1})[1]["hits"]
                if hits and hits[0]["source"] == new_file.name:
                    pending.discard(url)
            time.sleep(0.2)
        assert not pending, "a server never answered from the added document"
        assert time.monotonic() - added < 5
    finally:
        for server in servers:
            server.terminate()
            server.wait(30)


from tests.test_pgstore import pg_url  # noqa: E402,F401 - the session's PostgreSQL server fixture


def test_the_web_apps_port_is_the_first_free_one_after_the_apis():
    import socket

    from rag.net import free_port_from

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        chosen = free_port_from("127.0.0.1", port)  # the taken port is skipped; the next free one is chosen
        assert port < chosen <= port + 100
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", chosen))
