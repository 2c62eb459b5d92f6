"""Fit the extractive answerer's models and measure them leave-one-document-out.

    python -m rag.answer.training            # `make train`: writes rag/answer/data/answerer.json
                                             # and docs/answerer-lodo.json (+ a table on stdout)
    RAG_EMBED_MODEL=all-mpnet-base-v2 python -m rag.answer.training   # `make train-mpnet`: the model for
                                             # that embedder, answerer-78c0197b6159.json (+ its LODO report)

Data (every question set the repository holds, plus the shared SQuAD 2.0 article when it is there):
- the bundled article with eval/gold.jsonl, eval/heldout.jsonl and eval/unseen.jsonl;
- each eval/dev/<name>.jsonl with its document eval/dev/<name>.txt (news, documentation, encyclopedic);
- ../shared/qa/*.json (SQuAD 2.0; RAG_TRAIN_SQUAD=path overrides, RAG_TRAIN_SQUAD= skips it).

Each document is indexed on its own, in a temporary folder, exactly as `rag index build` would, and once more
beside ``DISTRACTORS`` other groups' documents; each question goes through the real retrieval
(``Pipeline.prepare``) and feature code (``rag.answer.features``), so what is fitted is what runs. A candidate
sentence is positive when it overlaps a gold evidence span and holds a gold answer (``answer_bearing``).

Protocol (no figure comes from a document a model was fitted or tuned on):
- sentence model: logistic regression over candidate sentences;
- confidence model: logistic regression over answers, fitted on answers chosen by sentence models that did
  not see the answer's document (so its inputs look like they will at run time);
- operating point: the confidence threshold with the best accuracy (right answers + right abstentions);
- LODO: for each document d, all three are fitted/chosen without d (nested: the confidence model's training
  answers come from sentence models fitted without d and without their own document), then d is answered;
  "without d" also leaves out the questions whose corpus held d's text as a distractor.
The shipped model is fitted the same way on all documents. Fitting is deterministic (lbfgs, fixed data order).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.answer.extractive import ExtractiveBackend, choose
from rag.answer.features import ANSWER_FEATURES, SENTENCE_FEATURES, Candidates, Featurizer
from rag.answer.question import short_answer
from rag.answer.scorer import AnswerModel, Logistic
from rag.answer.span import SPAN_FEATURES, best_span, candidate_spans, span_features
from rag.errors import RagError
from rag.settings import PROJECT_ROOT

DEFAULT_OUT = PROJECT_ROOT / "rag" / "answer" / "data" / "answerer.json"
DEFAULT_REPORT = PROJECT_ROOT / "docs" / "answerer-lodo.json"
BUNDLED = ("eval/gold.jsonl", "eval/heldout.jsonl", "eval/unseen.jsonl")
SECOND_SENTENCE = 0.6  # a second candidate joins when at least this share of the best one's probability
REGULARISATION = 1.0  # sklearn's C (inverse L2 strength); the default, not tuned
# Every document weighs the same in the sentence model: otherwise the 418 SQuAD questions (lexically close to
# their answers) outvote the paraphrase-heavy sets. Measured LODO on 10 documents: evidence at rank 1 0.686 ->
# 0.697 (direct-style questions 0.84 -> 0.90); a gradient-boosted model (0.683) or a 16-unit MLP (0.666) did
# no better than the logistic regression, so the simplest model stays.
PER_DOCUMENT_WEIGHTS = True
# The operating point keeps abstentions on answerable questions at most this share (on the training
# documents): an abstention costs a reader more than a low-confidence answer labelled as such.
MAX_FALSE_ABSTENTION = 0.10
THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.01), 2)
# numpy's BLAS threads while featurising and fitting, whatever RAG_BLAS_THREADS says: lbfgs's path depends on
# the thread count in its last bits (the weights moved by up to 0.05 between one and two threads), so a fixed
# count makes `make train` give the same weights on any machine; one is what answering processes use.
FIT_BLAS_THREADS = 1


@dataclass
class Example:
    document: str
    qid: str
    question: str
    type: str
    style: str | None
    aliases: tuple[str, ...]
    candidates: Candidates
    labels: np.ndarray  # per candidate: what the sentence model learns (see answer_bearing)
    evidence: np.ndarray  # per candidate: overlaps gold evidence (what "evidence at rank 1" reports)
    featurizer: Featurizer
    borrowed_from: str | None = None  # a question of that document asked of this one (a training-only negative)
    companions: tuple[str, ...] = ()  # the other document groups whose documents shared the corpus (distractors)


def dataset_files() -> list[tuple[str, list[Path]]]:
    """(group name, gold files) for every document group the repository holds."""
    groups: list[tuple[str, list[Path]]] = [("bundled-article", [PROJECT_ROOT / p for p in BUNDLED])]
    groups += [(p.stem, [p]) for p in sorted((PROJECT_ROOT / "eval" / "dev").glob("*.jsonl"))
               if p.with_suffix(".txt").exists()]
    squad = os.environ.get("RAG_TRAIN_SQUAD")
    if squad is None:
        shared = sorted((PROJECT_ROOT.parent / "shared" / "qa").glob("*.json"))
        groups += [(p.stem, [p]) for p in shared]
    elif squad:
        groups.append((Path(squad).stem, [Path(squad)]))
    return groups


BORROWED_PER_DOCUMENT = 20  # questions of other documents asked of each document, as training-only negatives


def _borrowed_questions(name: str, loaded: list) -> list:
    """Off-topic questions for a document: answerable questions of the other documents, taken in a fixed
    order (every k-th), each with the document it came from. Users do ask a corpus things it never mentions
    ("What is the capital of Australia?"); the question sets ask only on-topic questions, so without these the
    confidence model never sees a question whose names are absent from the corpus."""
    pool = [(q, other) for other, _, questions in loaded if other != name for q in questions if q.answers]
    if not pool:
        return []
    step = max(len(pool) // BORROWED_PER_DOCUMENT, 1)
    return pool[::step][:BORROWED_PER_DOCUMENT]


def _overlaps(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    for s, e in spans:
        shared = min(end, e) - max(start, s)
        if shared > 0 and shared >= 0.5 * min(end - start, e - s):
            return True
    return False


def answer_bearing(evidence: np.ndarray, texts: list[str], aliases: tuple[str, ...]) -> np.ndarray:
    """The sentence model's labels: the evidence sentences that hold a gold answer, or all evidence sentences
    when none does. Evidence strings often span several sentences (the sentence that names the subject and
    the one that gives the answer; both steps of a two-step question), and the answer shown is the most
    probable sentence, so learning "holds the answer" rather than "is part of the evidence" is what counts.
    Measured leave-one-document-out over 26 documents (1,078 answerable questions, sentence model alone): the
    top sentence held a gold answer for 0.674 -> 0.692 of questions (paraphrase-style 0.583 -> 0.621,
    two-step 0.319 -> 0.336), and it was gold evidence for 0.727 -> 0.743."""
    from rag.eval.metrics import contains_alias

    if not aliases:
        return evidence
    holding = np.array([bool(evidence[i]) and contains_alias(t, aliases) for i, t in enumerate(texts)],
                       dtype=np.float32)
    return holding if holding.any() else evidence


# Each group's questions are also asked of a corpus holding the group's documents and this many other groups'
# documents (the next ones in name order, so mostly of the same kind): users index several documents, and
# `rag eval --gold squad.json` puts every article of a file in one corpus. Without such corpora in training,
# nothing teaches the model which document an answer should come from (in a one-document corpus that is never
# in question). Measured before with the model fitted on one-document corpora only: the 10 encyclopedic
# articles and the SQuAD article, all 11 in one corpus, answer in reply 0.789 -> 0.765 (in-sample).
DISTRACTORS = 3


def _corpus_files(documents: list[tuple[str, str]]) -> list[tuple[str, bytes]]:
    """(file name, bytes) of a group's documents; a group without documents asks about the bundled corpus."""
    if documents:
        return [(file_name, text.encode("utf-8")) for file_name, text in documents]
    return [(f.name, f.read_bytes()) for f in sorted((PROJECT_ROOT / "data" / "corpus").iterdir()) if f.is_file()]


