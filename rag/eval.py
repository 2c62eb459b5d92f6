"""Evaluation on a gold question set: retrieval, answer, citation, abstention and latency metrics, with the
LangChain tutorial pipeline scored in the same run on the same questions as a baseline.

    from rag.eval import evaluate, format_table
    report = evaluate(pipeline, report_dir="eval-report")
    print(format_table(report["metrics"]))

Everything is computed from character spans ``(source, start, end)`` into the indexed documents, so the same
scoring code serves our pipeline and the baseline. The metric functions take their inputs as plain values
(and the citation verifier as a ``supports(sentence, evidence) -> bool`` function) so they can be unit-tested
on hand-computed cases. Metric definitions are in ``METRIC_DEFINITIONS`` (also written into report.md).

LangChain, tqdm and matplotlib are imported inside the functions that need them: importing this module is cheap.
"""

from __future__ import annotations

import json
import math
import os
import re
import string
import sys
import time
import unicodedata
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import InputFileError, UsageError
from rag.settings import PROJECT_ROOT
from rag.text import normalize
from rag.verify import SUPPORTED, clean_answer_sentence

if TYPE_CHECKING:
    from rag.pipeline import Pipeline
    from rag.types import Answer, Document

DEFAULT_GOLD = PROJECT_ROOT / "eval" / "gold.jsonl"
GOLD_KEYS = ("id", "question", "answers", "evidence", "type")
RANKING_DEPTH = 10  # retrieval metrics look at the top 10, whatever k the answerer uses
EVIDENCE_MIN_SHARE = 0.5  # an evidence span counts as cited when citations cover at least half its characters
WARM_UP_QUESTION = "What is this article about?"

BASELINE_NAME = "LangChain tutorial"
BASELINE_DESCRIPTION = (
    "LangChain RAG tutorial pipeline: RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200), "
    "HuggingFaceEmbeddings with the same all-MiniLM-L6-v2 model, in-memory FAISS, similarity_search top-4; "
    "the top chunk is the answer and all 4 chunks are its citations; it never abstains"
)
VERIFIER_NOTE = (
    "Citation support is judged by the project's rule-based citation verifier (rag.verify: verbatim quotes, "
    "matching figures, names and negation, content-word coverage and embedding similarity), standing in for "
    "the NLI model ALCE uses; none is available offline."
)

Span = tuple[str, int, int]  # (document id, start, end) character offsets into the document text
Supports = Callable[[str, str], bool]  # supports(sentence, evidence_text): does the evidence support it?


# ---------------------------------------------------------------------------------------------- gold set


@dataclass(frozen=True)
class GoldQuestion:
    id: str
    question: str
    answers: tuple[str, ...]  # acceptable short answers (aliases); empty for an unanswerable question
    evidence: tuple[str, ...]  # exact substrings of a document, all needed to support the answer
    type: str
    line: int  # line number in the gold file, for error messages

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


