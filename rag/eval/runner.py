"""``evaluate``: run a gold set through the pipeline and the baselines, score every question, aggregate.

A gold file with documents of its own (SQuAD JSON, or a JSONL with a ``.txt`` beside it) is run over a
temporary corpus of just those documents, indexed for the run with the project's normal index build; the
pipeline's own index is never touched.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import InputFileError, RagError, UsageError
from rag.eval.baselines import (
    BASELINE_DESCRIPTIONS,
    BASELINE_NAMES,
    BASELINES,
    RANKING_DEPTH,
    REPORT_KEYS,
    TUTORIAL,
    build_baselines,
)
from rag.eval.gold import DEFAULT_GOLD, GoldQuestion, Span, load_dataset, locate_evidence
from rag.eval.metrics import VERIFIER_NOTE, CitedSentence, Prediction, Supports, aggregate, score_question
from rag.eval.report import prepare_report_dir, write_report
from rag.verify import SUPPORTED, clean_answer_sentence

if TYPE_CHECKING:
    from rag.pipeline import Pipeline
    from rag.types import Answer

WARM_UP_QUESTION = "What is this article about?"


def baseline_names(baseline: bool | str | Sequence[str] | None) -> tuple[str, ...]:
    """True: every baseline; False/None: none; a name or names (see ``BASELINES``): those."""
    if baseline is True:
        return BASELINES
    if not baseline:
        return ()
    names = [baseline] if isinstance(baseline, str) else list(baseline)
    names = [n.strip() for part in names for n in part.split(",") if n.strip()]
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise UsageError(f"unknown baseline {', '.join(unknown)}; choose from {', '.join(BASELINES)}")
    return tuple(dict.fromkeys(names))


@contextmanager
def corpus_pipeline(pipeline: Pipeline, documents: Sequence[tuple[str, str]] = (), **overrides: Any
                    ) -> Iterator[Pipeline]:
    """A pipeline over a temporary corpus holding just ``documents`` ((file name, text) pairs, as
    ``load_dataset`` returns them), indexed with the normal index build, the same model and the same settings
    but ``overrides`` (e.g. ``chunk_sentences=2``); the folders are removed afterwards. No documents: the
    configured corpus, indexed afresh when there are overrides, else ``pipeline`` itself."""
    from rag.index import build_index
    from rag.pipeline import Pipeline

    if not documents and not overrides:
        yield pipeline
        return
    with tempfile.TemporaryDirectory(prefix="rag-eval-") as tmp:
        # a local index always (never a schema in the user's PostgreSQL store), built without the "index not
        # found: building it" warning a missing index gets
        update: dict[str, Any] = {"index_dir": Path(tmp) / "index", "index_name": "eval", "store": "local",
                                  **overrides}
        if documents:
            corpus = update["corpus_dir"] = Path(tmp) / "corpus"
            corpus.mkdir()
            for name, text in documents:
                if Path(name).name != name or name.startswith("."):
                    raise InputFileError(f"{name}: not a plain file name for a gold document")
                (corpus / name).write_bytes(text.encode("utf-8"))
        settings = pipeline.settings.model_copy(update=update)
        yield Pipeline(settings, pipeline.embedder, build_index(settings, pipeline.embedder))


def evaluate(
    pipeline: Pipeline,
    gold_path: str | os.PathLike | None = None,
    backend: str | None = None,
    k: int | None = None,
    baseline: bool | str | Sequence[str] = True,
    report_dir: str | os.PathLike | None = None,
    progress: bool = False,
    progress_callback: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run a gold set (JSONL or SQuAD 2.0 JSON) through the pipeline and the baselines, and score them all.

    ``baseline``: True runs every baseline (the LangChain tutorial and the top-1 sentence), False none, or
    name(s) from ``BASELINES``. Returns ``{"metrics": {"run", "ours", "baseline", "top1_sentence"},
    "results": [...], "baseline": {"name", "results"} or None, "top1_sentence": {"name", "results"} or None}``
    where ``results`` has one dict per question (see ``score_question``) and a baseline not run is None.
    ``progress`` shows a bar on stderr; ``progress_callback(done, total)`` is called after every question
    (``total`` counts baseline questions too). With ``report_dir`` the report files are written there.
    """
    gold_path = Path(gold_path) if gold_path is not None else DEFAULT_GOLD
    _check_k(k)
    names = baseline_names(baseline)
    documents, questions = load_dataset(gold_path)
    pipeline.backend(backend)  # fail on a bad backend name before indexing anything
    if report_dir is not None:  # and on a report folder that cannot be written, before the run, not after it
        prepare_report_dir(report_dir)
    with corpus_pipeline(pipeline, documents) as own:
        report = _evaluate(own, questions, gold_path, backend, k, names, progress, progress_callback)
    report["metrics"]["run"]["corpus"] = (
        "a temporary corpus of the gold file's documents" if documents else str(pipeline.settings.corpus_dir))
    if report_dir is not None:
        write_report(report, report_dir)
    return report


