"""Features of (question, candidate sentence) pairs and of whole answers, for the learned answer scorer.

Every feature is meant to carry over to any English document collection: similarities (dense MiniLM cosine,
idf-weighted term overlap), ranks relative to the other candidates, the question's asked-for type against
the values a sentence holds (dates, figures, names, causes, quotes), coverage of the question's names
weighted by how rare they are in the corpus, and neighbour context. Nothing here names an article, a region
or a topic; the weights that combine these numbers are learned (``rag.answer.training``) and live in
``rag/answer/data/answerer.json``.

A ``Featurizer`` is built once per index (term statistics, entity matcher) and then computes features per
question in a few milliseconds.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rag.answer.question import EntityMatcher, QuestionInfo, analyze, type_candidates
from rag.text import STOPWORDS, content_terms, normalize, soft_words, stem

if TYPE_CHECKING:
    from rag.index import Index
    from rag.types import Hit, Sentence

# Asked-for types grouped by the kind of value that answers them.
KIND_GROUPS = {
    "who": "person", "quote_speaker": "person", "name": "person", "define": "person",
    "when": "time", "where": "place", "how_many": "number", "money": "number", "age": "number",
    "why": "cause", "quote_content": "quote", "what": "open", "yesno": "open",
}
GROUPS = ("person", "time", "place", "number", "cause", "quote", "open")

SENTENCE_FEATURES = (
    "dense", "dense_gap", "dense_rank_inv", "dense_context", "dense_neighbour",
    "lexical", "lexical_gap", "lexical_rank_inv", "lexical_context", "bigram",
    "retrieval_rank_inv", "in_retrieved", "document_hits", "document_top", "document_dense_gap",
    "soft", "soft_gap", "soft_rank_inv", "soft_context",
    "entities", "entities_own", "entity_count",
    "typed", *(f"typed_{g}" for g in GROUPS if g != "open"), "typed_missing",
    "novel_share", "log_length", "refers_back", "has_quote", "has_number", "has_name", "paragraph_start",
    "question_terms_log",
    "tokens", "tokens_gap", "tokens_rank_inv", "tokens_context",
)

# Sentence features that do not depend on the question (memoised per sentence by ``Featurizer.statics``).
STATIC_FEATURES = ("log_length", "refers_back", "has_quote", "has_number", "has_name", "paragraph_start")

ANSWER_FEATURES = (
    "p_top", "logit_top", "p_second", "margin", "p_sum_top3",
    "dense_top", "dense_max", "lexical_top", "lexical_max", "entities_chosen", "typed_chosen",
    "predicate_coverage", "soft_top", "soft_context_top", "tokens_top", "tokens_max", "absent_terms", "absent_entities", "uncovered_idf_max", "typed_question", *(f"kind_{g}" for g in GROUPS), "n_entities", "n_sentences",
)

_REFERS_BACK = re.compile(r"^[\"“]?(He|She|They|It|His|Her|Their|Its|This|That|These|Those|The two)\b"
                          r"|\b(he|she|they) (said|told|says|added)\b")
_NAME = re.compile(r"(?<=[a-z,;] )[A-Z][\w'’.-]+")
# Word-piece rows kept as float32 by a Featurizer before it starts again: about 150 MB (the bundled article has
# 3,200; a question's candidates about 1,100).
_TOKEN_CACHE_ROWS = 100_000
CONTEXT_WINDOW = 2  # preceding sentences of the same paragraph counted as a sentence's context


@dataclass
class Candidates:
    """The candidate sentences of one question with their feature matrix."""

    info: QuestionInfo
    sentences: list[Sentence]
    matrix: np.ndarray  # (len(sentences), len(SENTENCE_FEATURES)), float32
    dense: np.ndarray
    lexical: np.ndarray
    entities: np.ndarray
    typed: np.ndarray


class WordVectors:
    """Embeddings of single words, computed on first use and kept (a word is embedded once per process).

    They give "soft" term matches: "took over" / "replacement", "fired" / "sacked". Measured with MiniLM:
    single-word cosines of synonyms sit around 0.6-0.8, unrelated words around 0.1-0.35."""

    LIMIT = 200_000  # words kept before the cache starts again

    def __init__(self, embedder, words: tuple[str, ...] = (), vectors: np.ndarray | None = None):
        """``words``/``vectors``: the vocabulary the index embedded at build (``Index.words``); with the
        model's own vocabulary table (``Embedder.word_table``) only words new to both are embedded while
        answering."""
        self.embedder = embedder
        self._cache: dict[str, np.ndarray] = {} if vectors is None else dict(zip(words, vectors, strict=True))

    def matrix(self, items: list[str]) -> np.ndarray:
        cache = self._cache  # replaced, never changed in place: other threads may be reading it
        missing = [w for w in dict.fromkeys(items) if w not in cache]
        if missing:
            fresh = self._from_table(missing)
            rest = [w for w in missing if w not in fresh]
            if rest:
                fresh.update(zip(rest, self.embedder.encode(rest), strict=True))
            cache = {**({} if len(cache) > self.LIMIT else cache), **fresh}
            self._cache = cache
        if not items:
            return np.zeros((0, 1), dtype=np.float32)
        return np.stack([cache[w] for w in items])

    def _from_table(self, missing: list[str]) -> dict[str, np.ndarray]:
        """The vectors of the model's vocabulary table (``rag.word_table``) for those words it holds."""
        table = self.embedder.word_table() if hasattr(self.embedder, "word_table") else None
        if table is None:
            return {}
        found = {w: table.get(w) for w in missing}
        return {w: np.array(v, dtype=np.float32) for w, v in found.items() if v is not None}