def load_gold(path: str | os.PathLike) -> list[GoldQuestion]:
    """Read and validate a gold JSONL file; any problem raises InputFileError naming the file and line."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: gold file not found")
    if not path.is_file():
        raise InputFileError(f"{path}: not a file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputFileError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    questions: list[GoldQuestion] = []
    first_line_of: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputFileError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        question = _gold_question(record, number, where)
        if question.id in first_line_of:
            raise InputFileError(f"{where}: duplicate id '{question.id}' (first used on line {first_line_of[question.id]})")
        first_line_of[question.id] = number
        questions.append(question)
    if not questions:
        raise InputFileError(f"{path}: no questions in the gold file")
    return questions


def _gold_question(record: Any, number: int, where: str) -> GoldQuestion:
    if not isinstance(record, dict):
        raise InputFileError(f"{where}: expected a JSON object with keys {', '.join(GOLD_KEYS)}")
    missing = [key for key in GOLD_KEYS if key not in record]
    unexpected = sorted(set(record) - set(GOLD_KEYS))
    if missing or unexpected:
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(unexpected)}"] if unexpected else []
        )
        raise InputFileError(f"{where}: keys must be exactly {', '.join(GOLD_KEYS)} ({'; '.join(problems)})")
    for key in ("id", "question", "type"):
        if not isinstance(record[key], str) or not record[key].strip():
            raise InputFileError(f"{where}: '{key}' must be a non-empty string")
    for key in ("answers", "evidence"):
        value = record[key]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise InputFileError(f"{where}: '{key}' must be a list of non-empty strings")
    if bool(record["answers"]) != bool(record["evidence"]):
        raise InputFileError(
            f"{where}: 'answers' and 'evidence' must both be empty (unanswerable question) or both non-empty"
        )
    return GoldQuestion(record["id"], record["question"], tuple(record["answers"]), tuple(record["evidence"]),
                        record["type"], number)


def locate_evidence(
    questions: Sequence[GoldQuestion], documents: dict[str, Document], gold_path: Path | str = "gold file"
) -> dict[str, list[list[Span]]]:
    """Every occurrence of each evidence string in the indexed documents, by exact substring search.

    Returns question id -> one list of occurrences per evidence string. An evidence string found nowhere
    means the gold set does not match the corpus, so the run stops rather than scoring against nothing.
    """
    located: dict[str, list[list[Span]]] = {}
    for question in questions:
        spans_per_evidence = []
        for text in question.evidence:
            occurrences = [
                (doc_id, start, start + len(text))
                for doc_id, document in documents.items()
                for start in _find_all(document.text, text)
            ]
            if not occurrences:
                shown = text if len(text) <= 60 else text[:57] + "..."
                raise InputFileError(
                    f"{gold_path}, line {question.line}: evidence \"{shown}\" of {question.id} is not in any indexed "
                    "document (evidence must be an exact substring of the article)"
                )
            spans_per_evidence.append(occurrences)
        located[question.id] = spans_per_evidence
    return located


def _find_all(text: str, needle: str) -> Iterator[int]:
    start = text.find(needle)
    while start != -1:
        yield start
        start = text.find(needle, start + 1)


# ---------------------------------------------------------------------------------------------- answer metrics

_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD normalisation (lower-case, drop punctuation, drop a/an/the, collapse whitespace), after folding
    typographic quotes and dashes, which SQuAD's ASCII punctuation list would otherwise keep."""
    text = normalize(text).lower()
    text = "".join(ch for ch in text if ch not in string.punctuation and not unicodedata.category(ch).startswith("P"))
    return " ".join(_ARTICLES.sub(" ", text).split())


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
    per_type: dict[str, dict[str, Any]] = {}
    for kind in dict.fromkeys(r["type"] for r in results):  # gold-file order
        rows = [r for r in results if r["type"] == kind]
        per_type[kind] = {
            "questions": len(rows),
            "accuracy": round(_mean([r["correct"] for r in rows]) or 0.0, 4),
            "exact_match": round(_mean([r["exact_match"] for r in rows]) or 0.0, 4),
            "f1": round(_mean([r["f1"] for r in rows]) or 0.0, 4),
        }
    metrics["per_type"] = per_type
    return metrics


# ---------------------------------------------------------------------------------------------- systems


def _our_prediction(answer: Answer, ranking: list[Span]) -> Prediction:
    by_number = {c.n: c for c in answer.citations}
    sentences = [
        CitedSentence(check.sentence, tuple(by_number[n].text for n in dict.fromkeys(check.cited) if n in by_number))
        for check in answer.checks
    ]
    return Prediction(
        answer="" if answer.abstained else clean_answer_sentence(answer.answer),
        short_answer=None if answer.abstained else answer.short_answer,
        abstained=answer.abstained,
        sentences=sentences if not answer.abstained else [],
        citations=[(c.source, c.start, c.end) for c in answer.citations],
        citation_texts=[c.text for c in answer.citations],
        latency_ms=answer.latency_ms,
        ranking=ranking,
    )


