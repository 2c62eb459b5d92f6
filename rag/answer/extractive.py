"""The default answer backend: offline, deterministic, extractive.

It answers with 1-3 sentences of the article, verbatim, each followed by its ``[n]`` marker. Sentences
are scored on dense similarity, idf-weighted term overlap, presence of what the question asks for (a
date for "when", a figure for "how many", a name for "who", a cause for "why", a quote for "what did X
say"), named-entity coverage (counting the sentence's pronoun context) and the retrieval rank of its chunk.

The answer is the best sentence plus, when needed, its context: the preceding sentence when it opens with
a pronoun ("He said...") and a nearby sentence of the same paragraph that mentions a question entity the
best one lacks (two-step questions).

It abstains from evidence, not from a score threshold alone: when a named entity of the question is not
mentioned by the answer or its context, when the asked-for type (age, figure, date, name) is absent from
the answer, or when support is weak on both dense and lexical measures.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rag.answer.base import NO_ANSWER, AnswerBackend, AnswerRequest
from rag.answer.question import (
    EntityMatcher,
    QuestionInfo,
    analyze,
    entity_phrases,
    is_generic,
    type_candidates,
)
from rag.text import GENERIC_NAMES, STOPWORDS, content_terms, normalize, stem, words

if TYPE_CHECKING:
    from rag.embeddings import Embedder
    from rag.index import Index
    from rag.types import Sentence

_PRONOUN_START = re.compile(r"^[\"“]?(He|She|They|It|His|Her|Their|Its|This|That|These|Those|The two|The killing)\b")
_PRONOUN_ATTRIBUTION = re.compile(r"\b(he|she|they|it) (said|told|says|added|chided)\b|\bsaid (he|she)\b")
_BARE_QUOTE = re.compile(r"^[\"“][^\"“”]+[\"”]\s*$")  # a whole-sentence quote continues the previous speaker
_ANAPHORA = re.compile(r"\b(these|those|the two|such) [a-z]+", re.IGNORECASE)  # "these overtures", "those men"
STRICT_TYPES = ("when", "age", "money", "how_many")  # the answer must contain a value of this type
NAME_TYPES = ("who", "quote_speaker", "where", "name", "define")

# Operating point, chosen on eval/gold.jsonl (see docs/extractive.md for the measurements).
W_DENSE, W_LEXICAL, W_TYPE, W_ENTITY, W_RANK = 0.45, 0.30, 0.10, 0.10, 0.05
UNTYPED_PENALTY = 0.75  # score multiplier for a sentence lacking the asked-for type
MIN_SCORE = 0.36
MIN_DENSE, MIN_LEXICAL = 0.30, 0.30
MIN_PREDICATE_COVERAGE = 0.15  # share of the question's non-name words that the answer must contain...
PREDICATE_DENSE_OVERRIDE = 0.7  # ...unless the answer is this close to the question in embedding space
# Typed questions only: on open "what/why/how did X say" questions the rule turned wrong answers into
# abstentions but also right ones (3 of 72 answerable held-out/unseen questions), with no abstention gained.
PREDICATE_KINDS = ("who", "when", "where", "how_many", "money", "age", "name", "quote_speaker")
SYNONYM_SIMILARITY = 0.55  # cosine of two single words' embeddings above which they count as the same
CONTEXT_LEXICAL = 0.7  # weight of the referred-to sentences' words in a pronoun-led sentence's overlap
PARAGRAPH_WINDOW = 2  # preceding sentences of the same paragraph that may name an answer's entities
BRIDGE_DISTANCE = 2  # sentences, within one paragraph
HOP_MIN_UNCOVERED = 0.35  # try a second hop when this share of the question's weighted terms is uncovered
HOP_MIN_GAIN = 0.15  # ...and keep it only when it covers this much more of the question
HOP_MIN_COVERAGE = 0.5  # ...and the two sentences together cover at least this share
FOCUS_BONUS = 0.2  # a second sentence naming the asked-for thing ("spokesman") is worth this much coverage
HOP_FIRST_CANDIDATES = 5


@dataclass(eq=False)
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
    passage_depth = 8  # sentences are cheap to score: look a little wider than the displayed top-k

    def __init__(self, index: Index, embedder: Embedder, settings=None):
        self.index, self.embedder = index, embedder
        self.sentence_terms = [frozenset(content_terms(s.text)) for s in index.sentences]
        df: Counter[str] = Counter()
        for terms in self.sentence_terms:
            df.update(terms)
        self.df, self.n_sentences = df, max(len(index.sentences), 1)
        self.entities = EntityMatcher([s.text for s in index.sentences])
        self._word_cache: dict = {}  # word -> embedding, for the synonym check
        # Memo tables: the same (term, sentence) and (entity, sentence) pairs recur across questions.
        self._term_memo: dict[tuple[str, int], float] = {}
        self._entity_memo: dict[tuple[str, int], bool] = {}

    # ------------------------------------------------------------ evidence helpers

    def _idf(self, term: str) -> float:
        return math.log(1 + self.n_sentences / (1 + self.df.get(term, 0)))

    def _context(self, sentence: Sentence) -> list[Sentence]:
        """The sentence and, while it opens with a pronoun, the sentences it refers back to (at most two)."""
        chain = [sentence]
        current = sentence
        # "these overtures" points further back than a pronoun does: follow it regardless of what precedes.
        anaphoric = _ANAPHORA.search(sentence.text) is not None
        while (anaphoric or _PRONOUN_START.match(current.text) or _PRONOUN_ATTRIBUTION.search(current.text)
               or _BARE_QUOTE.match(current.text)) \
                and current.id > 0 and len(chain) < 4:
            previous = self.index.sentences[current.id - 1]
            if previous.source != current.source:
                break
            chain.insert(0, previous)
            current = previous
        # Within a paragraph, definite descriptions ("the protester") refer to what came just before.
        while len(chain) < 1 + PARAGRAPH_WINDOW and chain[0].id > 0:
            previous = self.index.sentences[chain[0].id - 1]
            if previous.source != sentence.source or previous.paragraph != sentence.paragraph:
                break
            chain.insert(0, previous)
        return chain

    def _needed_context(self, info: QuestionInfo, sentence: Sentence) -> list[Sentence]:
        """The shortest tail of the pronoun chain that names the question's entities (else the sentence and
        its immediate predecessor when it opens with a pronoun)."""
        chain = self._context(sentence)
        minimal = chain[-2:] if _PRONOUN_START.match(sentence.text) else chain[-1:]
        for start in range(len(chain) - 1, -1, -1):
            if self._entity_share(info, chain[start:]) == 1.0:
                return chain[min(start, len(chain) - len(minimal)):]
        return minimal

    def _typed(self, info: QuestionInfo, text: str) -> bool:
        """Whether the text holds a value of the asked-for type that the question does not already contain."""
        if info.kind == "define":  # "Who is Seif?": a description next to the name ("Seif, a member of...")
            return any(_titled(e, text) or any(_describes(part, text) for part in e.split() if not is_generic(part))
                       for e in info.entities)
        question = normalize(info.text).lower()
        for start, end in type_candidates(info.kind, text):
            span = normalize(text[start:end]).lower()
            if info.kind in NAME_TYPES:
                tokens = [t.strip("'’.,").removesuffix("'s") for t in span.split()]
                if all(t in question or t in GENERIC_NAMES or t in STOPWORDS for t in tokens if t):
                    continue
            elif span in question:
                continue
            if info.kind == "how_many" and info.counted and not _counts(text, end, info.counted):
                continue
            return True
        return False

    def _entity_share(self, info: QuestionInfo, sentences: list[Sentence]) -> float:
        if not info.entities:
            return 1.0
        return sum(any(self._entity_in(e, s) for s in sentences) for e in info.entities) / len(info.entities)

    # ------------------------------------------------------------ scoring

    def term_weights(self, info: QuestionInfo) -> dict[str, float]:
        # Hyphenated compounds are also present as their parts; count the parts only. Initialisms ("A.J.")
        # are names: the entity score counts them, the word overlap would count them twice.
        return {t: self._idf(t) for t in dict.fromkeys(info.terms)
                if "-" not in t and t not in ("al", "abu", "bin") and t not in info.initialisms}

    def _term_in(self, term: str, sentence: Sentence) -> float:
        key = (term, sentence.id)
        value = self._term_memo.get(key)
        if value is None:
            value = self._term_memo[key] = _term_match(term, self.sentence_terms[sentence.id])
        return value

    def _entity_in(self, entity: str, sentence: Sentence) -> bool:
        key = (entity, sentence.id)
        value = self._entity_memo.get(key)
        if value is None:
            value = self._entity_memo[key] = self.entities.present(entity, sentence.text)
        return value

    def _coverage(self, weights: dict[str, float], sentences: list[Sentence]) -> float:
        """Weighted share of question terms the sentences contain (exact or prefix stems: matching words by
        their embeddings was measured and made both ranking and abstention worse)."""
        return sum(w * max((self._term_in(t, s) for s in sentences), default=0.0)
                   for t, w in weights.items()) / (sum(weights.values()) or 1.0)

    def score(self, request: AnswerRequest, info: QuestionInfo) -> list[Scored]:
        import numpy as np

        q_vec = self.embedder.encode_query(request.question)
        weights = self.term_weights(info)
        total = sum(weights.values()) or 1.0
        chunk_rank: dict[int, int] = {}
        for hit in request.hits:
            for sid in hit.chunk.sentence_ids:
                chunk_rank.setdefault(sid, hit.rank)
        ids = [s.id for s in request.passages]
        dense_all = self.index.sentence_vectors[ids] @ q_vec if ids else np.zeros(0)
        scored = []
        for n, (sentence, dense) in enumerate(zip(request.passages, dense_all, strict=True), start=1):
            lexical = sum(w * self._term_in(t, sentence) for t, w in weights.items()) / total
            context = self._context(sentence)
            if len(context) > 1 and _refers_back(sentence.text):
                # "she told reporters": the words of the sentence it refers to count too, discounted
                lexical = max(lexical, CONTEXT_LEXICAL * self._coverage(weights, context))
            typed = self._typed(info, sentence.text)
            entities = self._entity_share(info, self._context(sentence))
            rank = chunk_rank.get(sentence.id)
            prior = 1.0 / rank if rank else 0.0
            value = (W_DENSE * float(dense) + W_LEXICAL * lexical + W_TYPE * typed + W_ENTITY * entities
                     + W_RANK * prior)
            if info.kind in (*STRICT_TYPES, *NAME_TYPES, "why", "quote_content") and not typed:
                value *= UNTYPED_PENALTY
            scored.append(Scored(n, sentence, value, float(dense), lexical, typed, entities))
        return sorted(scored, key=lambda s: (-s.score, s.sentence.id))

    # ------------------------------------------------------------ selection

    def select(self, request: AnswerRequest) -> list[Scored]:
        """The chosen answer sentences in document order, or [] to abstain."""
        info = analyze(request.question, self.entities.known_names)
        ranked = self.score(request, info)
        if not ranked:
            return []
        best = ranked[0]
        by_id = {s.sentence.id: s for s in ranked}
        chosen = [by_id[s.id] for s in self._needed_context(info, best.sentence) if s.id in by_id]

        missing = [e for e in info.entities if not any(self._entity_in(e, c.sentence) for c in chosen)]
        if missing and len(chosen) < 3:
            for candidate in ranked[1:]:
                near = (candidate.sentence.source == best.sentence.source
                        and candidate.sentence.paragraph == best.sentence.paragraph
                        and abs(candidate.sentence.id - best.sentence.id) <= BRIDGE_DISTANCE)
                if near and candidate not in chosen and any(
                    self._entity_in(e, candidate.sentence) for e in missing
                ):
                    chosen.append(candidate)
                    break

        weights = self.term_weights(info)
        coverage = self._coverage(weights, [c.sentence for c in chosen])
        untyped = info.kind in STRICT_TYPES + NAME_TYPES and not any(c.typed for c in chosen)
        unfocused = info.focus is not None and not self._mentions_focus(info, [c.sentence for c in chosen])
        # Untyped questions ("what did X say") only hop for an unnamed focus: their best sentence often shares
        # few words with the question, and a bridge would replace a right answer with two wrong ones.
        low_coverage = 1 - coverage >= HOP_MIN_UNCOVERED and info.kind in STRICT_TYPES + NAME_TYPES
        if low_coverage or untyped or unfocused:
            hop = self._second_hop(info, weights, ranked, by_id, coverage)
            if hop is not None:
                chosen = hop
                best = max(chosen, key=lambda c: c.score)

        if info.kind == "quote_content":
            self._continue_quote(chosen, by_id)
        if self._abstain(info, best, chosen):
            return []
        return sorted(chosen, key=lambda s: s.sentence.id)

    def _second_hop(
        self, info: QuestionInfo, weights: dict[str, float], ranked: list[Scored], by_id: dict[int, Scored],
        coverage: float,
    ) -> list[Scored] | None:
        """Two-step questions: a top sentence names a bridge entity (the "commander whose killing Trump
        ordered" is Soleimani); a second sentence about that entity holds the rest of the answer."""
        question = normalize(info.text).lower()
        best_pair, best_value = None, coverage + HOP_MIN_GAIN
        for first in ranked[:HOP_FIRST_CANDIDATES]:
            base = [by_id[s.id] for s in self._needed_context(info, first.sentence) if s.id in by_id]
            base_text = " ".join(b.sentence.text for b in base)
            bridges = [e for e in entity_phrases(base_text) if e.lower() not in question and not all(
                is_generic(p) for p in e.split())]
            if not bridges:
                continue
            for second in ranked:
                if second in base or not any(self._entity_in(b, second.sentence) for b in bridges):
                    continue
                pair = sorted([*base[-2:], second], key=lambda c: c.sentence.id)
                typed = any(c.typed for c in pair)
                if info.kind in STRICT_TYPES + NAME_TYPES and not typed:
                    continue
                value = self._coverage(weights, [c.sentence for c in pair])
                if value < HOP_MIN_COVERAGE or self._entity_share(info, [c.sentence for c in pair]) < 1.0:
                    continue
                if info.focus is not None and self._mentions_focus(info, [second.sentence]):
                    value += FOCUS_BONUS
                if value > best_value:
                    best_pair, best_value = pair, value
        return best_pair

    def _continue_quote(self, chosen: list[Scored], by_id: dict[int, Scored]) -> None:
        """What someone said runs on into a following bare quotation ("That was a big turning point for us.")."""
        last = max(chosen, key=lambda c: c.sentence.id).sentence
        following = by_id.get(last.id + 1)
        if (following is not None and len(chosen) < 3 and following.sentence.paragraph == last.paragraph
                and _BARE_QUOTE.match(following.sentence.text) and ('"' in last.text or "“" in last.text)):
            chosen.append(following)

    def _predicate_coverage(self, info: QuestionInfo, predicate: dict[str, float], sentences: list[Sentence]) -> float:
        """Like _coverage, but a question word also counts when a word of the answer means nearly the same
        ("die" / "killed", "created" / "formed"): judged by the embedding model on the two words alone."""
        terms = frozenset().union(*(self.sentence_terms[s.id] for s in sentences))
        matched = {t: _term_match(t, terms) for t in predicate}
        total = sum(predicate.values()) or 1.0
        exact = sum(predicate[t] * m for t, m in matched.items()) / total
        unmatched = [t for t, m in matched.items() if m == 0]
        if unmatched and exact < MIN_PREDICATE_COVERAGE:  # embeddings only where they can change the decision
            question_words = {stem(w): w for w in words(info.text)}
            answer_words = sorted({w for s in sentences for w in words(s.text)
                                   if w not in STOPWORDS and len(w) > 2 and not w.isdigit()})
            asked = [question_words[t] for t in unmatched if t in question_words]
            if asked and answer_words:
                vectors = self._word_vectors(asked + answer_words)
                similarity = vectors[: len(asked)] @ vectors[len(asked):].T
                for t, row in zip([t for t in unmatched if t in question_words], similarity, strict=True):
                    if float(row.max()) >= SYNONYM_SIMILARITY:
                        matched[t] = 1.0
        return sum(predicate[t] * m for t, m in matched.items()) / total

    def _word_vectors(self, items: list[str]):
        import numpy as np

        cache = self._word_cache  # replaced, never cleared in place: other threads may be reading it
        missing = [w for w in dict.fromkeys(items) if w not in cache]
        if missing:
            if len(cache) > 50_000:
                cache = {}
            cache = {**cache, **dict(zip(missing, self.embedder.encode(missing), strict=True))}
            self._word_cache = cache
        return np.stack([cache[w] for w in items])

    def _mentions_focus(self, info: QuestionInfo, sentences: list[Sentence]) -> bool:
        return any(self._term_in(info.focus, s) > 0 for s in sentences)

    def _abstain(self, info: QuestionInfo, best: Scored, chosen: list[Scored]) -> bool:
        if self._entity_share(info, [s.sentence for s in chosen]) < 1.0:
            return True
        if info.kind in STRICT_TYPES and not any(s.typed for s in chosen):
            return True
        if info.kind in NAME_TYPES and not any(s.typed for s in chosen):
            return True
        if info.kind == "name" and info.focus and _only_unnamed(info.focus, [s.sentence.text for s in chosen]):
            return True  # "the name of the party": the answer speaks only of "a political party"
        if info.which_head and _only_unnamed(info.which_head, [s.sentence.text for s in chosen], plurals_unnamed=True):
            return True  # "Which Kurdish official said...?": the article says only "Kurdish officials say"
        if best.dense < MIN_DENSE and best.lexical < MIN_LEXICAL:
            return True
        # The question's own words (beyond its names) must mostly not be missing: "Who succeeded Khamenei?"
        # retrieves sentences about Khamenei, none about a successor.
        entity_terms = set(content_terms(" ".join(info.entities)))
        predicate = {t: w for t, w in self.term_weights(info).items() if t not in entity_terms}
        if predicate and info.kind in PREDICATE_KINDS and best.dense < PREDICATE_DENSE_OVERRIDE and self._predicate_coverage(
            info, predicate, [c.sentence for c in chosen]
        ) < MIN_PREDICATE_COVERAGE:
            return True
        return best.score < MIN_SCORE

    def execute(self, request: AnswerRequest) -> Iterator[str]:
        chosen = self.select(request)
        if not chosen:
            yield NO_ANSWER
            return
        yield " ".join(f"{s.sentence.text} [{s.n}]" for s in chosen)


_UNNAMED_BEFORE = re.compile(r"\b(?:a|an|another|one|some|whose|its|his|her|their)\s+(?:[\w'’-]+\s+){0,3}$|['’]s\s+$",
                             re.I)
_DEFINITE_BEFORE = re.compile(r"\b(?:the|this|that|these|those)\s+(?:[\w'’-]+\s+){0,3}$", re.I)


def _only_unnamed(head: str, texts: list[str], plurals_unnamed: bool = False) -> bool:
    """Whether every mention of the asked-for thing is an unnamed description ("a political party",
    "Khazali's militia", with ``plurals_unnamed`` also "Kurdish officials"): then the article does not give
    the name. False when it is not mentioned at all."""
    mentions = 0
    for text in texts:
        for m in re.finditer(r"[\w'’-]+", text):
            if stem(m.group(0).lower().removesuffix("'s").removesuffix("’s")) != head:
                continue
            mentions += 1
            named_after = re.match(r"(?:['’]s)?,?\s+(?:[A-Z][\w'’.-]+)", text[m.end():])
            before = text[: m.start()]
            bare_plural = plurals_unnamed and m.group(0).lower().endswith("s") and not _DEFINITE_BEFORE.search(before)
            if named_after or not (_UNNAMED_BEFORE.search(before) or bare_plural):
                return False
    return mentions > 0


def _refers_back(text: str) -> bool:
    return bool(_PRONOUN_START.match(text) or _PRONOUN_ATTRIBUTION.search(text) or _BARE_QUOTE.match(text)
                or _ANAPHORA.search(text))


def _titled(name: str, text: str) -> bool:
    """A title before the full name: "Mayor Ines Carvalho", "President Donald Trump"."""
    return re.search(rf"\b[A-Z][a-z]+ {re.escape(name)}\b", text) is not None and not text.startswith(name)


def _describes(name: str, text: str) -> bool:
    name = re.escape(name.rstrip("."))
    return re.search(rf"{name}\.?(?:'s)?,\s+(?:a|an|the|who|one|another|head|member|leader)\b|"
                     rf"{name}\.? (?:is|was) (?:a|an|the)\b|\b(?:a|an|the) [\w' -]{{3,60}}\b{name}\b", text) is not None


def _counts(text: str, end: int, counted: tuple[str, ...], window: int = 6) -> bool:
    """Whether the figure ending at ``end`` counts the asked-for thing ("six ... militants", "150,000-strong")."""
    if re.match(r"-(strong|member)", text[end:]):  # "150,000-strong" counts people, not seats or drones
        return any(c.startswith(("fighter", "member", "men", "troop", "soldier", "militiamen", "personnel"))
                   for c in counted)
    following = content_terms(text[end:])[:window]
    return any(_term_match(c, frozenset(following)) > 0 for c in counted)


def _term_match(term: str, sentence_terms: frozenset[str]) -> float:
    """1 for the same stem; 0.7 when one stem is a prefix of the other ("oust"/"ouster")."""
    if term in sentence_terms:
        return 1.0
    if len(term) >= 4 and any(t.startswith(term) or (len(t) >= 4 and term.startswith(t)) for t in sentence_terms):
        return 0.7
    return 0.0
