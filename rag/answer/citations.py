"""From a backend's raw text to a verified ``Answer``: parse ``[n]`` markers, map them to sentence spans,
drop unknown ids, renumber, and verify every answer sentence against the spans it cites.

Markers come only from the backend, never from quoted document text: a document sentence that contains
"[2] [99]" and is quoted verbatim is masked before markers are parsed, so its brackets stay text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from rag.answer.base import NO_ANSWER
from rag.text import normalize
from rag.types import Answer, Citation, SentenceCheck
from rag.verify import UNSUPPORTED, clean_answer_sentence, judge, rank

if TYPE_CHECKING:
    from rag.index import Index
    from rag.types import Sentence

MARKER = re.compile(r"\[(\d+)\]")
_MARKERS_WITH_SPACE = re.compile(r"\s*\[\d+\]")
_MARKED_PIECE = re.compile(r".+?(?:\s*\[\d+\])+[.!?]?(?=\s|$)", re.S)
_MASK = "\ue000"  # a private-use character: never in a document (normalised text), never a marker


def _mask_quoted(raw: str, passages: list[Sentence]) -> tuple[str, dict[str, str]]:
    """Replace verbatim passage text that contains brackets by placeholders; returns the masked text and the
    placeholder -> original mapping."""
    originals: dict[str, str] = {}
    for sentence in passages:
        if "[" not in sentence.text or sentence.text not in raw:
            continue
        placeholder = f"{_MASK}{len(originals)}{_MASK}"
        originals[placeholder] = sentence.text
        raw = raw.replace(sentence.text, placeholder)
    return raw, originals


def _unmask(text: str, originals: dict[str, str]) -> str:
    for placeholder, original in originals.items():
        text = text.replace(placeholder, original)
    return text


def split_answer(text: str, known: frozenset[str] | set[str] | None = None) -> list[str]:
    """Answer sentences with their trailing ``[n]`` markers (pysbd keeps "A.J." inside a sentence).

    When every marker-terminated piece is one of the ``known`` passage sentences (extractive answers are),
    those pieces are the sentences and the sentence splitter is not needed.
    """
    known = known or frozenset()
    pieces = [m.group(0).strip() for m in _MARKED_PIECE.finditer(text.strip())]
    if pieces and known and "".join(pieces).replace(" ", "") == text.replace(" ", "") and all(
        _MARKERS_WITH_SPACE.sub("", p).strip() in known for p in pieces
    ):
        return pieces
    from rag.segment import split_sentences

    sentences: list[str] = []
    for piece in split_sentences(text.strip()):
        leading = re.match(r"(?:\s*\[\d+\])+[.!?]?\s*", piece)
        if sentences and leading:  # markers that open a piece close the sentence before
            sentences[-1] = f"{sentences[-1]} {leading.group(0).strip()}"
            piece = piece[leading.end():]
        if not piece:
            continue
        if sentences and piece[:1].islower():
            sentences[-1] = f"{sentences[-1]} {piece}"
        else:
            sentences.append(piece)
    return sentences


def citation_for(n: int, sentence: Sentence, index: Index) -> Citation:
    doc = index.documents[sentence.source]
    return Citation(n, sentence.source, sentence.start, sentence.end, doc.text[sentence.start : sentence.end],
                    section=sentence.section)


def assemble(
    question: str,
    raw: str,
    passages: list[Sentence],
    backend_name: str,
    index: Index,
    encode: Callable[[str], object],
) -> Answer:
    """Parse markers, map them to spans, drop unknown ids, renumber, verify every sentence.

    ``encode`` embeds text that is not an indexed sentence (the answer sentences of an LLM), for the
    verifier's similarity check; indexed sentences reuse their stored vectors.
    """
    raw = raw.strip()
    masked, originals = _mask_quoted(raw, passages)
    warnings: list[str] = []
    valid = {n for n in map(int, MARKER.findall(masked)) if 1 <= n <= len(passages)}
    if not valid and (not raw or NO_ANSWER.lower().rstrip(".") in normalize(raw).lower()):
        return Answer(question, NO_ANSWER, True, [], backend_name, 0.0)
    renumber: dict[int, int] = {}
    for n in map(int, MARKER.findall(masked)):
        if n in valid:
            renumber.setdefault(n, len(renumber) + 1)
        else:
            warnings.append(f"citation [{n}] does not refer to a retrieved passage and was dropped")

    def rewrite(match: re.Match) -> str:
        n = int(match.group(1))
        return f" [{renumber[n]}]" if n in renumber else ""

    masked = re.sub(r"\s*\[(\d+)\]", rewrite, masked).strip()
    citations = {
        new: citation_for(new, passages[old - 1], index)
        for old, new in sorted(renumber.items(), key=lambda kv: kv[1])
    }
    checks: list[SentenceCheck] = []
    vectors = {p.text: index.sentence_vectors[p.id] for p in passages}  # verified without re-embedding

    def similarity(a: str, b: str) -> float:
        va, vb = vectors.get(a), vectors.get(b)
        return float((va if va is not None else encode(a)) @ (vb if vb is not None else encode(b)))

    for masked_sentence in split_answer(masked, {_mask_key(p.text, originals) for p in passages}):
        cited = [int(n) for n in MARKER.findall(masked_sentence) if int(n) in citations]
        sentence = _unmask(masked_sentence, originals)
        if not clean_answer_sentence(_MARKERS_WITH_SPACE.sub("", masked_sentence)):
            continue
        if not cited:
            checks.append(SentenceCheck(sentence, [], UNSUPPORTED, "no citation"))
            continue
        claim = _unmask(_MARKERS_WITH_SPACE.sub("", masked_sentence), originals)
        verdict = judge(claim, " ".join(citations[n].text for n in cited), similarity)
        checks.append(SentenceCheck(sentence, cited, verdict.verdict, verdict.reason))
        for n in cited:
            own = judge(claim, citations[n].text, similarity)
            c = citations[n]
            if c.verdict == "unchecked" or rank(own.verdict) > rank(c.verdict):
                c.verdict, c.reason = own.verdict, own.reason
    text = _unmask(masked, originals)
    return Answer(question, text, False, list(citations.values()), backend_name, 0.0, checks, None, warnings)


def _mask_key(text: str, originals: dict[str, str]) -> str:
    for placeholder, original in originals.items():
        if original == text:
            return placeholder
    return text
