"""The Documents tab's background indexing in a real browser (Debian's Chromium, as tests/test_browser.py): an
upload runs as a job (rag.jobs) whose progress the page polls; questions are answered meanwhile; a second upload
is refused; Cancel leaves the corpus and index as they were; a committed job shows the new document."""

from __future__ import annotations

import pytest

from rag.pipeline import Pipeline
from tests.conftest import make_fake_pipeline
from tests.job_helpers import StuckEmbedder
from tests.test_browser import WAIT_MS, _ask, browser  # noqa: F401 (fixture)
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
    page.set_input_files("#rag-upload input[type=file]", [str(path)])
    page.wait_for_selector(f"#rag-upload :text('{path.name}')")
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
