"""From a backend's raw text to a verified ``Answer``: parse ``[n]`` markers, map them to sentence spans,
drop unknown ids, renumber, and verify every answer sentence against the spans it cites.

Markers come only from the backend, never from quoted document text: a document sentence that contains
"[2] [99]" and is quoted verbatim is masked before markers are parsed, so its brackets stay text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import combinations
from typing import TYPE_CHECKING

from rag.answer.base import NO_ANSWER
from rag.text import normalize
from rag.types import Answer, Citation, Sentence, SentenceCheck
from rag.verify import PARTIAL, SUPPORTED, UNSUPPORTED, Verdict, clean_answer_sentence, judge, rank

if TYPE_CHECKING:
    from rag.index import Index

MARKER = re.compile(r"\[(\d+)\]")
_MARKERS_WITH_SPACE = re.compile(r"\s*\[\d+\]")
_MARKED_PIECE = re.compile(r".+?(?:\s*\[\d+\])+[.!?]?(?=\s|$)", re.S)
_PAIR_CANDIDATES = 4  # attribution tries pairs of this many most relevant passages
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


SentenceJudge = Callable[[str, list[Sentence]], Verdict]  # (claim, the sentences it is checked against) -> verdict


def rule_judge(similarity: Callable[[str, str], float]) -> SentenceJudge:
    """The hand-written rules of ``rag.verify.judge`` over the sentences' joined text."""
    return lambda claim, sentences: judge(claim, " ".join(s.text for s in sentences), similarity)


def attribute_sentence(
    claim: str, passages: list[Sentence], check: SentenceJudge
) -> tuple[list[int], Verdict | None]:
    """The passages (0-based positions) that best support ``claim``: the best single sentence when the
    verifier (``check``) calls it supported, else the best pair of the most relevant sentences when together they
    are (a claim that joins two facts), else the best single sentence when it is partial support; ``([], None)``
    when no passage supports the claim even partially."""
    if not passages:
        return [], None
    judged = [(check(claim, [p]), i) for i, p in enumerate(passages)]
    best_verdict, best = max(judged, key=lambda vi: (rank(vi[0].verdict), vi[0].score, -vi[1]))
    if best_verdict.verdict == SUPPORTED:
        return [best], best_verdict
    top = sorted(judged, key=lambda vi: (-vi[0].score, vi[1]))[:_PAIR_CANDIDATES]
    pairs = []
    for (_, a), (_, b) in combinations(top, 2):
        a, b = min(a, b), max(a, b)
        together = check(claim, [passages[a], passages[b]])
        if together.verdict == SUPPORTED:
            pairs.append((together.score, -(b - a), [a, b], together))
    if pairs:
        _, _, pair, verdict = max(pairs, key=lambda p: (p[0], p[1]))
        return pair, verdict
    if best_verdict.verdict == PARTIAL:
        return [best], best_verdict
    return [], None


