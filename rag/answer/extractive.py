"""The default answer backend: offline, deterministic, extractive, learned.

It answers with one or two sentences of the corpus, verbatim, each followed by its ``[n]`` marker, and
says how likely the answer is to be right (``AnswerNote.confidence``):

1. every candidate sentence (the sentences of the retrieved chunks and their neighbours, plus the
   sentences nearest the question in embedding space) gets the features of ``rag.answer.features``;
2. the learned sentence model (``rag.answer.scorer``) gives each the probability that it holds the answer;
3. the answer is the most probable sentence, with the sentence before it when it opens with a pronoun
   that sentence resolves, and a second candidate when it is nearly as probable (two-part answers);
4. the confidence model turns the answer's evidence (top probability, margin, name and type coverage...)
   into a calibrated probability; below ``RAG_MIN_CONFIDENCE`` the backend abstains.
5. the short answer is the most probable span of the answer's sentences under the span model, or, with
   ``RAG_READER=true``, the span the fine-tuned reader (``rag.answer.reader``) scores best.

No rule here knows about any particular article: the weights are fitted on several documents of different
kinds and measured leave-one-document-out (docs/answerer.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rag.answer.base import NO_ANSWER, AnswerBackend, AnswerNote, AnswerRequest
from rag.answer.features import Candidates, Featurizer
from rag.answer.question import short_answer
from rag.answer.reader import choose_span
from rag.answer.scorer import AnswerModel, load_model, shipped_model_name, warn_if_fitted_on_another_embedder
from rag.answer.span import best_span

if TYPE_CHECKING:
    from rag.embeddings import Embedder
    from rag.index import Index
    from rag.settings import Settings

_OPENS_WITH_REFERENCE = re.compile(r"^[\"“]?(He|She|They|It|His|Her|Their|Its|This|That|These|Those)\b")
MAX_SENTENCES = 3


@dataclass
class Decision:
    """What the backend decided for one question (exposed for evaluation and training)."""

    candidates: Candidates
    probabilities: np.ndarray  # per candidate
    chosen: list[int]  # candidate indices, document order
    confidence: float


class ExtractiveBackend(AnswerBackend):
    name = "extractive"
    passage_depth = 8  # sentences are cheap to score: look a little wider than the displayed top-k
    nearest_sentences = 10  # plus the sentences nearest the question in embedding space (paraphrases)

    def __init__(self, index: Index, embedder: Embedder, settings: Settings | None = None,
                 model: AnswerModel | None = None):
        self.index, self.embedder = index, embedder
        model_path = getattr(settings, "answer_model", None)
        which = str(model_path) if model_path else shipped_model_name(embedder.info.sha256)
        if model is None:
            # RAG_ANSWER_MODEL unset: the shipped model fitted on this embedding model's features, if there is one.
            model = load_model(which) if model_path else load_model(None, which)
        self.model = model
        warn_if_fitted_on_another_embedder(
            model.meta, embedder, f"answer model {which}",
            "fit one with `RAG_EMBED_MODEL=<it> python -m rag.answer.training --out FILE` and set RAG_ANSWER_MODEL=FILE")
        configured = getattr(settings, "min_confidence", None)
        self.min_confidence = self.model.min_confidence if configured is None else float(configured)
        self.featurizer = Featurizer(index, embedder)
        self.reader = None
        if getattr(settings, "reader", False):
            from rag.answer.reader import load_reader

            self.reader = load_reader(settings.model_cache_dir)

    def decide(self, request: AnswerRequest) -> Decision | None:
        if not request.passages:
            return None
        q_vec = self.embedder.encode_query(request.question)
        candidates = self.featurizer.candidates(request.question, q_vec, request.passages, request.hits)
        probabilities = self.model.sentence.predict(candidates.matrix)
        chosen = choose(candidates, probabilities, self.model.second_sentence)
        features = self.featurizer.answer_features(candidates, probabilities, chosen)
        confidence = float(self.model.confidence.predict(features[None, :])[0])
        return Decision(candidates, probabilities, chosen, confidence)

    def execute(self, request: AnswerRequest) -> Iterator[str | AnswerNote]:
        decision = self.decide(request)
        if decision is None:
            yield NO_ANSWER
            yield AnswerNote(confidence=0.0)
            return
        if decision.confidence < self.min_confidence:
            yield NO_ANSWER
            yield AnswerNote(confidence=decision.confidence)
            return
        number = {s.id: n for n, s in enumerate(request.passages, start=1)}
        sentences = [decision.candidates.sentences[i] for i in decision.chosen]
        yield " ".join(f"{s.text} [{number[s.id]}]" for s in sentences)
        yield AnswerNote(confidence=decision.confidence, short_answer=self.short_answer(decision))

    def short_answer(self, decision: Decision) -> str | None:
        ranked = sorted(decision.chosen, key=lambda i: -decision.probabilities[i])
        texts = [decision.candidates.sentences[i].text for i in ranked]
        if self.reader is not None:
            return choose_span(self.reader.read(decision.candidates.info.text, texts[:2])) or None
        if self.model.span is not None:
            return best_span(decision.candidates.info, texts, self.model.span, self.featurizer.word_vectors)
        return short_answer(decision.candidates.info, texts)


def choose(candidates: Candidates, probabilities: np.ndarray, second_share: float) -> list[int]:
    """Candidate indices of the answer, in document order: the most probable sentence; the sentence before
    it when it opens with a pronoun ("He said...") in the same paragraph; the next most probable candidate
    when its probability reaches ``second_share`` of the best one's (answers spread over two sentences)."""
    order = [int(i) for i in np.argsort(-probabilities, kind="stable")]
    best = order[0]
    chosen = [best]
    position = {s.id: i for i, s in enumerate(candidates.sentences)}
    sentence = candidates.sentences[best]
    previous = position.get(sentence.id - 1)
    if _OPENS_WITH_REFERENCE.match(sentence.text) and previous is not None \
            and candidates.sentences[previous].paragraph == sentence.paragraph:
        chosen.append(previous)
    if len(order) > 1 and len(chosen) < MAX_SENTENCES:
        second = order[1]
        if second not in chosen and probabilities[second] >= second_share * probabilities[best]:
            chosen.append(second)
    return sorted(chosen, key=lambda i: candidates.sentences[i].id)
