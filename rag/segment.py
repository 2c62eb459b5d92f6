"""Paragraphs, section headings, sentences and chunks, all as exact character spans of a document.

Sentence boundaries come from pysbd (rule-based, handles initials such as "A.J." and "U.S.",
quotations and dashes); a small repair pass re-joins the rare fragment that starts in lower case.
Headings (short single-line blocks without final punctuation, or Markdown "#" lines) become section
metadata and are never glued onto the following sentence.

Everything here is linear in the document's length: blocks are found by one scan of its lines, and pysbd
(whose cost grows faster than the length of what it is given) never sees more than ``WINDOW`` characters at
once. A longer block is split window by window, each window ending at the start of its last sentence (which
may have been cut off) so that sentences are split where pysbd would split them; a sentence longer than a
window is cut at its last whitespace. bench/segment_scaling.py measures it.

Duplicates are indexed once (issue 14, item 13: news wires repeat stories, and a file can hold the same article
a thousand times): a paragraph whose text is identical to one already segmented, in the same document or, with a
``Seen`` shared across a build, in an earlier one, gets no sentences or chunks (so it is never split, embedded,
ranked or cited twice), and a chunk identical to an earlier chunk is dropped. What is kept are the spans of the
first occurrence, so citations stay exact. bench/duplicates.py measures it.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rag.documents import DATE_PREFIX, DocumentLimits, too_slow
from rag.types import Chunk, Document, Sentence

_TERMINAL = re.compile(r"[.!?…][\"'”’)\]]*\s*$")
_HEADING_MAX_WORDS = 12
# Most characters pysbd is given at once, and the longest a sentence is grown to by the repair pass. News
# paragraphs are far shorter (the bundled article's longest is 740), so they are split whole, as before.
WINDOW = 2000


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    paragraph: int
    section: str | None


@dataclass
class Seen:
    """Digests of the paragraphs and chunks already segmented (in one document, or across a build), and how many
    duplicates were skipped so far."""

    paragraphs: set[bytes] = field(default_factory=set)
    chunks: set[bytes] = field(default_factory=set)
    skipped_paragraphs: int = 0
    skipped_chunks: int = 0
    _added: list[tuple[set[bytes], bytes]] | None = field(default=None, repr=False)

    @staticmethod
    def digest(text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def first(self, kind: set[bytes], text: str) -> bool:
        """True the first time ``text`` is offered for ``kind`` (it is then remembered)."""
        key = self.digest(text)
        if key in kind:
            return False
        kind.add(key)
        if self._added is not None:
            self._added.append((kind, key))
        return True

    @contextmanager
    def undone_on_error(self) -> Iterator[None]:
        """What the block remembers is forgotten again when it raises: a document refused midway (RAG_MAX_DOC_SECONDS)
        and left out of a build must not make a later document's copy of one of its paragraphs a duplicate of a
        paragraph that is not indexed."""
        added: list[tuple[set[bytes], bytes]] = []
        counts = self.skipped_paragraphs, self.skipped_chunks
        self._added = added
        try:
            yield
        except BaseException:
            for kind, key in added:
                kind.discard(key)
            self.skipped_paragraphs, self.skipped_chunks = counts
            raise
        finally:
            self._added = None


class _Overtime(Exception):
    """Splitting one document took longer than its limit (RAG_MAX_DOC_SECONDS)."""


def _check(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise _Overtime


_per_thread = threading.local()


def _segmenter():
    # One per thread: pysbd's Segmenter keeps the text being split on the instance (segment() sets
    # self.original_text), so a shared one mixes up sentences when questions are answered, or documents
    # indexed, in several threads at once (the app's queue does both).
    segmenter = getattr(_per_thread, "segmenter", None)
    if segmenter is None:
        import pysbd

        segmenter = _per_thread.segmenter = pysbd.Segmenter(language="en", clean=False)
    return segmenter


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def is_heading(block: str) -> bool:
    line = block.strip()
    if "\n" in line or not line:
        return False
    if line.startswith("#"):
        return True
    return len(line.split()) <= _HEADING_MAX_WORDS and not _TERMINAL.search(line)


def _heading_text(block: str) -> str:
    return block.strip().lstrip("#").strip()


def _blocks(text: str, start: int) -> Iterator[tuple[int, int]]:
    """(start, end) of every run of non-blank lines from ``start``: one pass over the lines."""
    block_start = block_end = -1
    pos, length = start, len(text)
    while True:
        newline = text.find("\n", pos)
        line_end = length if newline < 0 else newline
        if pos < line_end and not text[pos:line_end].isspace():
            if block_start < 0:
                block_start = pos
            block_end = line_end
        elif block_start >= 0:
            yield block_start, block_end
            block_start = -1
        if newline < 0:
            break
        pos = newline + 1
    if block_start >= 0:
        yield block_start, block_end


def paragraphs(doc: Document) -> Iterator[tuple[int, int, bool]]:
    """(start, end, is_heading) for every block of non-blank lines, skipping a leading date line."""
    body_start = 0
    match = DATE_PREFIX.match(doc.text)
    if match:
        body_start = match.end()
    for block_start, block_end in _blocks(doc.text, body_start):
        start, end = _strip_span(doc.text, block_start, block_end)
        if start < end:
            yield start, end, is_heading(doc.text[start:end])


def split_sentences(text: str) -> list[str]:
    """Sentences of a short free text (an answer), with the same rules as documents."""
    return [text[s:e] for s, e in _sentence_offsets(text, 0, len(text))]


def _pysbd_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """pysbd's sentences of ``text[start:end]``, as stripped spans of ``text``."""
    block = text[start:end]
    spans: list[tuple[int, int]] = []
    cursor = 0
    for segment in _segmenter().segment(block):
        piece = segment.strip()
        if not piece:
            continue
        found = block.find(piece, cursor)
        if found < 0:  # pysbd never rewrites text with clean=False; guard anyway
            continue
        spans.append((start + found, start + found + len(piece)))
        cursor = found + len(piece)
    return spans