@lru_cache(maxsize=2)
def _baseline_embeddings(model_path: str):
    """HuggingFaceEmbeddings over the local model folder (cached: loading the model takes a second or two)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from langchain_huggingface import HuggingFaceEmbeddings
    except ImportError:
        raise UsageError(
            "the LangChain baseline needs langchain-huggingface (pip install langchain-huggingface); "
            "or run without the baseline (--no-baseline)"
        ) from None
    # A folder path, not a hub id, and local_files_only: the model is never fetched from the network.
    return HuggingFaceEmbeddings(model_name=model_path, model_kwargs={"device": "cpu", "local_files_only": True})


class TutorialBaseline:
    """The LangChain RAG tutorial pipeline over the same documents, answering by its top chunk."""

    chunk_size, chunk_overlap, top_k = 1000, 200, 4

    def __init__(self, store, spans: dict[int, Span]):
        self.store, self.spans = store, spans

    @classmethod
    def build(cls, documents: dict[str, Document], model_path: str | os.PathLike) -> TutorialBaseline:
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        with warnings.catch_warnings():
            # The tutorial's FAISS store lives in langchain-community, which warns that it is being sunset;
            # the baseline is meant to be exactly that tutorial, so the warning is expected noise here.
            warnings.filterwarnings("ignore", message=".*langchain-community.*", category=DeprecationWarning)
            from langchain_community.vectorstores import FAISS

        splitter = RecursiveCharacterTextSplitter(
            chunk_size=cls.chunk_size, chunk_overlap=cls.chunk_overlap, add_start_index=True
        )
        chunks = []
        for doc_id, document in documents.items():
            for chunk in splitter.create_documents([document.text], metadatas=[{"source": doc_id}]):
                start = chunk.metadata["start_index"]
                if start < 0 or document.text[start : start + len(chunk.page_content)] != chunk.page_content:
                    start = document.text.find(chunk.page_content)  # start_index is a find(); re-find if off
                chunk.metadata["chunk"] = len(chunks)
                chunks.append((chunk, (doc_id, start, start + len(chunk.page_content))))
        if not chunks:
            raise UsageError("the baseline has no documents to index")
        # In memory only: never save_local (which pickles the docstore).
        store = FAISS.from_documents([c for c, _ in chunks], _baseline_embeddings(str(model_path)))
        return cls(store, {c.metadata["chunk"]: span for c, span in chunks})

    def _spans(self, vector: list[float], k: int) -> list[tuple[Span, str]]:
        return [(self.spans[d.metadata["chunk"]], d.page_content)
                for d in self.store.similarity_search_by_vector(vector, k=k)]

    def predict(self, question: str) -> Prediction:
        # similarity_search(question, k=4) is embed_query + similarity_search_by_vector; split so the top-10
        # ranking for the retrieval metrics reuses the query vector instead of embedding the question twice.
        started = time.perf_counter()
        vector = self.store.embeddings.embed_query(question)
        top = self._spans(vector, self.top_k)
        latency_ms = (time.perf_counter() - started) * 1000
        ranking = [span for span, _ in self._spans(vector, RANKING_DEPTH)]
        texts = [text for _, text in top]
        # The whole top chunk is the answer, treated as one sentence citing all four chunks.
        return Prediction(
            answer=texts[0] if texts else "",
            short_answer=None,
            abstained=False,
            sentences=[CitedSentence(texts[0], tuple(texts))] if texts else [],
            citations=[span for span, _ in top],
            citation_texts=texts,
            latency_ms=latency_ms,
            ranking=ranking,
        )


def verifier_supports(pipeline: Pipeline) -> Supports:
    """The project's citation verifier as a yes/no support function, memoised for the run."""

    @cache
    def supports(sentence: str, evidence: str) -> bool:
        return pipeline.judge(sentence, evidence).verdict == SUPPORTED

    return supports


