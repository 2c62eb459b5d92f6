"""Issue 14: file names with control characters, a corpus of duplicates (item 13) and the limits on what one
document may cost, reproduced through the real components (the ``rag`` command on private copies of the corpus
and index where the CLI is the point, the library elsewhere)."""

from __future__ import annotations

import pytest

from tests.test_hostile_inputs import home  # noqa: F401 (fixture)

ARTICLE_NAME = "2026-03-06-iran-proxies-iraq.txt"


# ------------------------------------------------------------------ a newline in a file name


@pytest.mark.slow
def test_a_newline_in_a_file_name_is_never_printed_raw(home):  # noqa: F811
    """A file put straight into the corpus folder (``rag index add`` refuses such names): `rag index info`
    lists it escaped, and the stale-index warning and a refusal naming it stay one line each."""
    corpus = home.folder / "corpus"
    (corpus / "evil\nname.txt").write_text("date 2026-01-01\n\nThe mayor of Springfield opened a bridge on Monday.\n",
                                          encoding="utf-8")
    result = home.run("index", "info")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "rag: index 'default' is stale (corpus changed (added: evil\\nname.txt)): rebuilding"]
    assert "  - 'evil\\nname.txt'  date=2026-01-01" in result.stdout
    assert all(line.startswith(("index ", "  ")) for line in result.stdout.splitlines())
    (corpus / "empty\none.txt").write_bytes(b"")  # cannot be read: skipped, named escaped, and listed
    result = home.run("index", "info")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1] == "rag: 'empty\\none.txt': skipped, not indexed: file is empty"
    assert all(line.startswith("rag: ") for line in result.stderr.splitlines())
    assert "  skipped   'empty\\none.txt' (not indexed: file is empty)" in result.stdout.splitlines()


# ------------------------------------------------------------------ 13. a corpus of duplicates


def _duplicated_corpus(tmp_path, copies: int, files: int):
    """The probe's corpus, generated: the article, one file holding it ``copies`` times (1,000 copies: 17.6 MB)
    and ``files`` more files that are each the article again (the same story from several wires)."""
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, max_file_mb=100, max_text_chars=50_000_000)
    article = (settings.corpus_dir / ARTICLE_NAME).read_text(encoding="utf-8")
    (settings.corpus_dir / "wire-repeated.txt").write_text("\n\n".join([article] * copies), encoding="utf-8")
    for i in range(files):
        (settings.corpus_dir / f"wire-copy-{i + 1}.txt").write_text(article, encoding="utf-8")
    return settings, article


def test_identical_paragraphs_are_segmented_once_at_their_first_occurrence():
    from rag.segment import Seen, segment_document
    from rag.types import Document

    story = "Rain fell on Monday. The river rose by a metre.\n\nThe mayor closed the bridge. Traffic stopped."
    text = "\n\n".join([story] * 50 + ["A new paragraph. It says something else."])
    seen = Seen()
    sentences, chunks = segment_document(Document("wire.txt", text, "wire"), 0, 3, 1, seen)
    assert [s.text for s in sentences] == ["Rain fell on Monday.", "The river rose by a metre.",
                                           "The mayor closed the bridge.", "Traffic stopped.", "A new paragraph.",
                                           "It says something else."]
    assert sentences[0].start == 0 and text.rindex("A new paragraph.") == sentences[4].start  # first occurrences
    assert all(text[c.start : c.end] == c.text for c in (*sentences, *chunks))
    assert len({c.text for c in chunks}) == len(chunks)
    assert seen.skipped_paragraphs == 98
    again, again_chunks = segment_document(Document("copy.txt", story, "copy"), len(sentences), 3, 1, seen)
    assert again == [] and again_chunks == [] and seen.skipped_paragraphs == 100  # another file, same story


