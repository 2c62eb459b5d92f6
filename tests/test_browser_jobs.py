"""The Documents tab's background indexing in a real browser (Debian's Chromium, as tests/test_browser.py): an
upload runs as a job (rag.jobs) whose progress the page polls; questions are answered meanwhile; a second upload
is refused; Cancel leaves the corpus and index as they were; a committed job shows the new document."""

from __future__ import annotations

import pytest

from rag.pipeline import Pipeline
from tests.conftest import make_fake_pipeline
from tests.job_helpers import StuckEmbedder
from tests.test_browser import WAIT_MS, _ask, browser, choose_files  # noqa: F401 (fixture)
from tests.test_jobs import NOTE, state_of
from ui.app import build_app, start

pytestmark = [pytest.mark.browser, pytest.mark.slow]
STATUS = "#rag-documents-status .rag-status"


@pytest.fixture
def open_app(browser):  # noqa: F811
    served = []

    def open_(pipeline: Pipeline):
        settings = pipeline.settings.model_copy(update={"host": "127.0.0.1", "port": 0, "auth": None})
        app = build_app(pipeline)
        _, url, _ = start(app, settings, block=False, quiet=True)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        served.append((app, context))
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(url)
        page.get_by_role("tab", name="Documents").click()
        return page

    yield open_
    for app, context in served:
        context.close()
        app.close()


def _upload(page, path) -> None:
    choose_files(page, [path])
    page.get_by_role("button", name="Add to index").click()


def test_an_upload_is_indexed_in_the_background_and_shown_when_committed(open_app, tmp_path, fake_embedder):
    pipeline = make_fake_pipeline(tmp_path, fake_embedder)
    note = tmp_path / "ferry-note.txt"
    note.write_text(NOTE, encoding="utf-8")
    page = open_app(pipeline)
    _upload(page, note)
    done = page.locator(f"{STATUS}.rag-status-ok")
    done.wait_for()
    assert done.inner_text() == "Indexed 1 document: ferry-note.txt"
    assert "ferry-note.txt" in pipeline.index.documents
    page.wait_for_selector(".table-wrap :text('ferry-note.txt'), table :text('ferry-note.txt')")
    assert not page.locator("#rag-cancel-indexing").is_visible()


def test_a_stuck_upload_shows_progress_keeps_answering_refuses_another_and_cancels(open_app, tmp_path,
                                                                                   fake_embedder):
    built = make_fake_pipeline(tmp_path, fake_embedder)
    pipeline = Pipeline(built.settings, StuckEmbedder(), built.index)  # its jobs get stuck in their build
    before = state_of(pipeline.settings)
    note, other = tmp_path / "ferry-note.txt", tmp_path / "bus-note.txt"
    note.write_text(NOTE, encoding="utf-8")
    other.write_text(NOTE.replace("ferry", "bus"), encoding="utf-8")
    page = open_app(pipeline)
    _upload(page, note)
    # The page polls the job: its stage and how long it has run.
    page.wait_for_selector(f"{STATUS}:text('Indexing ferry-note.txt: embedding new passages')")
    assert page.locator("#rag-cancel-indexing").is_visible()

    _upload(page, other)  # a second upload while the first runs
    page.wait_for_selector(f"{STATUS}.rag-status-error:text('another upload is being indexed (ferry-note.txt')")

    page.get_by_role("tab", name="Chat").click()  # questions are answered from the last good index meanwhile
    # (The hashing embedder's answer may be an abstention: what counts is that the question is answered now.)
    answer = _ask(page, "Who replaced Qassem Soleimani?", expect_answer=False)
    assert answer.inner_text().strip()

    page.get_by_role("tab", name="Documents").click()
    page.wait_for_selector(f"{STATUS}:text('Indexing ferry-note.txt')")  # the poll shows the job again
    page.get_by_role("button", name="Cancel indexing").click()
    page.wait_for_selector(f"{STATUS}:text('Cancelled: nothing was indexed')")
    page.locator("#rag-cancel-indexing").wait_for(state="hidden")
    assert state_of(pipeline.settings) == before
    assert "ferry-note.txt" not in pipeline.index.documents
    assert page.locator("table :text('ferry-note.txt')").count() == 0


def _wait_ready(url: str, server, log_path) -> None:
    import time

    import httpx

    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/api/v1/documents", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert server.poll() is None and time.monotonic() < deadline, log_path.read_text(errors="replace")
        time.sleep(0.3)


