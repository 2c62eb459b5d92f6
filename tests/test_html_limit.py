"""Issue 14: RAG_MAX_DOC_SECONDS bounds HTML extraction (trafilatura) as it bounds PDF extraction and sentence
splitting: a page that takes longer is refused in one line (exit 3) and nothing changes."""

from __future__ import annotations

import time

import pytest

from rag.documents import DocumentLimits, read_document
from rag.errors import InputFileError
from tests.test_hostile_inputs import home  # noqa: F401 (fixture)


def generated_page(paragraphs: int) -> str:
    """A long, well-formed news page: trafilatura's work grows with it (about 0.7 s per MB here)."""
    body = "".join(f"<div><p>Paragraph {i} of the story, with the words w{i % 97} and a few more here.</p></div>"
                   for i in range(paragraphs))
    return f"<html><head><title>Long page</title></head><body><article>{body}</article></body></html>"


def test_a_stuck_html_extractor_is_refused_at_the_deadline(tmp_path, monkeypatch):
    import trafilatura

    def stuck(*args, **kwargs):
        time.sleep(3)
        return "never used"

    monkeypatch.setattr(trafilatura, "extract", stuck)
    page = tmp_path / "stuck.html"
    page.write_text(generated_page(5), encoding="utf-8")
    started = time.monotonic()
    with pytest.raises(InputFileError) as refused:
        read_document(page, limits=DocumentLimits(max_seconds=0.3))
    waited = time.monotonic() - started
    assert str(refused.value) == ("stuck.html: refused: extracting its text took more than 0.3 s "
                                  "(RAG_MAX_DOC_SECONDS); split it into smaller files")
    assert refused.value.exit_code == 3
    assert waited < 2.0  # refused at the deadline, not when the extractor returns


def test_html_within_the_limit_is_read_and_extractor_errors_still_surface(tmp_path, monkeypatch):
    page = tmp_path / "page.html"
    page.write_text(generated_page(20), encoding="utf-8")
    doc = read_document(page, limits=DocumentLimits(max_seconds=30))
    assert doc.title == "Long page" and "Paragraph 19 of the story" in doc.text and doc.fmt == "html"

    import trafilatura

    def broken(*args, **kwargs):
        raise ValueError("parser exploded")

    monkeypatch.setattr(trafilatura, "extract", broken)
    with pytest.raises(ValueError, match="parser exploded"):  # raised in the caller's thread, as before
        read_document(page, limits=DocumentLimits(max_seconds=30))


@pytest.mark.slow
def test_rag_index_add_refuses_a_slow_html_page_and_changes_nothing(home):  # noqa: F811
    """A generated 1.6 MB page (about 1 s of trafilatura here) against a 0.2 s limit, through the real command."""
    from tests.test_cli import assert_one_line_error
    from tests.test_index import snapshot

    page = home.folder / "long.html"
    page.write_text(generated_page(20_000), encoding="utf-8")
    before = snapshot(home.settings)
    started = time.monotonic()
    result = home.run("index", "add", str(page), env={"RAG_MAX_DOC_SECONDS": "0.2"})
    assert_one_line_error(result, 3)
    assert result.stderr.strip() == ("rag: error: long.html: refused: extracting its text took more than 0.2 s "
                                     "(RAG_MAX_DOC_SECONDS); split it into smaller files")
    assert snapshot(home.settings) == before
    assert time.monotonic() - started < 60