def _check_k(k: Any) -> None:
    """``k`` as the CLI's --k takes it (passages per question, RAG_TOP_K's range); None: the setting. From Python
    a k of -3 or 1000 ran and was written into the report, and 2.5 failed deep inside retrieval."""
    from rag.settings import Settings

    if k is None:
        return
    field = Settings.model_fields["top_k"]
    low, high = (next(getattr(rule, name) for rule in field.metadata if hasattr(rule, name)) for name in ("ge", "le"))
    if isinstance(k, bool) or not isinstance(k, int) or not low <= k <= high:
        raise UsageError(f"k must be a whole number from {low} to {high} (None: RAG_TOP_K), got {k!r}")


def _evaluate(pipeline: Pipeline, questions: list[GoldQuestion], gold_path: Path, backend: str | None,
              k: int | None, names: Sequence[str], progress: bool,
              progress_callback: Callable[[int, int], None] | None) -> dict[str, Any]:
    from rag.pipeline import clean_text_input

    evidence = locate_evidence(questions, pipeline.index.documents, gold_path)
    questions = [_with_document(q, evidence[q.id], pipeline.index.documents) for q in questions]
    k = k or pipeline.settings.top_k
    chosen = pipeline.backend(backend)  # fail on a bad backend name before any work
    supports = verifier_supports(pipeline)
    baselines = build_baselines(pipeline, names)

    texts = {}
    for question in questions:
        try:
            texts[question.id] = clean_text_input(question.question, pipeline.settings.max_question_chars)
        except UsageError as exc:
            where = "question" if gold_path.suffix.lower() == ".json" else "line"
            raise InputFileError(f"{gold_path}, {where} {question.line}: {exc}") from None

    # Load the model, build the backend and fill the caches outside the timed questions, so latency is per
    # question: one whole question first (encoding only left the first timed question at 120 ms against a
    # median of 20). An LLM backend is not asked it: that would cost a whole LLM answer.
    if getattr(chosen, "complete", None) is None:
        with contextlib.suppress(RagError):  # its answer is not scored
            pipeline.ask(WARM_UP_QUESTION, backend=backend, k=k)
    else:
        pipeline.embedder.encode_query(WARM_UP_QUESTION)
    ours: list[dict[str, Any]] = []
    theirs: dict[str, list[dict[str, Any]]] = {name: [] for name in baselines}
    total = len(questions) * (1 + len(baselines))
    with _progress(total, progress, progress_callback) as advance:
        for question in questions:
            text = texts[question.id]
            answer = pipeline.ask(text, backend=backend, k=k)
            ranking = [(h.chunk.source, h.chunk.start, h.chunk.end) for h in pipeline.retriever.search(text, RANKING_DEPTH)]
            ours.append(score_question(question, our_prediction(answer, ranking), evidence[question.id], supports))
            advance("ours")
        for name, system in baselines.items():
            system.predict(WARM_UP_QUESTION)
            for question in questions:
                prediction = system.predict(texts[question.id])
                theirs[name].append(score_question(question, prediction, evidence[question.id], supports))
                advance(name)

    run = {
        "gold": str(gold_path),
        "questions": len(questions),
        "answerable": sum(q.answerable for q in questions),
        "unanswerable": sum(not q.answerable for q in questions),
        "backend": chosen.name,
        "k": k,
        "ranking_depth": RANKING_DEPTH,
        "documents": sorted(pipeline.index.documents),
        "baseline": BASELINE_DESCRIPTIONS[TUTORIAL] if TUTORIAL in baselines else None,
        "baselines": {name: BASELINE_DESCRIPTIONS[name] for name in baselines},
        "verifier": VERIFIER_NOTE,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    metrics: dict[str, Any] = {"run": run, "ours": aggregate(ours)}
    report: dict[str, Any] = {"metrics": metrics, "results": ours}
    for name, key in REPORT_KEYS.items():
        metrics[key] = aggregate(theirs[name]) if name in baselines else None
        report[key] = {"name": BASELINE_NAMES[name], "results": theirs[name]} if name in baselines else None
    return report


def _with_document(question: GoldQuestion, evidence: list[list[Span]], documents: dict) -> GoldQuestion:
    """The question with its document filled in when the gold file leaves it out but it is unambiguous: the
    only document of the corpus, or the one document holding all of its evidence."""
    if question.document is not None:
        return question
    found = {span[0] for occurrences in evidence for span in occurrences}
    if len(documents) == 1:
        found = set(documents)
    return replace(question, document=found.pop()) if len(found) == 1 else question


def our_prediction(answer: Answer, ranking: list[Span]) -> Prediction:
    """Our pipeline's ``Answer`` reduced to what the metrics need."""
    by_number = {c.n: c for c in answer.citations}
    sentences = [
        CitedSentence(check.sentence, tuple(by_number[n].text for n in dict.fromkeys(check.cited) if n in by_number))
        for check in answer.checks
    ]
    confidence = getattr(answer, "confidence", None)
    return Prediction(
        answer="" if answer.abstained else clean_answer_sentence(answer.answer),
        short_answer=None if answer.abstained else answer.short_answer,
        abstained=answer.abstained,
        sentences=sentences if not answer.abstained else [],
        citations=[(c.source, c.start, c.end) for c in answer.citations],
        citation_texts=[c.text for c in answer.citations],
        latency_ms=answer.latency_ms,
        ranking=ranking,
        confidence=None if confidence is None else min(1.0, max(0.0, float(confidence))),
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