def test_rag_serve_killed_mid_upload_restarts_on_the_last_good_index(browser, tmp_path, pipeline,  # noqa: F811
                                                                      rag_executable):
    """The real `rag serve` (real model): an upload big enough to take a while is started from the page, the server
    is killed with SIGKILL while the job embeds, and a new `rag serve` over the same folders lists the documents
    of before; the corpus and the index are as they were."""
    import os
    import shutil
    import signal
    import subprocess
    import time

    import httpx

    from rag.net import free_port, stop_process
    from tests.conftest import make_settings
    from tests.test_jobs import _gone

    shutil.copytree(pipeline.settings.corpus_dir, tmp_path / "corpus")
    shutil.copytree(pipeline.settings.index_dir, tmp_path / "index", symlinks=True)
    settings = make_settings(tmp_path)
    before = state_of(settings)
    report = tmp_path / "uploads" / "long-report.txt"
    report.parent.mkdir()
    report.write_text("\n\n".join(f"Report {i}: the council of town {i} met on day {i % 28 + 1} and approved budget "
                                  f"item {i * 7}. Officials said project {i} would start soon." for i in range(2500)),
                      encoding="utf-8")
    env = {**os.environ, "RAG_CORPUS_DIR": str(settings.corpus_dir), "RAG_INDEX_DIR": str(settings.index_dir)}

    def serve(port: int, log_path):
        log = log_path.open("wb")
        return subprocess.Popen([rag_executable, "serve", "--port", str(port)], env=env, cwd=tmp_path, stdout=log,
                                stderr=subprocess.STDOUT)

    port = free_port()
    server = serve(port, tmp_path / "serve-1.log")
    url = f"http://127.0.0.1:{port}"
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        _wait_ready(url, server, tmp_path / "serve-1.log")
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(url)
        page.get_by_role("tab", name="Documents").click()
        _upload(page, report)
        page.wait_for_selector(f"{STATUS}:text('Indexing long-report.txt: embedding new passages')",
                               timeout=120_000)
        jobs = [int(p) for p in subprocess.run(["pgrep", "-f", "-P", str(server.pid), "rag.jobs"],
                                               capture_output=True, text=True).stdout.split()]
        assert len(jobs) == 1
        os.kill(server.pid, signal.SIGKILL)
        server.wait()
        deadline = time.monotonic() + 10
        while not _gone(jobs[0]):  # the job notices its server is gone
            assert time.monotonic() < deadline, "the job outlived its server"
            time.sleep(0.1)
    finally:
        context.close()
        if server.poll() is None:
            stop_process(server)

    port = free_port()
    restarted = serve(port, tmp_path / "serve-2.log")
    try:
        _wait_ready(f"http://127.0.0.1:{port}", restarted, tmp_path / "serve-2.log")
        documents = httpx.get(f"http://127.0.0.1:{port}/api/v1/documents", timeout=10).json()
        assert [d["id"] for d in documents] == [d["id"] for d in pipeline.documents()]
    finally:
        stop_process(restarted)
    assert state_of(settings) == before
    assert "rebuilding" not in (tmp_path / "serve-2.log").read_text(errors="replace")  # opened, not rebuilt


def test_a_file_chosen_again_after_a_refusal_is_listed_once_and_added(open_app, tmp_path, fake_embedder):
    """Review item: the upload component appends what is chosen to what it holds, so choosing a refused file again
    (once fixed) listed it twice, and "Add to index" was refused again for a name given twice."""
    pipeline = make_fake_pipeline(tmp_path, fake_embedder)
    broken, fixed = tmp_path / "broken" / "ferry-note.txt", tmp_path / "fixed" / "ferry-note.txt"
    broken.parent.mkdir()
    fixed.parent.mkdir()
    broken.write_bytes(b"caf\xe9 au lait\n")  # Latin-1: refused
    fixed.write_text(NOTE, encoding="utf-8")
    page = open_app(pipeline)
    _upload(page, broken)
    page.wait_for_selector(f"{STATUS}.rag-status-error:text('ferry-note.txt: not valid UTF-8 text')")
    page.set_input_files("#rag-upload input[type=file]", [str(fixed)])
    page.wait_for_function("document.querySelectorAll('#rag-upload tbody tr').length === 1 && "
                           "!document.querySelector('#rag-upload .uploading')")
    page.wait_for_timeout(1000)  # the list's own handler has run: it stays at one row
    assert page.locator("#rag-upload tbody tr").count() == 1
    page.get_by_role("button", name="Add to index").click()
    done = page.locator(f"{STATUS}.rag-status-ok")
    done.wait_for()
    assert done.inner_text() == "Indexed 1 document: ferry-note.txt"
    assert pipeline.index.documents["ferry-note.txt"].text == NOTE