def _companion_indexes(i: int, n: int, count: int) -> list[int]:
    return [(i + k) % n for k in range(1, min(count, n - 1) + 1)]


def collect(groups: list[tuple[str, list[Path]]], embedder=None, log=print,
            distractors: int = DISTRACTORS) -> list[Example]:
    """Index each document group in a temporary folder and featurise every question: once in a corpus of the
    group's own documents (with off-topic questions borrowed from other groups), and once more in a corpus
    with ``distractors`` other groups' documents beside them."""
    from rag.embeddings import Embedder
    from rag.eval.gold import load_dataset
    from rag.index import open_index
    from rag.pipeline import Pipeline
    from rag.settings import Settings

    stand_in = ExtractiveBackend  # prepare() reads only its class attributes (passage_depth, nearest_sentences...)
    loaded = []
    for name, files in groups:
        documents: list[tuple[str, str]] = []
        questions = []
        for path in files:
            docs, qs = load_dataset(path)
            documents += docs
            questions += qs
        loaded.append((name, documents, questions))
    examples: list[Example] = []
    files_of = [_corpus_files(documents) for _, documents, _ in loaded]
    settings_to_run = []
    for i, (name, _, questions) in enumerate(loaded):
        own = files_of[i]
        own_names = {file_name for file_name, _ in own}
        settings_to_run.append((name, (), own, own_names,
                                [(q, None) for q in questions] + _borrowed_questions(name, loaded)))
        if distractors:
            others = _companion_indexes(i, len(loaded), distractors)
            # Prefixed with their group: no distractor file can take an own document's name.
            files = own + [(f"{loaded[j][0]}--{file_name}", data) for j in others for file_name, data in files_of[j]]
            settings_to_run.append((name, tuple(loaded[j][0] for j in others), files, own_names,
                                    [(q, None) for q in questions]))
    for name, companions, files, own_names, asked in settings_to_run:
        with tempfile.TemporaryDirectory(prefix="rag-train-") as tmp:
            corpus = Path(tmp) / "corpus"
            corpus.mkdir()
            for file_name, data in files:
                (corpus / file_name).write_bytes(data)
            settings = Settings(corpus_dir=corpus, index_dir=Path(tmp) / "index", blas_threads=FIT_BLAS_THREADS,
                                _env_file=None)
            if embedder is None:
                embedder = Embedder.from_settings(settings)
            pipeline = Pipeline(settings, embedder, open_index(settings, embedder))
            index = pipeline.index
            featurizer = Featurizer(index, embedder)
            # Evidence is looked for in the group's own documents only.
            texts = {doc_id: doc.text for doc_id, doc in index.documents.items()
                     if Path(doc_id).name in own_names or doc_id in own_names}
            started = time.perf_counter()
            for q, origin in asked:
                spans: dict[str, list[tuple[int, int]]] = defaultdict(list)
                for evidence in q.evidence if origin is None else ():
                    for doc_id, text in texts.items():
                        at = text.find(evidence)
                        while at != -1:
                            spans[doc_id].append((at, at + len(evidence)))
                            at = text.find(evidence, at + 1)
                request = pipeline.prepare(q.question, stand_in)
                q_vec = embedder.encode_query(q.question)
                candidates = featurizer.candidates(q.question, q_vec, request.passages, request.hits)
                evidence = np.array([_overlaps(s.start, s.end, spans.get(s.source, []))
                                     for s in candidates.sentences], dtype=np.float32)
                aliases = tuple(q.answers) if origin is None else ()
                labels = answer_bearing(evidence, [s.text for s in candidates.sentences], aliases)
                examples.append(Example(name, q.id, q.question, q.type if origin is None else "borrowed", q.style,
                                        aliases, candidates, labels, evidence, featurizer, origin, companions))
            beside = f" beside {', '.join(companions)}" if companions else ""
            log(f"  {name}{beside}: {len(index.sentences)} sentences, {len(asked)} questions "
                f"({(time.perf_counter() - started) * 1000 / max(len(asked), 1):.1f} ms each)")
    return examples


