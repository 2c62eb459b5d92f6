"""Regressions for the hostile inputs and damaged state of issue 14, each reproduced through the real components
(the ``rag`` command on private copies of the corpus and index, the real model, FAISS and BM25).

Items 4 and 5 (citation markers in document text, the passages fence) are tested with the answer backends;
items 12 and 13 are not covered here.
"""

from __future__ import annotations

import json

import pytest

from rag import segment
from rag.types import Document
from tests.test_bad_inputs import RagHome

USAGE, INPUT_FILE, CORRUPT = 2, 3, 4


@pytest.fixture
def home(indexed_settings, rag_executable) -> RagHome:
    """Private copies of the session's corpus and built index, and the ``rag`` command pointed at them."""
    return RagHome(indexed_settings.corpus_dir.parent, rag_executable)


def corpus_names(home: RagHome) -> list[str]:
    """Every entry of the corpus folder, hidden ones included."""
    return sorted(p.name for p in (home.folder / "corpus").iterdir())


# ------------------------------------------------------------------ 1. sentence splitting is linear


def _lines(n: int) -> str:
    return "".join(f"w{i % 97}\n" for i in range(n))  # the probe's input, shorter


def _check_spans(doc: Document, sentences, chunks) -> None:
    for span in (*sentences, *chunks):
        assert doc.text[span.start : span.end] == span.text
    assert all(a.end <= b.start for a, b in zip(sentences, sentences[1:], strict=False))


def test_a_long_block_of_short_lines_is_split_in_bounded_windows(monkeypatch):
    """30,000 lines in one block (117 kB): split whole, pysbd took about 5 s (3.9 MB: hours); now pysbd never
    sees more than WINDOW characters, every sentence is an exact span and no text is lost."""
    text = _lines(30_000)
    doc = Document("lines.txt", text, "lines", None, "-", "txt")
    seen: list[int] = []
    real = segment._segmenter()

    class Recording:
        def segment(self, block: str):
            seen.append(len(block))
            return real.segment(block)

    monkeypatch.setattr(segment, "_segmenter", lambda: Recording())
    sentences, chunks = segment.segment_document(doc, 0, 3, 1)
    assert seen and max(seen) <= segment.WINDOW
    _check_spans(doc, sentences, chunks)
    assert max(len(s.text) for s in sentences) <= segment.WINDOW
    covered = "".join(s.text for s in sentences)
    assert covered.replace("\n", "") == text.replace("\n", "")  # every word is in a sentence, once


def test_a_long_prose_block_splits_as_pysbd_splits_it_whole(article_text):
    """Windows end at the start of their last sentence, so a long paragraph is split where pysbd, given the
    whole paragraph, splits it (the article's paragraphs joined into one 17 kB block)."""
    paragraphs = [p.strip() for p in article_text.split("\n\n") if len(p.split()) > 12]
    block = " ".join(paragraphs).removeprefix("date 2026-03-06 ")
    assert len(block) > 5 * segment.WINDOW
    doc = Document("block.txt", block, "block", None, "-", "txt")
    sentences, chunks = segment.segment_document(doc, 0, 3, 1)
    _check_spans(doc, sentences, chunks)
    whole = segment._pysbd_spans(block, 0, len(block))
    assert len(sentences) == len(whole) and {s.start for s in sentences} == {s for s, _ in whole}


def test_a_long_run_of_blank_space_is_one_pass():
    """The old block pattern backtracked over every blank position of a line (a 20 kB line of spaces: 1.6 s;
    1 MB: hours)."""
    text = "Talks resumed in Muscat.\n" + " " * 1_000_000 + "\nOmani mediators shuttled between them."
    doc = Document("blank.txt", text, "blank", None, "-", "txt")
    sentences, _ = segment.segment_document(doc, 0, 3, 1)
    assert [s.text for s in sentences] == ["Talks resumed in Muscat.", "Omani mediators shuttled between them."]


def test_index_add_of_a_block_of_many_short_lines_completes(home):
    lines = home.folder / "lines.txt"
    lines.write_text(_lines(30_000), encoding="utf-8")
    added = home.run("index", "add", str(lines), timeout=300)
    assert added.returncode == 0, added.stderr
    assert "added lines.txt (116,900 characters)" in added.stdout
    found = home.run("search", "w42", "--json")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)["hits"]
    assert any(hit["source"] == "lines.txt" and "w42\n" in hit["text"] for hit in hits)