@pytest.mark.slow
def test_a_corpus_of_duplicates_is_indexed_once_and_still_answers(tmp_path, embedder):
    """The article 1,000 times in one file and again in three more files: indexed as the article alone would be
    (it took 427 s and 1.39 GB, and the headline question abstained); the answer cites the first occurrence."""
    from rag.index import build_index, load_index
    from rag.pipeline import Pipeline
    from rag.segment import segment_document

    settings, article = _duplicated_corpus(tmp_path, copies=1000, files=3)
    index = build_index(settings, embedder)
    alone = segment_document(index.documents[ARTICLE_NAME], 0, settings.chunk_sentences, settings.chunk_overlap)
    assert len(index.chunks) <= len(alone[1]) + 2 and len(index.sentences) <= len(alone[0]) + 4
    assert len({c.text for c in index.chunks}) == len(index.chunks)
    listed = {d["id"]: d for d in index.manifest["documents"]}
    assert listed["wire-repeated.txt"]["duplicate_paragraphs"] > 999 * 30
    for copy in ("wire-copy-1.txt", "wire-copy-2.txt", "wire-copy-3.txt"):
        assert listed[copy]["chunks"] == 0 and listed[copy]["duplicate_paragraphs"] > 30
    load_index(settings.index_path)  # every span checked against its document
    pipeline = Pipeline(settings, embedder, index)
    answer = pipeline.ask("Who replaced Qassem Soleimani?")
    assert not answer.abstained and answer.short_answer == "Esmail Ghaani"
    for citation in answer.citations:
        assert citation.source == ARTICLE_NAME
        assert article[citation.start : citation.end] == citation.text
    hits = pipeline.search("Esmail Ghaani Soleimani", k=10)
    assert len({h.chunk.text for h in hits}) == len(hits) == 10


# ------------------------------------------------------------------ limits on what one document may cost


def _probe_lines(n: int) -> str:
    return "".join(f"w{i % 97}\n" for i in range(n))  # item 1's input: one block of n short lines


def _distinct_paragraphs(n: int) -> str:
    return "\n\n".join(f"Report {i} says the river rose near bridge {i}. Crews worked through night {i}."
                       for i in range(n))


def test_the_limits_default_to_the_settings_defaults():
    from rag.documents import DocumentLimits
    from rag.settings import Settings

    assert DocumentLimits.from_settings(Settings(_env_file=None)) == DocumentLimits()


def test_a_pdf_with_more_pages_than_the_limit_is_refused_before_extraction(tmp_path, monkeypatch):
    from pypdf import PageObject

    from rag.documents import DocumentLimits, read_document
    from rag.errors import InputFileError
    from tests.test_hostile_inputs import shared_stream_pdf

    pdf = tmp_path / "pages.pdf"
    pdf.write_bytes(shared_stream_pdf(50, lines=2))
    extracted: list[int] = []
    real = PageObject.extract_text
    monkeypatch.setattr(PageObject, "extract_text", lambda page, *a, **k: extracted.append(1) or real(page, *a, **k))
    with pytest.raises(InputFileError) as refused:
        read_document(pdf, limits=DocumentLimits(max_pages=10))
    assert str(refused.value) == "pages.pdf: refused: 50 pages; the limit is 10 (RAG_MAX_PDF_PAGES)"
    assert extracted == []
    assert read_document(pdf, limits=DocumentLimits(max_pages=50)).fmt == "pdf"


def test_a_paragraph_of_more_lines_than_the_limit_is_refused(tmp_path):
    from rag.documents import DocumentLimits, read_document
    from rag.errors import InputFileError

    text = tmp_path / "lines.txt"
    text.write_text("Title\n\n" + _probe_lines(1_000_000), encoding="utf-8")  # the probe's 3.9 MB file
    with pytest.raises(InputFileError) as refused:
        read_document(text, limits=DocumentLimits())
    assert str(refused.value) == ("lines.txt: refused: a paragraph of more than 50,000 lines without a blank line "
                                  "(from line 3; RAG_MAX_BLOCK_LINES)")
    short = tmp_path / "short.txt"
    short.write_text("\n\n".join([_probe_lines(100)] * 1000), encoding="utf-8")  # 100,000 lines, short paragraphs
    assert read_document(short, limits=DocumentLimits(max_block_lines=100)).text


def test_splitting_that_takes_longer_than_the_limit_is_refused():
    from rag.documents import DocumentLimits
    from rag.errors import InputFileError
    from rag.segment import segment_document
    from rag.types import Document

    doc = Document("slow.txt", _distinct_paragraphs(3000), "slow")
    with pytest.raises(InputFileError) as refused:
        segment_document(doc, 0, 3, 1, limits=DocumentLimits(max_seconds=0.05))
    assert str(refused.value) == ("slow.txt: refused: splitting it into sentences took more than 0.05 s "
                                  "(RAG_MAX_DOC_SECONDS); split it into smaller files")


