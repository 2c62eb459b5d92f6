"""Every sentence and chunk is an exact span of its document: ``text == document[start:end]``."""

from __future__ import annotations

import pytest

from rag.segment import paragraphs, segment_document


@pytest.fixture(scope="module", params=[(3, 1), (1, 0), (5, 2)], ids=lambda p: f"chunk{p[0]}-overlap{p[1]}")
def segmented(request, article_document):
    chunk_sentences, chunk_overlap = request.param
    sentences, chunks = segment_document(article_document, 0, chunk_sentences, chunk_overlap)
    return article_document, sentences, chunks, chunk_sentences


def test_every_sentence_round_trips(segmented):
    doc, sentences, _, _ = segmented
    assert len(sentences) > 100
    for s in sentences:
        assert s.source == doc.id
        assert 0 <= s.start < s.end <= len(doc.text)
        assert s.text == doc.text[s.start : s.end]
        assert s.text == s.text.strip(), "spans carry no surrounding whitespace"


def test_every_chunk_round_trips(segmented):
    doc, _, chunks, _ = segmented
    for c in chunks:
        assert c.source == doc.id
        assert c.text == doc.text[c.start : c.end]


def test_chunks_span_one_paragraph(segmented, article_document):
    _, sentences, chunks, chunk_sentences = segmented
    paragraph_spans = [(start, end) for start, end, _ in paragraphs(article_document)]
    for c in chunks:
        assert 1 <= len(c.sentence_ids) <= chunk_sentences
        assert len({sentences[i].paragraph for i in c.sentence_ids}) == 1, c.id
        assert any(start <= c.start and c.end <= end for start, end in paragraph_spans), c.id
        assert (c.start, c.end) == (sentences[c.sentence_ids[0]].start, sentences[c.sentence_ids[-1]].end)


def test_sentence_ids_are_contiguous(segmented):
    _, sentences, chunks, _ = segmented
    assert [s.id for s in sentences] == list(range(len(sentences)))
    for c in chunks:
        assert list(c.sentence_ids) == list(range(c.sentence_ids[0], c.sentence_ids[-1] + 1))
    covered = {i for c in chunks for i in c.sentence_ids}
    assert covered == set(range(len(sentences))), "every sentence belongs to some chunk"


def test_sentence_ids_continue_from_the_given_first_id(article_document):
    sentences, chunks = segment_document(article_document, 40, 3, 1)
    assert [s.id for s in sentences] == list(range(40, 40 + len(sentences)))
    assert chunks[0].sentence_ids[0] == 40


def test_offsets_are_python_string_indices_of_the_file_as_stored(pipeline, article_text):
    """The built index stores the file's decoded text untouched, and its spans index into it."""
    index = pipeline.index
    (doc,) = index.documents.values()
    assert doc.text == article_text  # leading date line and curly quotes included
    assert [s.id for s in index.sentences] == list(range(len(index.sentences)))
    for span in (*index.sentences, *index.chunks):
        assert span.text == article_text[span.start : span.end]