def _windowed_spans(text: str, start: int, end: int, deadline: float | None = None) -> list[tuple[int, int]]:
    """pysbd's sentences of a block longer than ``WINDOW``, splitting it at most ``WINDOW`` characters at a time."""
    spans: list[tuple[int, int]] = []
    pos = start
    while pos < end:
        _check(deadline)
        stop = min(pos + WINDOW, end)
        found = _pysbd_spans(text, pos, stop)
        if stop == end:
            spans.extend(found)
            break
        if len(found) >= 2 and found[-1][0] - pos >= WINDOW // 4:
            # The last sentence may be cut off by the window: it starts the next window.
            spans.extend(found[:-1])
            pos = found[-1][0]
            continue
        # One sentence fills (most of) the window: cut it at the window's last whitespace.
        cut = stop
        for i in range(stop - 1, pos + WINDOW // 2, -1):
            if text[i].isspace():
                cut = i
                break
        for s, e in found:
            if s >= cut:
                break
            s, e = _strip_span(text, s, min(e, cut))
            if s < e:
                spans.append((s, e))
        pos = cut
    return spans


def _sentence_offsets(text: str, start: int, end: int, deadline: float | None = None) -> list[tuple[int, int]]:
    spans = _pysbd_spans(text, start, end) if end - start <= WINDOW else _windowed_spans(text, start, end, deadline)
    merged: list[tuple[int, int]] = []
    for s, e in spans:
        first = text[s]
        if merged and (first.islower() or first in ",;:)]”’") and e - merged[-1][0] <= WINDOW:
            merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    return merged


def sentence_spans(doc: Document, seen: Seen | None = None, deadline: float | None = None) -> list[Span]:
    """Sentences of the document's paragraphs, skipping a paragraph identical to one in ``seen``."""
    seen = Seen() if seen is None else seen
    spans: list[Span] = []
    section: str | None = None
    for number, (start, end, heading) in enumerate(paragraphs(doc)):
        if heading:
            section = _heading_text(doc.text[start:end])
            continue
        if not seen.first(seen.paragraphs, doc.text[start:end]):
            seen.skipped_paragraphs += 1
            continue
        _check(deadline)
        for s, e in _sentence_offsets(doc.text, start, end, deadline):
            spans.append(Span(s, e, number, section))
    return spans


def headings(doc: Document) -> list[tuple[int, int, str]]:
    return [(s, e, _heading_text(doc.text[s:e])) for s, e, h in paragraphs(doc) if h]


def segment_document(
    doc: Document, first_sentence_id: int, chunk_sentences: int, chunk_overlap: int, seen: Seen | None = None,
    limits: DocumentLimits | None = None,
) -> tuple[list[Sentence], list[Chunk]]:
    """Sentences (numbered from ``first_sentence_id``) and chunks of consecutive sentences of one paragraph.

    Paragraphs and chunks identical to earlier ones (in this document, and in ``seen``: the documents segmented
    before it in the same build) are left out; the counts of what was skipped accumulate in ``seen``. Splitting
    that takes longer than ``limits.max_seconds`` is an InputFileError (RAG_MAX_DOC_SECONDS), and leaves ``seen``
    as it was."""
    seen = Seen() if seen is None else seen
    limits = limits or DocumentLimits()
    try:
        with seen.undone_on_error():
            spans = sentence_spans(doc, seen, limits.deadline())
    except _Overtime:
        raise too_slow(doc.id, limits, "splitting it into sentences") from None
    if chunk_overlap >= chunk_sentences:
        chunk_overlap = chunk_sentences - 1
    sentences = [
        Sentence(first_sentence_id + i, doc.id, sp.start, sp.end, doc.text[sp.start : sp.end], sp.paragraph, sp.section)
        for i, sp in enumerate(spans)
    ]
    chunks: list[Chunk] = []
    by_paragraph: dict[int, list[Sentence]] = {}
    for s in sentences:
        by_paragraph.setdefault(s.paragraph, []).append(s)
    step = chunk_sentences - chunk_overlap
    for group in by_paragraph.values():
        starts = range(0, max(len(group) - chunk_overlap, 1), step)
        for i in starts:
            window = group[i : i + chunk_sentences]
            start, end = window[0].start, window[-1].end
            if not seen.first(seen.chunks, doc.text[start:end]):
                seen.skipped_chunks += 1
                continue
            chunks.append(
                Chunk(
                    id=f"{doc.id}#{len(chunks)}",
                    source=doc.id,
                    start=start,
                    end=end,
                    text=doc.text[start:end],
                    sentence_ids=tuple(s.id for s in window),
                    section=window[0].section,
                )
            )
    return sentences, chunks