class Featurizer:
    """Corpus statistics of one index, and the feature computation that uses them."""

    def __init__(self, index: Index, embedder=None):
        self.index = index
        self.embedder = embedder
        self._tokens: dict[int, np.ndarray] = {}  # sentence id -> its word-piece vectors, float32 (_passage_tokens)
        self._token_rows_cached = 0
        self.word_vectors = None if embedder is None else WordVectors(
            embedder, getattr(index, "words", ()), getattr(index, "word_vectors", None))
        self.sentence_words = [tuple(dict.fromkeys(soft_words(s.text))) for s in index.sentences]
        self.sentence_terms = [frozenset(content_terms(s.text)) for s in index.sentences]
        df: Counter[str] = Counter()
        for terms in self.sentence_terms:
            df.update(terms)
        self.df, self.n_sentences = df, max(len(index.sentences), 1)
        self.entities = EntityMatcher([s.text for s in index.sentences])
        self._entity_memo: dict[tuple[str, int], bool] = {}
        # The same (term, sentence) pairs recur across candidates (context windows overlap) and questions.
        self._term_memo: dict[tuple[str, int], float] = {}
        self._entity_weights: dict[str, float] = {}
        self._typed_memo: dict[tuple[str, int], tuple[tuple[str, ...], ...]] = {}
        self._lowered: dict[str, str] = {}
        self._statics: dict[int, tuple[float, ...]] = {}  # per sentence id: the features that ignore the question
        self._sentence_bigrams: dict[int, set[tuple[str, str]]] = {}

    # ------------------------------------------------------------ corpus statistics

    def idf(self, term: str) -> float:
        return math.log(1 + self.n_sentences / (1 + self.df.get(term, 0)))

    def entity_weight(self, entity: str) -> float:
        """Rare names identify; names in most sentences ("Iran" in an article about Iran) barely do."""
        weight = self._entity_weights.get(entity)
        if weight is None:
            if len(self._entity_weights) > 50_000:
                self._entity_weights = {}
            weight = self._entity_weights[entity] = max((self.idf(t) for t in content_terms(entity)), default=1.0)
        return weight

    def term_in(self, term: str, sentence_id: int) -> float:
        key = (term, sentence_id)
        value = self._term_memo.get(key)
        if value is None:
            if len(self._term_memo) > 500_000:
                self._term_memo = {}
            value = self._term_memo[key] = _term_match(term, self.sentence_terms[sentence_id])
        return value

    def analyze(self, question: str) -> QuestionInfo:
        return analyze(question, self.entities.known_names)

    # ------------------------------------------------------------ per sentence helpers

    def statics(self, sentence: Sentence) -> tuple[float, ...]:
        """The sentence's features that do not depend on the question (``STATIC_FEATURES``), computed once."""
        found = self._statics.get(sentence.id)
        if found is None:
            if len(self._statics) > 200_000:
                self._statics = {}
            text = sentence.text
            previous = self.index.sentences[sentence.id - 1] if sentence.id > 0 else None
            found = self._statics[sentence.id] = (
                math.log1p(len(text)) / 6,
                float(_REFERS_BACK.search(text) is not None),
                float(any(q in text for q in "\"“”")),
                float(any(ch.isdigit() for ch in text)),
                float(_NAME.search(text) is not None),
                float(previous is None or previous.paragraph != sentence.paragraph or previous.source != sentence.source),
            )
        return found

    def bigrams(self, sentence: Sentence) -> set[tuple[str, str]]:
        found = self._sentence_bigrams.get(sentence.id)
        if found is None:
            if len(self._sentence_bigrams) > 200_000:
                self._sentence_bigrams = {}
            found = self._sentence_bigrams[sentence.id] = _bigrams(sentence.text)
        return found

    def _entity_in(self, entity: str, sentence: Sentence) -> bool:
        key = (entity, sentence.id)
        found = self._entity_memo.get(key)
        if found is None:
            if len(self._entity_memo) > 200_000:
                self._entity_memo = {}
            found = self._entity_memo[key] = self.entities.present(entity, sentence.text)
        return found

    def context(self, sentence: Sentence) -> list[Sentence]:
        """The sentence and up to CONTEXT_WINDOW preceding sentences of its paragraph."""
        chain = [sentence]
        while len(chain) <= CONTEXT_WINDOW and chain[0].id > 0:
            previous = self.index.sentences[chain[0].id - 1]
            if previous.source != sentence.source or previous.paragraph != sentence.paragraph:
                break
            chain.insert(0, previous)
        return chain

    def typed(self, info: QuestionInfo, sentence: Sentence) -> bool:
        """Whether the sentence holds a value of the asked-for type that the question does not already hold."""
        if KIND_GROUPS.get(info.kind, "open") == "open":
            return False
        question = self._lowered.get(info.text)
        if question is None:
            if len(self._lowered) > 1000:
                self._lowered = {}
            question = self._lowered[info.text] = normalize(info.text).lower()
        return any(not all(t in question or t in STOPWORDS for t in tokens if t)
                   for tokens in self._typed_values(info.kind, sentence))

    def _typed_values(self, kind: str, sentence: Sentence) -> tuple[tuple[str, ...], ...]:
        """The words of each value of the asked-for kind in the sentence (memoised per kind and sentence: the
        question only decides which of them it already holds)."""
        key = (kind, sentence.id)
        found = self._typed_memo.get(key)
        if found is None:
            if len(self._typed_memo) > 200_000:
                self._typed_memo = {}
            found = self._typed_memo[key] = _typed_values(kind, sentence.text)
        return found

    def coverage(self, weights: dict[str, float], sentence_ids: list[int],
                 matches: dict[int, list[float]] | None = None) -> float:
        """Weighted share of the terms that the sentences contain (a term's best match in any of them).
        ``matches`` (sentence id -> match of each term of ``weights``) keeps the matches for later calls with
        the same weights: a question's context windows overlap."""
        total = sum(weights.values())
        if not total:
            return 0.0
        matches = {} if matches is None else matches
        rows = []
        for i in sentence_ids:
            row = matches.get(i)
            if row is None:
                row = matches[i] = [self.term_in(t, i) for t in weights]
            rows.append(row)
        return sum(w * max(row[k] for row in rows) for k, w in enumerate(weights.values())) / total

    def entity_share(self, info: QuestionInfo, sentences: list[Sentence]) -> float:
        if not info.entities:
            return 1.0
        weights = {e: self.entity_weight(e) for e in info.entities}
        found = sum(w for e, w in weights.items() if any(self._entity_in(e, s) for s in sentences))
        return found / (sum(weights.values()) or 1.0)

    # ------------------------------------------------------------ candidates

    def candidates(
        self, question: str, q_vec: np.ndarray, passages: list[Sentence], hits: list[Hit],
        info: QuestionInfo | None = None,
    ) -> Candidates:
        info = info or self.analyze(question)
        n = len(passages)
        ids = np.array([s.id for s in passages], dtype=np.int64)
        vectors = self.index.sentence_vectors
        dense = vectors[ids] @ q_vec if n else np.zeros(0, dtype=np.float32)
        weights = {t: self.idf(t) for t in dict.fromkeys(info.terms) if "-" not in t}
        q_bigrams = _bigrams(info.text)
        chunk_rank: dict[int, int] = {}
        for hit in hits:
            for sid in hit.chunk.sentence_ids:
                chunk_rank.setdefault(sid, hit.rank)
        lexical = np.zeros(n, dtype=np.float32)
        lexical_ctx = np.zeros(n, dtype=np.float32)
        entities = np.zeros(n, dtype=np.float32)
        typed = np.zeros(n, dtype=np.float32)
        rows = np.zeros((n, len(SENTENCE_FEATURES)), dtype=np.float32)
        col = {name: i for i, name in enumerate(SENTENCE_FEATURES)}
        group = KIND_GROUPS.get(info.kind, "open")
        question_terms = set(info.terms)
        position = {s.id: i for i, s in enumerate(passages)}
        contexts = [self.context(sentence) for sentence in passages]
        # Term and name matches of every sentence involved (candidates and their contexts, which overlap), one
        # row per sentence, then each candidate's and context's best per term: the numbers `coverage` and
        # `entity_share` give, without a Python loop per candidate and term (answer stage 6.6 -> 5.x ms).
        involved = list(dict.fromkeys(c.id for context in contexts for c in context))
        row_of = {sid: r for r, sid in enumerate(involved)}
        own_rows = np.array([row_of[sentence.id] for sentence in passages], dtype=np.intp)
        context_rows = np.fromiter((row_of[c.id] for context in contexts for c in context), dtype=np.intp)
        context_starts = np.cumsum([0] + [len(context) for context in contexts[:-1]])
        lexical[:], lexical_ctx[:] = self._best_share(
            [[self.term_in(t, sid) for t in weights] for sid in involved], list(weights.values()),
            own_rows, context_rows, context_starts)
        entity_weights = {e: self.entity_weight(e) for e in info.entities}
        sentence_of = {c.id: c for context in contexts for c in context}
        entities_own, entities[:] = self._best_share(
            [[float(self._entity_in(e, sentence_of[sid])) for e in entity_weights] for sid in involved],
            list(entity_weights.values()), own_rows, context_rows, context_starts, empty=1.0)
        # The cosines of the candidates' neighbours (each once) and the mean vectors of their contexts.
        n_all = len(self.index.sentences)
        neighbour_ids = list(dict.fromkeys(j for sentence in passages for j in (sentence.id - 1, sentence.id + 1)
                                           if 0 <= j < n_all))
        # One vector product per row, not a matrix product: the same bits as before, so `make train` still
        # reproduces the shipped weights exactly.
        neighbour_dense = {j: float(vectors[j] @ q_vec) for j in neighbour_ids}
        if n:
            # Zero-padded to the longest context and summed over it: bit for bit what each context's own
            # ``mean(axis=0)`` gives (checked on 3,000 random contexts of up to three sentences).
            sizes = [len(context) for context in contexts]
            padded = np.zeros((n, max(sizes), vectors.shape[1]), dtype=vectors.dtype)
            padded[np.repeat(np.arange(n), sizes), np.concatenate([np.arange(k) for k in sizes])] = \
                vectors[[c.id for context in contexts for c in context]]
            context_means = padded.sum(axis=1) / np.array(sizes, dtype=vectors.dtype)[:, None]
            rows[:, col["dense_context"]] = [float(mean @ q_vec) for mean in context_means]
        for i, sentence in enumerate(passages):
            terms = self.sentence_terms[sentence.id]
            context = contexts[i]
            typed[i] = float(self.typed(info, sentence))
            row = rows[i]
            row[col["lexical_context"]] = lexical_ctx[i]
            row[col["bigram"]] = len(q_bigrams & self.bigrams(sentence)) / (len(q_bigrams) or 1)
            rank = chunk_rank.get(sentence.id)
            row[col["retrieval_rank_inv"]] = 1.0 / rank if rank else 0.0
            row[col["in_retrieved"]] = float(rank is not None)
            row[col["entities"]] = entities[i]
            row[col["entities_own"]] = entities_own[i]
            row[col["entity_count"]] = min(len(info.entities), 4) / 4
            row[col["typed"]] = typed[i]
            if group != "open":
                row[col[f"typed_{group}"]] = typed[i]
                row[col["typed_missing"]] = 1.0 - typed[i]
            row[col["novel_share"]] = len(terms - question_terms) / (len(terms) or 1)
            for name, value in zip(STATIC_FEATURES, self.statics(sentence), strict=True):
                row[col[name]] = value
            row[col["question_terms_log"]] = math.log1p(len(weights)) / 3
            neighbours = [j for j in (sentence.id - 1, sentence.id + 1)
                          if 0 <= j < len(self.index.sentences) and self.index.sentences[j].source == sentence.source]
            row[col["dense_neighbour"]] = max((neighbour_dense[j] for j in neighbours), default=0.0)
        # Which document a candidate comes from, when the corpus holds several: the share of the retrieved
        # chunks from its document, whether its document holds the top chunk, and how far its document's best
        # dense match falls below the best overall (all 1 / 1 / 0 in a one-document corpus).
        from_source = Counter(hit.chunk.source for hit in hits)
        top_source = min(hits, key=lambda h: h.rank).chunk.source if hits else None
        best_by_source: dict[str, float] = {}
        for i, sentence in enumerate(passages):
            best_by_source[sentence.source] = max(best_by_source.get(sentence.source, -1.0), float(dense[i]))
        best_dense = max(best_by_source.values(), default=0.0)
        for i, sentence in enumerate(passages):
            rows[i, col["document_hits"]] = from_source[sentence.source] / len(hits) if hits else 1.0
            rows[i, col["document_top"]] = float(top_source is None or sentence.source == top_source)
            rows[i, col["document_dense_gap"]] = best_by_source[sentence.source] - best_dense
        # Questions whose words are all too short to embed alone ("Who is A.J.?") fall back to exact overlap.
        soft = self.soft_coverage(info, passages) if soft_words(info.text) else lexical.copy()
        tokens = self.token_match(question, passages)
        for i, context in enumerate(contexts):
            context_ids = [position[s.id] for s in context if s.id in position]
            rows[i, col["soft_context"]] = float(soft[context_ids].max()) if context_ids else float(soft[i])
            rows[i, col["tokens_context"]] = float(tokens[context_ids].max()) if context_ids else float(tokens[i])
        if n:
            rows[:, col["tokens"]] = tokens
            rows[:, col["tokens_gap"]] = tokens - tokens.max()
            rows[:, col["tokens_rank_inv"]] = 1.0 / (1 + _ranks(tokens))
        if n:
            rows[:, col["dense"]] = dense
            rows[:, col["dense_gap"]] = dense - dense.max()
            rows[:, col["dense_rank_inv"]] = 1.0 / (1 + _ranks(dense))
            rows[:, col["lexical"]] = lexical
            rows[:, col["lexical_gap"]] = lexical - lexical.max()
            rows[:, col["lexical_rank_inv"]] = 1.0 / (1 + _ranks(lexical))
            rows[:, col["soft"]] = soft
            rows[:, col["soft_gap"]] = soft - soft.max()
            rows[:, col["soft_rank_inv"]] = 1.0 / (1 + _ranks(soft))
        return Candidates(info, list(passages), rows, dense.astype(np.float32), lexical, entities, typed)

    @staticmethod
    def _best_share(matches: list[list[float]], weights: list[float], own_rows: np.ndarray,
                    context_rows: np.ndarray, context_starts: np.ndarray, empty: float = 0.0
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Per candidate, the weighted share of the items (terms, names) matched by the candidate alone and by
        its context: ``matches`` holds one row per involved sentence, each item's match in it; an item counts
        its best match over the sentences. ``empty`` when there is nothing to match."""
        n = len(own_rows)
        total = float(sum(weights))
        if not n or not weights or total <= 0:
            return np.full(n, empty, dtype=np.float32), np.full(n, empty, dtype=np.float32)
        table = np.asarray(matches, dtype=np.float64).reshape(-1, len(weights))
        w = np.asarray(weights, dtype=np.float64)
        own = table[own_rows] @ w / total
        context = np.maximum.reduceat(table[context_rows], context_starts, axis=0) @ w / total
        return own.astype(np.float32), context.astype(np.float32)

    def token_match(self, question: str, passages: list[Sentence]) -> np.ndarray:
        """Per passage: how well the question's words are matched, word piece by word piece, by the sentence's
        own word pieces, with the contextual vectors the model computes before pooling (late interaction, as in
        ColBERT, with an encoder that was not trained for it). Each question piece scores its best cosine to any
        piece of the sentence; a word scores the mean of its pieces; the words are averaged weighted by their
        idf in the corpus (stopwords and one-letter words weigh 0). Over all sentences of 26 documents (1,086
        answerable questions), ranking by this puts the evidence first for 76 %, against 59 % for the pooled
        sentence cosine (paraphrase-style questions 66 % against 50 %) and 71 % for the plain mean over
        pieces, which lets a name cut into several pieces outweigh the verb ("Who replaced Qassem Soleimani?":
        the sentence about Soleimani's killing 0.75, his successor's 0.57; per word with idf 0.65 and 0.62).
        Zeros without an embedder that gives token vectors (test doubles without them)."""
        n = len(passages)
        encode_tokens = getattr(self.embedder, "encode_query_tokens", None)
        if not n or encode_tokens is None:
            return np.zeros(n, dtype=np.float32)
        asked, words = encode_tokens(question)
        if not len(asked):
            return np.zeros(n, dtype=np.float32)
        rows = self._passage_tokens(passages)
        lengths = [len(r) for r in rows]
        # A sentence without word pieces (punctuation only) gets one zero row: its best match is 0.
        stacked = np.concatenate([r if len(r) else np.zeros((1, asked.shape[1]), np.float32) for r in rows])
        starts = np.cumsum([0] + [max(k, 1) for k in lengths[:-1]])
        best = np.maximum.reduceat(asked @ stacked.T, starts, axis=1)  # pieces x passages
        return self._piece_weights(words) @ best

    def _piece_weights(self, words: tuple[str, ...]) -> np.ndarray:
        """Weights of a question's word pieces summing to 1: each word's idf (0 for words that are not content
        terms), shared equally by its pieces; equal weights when no word has any."""
        pieces = Counter(words)
        weight = {}
        for word in pieces:
            terms = content_terms(word)
            weight[word] = self.idf(terms[0]) if terms else 0.0
        total = sum(weight.values())
        if total <= 0:
            weight, total = dict.fromkeys(pieces, 1.0), float(len(pieces))
        return np.array([weight[w] / pieces[w] / total for w in words], dtype=np.float32)

    def _passage_tokens(self, passages: list[Sentence]) -> list[np.ndarray]:
        """The passages' word-piece vectors as float32: the float16 rows stored with the index, converted once
        per sentence and process (converting a question's ~1,100 candidate rows each time took 0.75 ms, a tenth
        of the answer stage), or, for an index built without them (an older build, a PostgreSQL store of
        schema 2), encoded now, once per sentence and process, and rounded as stored rows are. An index that
        reads them from elsewhere (PostgreSQL: ``sentence_tokens_many``) is asked for all the missing ones at
        once, in one round trip. The cache belongs to this Featurizer, that is to one index: a pipeline that
        swaps in a new index makes a new one (``Pipeline._snapshot_of``), so an id is never looked up in a
        cache filled from another corpus."""
        cache = self._tokens
        missing = list({s.id: s for s in passages if s.id not in cache}.values())
        if missing:
            if self._token_rows_cached > _TOKEN_CACHE_ROWS:
                cache.clear()
                self._token_rows_cached = 0
                missing = list({s.id: s for s in passages}.values())
            many = getattr(self.index, "sentence_tokens_many", None)
            if many is not None:
                found = many([s.id for s in missing])
                stored = found.get
            else:
                stored = getattr(self.index, "sentence_tokens", lambda _id: None)
            to_encode = []
            for sentence in missing:
                rows = stored(sentence.id)
                if rows is None:
                    to_encode.append(sentence)
                else:
                    cache[sentence.id] = np.asarray(rows, dtype=np.float32)
            if to_encode and hasattr(self.embedder, "encode_with_tokens"):
                _, encoded = self.embedder.encode_with_tokens([s.text for s in to_encode])
                for sentence, rows in zip(to_encode, encoded, strict=True):
                    cache[sentence.id] = rows.astype(np.float16).astype(np.float32)
            self._token_rows_cached += sum(len(cache.get(s.id, ())) for s in missing)
        empty = np.zeros((0, 1), dtype=np.float32)
        return [cache.get(s.id, empty) for s in passages]

    def soft_coverage(self, info: QuestionInfo, passages: list[Sentence]) -> np.ndarray:
        """Per passage: idf-weighted mean over the question's words of the best cosine between that word
        and any word of the sentence (1.0 for the same stem). Without word vectors: exact stems only."""
        asked = list(dict.fromkeys(soft_words(info.text)))
        n = len(passages)
        if not asked or not n:
            return np.zeros(n, dtype=np.float32)
        weights = np.array([self.idf(stem(w)) for w in asked], dtype=np.float32)
        per_sentence = [self.sentence_words[s.id] for s in passages]
        vocabulary = list(dict.fromkeys(w for words_ in per_sentence for w in words_))
        if not vocabulary:
            return np.zeros(n, dtype=np.float32)
        column = {w: j for j, w in enumerate(vocabulary)}
        asked_stems = [stem(w) for w in asked]
        vocabulary_stems = np.array([stem(v) for v in vocabulary], dtype=object)
        exact = np.array([vocabulary_stems == a for a in asked_stems], dtype=np.float32)
        if self.word_vectors is not None:
            vectors = self.word_vectors.matrix(asked + vocabulary)
            similarity = np.maximum(vectors[: len(asked)] @ vectors[len(asked):].T, exact)
        else:
            similarity = exact
        out = np.zeros(n, dtype=np.float32)
        total = float(weights.sum()) or 1.0
        # Each sentence's best match per asked word in one reduction over the sentences' word columns laid end
        # to end (clipping before the maximum is the same as after it): the same numbers, 1.17 -> 1.05 ms per
        # question (bench questions), checked identical on 300 questions.
        filled = [i for i, words_ in enumerate(per_sentence) if words_]
        if not filled:
            return out
        columns = np.fromiter((column[w] for i in filled for w in per_sentence[i]), dtype=np.intp)
        starts = np.cumsum([0] + [len(per_sentence[i]) for i in filled[:-1]])
        best = np.ascontiguousarray(np.maximum.reduceat(np.clip(similarity, 0.0, 1.0)[:, columns], starts, axis=1).T)
        for row, i in enumerate(filled):
            out[i] = float(best[row] @ weights) / total
        return out

    def answer_features(self, candidates: Candidates, probabilities: np.ndarray, chosen: list[int]) -> np.ndarray:
        """Features of a whole answer (the chosen candidates), for the confidence model."""
        info = candidates.info
        order = np.argsort(-probabilities, kind="stable")
        p = probabilities[order]
        top = int(order[0])
        chosen_sentences = [candidates.sentences[i] for i in chosen]
        entity_terms = set(content_terms(" ".join(info.entities)))
        predicate = {t: self.idf(t) for t in dict.fromkeys(info.terms) if t not in entity_terms and "-" not in t}
        group = KIND_GROUPS.get(info.kind, "open")
        col = {name: i for i, name in enumerate(SENTENCE_FEATURES)}
        all_terms = {t: self.idf(t) for t in dict.fromkeys(info.terms) if "-" not in t}
        absent = sum(w for t, w in all_terms.items() if self.df.get(t, 0) == 0) / (sum(all_terms.values()) or 1.0)
        chosen_ids = [s.id for s in chosen_sentences]
        # A name of the question that no sentence of the corpus contains ("Australia" asked of an article about
        # Iraq): the corpus cannot be about it.
        absent_entities = sum(bool(terms) and all(self.df.get(t, 0) == 0 for t in terms)
                              for terms in (content_terms(e) for e in info.entities))
        uncovered = [w for t, w in predicate.items() if max(self.term_in(t, i) for i in chosen_ids) == 0.0]
        values = {
            "p_top": float(p[0]),
            "logit_top": float(np.log(p[0] + 1e-6) - np.log(1 - p[0] + 1e-6)) / 5,
            "p_second": float(p[1]) if len(p) > 1 else 0.0,
            "margin": float(p[0] - p[1]) if len(p) > 1 else float(p[0]),
            "p_sum_top3": float(p[:3].sum()),
            "dense_top": float(candidates.dense[top]),
            "dense_max": float(candidates.dense.max()),
            "lexical_top": float(candidates.lexical[top]),
            "lexical_max": float(candidates.lexical.max()),
            "entities_chosen": self.entity_share(info, [c for s in chosen_sentences for c in self.context(s)]),
            "typed_chosen": float(any(candidates.typed[i] for i in chosen)),
            "predicate_coverage": self.coverage(predicate, chosen_ids) if predicate else 1.0,
            "soft_top": float(candidates.matrix[top, col["soft"]]),
            "soft_context_top": float(candidates.matrix[top, col["soft_context"]]),
            "tokens_top": float(candidates.matrix[top, col["tokens"]]),
            "tokens_max": float(candidates.matrix[:, col["tokens"]].max()),
            "absent_terms": absent,
            "absent_entities": min(absent_entities, 2) / 2,
            "uncovered_idf_max": max(uncovered, default=0.0) / math.log(1 + self.n_sentences + 1),
            "typed_question": float(group != "open"),
            **{f"kind_{g}": float(group == g) for g in GROUPS},
            "n_entities": min(len(info.entities), 4) / 4,
            "n_sentences": len(chosen) / 3,
        }
        return np.array([values[name] for name in ANSWER_FEATURES], dtype=np.float32)


def _ranks(values: np.ndarray) -> np.ndarray:
    """0 for the largest value, 1 for the next..."""
    ranks = np.empty(len(values), dtype=np.float32)
    ranks[np.argsort(-values, kind="stable")] = np.arange(len(values), dtype=np.float32)
    return ranks


def _bigrams(text: str) -> set[tuple[str, str]]:
    tokens = [w for w in re.findall(r"[a-z0-9]+", normalize(text).lower()) if w not in STOPWORDS]
    return set(zip(tokens, tokens[1:], strict=False))


def _typed_values(kind: str, text: str) -> tuple[tuple[str, ...], ...]:
    out = []
    for start, end in type_candidates(kind, text):
        span = normalize(text[start:end]).lower()
        out.append(tuple(t.strip("'’.,").removesuffix("'s") for t in span.split()))
    return tuple(out)


def _term_match(term: str, sentence_terms: frozenset[str]) -> float:
    """1 for the same stem; 0.7 when one stem is a prefix of the other ("oust"/"ouster")."""
    if term in sentence_terms:
        return 1.0
    if len(term) >= 4 and any(t.startswith(term) or (len(t) >= 4 and term.startswith(t)) for t in sentence_terms):
        return 0.7
    return 0.0