# ---------------------------------------------------------------------------------------------- fitting


def fit_logistic(matrix: np.ndarray, labels: np.ndarray, features: tuple[str, ...],
                 weights: np.ndarray | None = None) -> Logistic:
    from sklearn.linear_model import LogisticRegression

    mean = matrix.mean(axis=0)
    scale = matrix.std(axis=0)
    scale[scale < 1e-6] = 1.0
    model = LogisticRegression(C=REGULARISATION, max_iter=3000)
    model.fit((matrix - mean) / scale, labels, sample_weight=weights)
    return Logistic(features, mean.astype(np.float64), scale.astype(np.float64), model.coef_[0].astype(np.float64),
                    float(model.intercept_[0]))


SPAN_MIN_F1 = 0.6  # a span counts as the short answer when its SQuAD token F1 with an alias reaches this


def span_rows(example: Example) -> tuple[np.ndarray, np.ndarray] | None:
    """Span features and labels of the gold sentences of an answerable question (those that overlap the
    evidence and contain an alias), computed once per example."""
    cached = getattr(example, "_span_rows", False)
    if cached is not False:
        return cached
    from rag.eval.metrics import contains_alias, token_f1

    matrices, labels = [], []
    for i in np.flatnonzero(example.labels):
        text = example.candidates.sentences[i].text
        if not example.aliases or not contains_alias(text, example.aliases):
            continue
        spans = candidate_spans(text)
        if spans:
            matrices.append(span_features(example.candidates.info, text, spans, example.featurizer.word_vectors))
            labels.append(np.array([token_f1(sp.text, example.aliases) >= SPAN_MIN_F1 for sp in spans], np.float32))
    rows = (np.concatenate(matrices), np.concatenate(labels)) if matrices else None
    example._span_rows = rows  # type: ignore[attr-defined]
    return rows


