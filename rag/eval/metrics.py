"""Metrics of one evaluation run, as plain functions of plain values: answers (SQuAD EM/F1, alias containment),
retrieval and citation spans, ALCE citation quality, per-question scoring, aggregation, and calibration
(expected calibration error, reliability bins, accuracy against coverage).

The citation verifier comes in as a ``supports(sentence, evidence) -> bool`` function, so everything here can
be unit-tested on hand-computed cases without a model.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rag.eval.answers import normalize_answer
from rag.eval.gold import GoldQuestion, Span
from rag.text import normalize

EVIDENCE_MIN_SHARE = 0.5  # an evidence span counts as cited when citations cover at least half its characters
CALIBRATION_BINS = 10
COVERAGE_LEVELS = (0.25, 0.5, 0.75, 0.9, 1.0)

VERIFIER_NOTE = (
    "Citation support is judged by the project's rule-based citation verifier (rag.verify: verbatim quotes, "
    "matching figures, names and negation, content-word coverage and embedding similarity), standing in for "
    "the NLI model ALCE uses; none is available offline."
)

Supports = Callable[[str, str], bool]  # supports(sentence, evidence_text): does the evidence support it?


# ---------------------------------------------------------------------------------------------- answer metrics

def exact_match(prediction: str, aliases: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals the best alias. No aliases (unanswerable): 1.0 iff the
    prediction is empty, as in SQuAD 2.0."""
    if not aliases:
        return float(not normalize_answer(prediction))
    return max(float(normalize_answer(prediction) == normalize_answer(alias)) for alias in aliases)


def token_f1(prediction: str, aliases: Sequence[str]) -> float:
    """SQuAD token F1 against the best alias. Empty prediction or empty alias: 1.0 only if both are empty."""
    if not aliases:
        return float(not normalize_answer(prediction))
    return max(_f1(normalize_answer(prediction).split(), normalize_answer(alias).split()) for alias in aliases)