@contextmanager
def _progress(total: int, show: bool, callback: Callable[[int, int], None] | None):
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="evaluating", unit="q", file=sys.stderr, leave=False)
    done = 0

    def advance(label: str) -> None:
        nonlocal done
        done += 1
        if bar is not None:
            bar.set_description(label, refresh=False)
            bar.update(1)
        if callback is not None:
            callback(done, total)

    if callback is not None:
        callback(0, total)
    try:
        yield advance
    finally:
        if bar is not None:
            bar.close()


def evaluate(
    pipeline: Pipeline,
    gold_path: str | os.PathLike | None = None,
    backend: str | None = None,
    k: int | None = None,
    baseline: bool = True,
    report_dir: str | os.PathLike | None = None,
    progress: bool = False,
    progress_callback: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run the gold set through the pipeline (and the LangChain tutorial baseline) and score both.

    Returns ``{"metrics": {"run": ..., "ours": ..., "baseline": ... or None}, "results": [...],
    "baseline": {"results": [...]} or None}``: ``results`` has one dict per question (see ``score_question``).
    ``progress`` shows a bar on stderr; ``progress_callback(done, total)`` is called after every question
    (``total`` counts baseline questions too). With ``report_dir`` the report files are written there.
    """
    from rag.pipeline import clean_text_input

    gold_path = Path(gold_path) if gold_path is not None else DEFAULT_GOLD
    questions = load_gold(gold_path)
    evidence = locate_evidence(questions, pipeline.index.documents, gold_path)
    k = k or pipeline.settings.top_k
    chosen = pipeline.backend(backend)  # fail on a bad backend name before any work
    supports = verifier_supports(pipeline)
    tutorial = TutorialBaseline.build(pipeline.index.documents, pipeline.embedder.info.path) if baseline else None

    texts = {}
    for question in questions:
        try:
            texts[question.id] = clean_text_input(question.question, pipeline.settings.max_question_chars)
        except UsageError as exc:
            raise InputFileError(f"{gold_path}, line {question.line}: {exc}") from None

    # Load the model and build the backend outside the timed questions, so latency is per question.
    pipeline.embedder.encode_query(WARM_UP_QUESTION)
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    total = len(questions) * (2 if tutorial else 1)
    with _progress(total, progress, progress_callback) as advance:
        for question in questions:
            text = texts[question.id]
            answer = pipeline.ask(text, backend=backend, k=k)
            ranking = [(h.chunk.source, h.chunk.start, h.chunk.end) for h in pipeline.retriever.search(text, RANKING_DEPTH)]
            prediction = _our_prediction(answer, ranking)
            ours.append(score_question(question, prediction, evidence[question.id], supports))
            advance("ours")
        if tutorial is not None:
            tutorial.predict(WARM_UP_QUESTION)
            for question in questions:
                prediction = tutorial.predict(texts[question.id])
                theirs.append(score_question(question, prediction, evidence[question.id], supports))
                advance("baseline")

    run = {
        "gold": str(gold_path),
        "questions": len(questions),
        "answerable": sum(q.answerable for q in questions),
        "unanswerable": sum(not q.answerable for q in questions),
        "backend": chosen.name,
        "k": k,
        "ranking_depth": RANKING_DEPTH,
        "documents": sorted(pipeline.index.documents),
        "baseline": BASELINE_DESCRIPTION if tutorial else None,
        "verifier": VERIFIER_NOTE,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    report = {
        "metrics": {"run": run, "ours": aggregate(ours), "baseline": aggregate(theirs) if tutorial else None},
        "results": ours,
        "baseline": {"name": BASELINE_NAME, "results": theirs} if tutorial else None,
    }
    if report_dir is not None:
        write_report(report, report_dir)
    return report


# ---------------------------------------------------------------------------------------------- presentation

# (section, label, metric key, format): the rows of the terminal and markdown tables.
TABLE_ROWS: tuple[tuple[str, str, str, str], ...] = (
    ("Retrieval (answerable)", "Hit@1", "hit_at_1", "pct"),
    ("Retrieval (answerable)", "Recall@3", "recall_at_3", "pct"),
    ("Retrieval (answerable)", "Recall@5", "recall_at_5", "pct"),
    ("Retrieval (answerable)", "MRR@10", "mrr_at_10", "num"),
    ("Answers", "Accuracy (alias / abstained)", "accuracy", "pct"),
    ("Answers", "Answer contains alias (HasAns)", "answer_contains_alias", "pct"),
    ("Answers", "EM (all)", "exact_match", "pct"),
    ("Answers", "F1 (all)", "f1", "pct"),
    ("Answers", "HasAns EM", "has_ans_exact_match", "pct"),
    ("Answers", "HasAns F1", "has_ans_f1", "pct"),
    ("Answers", "NoAns EM = F1", "no_ans_exact_match", "pct"),
    ("Citations", "Citation recall (answered)", "citation_recall", "pct"),
    ("Citations", "Citation precision (answered)", "citation_precision", "pct"),
    ("Citations", "Cited spans contain evidence (HasAns)", "evidence_cited", "pct"),
    ("Citations", "Cited characters per answer", "cited_chars_per_answer", "int"),
    ("Abstention", "Unanswerable abstained", "abstained_unanswerable", "pct"),
    ("Abstention", "False abstention (answerable)", "false_abstention", "pct"),
    ("Latency", "p50 per question", "latency_p50_ms", "ms"),
    ("Latency", "p95 per question", "latency_p95_ms", "ms"),
)

METRIC_DEFINITIONS: dict[str, str] = {
    "Hit@1": "the top retrieved chunk overlaps a gold evidence span (answerable questions).",
    "Recall@k": "share of a question's evidence spans overlapped by some top-k chunk (multi-evidence questions "
    "score fractions), averaged.",
    "MRR@10": "1 / rank of the first chunk overlapping an evidence span within the top 10, else 0.",
    "Accuracy": "answerable: the answer text contains a gold alias; unanswerable: the system abstained.",
    "Answer contains alias": "the normalised full answer (markers removed, hyphens as spaces) contains a normalised alias as whole "
    "words; abstaining scores 0.",
    "EM / F1": "SQuAD exact match and token F1 against the best alias, on the short answer when the system gives "
    "one, else on the full answer text; abstaining is the empty prediction.",
    "HasAns / NoAns": "the SQuAD 2.0 split: NoAns EM = F1 = 1 iff the system abstained.",
    "Citation recall": "ALCE: share of answer sentences supported by the concatenation of their cited spans.",
    "Citation precision": "ALCE: share of citations that are relevant; a citation is irrelevant when its sentence "
    "is unsupported, or when it alone does not support the sentence and the other citations still do.",
    "Cited spans contain gold evidence": "every evidence span has at least 50% of its characters covered by the "
    "union of cited spans (abstaining scores 0; answerable questions).",
    "Cited characters per answer": "total length of the cited spans of an answer (what a reader must read).",
    "Unanswerable abstained": "share of unanswerable questions the system declined to answer.",
    "False abstention": "share of answerable questions the system declined to answer.",
    "Latency": "wall-clock time per question (ours: retrieval, answer and verification; baseline: its top-4 "
    "similarity search), after one warm-up question.",
}


def _format(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "num":
        return f"{value:.3f}"
    if kind == "int":
        return f"{value:,.0f}"
    return f"{value:,.1f} ms"


def metrics_rows(metrics: dict[str, Any]) -> list[tuple[str, str, str, str | None]]:
    """(section, label, ours, baseline or None) formatted for display; also handy for a UI dataframe."""
    theirs = metrics.get("baseline")
    return [
        (section, label, _format(metrics["ours"].get(key), kind), _format(theirs.get(key), kind) if theirs else None)
        for section, label, key, kind in TABLE_ROWS
    ]


def format_table(metrics: dict[str, Any]) -> str:
    """The metrics as a terminal table, ours and the baseline side by side."""
    run, with_baseline = metrics["run"], metrics.get("baseline") is not None
    rows = metrics_rows(metrics)
    width = max(len(label) for _, label, _, _ in rows) + 2
    lines = [
        f"{run['questions']} questions ({run['answerable']} answerable, {run['unanswerable']} unanswerable) "
        f"from {run['gold']}; backend {run['backend']}, k={run['k']}",
        f"{'':{width + 2}}{'ours':>12}" + (f"{'baseline':>12}" if with_baseline else ""),
    ]
    section = None
    for row_section, label, ours, theirs in rows:
        if row_section != section:
            section = row_section
            lines.append(section)
        lines.append(f"  {label:{width}}{ours:>12}" + (f"{theirs:>12}" if with_baseline else ""))
    if with_baseline:
        lines.append(f"baseline: {BASELINE_NAME} (splitter 1000/200, MiniLM, FAISS top-4, top chunk as answer)")
    return "\n".join(lines)


def _markdown_table(metrics: dict[str, Any]) -> str:
    with_baseline = metrics.get("baseline") is not None
    header = "| metric | ours |" + (" baseline |" if with_baseline else "")
    rule = "|---|---:|" + ("---:|" if with_baseline else "")
    rows = [
        f"| {section.split(' (')[0]}: {label} | {ours} |" + (f" {theirs} |" if with_baseline else "")
        for section, label, ours, theirs in metrics_rows(metrics)
    ]
    return "\n".join([header, rule, *rows])


def write_report(report: dict[str, Any], directory: str | os.PathLike) -> Path:
    """Write report.md, metrics.json, results.jsonl, accuracy_by_type.png and latency.png into ``directory``."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory}: exists and is not a folder")
    directory.mkdir(parents=True, exist_ok=True)
    metrics = report["metrics"]
    theirs = report["baseline"]["results"] if report.get("baseline") else []
    (directory / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    with (directory / "results.jsonl").open("w", encoding="utf-8") as out:
        for system, rows in (("ours", report["results"]), ("baseline", theirs)):
            for row in rows:
                out.write(json.dumps({"system": system, **row}, ensure_ascii=False) + "\n")
    _plot_accuracy_by_type(metrics, directory / "accuracy_by_type.png")
    _plot_latency(report["results"], theirs, directory / "latency.png")
    (directory / "report.md").write_text(_report_markdown(report), encoding="utf-8")
    return directory


def _report_markdown(report: dict[str, Any]) -> str:
    metrics, run = report["metrics"], report["metrics"]["run"]
    ours = metrics["ours"]
    theirs = metrics.get("baseline")
    lines = [
        "# Evaluation report",
        "",
        f"- Gold set: `{run['gold']}`: {run['questions']} questions, {run['answerable']} answerable, "
        f"{run['unanswerable']} unanswerable",
        f"- Ours: backend `{run['backend']}`, k={run['k']}; documents: {', '.join(run['documents'])}",
        f"- Baseline: {run['baseline'] or 'not run'}",
        f"- Date: {run['date']}",
        "",
        "## Results",
        "",
        _markdown_table(metrics),
        "",
        f"> {VERIFIER_NOTE}",
        "",
    ]
    if theirs:
        lines += [
            "The baseline's citation recall is high by construction: its answer *is* its first citation. Its answer "
            "contains an alias more easily because the \"answer\" is a 1,000-character chunk; EM/F1, citation "
            "precision and cited characters show the difference that matters to a reader.",
            "",
        ]
    lines += ["## Per question type", "", "| type | questions | ours accuracy | ours F1 |"
              + (" baseline accuracy | baseline F1 |" if theirs else ""),
              "|---|---:|---:|---:|" + ("---:|---:|" if theirs else "")]
    for kind, row in ours["per_type"].items():
        line = f"| {kind} | {row['questions']} | {100 * row['accuracy']:.1f}% | {100 * row['f1']:.1f}% |"
        if theirs:
            other = theirs["per_type"][kind]
            line += f" {100 * other['accuracy']:.1f}% | {100 * other['f1']:.1f}% |"
        lines.append(line)
    lines += ["", "![accuracy by question type](accuracy_by_type.png)", "", "![latency per question](latency.png)", "",
              "## Metric definitions", ""]
    lines += [f"- **{name}**: {text}" for name, text in METRIC_DEFINITIONS.items()]
    misses = [r for r in report["results"] if not r["correct"]]
    lines += ["", f"## Questions ours got wrong ({len(misses)})", ""]
    if misses:
        lines += ["| id | type | question | expected | ours |", "|---|---|---|---|---|"]
        for r in misses:
            got = "(abstained)" if r["abstained"] else (r["short_answer"] or r["answer"])
            expected = " / ".join(r["answers"]) or "(abstain)"
            lines.append(f"| {r['id']} | {r['type']} | {_cell(r['question'])} | {_cell(expected)} | {_cell(got, 160)} |")
    lines += ["", "Per-question details: `results.jsonl` (one line per question and system); metrics: `metrics.json`.", ""]
    return "\n".join(lines)


def _cell(text: str, limit: int = 200) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _figure(width: float, height: float):
    # An explicit Agg canvas: no pyplot, so no global backend switch and no GUI in whatever process calls us.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _plot_accuracy_by_type(metrics: dict[str, Any], path: Path) -> None:
    ours, theirs = metrics["ours"]["per_type"], (metrics.get("baseline") or {}).get("per_type")
    kinds = list(ours)
    figure = _figure(max(6.0, 0.9 * len(kinds) + 2), 4)
    axes = figure.add_subplot()
    width = 0.4 if theirs else 0.6
    positions = range(len(kinds))
    axes.bar([p - (width / 2 if theirs else 0) for p in positions], [100 * ours[t]["accuracy"] for t in kinds],
             width, label="ours")
    if theirs:
        axes.bar([p + width / 2 for p in positions], [100 * theirs[t]["accuracy"] for t in kinds], width,
                 label=BASELINE_NAME)
    axes.set_xticks(list(positions), [f"{t}\n(n={ours[t]['questions']})" for t in kinds], fontsize=8)
    axes.set_ylim(0, 115)  # headroom above 100% keeps the legend off the bars
    axes.set_yticks(range(0, 101, 20))
    axes.set_ylabel("accuracy (%)")
    axes.set_title("Accuracy by question type (alias in answer; abstained when unanswerable)")
    axes.legend(loc="upper right", ncol=2, fontsize=8)
    figure.tight_layout()
    figure.savefig(path)


def _plot_latency(ours: Sequence[dict], theirs: Sequence[dict], path: Path) -> None:
    figure = _figure(7, 4)
    axes = figure.add_subplot()
    series = [("ours", [r["latency_ms"] for r in ours])]
    if theirs:
        series.append((BASELINE_NAME, [r["latency_ms"] for r in theirs]))
    values = [v for _, vs in series for v in vs if v > 0]
    if values:
        # Log-spaced bins: the two systems' latencies differ by an order of magnitude.
        low, high = math.log10(min(values)), math.log10(max(values))
        high = max(high, low + 0.1)
        bins = [10 ** (low + (high - low) * i / 30) for i in range(31)]
        for label, data in series:
            axes.hist([v for v in data if v > 0], bins=bins, alpha=0.6, label=label)
        axes.set_xscale("log")
    axes.set_xlabel("latency per question (ms, log scale)")
    axes.set_ylabel("questions")
    axes.set_title("Latency per question")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