def test_a_corpus_file_too_slow_to_split_is_left_out_and_forgets_its_paragraphs():
    """Found in the corpus folder, such a file is left out (it stopped every build); the paragraphs it had
    split before the limit are forgotten, so a later document holding one of them still indexes it."""
    from rag.documents import DocumentLimits
    from rag.errors import InputFileError
    from rag.index import segment_corpus
    from rag.settings import Settings
    from rag.types import Document

    slow = Document("slow.txt", _distinct_paragraphs(3000), "slow")
    later = Document("later.txt", _distinct_paragraphs(1), "later")  # slow.txt's first paragraph
    sentences, chunks, per_doc, dropped = segment_corpus(
        Settings(), [slow, later], DocumentLimits(max_seconds=0.05), found={"slow.txt", "later.txt"})
    assert dropped == {"slow.txt": "refused: splitting it into sentences took more than 0.05 s "
                                   "(RAG_MAX_DOC_SECONDS); split it into smaller files"}
    assert per_doc[0]["id"] == "later.txt" and per_doc[0]["duplicate_paragraphs"] == 0
    assert [s.text for s in sentences] == ["Report 0 says the river rose near bridge 0.", "Crews worked through night 0."]
    assert {s.source for s in sentences} == {"later.txt"} and sentences[0].id == 0 and chunks
    with pytest.raises(InputFileError, match=r"^slow\.txt: refused: splitting it into sentences"):
        segment_corpus(Settings(), [slow], DocumentLimits(max_seconds=0.05), found={"later.txt"})


def test_pdf_extraction_that_takes_longer_than_the_limit_is_refused(tmp_path, monkeypatch):
    import time as clock

    from rag.documents import DocumentLimits, read_document
    from rag.errors import InputFileError
    from tests.test_hostile_inputs import shared_stream_pdf

    pdf = tmp_path / "slow.pdf"
    pdf.write_bytes(shared_stream_pdf(20, lines=2))
    ticks = iter(range(0, 10_000, 10))  # every look at the clock: 10 s later
    monkeypatch.setattr(clock, "monotonic", lambda: float(next(ticks)))
    with pytest.raises(InputFileError, match=r"^slow\.pdf: refused: extracting its text took more than 25 s"):
        read_document(pdf, limits=DocumentLimits(max_seconds=25))


@pytest.mark.slow
@pytest.mark.parametrize("case", ["pages", "lines", "seconds"])
def test_rag_index_add_refuses_a_costly_document_and_changes_nothing(home, case):  # noqa: F811
    from tests.test_cli import assert_one_line_error
    from tests.test_hostile_inputs import shared_stream_pdf
    from tests.test_index import snapshot

    if case == "pages":
        path, env = home.folder / "pages.pdf", {"RAG_MAX_PDF_PAGES": "10"}
        path.write_bytes(shared_stream_pdf(50, lines=2))
        expected = "pages.pdf: refused: 50 pages; the limit is 10 (RAG_MAX_PDF_PAGES)"
    elif case == "lines":
        path, env = home.folder / "lines.txt", {}
        path.write_text(_probe_lines(1_000_000), encoding="utf-8")
        expected = ("lines.txt: refused: a paragraph of more than 50,000 lines without a blank line (from line 1; "
                    "RAG_MAX_BLOCK_LINES)")
    else:
        # The limit is per document: the article (split again by the build) takes a fraction of it.
        path, env = home.folder / "slow.txt", {"RAG_MAX_DOC_SECONDS": "3"}
        path.write_text(_distinct_paragraphs(20_000), encoding="utf-8")
        expected = ("slow.txt: refused: splitting it into sentences took more than 3 s (RAG_MAX_DOC_SECONDS); "
                    "split it into smaller files")
    before = snapshot(home.settings)
    result = home.run("index", "add", str(path), env=env)
    assert_one_line_error(result, 3)
    assert result.stderr.strip() == f"rag: error: {expected}"
    assert snapshot(home.settings) == before