def _f1(predicted: list[str], gold: list[str]) -> float:
    if not predicted or not gold:
        return float(predicted == gold)
    common = sum((Counter(predicted) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def contains_alias(text: str, aliases: Sequence[str]) -> bool:
    """The normalised text contains a normalised alias as whole words ("Trump" in "... Donald Trump ...").

    Hyphens separate words here (SQuAD's normalisation would glue "150,000-strong" into one token that no
    alias "150,000" can match as a whole word)."""
    def words_of(s: str) -> str:
        return normalize_answer(normalize(s).replace("-", " "))

    haystack = f" {words_of(text)} "
    return any(needle and f" {needle} " in haystack for needle in map(words_of, aliases))


# ---------------------------------------------------------------------------------------------- span metrics


def overlap(a: Span, b: Span) -> int:
    """Characters two spans share (0 when they are in different documents)."""
    if a[0] != b[0]:
        return 0
    return max(0, min(a[2], b[2]) - max(a[1], b[1]))


def covered_chars(target: Span, spans: Sequence[Span]) -> int:
    """Characters of ``target`` covered by the union of ``spans`` (overlapping spans are counted once)."""
    clipped = sorted(
        (max(s[1], target[1]), min(s[2], target[2])) for s in spans if s[0] == target[0] and overlap(s, target)
    )
    total, reached = 0, target[1]
    for start, end in clipped:
        start = max(start, reached)
        if end > start:
            total += end - start
            reached = end
    return total


def retrieval_scores(ranking: Sequence[Span], evidence: Sequence[Sequence[Span]]) -> dict[str, float]:
    """Hit@1, Recall@3, Recall@5 and MRR@10 of a ranked list of retrieved chunks.

    A chunk is relevant when it overlaps (by at least one character) any occurrence of any evidence span.
    Recall@k is the fraction of evidence spans overlapped by some chunk in the top k (for one evidence span
    it is Hit@k; a two-step question with one of its two spans retrieved scores 0.5). ``evidence`` holds one
    list of occurrences per evidence string.
    """
    if not evidence:
        raise ValueError("retrieval metrics need at least one evidence span")

    def relevant(chunk: Span) -> bool:
        return any(overlap(chunk, occurrence) for occurrences in evidence for occurrence in occurrences)

    def recall_at(k: int) -> float:
        top = ranking[:k]
        found = sum(any(overlap(c, o) for c in top for o in occurrences) for occurrences in evidence)
        return found / len(evidence)

    first = next((rank for rank, chunk in enumerate(ranking[:10], 1) if relevant(chunk)), None)
    return {
        "hit_at_1": float(bool(ranking) and relevant(ranking[0])),
        "recall_at_3": recall_at(3),
        "recall_at_5": recall_at(5),
        "mrr_at_10": 1.0 / first if first else 0.0,
    }


def evidence_cited(cited: Sequence[Span], evidence: Sequence[Sequence[Span]],
                   min_share: float = EVIDENCE_MIN_SHARE) -> bool:
    """True when every evidence span is covered by the union of cited spans: at least ``min_share`` of its
    characters (a cited span containing it covers all of them). Any one occurrence of a repeated string counts."""
    return all(
        any(covered_chars(occurrence, cited) >= min_share * (occurrence[2] - occurrence[1]) for occurrence in occurrences)
        for occurrences in evidence
    )


# ---------------------------------------------------------------------------------------------- citation metrics


@dataclass(frozen=True)
class CitedSentence:
    """One answer sentence and the texts of the spans it cites (in citation order)."""

    text: str
    cited: tuple[str, ...]


def citation_quality(sentences: Sequence[CitedSentence], supports: Supports) -> tuple[float, float] | None:
    """ALCE citation recall and precision of one answer; None when it has no sentences.

    Recall: share of sentences that have citations and are supported by the concatenation of all of them.
    Precision: share of citations that are relevant. Following ALCE's reference code, a citation is
    irrelevant when its sentence is not supported by its citations together, or when it alone does not
    support the sentence and the other citations still do (it is not needed); an answer with no
    citations has precision 0.
    """
    if not sentences:
        return None
    supported_sentences, relevant_citations, n_citations = 0, 0, 0
    for sentence in sentences:
        cited = sentence.cited
        n_citations += len(cited)
        if not cited or not supports(sentence.text, " ".join(cited)):
            continue
        supported_sentences += 1
        if len(cited) == 1:
            relevant_citations += 1
            continue
        for i, text in enumerate(cited):
            others = " ".join(cited[:i] + cited[i + 1 :])
            if supports(sentence.text, text) or not supports(sentence.text, others):
                relevant_citations += 1
    precision = relevant_citations / n_citations if n_citations else 0.0
    return supported_sentences / len(sentences), precision


# ---------------------------------------------------------------------------------------------- scoring


@dataclass
class Prediction:
    """What one system returned for one question, reduced to what the metrics need."""

    answer: str  # the full answer text, citation markers removed ("" when abstained)
    short_answer: str | None  # the extracted name/date/figure, when the system gives one
    abstained: bool
    sentences: list[CitedSentence]  # answer sentences with the texts they cite
    citations: list[Span]
    citation_texts: list[str]  # the text of each cited span, in the same order
    latency_ms: float
    ranking: list[Span]  # top RANKING_DEPTH retrieved chunks, best first
    confidence: float | None = None  # the system's probability that this response is correct, if it gives one


def score_question(question: GoldQuestion, prediction: Prediction, evidence: Sequence[Sequence[Span]],
                   supports: Supports) -> dict[str, Any]:
    """One question's metrics (None where a metric does not apply), plus what is needed to read them."""
    scored_text = "" if prediction.abstained else (prediction.short_answer or prediction.answer)
    answered = not prediction.abstained
    quality = citation_quality(prediction.sentences, supports) if answered else None
    if question.answerable:
        correct = answered and contains_alias(prediction.answer, question.answers)
        retrieval = retrieval_scores(prediction.ranking, evidence)
        cited_evidence = answered and evidence_cited(prediction.citations, evidence)
    else:
        correct, retrieval, cited_evidence = prediction.abstained, {}, None
    result = {
        "id": question.id,
        "type": question.type,
        "style": question.style,
        "document": question.document,
        "question": question.question,
        "answers": list(question.answers),
        "answerable": question.answerable,
        "answer": prediction.answer,
        "short_answer": prediction.short_answer,
        "scored_answer": scored_text,
        "abstained": prediction.abstained,
        "correct": bool(correct),
        "exact_match": exact_match(scored_text, question.answers),
        "f1": token_f1(scored_text, question.answers),
        "contains_alias": bool(correct) if question.answerable else None,
        **{key: retrieval.get(key) for key in ("hit_at_1", "recall_at_3", "recall_at_5", "mrr_at_10")},
        "citation_recall": quality[0] if quality else None,
        "citation_precision": quality[1] if quality else None,
        "evidence_cited": None if cited_evidence is None else bool(cited_evidence),
        "cited_chars": sum(end - start for _, start, end in prediction.citations) if answered else None,
        "citations": [
            {"source": source, "start": start, "end": end, "text": text}
            for (source, start, end), text in zip(prediction.citations, prediction.citation_texts, strict=True)
        ],
        "confidence": prediction.confidence,
        "latency_ms": prediction.latency_ms,
    }
    return {key: round(value, 4) if isinstance(value, float) else value for key, value in result.items()}


def _mean(values: Sequence[float | bool | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return sum(present) / len(present) if present else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default), without importing numpy."""
    ordered = sorted(values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def aggregate(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Corpus-level metrics from per-question results (means over the questions each metric applies to)."""
    has_ans = [r for r in results if r["answerable"]]
    no_ans = [r for r in results if not r["answerable"]]
    answered = [r for r in results if not r["abstained"]]

    def mean(rows: Sequence[dict], key: str) -> float | None:
        return _mean([r[key] for r in rows])

    latencies = [r["latency_ms"] for r in results]
    metrics: dict[str, Any] = {
        "questions": len(results),
        "answerable": len(has_ans),
        "unanswerable": len(no_ans),
        "answered": len(answered),
        "hit_at_1": mean(has_ans, "hit_at_1"),
        "recall_at_3": mean(has_ans, "recall_at_3"),
        "recall_at_5": mean(has_ans, "recall_at_5"),
        "mrr_at_10": mean(has_ans, "mrr_at_10"),
        "exact_match": mean(results, "exact_match"),
        "f1": mean(results, "f1"),
        "has_ans_exact_match": mean(has_ans, "exact_match"),
        "has_ans_f1": mean(has_ans, "f1"),
        "no_ans_exact_match": mean(no_ans, "exact_match"),
        "no_ans_f1": mean(no_ans, "f1"),
        "answer_contains_alias": mean(has_ans, "contains_alias"),
        "accuracy": mean(results, "correct"),
        "citation_recall": mean(answered, "citation_recall"),
        "citation_precision": mean(answered, "citation_precision"),
        "evidence_cited": _mean([bool(r["evidence_cited"]) for r in has_ans]),
        "cited_chars_per_answer": mean(answered, "cited_chars"),
        "abstained_unanswerable": _mean([r["abstained"] for r in no_ans]),
        "false_abstention": _mean([r["abstained"] for r in has_ans]),
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p95_ms": percentile(latencies, 95),
    }
    metrics = {key: round(value, 4) if isinstance(value, float) else value for key, value in metrics.items()}
    metrics["per_type"] = breakdown(results, "type")
    if any(r.get("style") for r in results):
        metrics["per_style"] = breakdown(results, "style")
    metrics["per_document"] = breakdown(results, "document")
    metrics["calibration"] = calibration(results)
    return metrics




def breakdown(results: Sequence[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """Questions, accuracy, EM and F1 per value of ``key`` (type, style, document), in first-seen order;
    questions without a value are grouped under "(none)"."""
    table: dict[str, dict[str, Any]] = {}
    for value in dict.fromkeys(r.get(key) or "(none)" for r in results):
        rows = [r for r in results if (r.get(key) or "(none)") == value]
        table[value] = {
            "questions": len(rows),
            "answerable": sum(bool(r["answerable"]) for r in rows),
            "accuracy": round(_mean([r["correct"] for r in rows]) or 0.0, 4),
            "exact_match": round(_mean([r["exact_match"] for r in rows]) or 0.0, 4),
            "f1": round(_mean([r["f1"] for r in rows]) or 0.0, 4),
        }
    return table


# ---------------------------------------------------------------------------------------------- calibration


def _checked(confidences: Sequence[float], correct: Sequence[bool | float]) -> None:
    if len(confidences) != len(correct):
        raise ValueError("confidences and correct must have the same length")
    if any(not 0.0 <= c <= 1.0 or math.isnan(c) for c in confidences):
        raise ValueError("confidences must be probabilities in [0, 1]")


def reliability_bins(confidences: Sequence[float], correct: Sequence[bool | float],
                     bins: int = CALIBRATION_BINS) -> list[dict[str, Any]]:
    """Equal-width confidence bins over [0, 1]: bin i holds confidences in [i/bins, (i+1)/bins), the last bin
    also 1.0. Each bin: lower, upper, count, mean confidence and accuracy (None when empty)."""
    _checked(confidences, correct)
    members: list[list[int]] = [[] for _ in range(bins)]
    for i, c in enumerate(confidences):
        members[min(int(c * bins), bins - 1)].append(i)
    return [
        {
            "lower": round(b / bins, 4),
            "upper": round((b + 1) / bins, 4),
            "count": len(rows),
            "mean_confidence": sum(confidences[i] for i in rows) / len(rows) if rows else None,
            "accuracy": sum(float(correct[i]) for i in rows) / len(rows) if rows else None,
        }
        for b, rows in enumerate(members)
    ]


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool | float],
                               bins: int = CALIBRATION_BINS) -> float | None:
    """ECE = sum over bins b of (n_b / N) * |accuracy_b - mean confidence_b|, with ``bins`` equal-width bins
    (see ``reliability_bins``); None for no answers."""
    if not confidences:
        _checked(confidences, correct)
        return None
    total = len(confidences)
    return sum(
        b["count"] / total * abs(b["accuracy"] - b["mean_confidence"])
        for b in reliability_bins(confidences, correct, bins) if b["count"]
    )


def accuracy_coverage_curve(confidences: Sequence[float], correct: Sequence[bool | float]) -> list[tuple[float, float]]:
    """(coverage, accuracy) after keeping the n most confident answers, for n = 1..N: answers sorted by
    confidence, highest first (ties in input order)."""
    _checked(confidences, correct)
    order = sorted(range(len(confidences)), key=lambda i: -confidences[i])
    curve, right = [], 0.0
    for n, i in enumerate(order, 1):
        right += float(correct[i])
        curve.append((n / len(order), right / n))
    return curve


def accuracy_at_coverage(confidences: Sequence[float], correct: Sequence[bool | float], coverage: float) -> float | None:
    """Accuracy over the ceil(coverage * N) most confident answers (at least one; ties in input order)."""
    curve = accuracy_coverage_curve(confidences, correct)
    if not curve:
        return None
    n = min(len(curve), max(1, math.ceil(coverage * len(curve) - 1e-9)))
    return curve[n - 1][1]


def response_confidence(result: dict[str, Any]) -> float | None:
    """The system's probability that its response to a question is right, from the answer's ``confidence``
    (the probability that the answer answers the question): that confidence for an answer, and 1 - confidence
    for an abstention (the backend abstains when its best answer is unlikely to answer the question, so this
    is its probability that abstaining is right). None when the answer has no confidence."""
    confidence = result.get("confidence")
    if confidence is None:
        return None
    confidence = min(1.0, max(0.0, float(confidence)))
    return 1.0 - confidence if result.get("abstained") else confidence


def calibration(results: Sequence[dict[str, Any]], bins: int = CALIBRATION_BINS,
                coverages: Sequence[float] = COVERAGE_LEVELS) -> dict[str, Any]:
    """Calibration of per-question results that carry a ``confidence``: answered and abstained, answerable and
    unanswerable, each response's ``response_confidence`` against its ``correct`` (alias in the answer /
    abstained on an unanswerable question).

    ``{"available": False, "note": ...}`` when no result has a confidence; otherwise the number of questions
    with one, ECE, reliability bins, accuracy at the given coverage levels and the whole curve."""
    scored = [r for r in results if response_confidence(r) is not None]
    if not scored:
        return {"available": False, "questions": 0,
                "note": "no answer carries a confidence (the backend does not estimate one): calibration skipped"}
    confidences = [response_confidence(r) for r in scored]
    correct = [bool(r["correct"]) for r in scored]
    ece = expected_calibration_error(confidences, correct, bins)
    curve = accuracy_coverage_curve(confidences, correct)
    out = {
        "available": True,
        "questions": len(scored),
        "without_confidence": len(results) - len(scored),
        "ece": round(ece, 4) if ece is not None else None,
        "mean_confidence": round(sum(confidences) / len(confidences), 4),
        "accuracy": round(sum(correct) / len(correct), 4),
        "bins": [{k: round(v, 4) if isinstance(v, float) else v for k, v in b.items()}
                 for b in reliability_bins(confidences, correct, bins)],
        "accuracy_at_coverage": {f"{c:g}": round(accuracy_at_coverage(confidences, correct, c), 4) for c in coverages},
        "curve": [[round(c, 4), round(a, 4)] for c, a in curve],
    }
    if out["without_confidence"]:
        out["note"] = f"{out['without_confidence']} answer(s) without a confidence left out"
    return out