def fit_span_model(examples: list[Example]) -> Logistic:
    rows = [r for r in (span_rows(e) for e in examples) if r is not None]
    return fit_logistic(np.concatenate([m for m, _ in rows]), np.concatenate([y for _, y in rows]), SPAN_FEATURES)


def fit_sentence_model(examples: list[Example]) -> Logistic:
    matrix = np.concatenate([e.candidates.matrix for e in examples])
    labels = np.concatenate([e.labels for e in examples])
    weights = None
    if PER_DOCUMENT_WEIGHTS:
        per_question = document_weights([e.document for e in examples])
        weights = np.concatenate([np.full(len(e.labels), w) for e, w in zip(examples, per_question, strict=True)])
        weights /= weights.mean()
    return fit_logistic(matrix, labels, SENTENCE_FEATURES, weights)


@dataclass
class Outcome:
    example: Example
    features: np.ndarray
    chosen_text: str
    short: str | None
    correct: bool  # the chosen answer contains a gold alias (False for every unanswerable question)
    evidence_rank: int | None  # rank (1-based) of the first positive candidate by sentence probability


def answer_with(example: Example, sentence_model: Logistic, span_model: Logistic | None = None) -> Outcome:
    from rag.eval.metrics import contains_alias

    candidates = example.candidates
    probabilities = sentence_model.predict(candidates.matrix)
    chosen = choose(candidates, probabilities, SECOND_SENTENCE)
    texts = [candidates.sentences[i].text for i in chosen]
    features = example.featurizer.answer_features(candidates, probabilities, chosen)
    order = np.argsort(-probabilities, kind="stable")
    positive = [r for r, i in enumerate(order, start=1) if example.evidence[i]]
    ranked = [candidates.sentences[i].text for i in sorted(chosen, key=lambda i: -probabilities[i])]
    short = best_span(candidates.info, ranked, span_model, example.featurizer.word_vectors) if span_model \
        else short_answer(candidates.info, ranked)
    correct = bool(example.aliases) and contains_alias(" ".join(texts), example.aliases)
    return Outcome(example, features, " ".join(texts), short, correct, positive[0] if positive else None)