def assemble(
    question: str,
    raw: str,
    passages: list[Sentence],
    backend_name: str,
    index: Index,
    encode: Callable[[str], object],
    *,
    attribute: bool | None = None,
    unsupported: str = "flag",
    sentence_judge: SentenceJudge | None = None,
) -> Answer:
    """Parse markers, map them to spans, drop unknown ids, renumber, verify every sentence.

    ``encode`` embeds text that is not an indexed sentence (the answer sentences of an LLM), for the
    verifier's similarity check; indexed sentences reuse their stored vectors.

    With ``attribute`` (default: every backend but the extractive one, whose sentences are the passages
    themselves), an answer sentence that its own markers do not fully support, or that has none, is
    attributed after the fact: the retrieved sentences the verifier finds supporting it are cited too, as
    citations with ``origin="attributed"``. A sentence that nothing supports stays flagged ``unsupported``
    with a warning (``unsupported="flag"``) or is removed from the answer (``"drop"``).

    ``sentence_judge`` gives the verdicts (default: the rules of ``rag.verify``; the pipeline passes the learned
    checker, ``rag.claims.LearnedJudge``, for LLM answers).
    """
    attribute = backend_name != "extractive" if attribute is None else attribute
    raw = raw.strip()
    masked, originals = _mask_quoted(raw, passages)
    warnings: list[str] = []
    valid = {n for n in map(int, MARKER.findall(masked)) if 1 <= n <= len(passages)}
    if not valid and (not raw or NO_ANSWER.lower().rstrip(".") in normalize(raw).lower()):
        return Answer(question, NO_ANSWER, True, [], backend_name, 0.0)
    renumber: dict[int, int] = {}  # passage number (1-based) -> citation number
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
    vectors = {p.text: index.sentence_vectors[p.id] for p in passages}  # verified without re-embedding
    encoded: dict[str, object] = {}

    def vector(text: str):
        found = vectors.get(text)
        if found is None:
            found = encoded.get(text)
            if found is None:
                found = encoded[text] = encode(text)
        return found

    def similarity(a: str, b: str) -> float:
        return float(vector(a) @ vector(b))

    check = sentence_judge or rule_judge(similarity)
    sentence_of = {new: passages[old - 1] for old, new in renumber.items()}  # citation number -> its sentence

    pieces: list[tuple[str, str, list[int], str, str]] = []  # (masked piece, markers to add, cited, verdict, reason)
    for masked_sentence in split_answer(masked, {_mask_key(p.text, originals) for p in passages}):
        cited = [int(n) for n in MARKER.findall(masked_sentence) if int(n) in citations]
        if not clean_answer_sentence(_MARKERS_WITH_SPACE.sub("", masked_sentence)):
            pieces.append((masked_sentence, "", [], "", ""))  # a bare marker or emphasis: no claim to check
            continue
        claim = _unmask(_MARKERS_WITH_SPACE.sub("", masked_sentence), originals)
        if cited:
            verdict = check(claim, [sentence_of[n] for n in cited])
            outcome, reason = verdict.verdict, verdict.reason
        else:
            outcome, reason = UNSUPPORTED, "no citation"
        added: list[int] = []
        if attribute and outcome != SUPPORTED:
            found, support = attribute_sentence(claim, passages, check)
            for position in found:
                n = renumber.get(position + 1)
                if n is None:
                    n = renumber[position + 1] = len(renumber) + 1
                    citations[n] = citation_for(n, passages[position], index)
                    citations[n].origin = "attributed"
                    sentence_of[n] = passages[position]
                if n not in cited:
                    added.append(n)
            if support is not None and rank(support.verdict) > rank(outcome):
                together = check(claim, [sentence_of[n] for n in [*cited, *added]])
                outcome = together.verdict if rank(together.verdict) >= rank(support.verdict) else support.verdict
                what = ", ".join(f"[{n}]" for n in added)
                reason = f"{support.reason} (attributed: {what})" if added else support.reason
        cited = [*cited, *added]
        for n in cited:
            own = check(claim, [sentence_of[n]])
            c = citations[n]
            if c.verdict == "unchecked" or rank(own.verdict) > rank(c.verdict):
                c.verdict, c.reason = own.verdict, own.reason
        pieces.append((masked_sentence, "".join(f" [{n}]" for n in added), cited, outcome, reason))

    # Rebuild the text: each sentence where it stood, with its attributed markers after its own, or removed.
    out, cursor, kept = [], 0, []
    for number, (masked_sentence, markers, cited, outcome, reason) in enumerate(pieces, 1):
        at = masked.find(masked_sentence, cursor)
        if at < 0:  # the splitter joined pieces across a gap: single spaces there
            gap = " " if out else ""
        else:
            gap, cursor = masked[cursor:at], at + len(masked_sentence)
        if outcome == UNSUPPORTED and attribute:
            sentence = _unmask(_MARKERS_WITH_SPACE.sub("", masked_sentence), originals)
            if unsupported == "drop":
                warnings.append(f"dropped answer sentence {number}, which no retrieved passage supports: {sentence!r}")
                continue
            warnings.append(f"answer sentence {number} is not supported by any retrieved passage ({reason})")
        out.append(gap + _with_markers(masked_sentence, markers))
        if outcome:
            kept.append((_with_markers(masked_sentence, markers), cited, outcome, reason))
    if attribute:
        masked = ("".join(out) + masked[cursor:]).strip()
        if not kept:
            return Answer(question, NO_ANSWER, True, [], backend_name, 0.0, [], None, warnings)
    # Citations numbered 1..n by first appearance (attributed markers can come before a later model marker);
    # a citation whose every sentence was dropped goes.
    order: dict[int, int] = {}
    for n in map(int, MARKER.findall(masked)):
        if n in citations:
            order.setdefault(n, len(order) + 1)

    def number(match: re.Match) -> str:
        return f"[{order.get(int(match.group(1)), int(match.group(1)))}]"

    final = []
    for old in sorted(order, key=order.get):
        citation = citations[old]
        citation.n = order[old]
        final.append(citation)
    checks = [SentenceCheck(_unmask(MARKER.sub(number, piece), originals), [order[n] for n in cited if n in order],
                            outcome, reason) for piece, cited, outcome, reason in kept]
    text = _unmask(MARKER.sub(number, masked), originals)
    return Answer(question, text, False, final, backend_name, 0.0, checks, None, warnings)


def _with_markers(sentence: str, markers: str) -> str:
    """``sentence`` with ``markers`` (" [4] [5]") after its own trailing markers, or at its end."""
    if not markers:
        return sentence
    trailing = re.search(r"(?:\s*\[\d+\])+[.!?]?$", sentence)
    if trailing:
        last = list(MARKER.finditer(sentence))[-1]
        return sentence[: last.end()] + markers + sentence[last.end():]
    return sentence.rstrip() + markers


def _mask_key(text: str, originals: dict[str, str]) -> str:
    for placeholder, original in originals.items():
        if original == text:
            return placeholder
    return text
