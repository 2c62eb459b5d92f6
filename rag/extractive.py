"""The default answer backend: offline, deterministic, extractive.

It answers with 1-3 sentences of the article, verbatim, each followed by its ``[n]`` marker. Sentences
are scored on dense similarity, idf-weighted term overlap, presence of what the question asks for (a
date for "when", a figure for "how many", a name for "who", a cause for "why", a quote for "what did X
say"), named-entity coverage and the retrieval rank of their chunk. A second sentence is added when the
first leaves a question entity uncovered (two-step questions) or opens with a pronoun whose referent is
in the previous sentence.

It abstains from evidence, not from a score threshold alone: when a named entity of the question appears
in no candidate answer, when the asked-for type (age, figure, date, name) is absent from the best
sentences, or when support is weak on both dense and lexical measures.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rag.backends import NO_ANSWER, AnswerBackend, AnswerRequest
from rag.question import QuestionInfo, analyze, type_candidates
from rag.text import content_terms, normalize

if TYPE_CHECKING:
    from rag.embeddings import Embedder
    from rag.index import Index
    from rag.types import Sentence

_PRONOUN_START = re.compile(r"^[\"“]?(He|She|They|It|His|Her|Their|This|That|These|Those|The two)\b")
TYPED_KINDS = ("when", "age", "money", "how_many", "who", "quote_speaker", "where")

# Operating point, chosen on eval/gold.jsonl (see the note in the evaluation report).
MIN_SUPPORT = 0.34
W_DENSE, W_LEXICAL, W_TYPE, W_ENTITY, W_RANK = 0.45, 0.30, 0.10, 0.10, 0.05


@dataclass
class Scored:
    n: int  # passage number
    sentence: Sentence
    score: float
    dense: float
    lexical: float
    typed: bool
    entities: float


class ExtractiveBackend(AnswerBackend):
    name = "extractive"

    def __init__(self, index: Index, embedder: Embedder):
        self.index, self.embedder = index, embedder
        self.sentence_terms = [frozenset(content_terms(s.text)) for s in index.sentences]
        df: Counter[str] = Counter()
        for terms in self.sentence_terms:
            df.update(terms)
        self.df, self.n_sentences = df, max(len(index.sentences), 1)

    # ------------------------------------------------------------ scoring

    def _idf(self, term: str) -> float:
        import math

        return math.log(1 + self.n_sentences / (1 + self.df.get(term, 0)))

    def _entity_present(self, entity: str, text: str) -> bool:
        norm = normalize(text).lower()
        parts = [p for p in re.split(r"[\s-]+", entity.strip(".")) if len(p) > 1 and p not in ("al", "the")]
        if not parts:
            return True
        # The entity's most distinctive word must be there ("Kataib" in "Kataib Hezbollah").
        rarest = min(parts, key=lambda p: self.df.get(content_terms(p)[0], 0) if content_terms(p) else 0)
        return rarest in norm

    def _typed(self, info: QuestionInfo, text: str) -> bool:
        if info.kind not in TYPED_KINDS and info.kind not in ("why", "quote_content"):
            return False
        question = normalize(info.text).lower()
        for start, end in type_candidates(info.kind, text):
            span = normalize(text[start:end]).lower()
            if info.kind in ("who", "quote_speaker", "where"):
                tokens = [t for t in re.split(r"[\s]+", span) if t]
                if all(t.strip("'’s.,") in question for t in tokens):
                    continue
            elif span in question:
                continue
            return True
        return False

    def score(self, request: AnswerRequest, info: QuestionInfo) -> list[Scored]:
        import numpy as np

        q_vec = self.embedder.encode_query(request.question)
        weights = {t: self._idf(t) for t in dict.fromkeys(info.terms)}
        total = sum(weights.values()) or 1.0
        chunk_rank = {}
        for hit in request.hits:
            for sid in hit.chunk.sentence_ids:
                chunk_rank.setdefault(sid, hit.rank)
        ids = [s.id for s in request.passages]
        dense_all = self.index.sentence_vectors[ids] @ q_vec if ids else np.zeros(0)
        scored = []
        for n, (sentence, dense) in enumerate(zip(request.passages, dense_all, strict=True), start=1):
            terms = self.sentence_terms[sentence.id]
            lexical = sum(w for t, w in weights.items() if t in terms) / total
            typed = self._typed(info, sentence.text)
            ents = (
                sum(self._entity_present(e, sentence.text) for e in info.entities) / len(info.entities)
                if info.entities else 1.0
            )
            rank = chunk_rank.get(sentence.id)
            prior = 1.0 / rank if rank else 0.0
            total_score = (W_DENSE * float(dense) + W_LEXICAL * lexical + W_TYPE * typed
                           + W_ENTITY * ents + W_RANK * prior)
            scored.append(Scored(n, sentence, total_score, float(dense), lexical, typed, ents))
        return sorted(scored, key=lambda s: -s.score)

    # ------------------------------------------------------------ selection

    def select(self, request: AnswerRequest) -> list[Scored]:
        """The chosen answer sentences in document order, or [] to abstain."""
        info = analyze(request.question)
        ranked = self.score(request, info)
        if not ranked:
            return []
        by_id = {s.sentence.id: s for s in ranked}
        best = ranked[0]
        chosen = [best]

        def covered(entity: str, picks: list[Scored]) -> bool:
            return any(self._entity_present(entity, p.sentence.text) for p in picks)

        # Two-step questions: add the best sentence that covers an entity the first one lacks.
        missing = [e for e in info.entities if not covered(e, chosen)]
        if missing:
            for cand in ranked[1:8]:
                if cand.score >= best.score - 0.2 and any(self._entity_present(e, cand.sentence.text) for e in missing):
                    chosen.append(cand)
                    break
        # A pronoun-led sentence reads badly alone: add its predecessor from the same paragraph.
        prev = by_id.get(best.sentence.id - 1)
        if (
            _PRONOUN_START.match(best.sentence.text)
            and prev is not None
            and prev.sentence.paragraph == best.sentence.paragraph
            and prev not in chosen
            and len(chosen) < 3
        ):
            chosen.append(prev)

        if self._abstain(info, best, chosen):
            return []
        return sorted(chosen, key=lambda s: s.sentence.id)

    def _abstain(self, info: QuestionInfo, best: Scored, chosen: list[Scored]) -> bool:
        text = " ".join(s.sentence.text for s in chosen)
        if info.entities and not all(self._entity_present(e, text) for e in info.entities):
            return True
        if info.kind in ("age", "money", "how_many", "when") and not any(self._typed(info, s.sentence.text) for s in chosen):
            return True
        if info.kind in ("who", "quote_speaker") and not self._typed(info, text):
            return True
        return best.dense < 0.25 and best.lexical < 0.34 or best.score < MIN_SUPPORT

    def execute(self, request: AnswerRequest) -> Iterator[str]:
        chosen = self.select(request)
        if not chosen:
            yield NO_ANSWER
            return
        yield " ".join(f"{s.sentence.text} [{s.n}]" for s in chosen)