def document_weights(documents: list[str]) -> np.ndarray:
    """1 / (questions of the same document), scaled to mean 1: every document weighs the same."""
    per_document = Counter(documents)
    weights = np.array([1.0 / per_document[d] for d in documents])
    return weights / weights.mean()


def fit_confidence(outcomes: list[Outcome]) -> tuple[Logistic, float]:
    """The confidence model and its operating point, every document weighing the same. Measured LODO on 10
    documents: per-document weights raise the confidence's ROC AUC for "the answer is right" outside the
    SQuAD article from 0.67 to 0.70 and lower ECE from 0.16 to 0.15. (On the SQuAD article it stays below
    0.5: its unanswerable questions were written to resemble an answer sentence, which no feature here sees.)"""
    matrix = np.stack([o.features for o in outcomes])
    labels = np.array([o.correct for o in outcomes], dtype=np.float32)
    weights = document_weights([o.example.document for o in outcomes])
    model = fit_logistic(matrix, labels, ANSWER_FEATURES, weights)
    return model, best_threshold(model.predict(matrix), outcomes, weights)


def best_threshold(confidence: np.ndarray, outcomes: list[Outcome], weights: np.ndarray | None = None) -> float:
    """The threshold with the most right decisions (right answers plus abstentions on questions that the
    answer got wrong or that have no answer) among those that abstain on at most MAX_FALSE_ABSTENTION of
    the answerable questions (both weighted by ``weights``)."""
    correct = np.array([o.correct for o in outcomes])
    answerable = np.array([bool(o.example.aliases) for o in outcomes])
    weights = np.ones(len(outcomes)) if weights is None else weights
    best, best_value = float(THRESHOLDS[0]), -1.0
    for t in THRESHOLDS:
        answered = confidence >= t
        if answerable.any() and float(np.average(~answered[answerable], weights=weights[answerable])) \
                > MAX_FALSE_ABSTENTION:
            continue
        value = float(np.average(np.where(answered, correct, ~correct), weights=weights))
        if value > best_value + 1e-9:
            best, best_value = float(t), value
    return best


def _within(examples: list[Example], documents: list[str]) -> list[Example]:
    """The examples of these documents whose corpus held nothing else (distractors included only when they are
    among them too), borrowed negatives included only when their source is one of them."""
    return [e for e in examples if e.document in documents and (e.borrowed_from is None or e.borrowed_from in documents)
            and all(c in documents for c in e.companions)]


def _without(examples: list[Example], document: str) -> list[Example]:
    """The examples a model may be fitted on when ``document`` is held out: not its questions, and not questions
    whose corpus held its text as a distractor."""
    return [e for e in examples if e.document != document and document not in e.companions]


def out_of_document_outcomes(examples: list[Example], documents: list[str]) -> list[Outcome]:
    """For each document, answers chosen by a sentence model fitted on the other documents (borrowed
    negatives take part in the confidence model only: their candidates have no positive sentence)."""
    outcomes = []
    usable = _within(examples, documents)
    for d in documents:
        model = fit_sentence_model([e for e in _without(usable, d) if e.borrowed_from is None])
        outcomes += [answer_with(e, model) for e in usable if e.document == d and e.borrowed_from != d]
    return outcomes


def leave_one_document_out(examples: list[Example], log=print) -> list[dict]:
    documents = list(dict.fromkeys(e.document for e in examples))
    rows: list[dict] = []
    for d in documents:
        others = [x for x in documents if x != d]
        confidence_model, threshold = fit_confidence(out_of_document_outcomes(examples, others))
        own = [e for e in examples if e.borrowed_from is None]
        sentence_model = fit_sentence_model(_without(own, d))
        span_model = fit_span_model(_without(own, d))
        for e in (e for e in own if e.document == d):
            outcome = answer_with(e, sentence_model, span_model)
            confidence = float(confidence_model.predict(outcome.features[None, :])[0])
            rows.append(_row(outcome, confidence, threshold))
        log(f"  held out {d}: threshold {threshold:.2f}")
    return rows


def _row(outcome: Outcome, confidence: float, threshold: float) -> dict:
    from rag.eval.metrics import token_f1

    e = outcome.example
    abstained = confidence < threshold
    prediction = "" if abstained else (outcome.short or outcome.chosen_text)
    return {
        "document": e.document, "id": e.qid, "question": e.question, "type": e.type, "style": e.style,
        "corpus": CORPUS_WITH_OTHERS if e.companions else CORPUS_ALONE,
        "answerable": bool(e.aliases), "abstained": abstained, "confidence": round(confidence, 4),
        "answer_in_reply": (not abstained) and outcome.correct,
        "would_be_correct": outcome.correct,
        "f1": token_f1(prediction, e.aliases) if e.aliases else float(not prediction),
        "short_answer": outcome.short,
        "short_f1": token_f1(outcome.short or "", e.aliases) if e.aliases else None,
        "evidence_in_candidates": bool(e.evidence.any()) if e.aliases else None,
        "evidence_rank": outcome.evidence_rank if e.aliases else None,
    }


# ---------------------------------------------------------------------------------------------- reporting


def summarise(rows: list[dict]) -> dict:
    def share(values: list[bool]) -> float | None:
        return round(float(np.mean(values)), 4) if values else None

    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]
    ranks = [r["evidence_rank"] for r in answerable]
    confidences = np.array([r["confidence"] for r in rows])
    right = np.array([(r["would_be_correct"]) for r in rows], dtype=float)
    bins = np.minimum((confidences * 10).astype(int), 9)
    ece = sum(abs(confidences[bins == b].mean() - right[bins == b].mean()) * (bins == b).sum()
              for b in range(10) if (bins == b).any()) / max(len(rows), 1)
    return {
        "questions": len(rows), "answerable": len(answerable), "unanswerable": len(unanswerable),
        "answer_in_reply": share([r["answer_in_reply"] for r in answerable]),
        "false_abstention": share([r["abstained"] for r in answerable]),
        "unanswerable_abstained": share([r["abstained"] for r in unanswerable]),
        "squad2_f1": share([r["f1"] for r in rows]),
        "answer_in_reply_if_always_answering": share([r["would_be_correct"] for r in answerable]),
        "evidence_at_1": share([rank == 1 for rank in ranks]),
        "evidence_recall_at_5": share([rank is not None and rank <= 5 for rank in ranks]),
        "evidence_in_candidates": share([rank is not None for rank in ranks]),
        "ece": round(float(ece), 4),
    }


CORPUS_ALONE = "alone"
CORPUS_WITH_OTHERS = "with other documents"


def report(rows: list[dict]) -> dict:
    """Summaries of the rows of questions asked of their document alone ("overall", per document, type and
    style), and per corpus setting (alone / with other documents beside it)."""
    alone = [r for r in rows if r.get("corpus", CORPUS_ALONE) == CORPUS_ALONE]
    out = {"overall": summarise(alone), "by_corpus": {}, "by_document": {}, "by_type": {}, "by_style": {}}
    for key, field, selected in (("by_corpus", "corpus", rows), ("by_document", "document", alone),
                                 ("by_type", "type", alone), ("by_style", "style", alone)):
        groups: dict[str, list[dict]] = defaultdict(list)
        for r in selected:
            if r.get(field) is not None:
                groups[r[field]].append(r)
        out[key] = {name: summarise(group) for name, group in sorted(groups.items())}
    return out


def format_report(summary: dict) -> str:
    columns = ("questions", "answer_in_reply", "false_abstention", "unanswerable_abstained", "squad2_f1",
               "evidence_at_1", "evidence_recall_at_5", "ece")
    lines = ["| group | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]

    def cell(v):
        return "–" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))

    lines.append("| **all** | " + " | ".join(cell(summary["overall"][c]) for c in columns) + " |")
    for key in ("by_corpus", "by_document", "by_type", "by_style"):
        for name, values in summary.get(key, {}).items():
            lines.append(f"| {key[3:]}: {name} | " + " | ".join(cell(values[c]) for c in columns) + " |")
    return "\n".join(lines)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train(out: Path = DEFAULT_OUT, report_path: Path | None = DEFAULT_REPORT, log=print, embedder=None
          ) -> AnswerModel:
    """Fit on every dataset and write the model (and the LODO report). ``embedder``: the embedding model whose
    features are fitted (default: the one RAG_EMBED_MODEL names); the model records which it was."""
    from rag.embeddings import Embedder
    from rag.pipeline import limit_blas_threads
    from rag.settings import Settings

    limit_blas_threads(FIT_BLAS_THREADS)
    groups = dataset_files()
    if embedder is None:
        embedder = Embedder.from_settings(Settings(_env_file=None))
    log(f"collecting {len(groups)} documents (embedding model {embedder.info.model_id})")
    examples = collect(groups, embedder=embedder, log=log)
    log("leave-one-document-out")
    rows = leave_one_document_out(examples, log=log)
    summary = report(rows)
    log(format_report(summary))
    documents = list(dict.fromkeys(e.document for e in examples))
    confidence_model, threshold = fit_confidence(out_of_document_outcomes(examples, documents))
    own = [e for e in examples if e.borrowed_from is None]
    model = AnswerModel(
        fit_sentence_model(own), confidence_model, threshold, SECOND_SENTENCE, span=fit_span_model(own),
        meta={
            "trained_by": "python -m rag.answer.training (make train)",
            "embedding": {"model_id": embedder.info.model_id, "sha256": embedder.info.sha256},
            "data": {str(p.relative_to(PROJECT_ROOT.parent) if p.is_relative_to(PROJECT_ROOT.parent) else p):
                     _sha256(p) for _, files in groups for p in files},
            "questions": sum(1 for e in own if not e.companions),
            "borrowed_negatives": len(examples) - len(own),
            "distractor_documents": DISTRACTORS,
            "documents": documents,
            "lodo": summary["overall"],
        },
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(model.to_json(), indent=1) + "\n", encoding="utf-8")
    if report_path is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(json.dumps({"summary": summary, "questions": rows}, indent=1) + "\n", encoding="utf-8")
    log(f"wrote {out}")
    return model


def default_paths(embedding_sha256: str) -> tuple[Path, Path]:
    """Where the model and its LODO report go by default: answerer.json and docs/answerer-lodo.json for the
    bundled MiniLM; for another embedding model, the names the answerer looks for it under
    (``rag.answer.scorer.shipped_model_name``), so a refit never replaces the MiniLM model."""
    from rag.model_files import BUNDLED_SHA256

    if embedding_sha256 == BUNDLED_SHA256:
        return DEFAULT_OUT, DEFAULT_REPORT
    tag = embedding_sha256[:12]
    return DEFAULT_OUT.with_name(f"answerer-{tag}.json"), DEFAULT_REPORT.with_name(f"answerer-lodo-{tag}.json")


def main(argv: list[str] | None = None) -> int:
    from rag.embeddings import Embedder
    from rag.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="where to write the model JSON (default: rag/answer/data/"
                        "answerer.json, or answerer-<sha256[:12]>.json for an embedding model other than MiniLM)")
    parser.add_argument("--report", type=Path, help="where to write the LODO report JSON (default: "
                        "docs/answerer-lodo.json, or answerer-lodo-<sha256[:12]>.json)")
    args = parser.parse_args(argv)
    try:
        embedder = Embedder.from_settings(Settings(_env_file=None))
        out, report_path = default_paths(embedder.info.sha256)
        train(args.out or out, args.report or report_path, log=lambda m: print(m, file=sys.stderr),
              embedder=embedder)
    except RagError as exc:  # e.g. RAG_EMBED_MODEL names a model that is not installed: one line, its exit code
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
