"""The short answer: the span inside an answer sentence that answers the question ("Esmail Ghaani",
"December 2024", "for fear of being targeted"), chosen by a learned span model.

Candidates are the word n-grams of the sentence (up to ``MAX_SPAN_WORDS`` words, not starting or ending
with a function word or crossing a clause boundary). Each gets features that carry over to any English text:
whether it holds a value of the asked-for type (rag.answer.question's type patterns), whether the hand-written
picker (``question.short_answer``) chose it, how many of its words the question already has (answers rarely
repeat the question), how close it sits to the question's words, how close its words come in meaning to the
question's words and to the noun naming what is asked ("What kind of job..."), its length, capitalisation,
figures, and the word before it. A logistic regression (``rag.answer.scorer``, fitted by ``rag.answer.training`` on the
gold spans of every development document) scores them; the best one is the short answer.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from rag.answer.features import KIND_GROUPS, WordVectors
from rag.answer.question import QuestionInfo, alternation, short_answer, type_candidates
from rag.text import STOPWORDS, normalize, soft_words, stem

MAX_SPAN_WORDS = 8
_TOKEN = re.compile(r"\$?[\w][\w'’.,%-]*[\w%]|\$?\w")
_CLAUSE = re.compile(r"[;:()\"“”]|\s[–—-]\s")
_PREPOSITIONS = {"in", "at", "on", "by", "from", "to", "into", "near", "since", "until", "during", "after",
                 "before", "of", "for", "with", "about", "than"}
_COPULAS = {"is", "was", "are", "were", "be", "been", "became", "called", "named", "as"}

# The noun that names what the answer is: "What kind of job..." -> job, "Which river..." -> river, "How many
# votes..." -> votes, "Who is the spokesman..." -> spokesman.
_ANSWER_HEAD = re.compile(
    r"\b(?:which|what)\s+(?:kind|type|sort|part|form)\s+of\s+(\w+)"
    r"|\b(?:which|what)\s+(?!(?:" + alternation("auxiliary_verbs.txt") + r")\b)(\w+)"
    r"|\bhow\s+many\s+(\w+)"
    r"|\b(?:who|what)\s+(?:is|was|are|were)\s+the\s+(\w+)",
    re.IGNORECASE,
)

SPAN_FEATURES = (
    "soft_in_question_mean", "soft_in_question_max", "head_similarity", "has_head",
    "typed_overlap", "rule_pick", "rule_overlap", "in_question_share", "distance_log", "near_terms",
    "n_words", "n_words_log", "one_word", "capitalised_share", "all_capitalised", "has_digit", "after_preposition",
    "after_copula", "after_comma", "before_comma", "sentence_start", "sentence_end", "focus_adjacent",
    *(f"typed_{g}" for g in ("person", "time", "place", "number", "cause", "quote", "open")),
    *(f"capitalised_{g}" for g in ("person", "time", "place", "number", "cause", "quote", "open")),
    *(f"digit_{g}" for g in ("person", "time", "place", "number", "cause", "quote", "open")),
)


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    text: str


def _tokens(text: str) -> list[tuple[int, int, str]]:
    out = []
    for m in _TOKEN.finditer(text):
        word = m.group(0).rstrip(".,")
        out.append((m.start(), m.start() + len(word), word))
    return out


def candidate_spans(text: str) -> list[Span]:
    tokens = _tokens(text)
    spans = []
    for i, (start, _, first) in enumerate(tokens):
        if first.lower() in STOPWORDS:
            continue
        for j in range(i, min(i + MAX_SPAN_WORDS, len(tokens))):
            end, last = tokens[j][1], tokens[j][2]
            if j > i and _CLAUSE.search(text[tokens[j - 1][1]:tokens[j][0]]):
                break
            if j > i and "," in text[tokens[j - 1][1]:tokens[j][0]] and not _numeric_comma(text, tokens[j - 1][1]):
                break
            if last.lower() in STOPWORDS:
                continue
            spans.append(Span(start, end, text[start:end]))
    return spans


def _numeric_comma(text: str, at: int) -> bool:
    return bool(re.match(r",\s?\d", text[at:at + 3]))


def answer_head(question: str) -> str | None:
    """The noun of the question that names what the answer is, lower-cased, if it has one."""
    match = _ANSWER_HEAD.search(question)
    head = next((g for g in match.groups() if g), None) if match else None
    return head.lower() if head and head.lower() not in STOPWORDS else None


def _soft_columns(info: QuestionInfo, spans: list[Span], word_vectors: WordVectors | None) -> np.ndarray:
    """Per span: how close its words come to the question's words (mean and max over the span's words of the
    best cosine to any question word: an answer brings words the question does not have) and to the noun
    naming what the answer is ("governess" is a job). Single-word MiniLM vectors (``WordVectors``); without
    them, exact stems. Measured leave-one-document-out on the gold sentences of 26 documents (1,069
    answerable questions): short-answer token F1 0.529 -> 0.543."""
    out = np.zeros((len(spans), 4), dtype=np.float32)
    asked = list(dict.fromkeys(soft_words(info.text)))
    head = answer_head(info.text)
    per_span = [soft_words(span.text) for span in spans]
    vocabulary = list(dict.fromkeys(w for ws in per_span for w in ws))
    if not vocabulary:
        return out
    column = {w: j for j, w in enumerate(vocabulary)}
    targets = asked + ([head] if head else [])
    if not targets:
        return out
    if word_vectors is not None:
        similarity = word_vectors.matrix(vocabulary) @ word_vectors.matrix(targets).T
    else:
        similarity = np.array([[float(stem(v) == stem(t)) for t in targets] for v in vocabulary], dtype=np.float32)
    # Every span's words laid end to end, their maxima taken per span in one call (numpy calls per span cost
    # about 1 ms a question); the mean stays one call per span, which keeps its bits (and `make train`'s
    # weights) exactly as they were.
    filled = [r for r, ws in enumerate(per_span) if ws]
    at = np.fromiter((column[w] for r in filled for w in per_span[r]), dtype=np.intp)
    lengths = [len(per_span[r]) for r in filled]
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.intp)
    if asked:
        best = similarity[:, : len(asked)].max(axis=1)[at]
        out[filled, 0] = [float(best[s:s + k].mean()) for s, k in zip(starts.tolist(), lengths, strict=True)]
        out[filled, 1] = np.maximum.reduceat(best, starts)
    if head:
        out[filled, 2] = np.maximum.reduceat(similarity[:, -1][at], starts)
        out[filled, 3] = 1.0
    return out


def span_features(info: QuestionInfo, text: str, spans: list[Span],
                  word_vectors: WordVectors | None = None) -> np.ndarray:
    question = normalize(info.text).lower()
    question_stems = set(info.terms)
    group = KIND_GROUPS.get(info.kind, "open")
    typed = type_candidates(info.kind, text) if group != "open" else []
    rule = short_answer(info, [text])
    rule_at = text.find(rule) if rule else -1
    rule_span = (rule_at, rule_at + len(rule)) if rule_at >= 0 else None
    tokens = _tokens(text)
    term_positions = [k for k, (_, _, w) in enumerate(tokens) if stem(w.lower().removesuffix("'s")) in question_stems]
    col = {name: i for i, name in enumerate(SPAN_FEATURES)}
    rows = np.zeros((len(spans), len(SPAN_FEATURES)), dtype=np.float32)
    token_index = {start: k for k, (start, _, _) in enumerate(tokens)}
    token_at_end = {end: k for k, (_, end, _) in enumerate(tokens)}
    # What surrounds a span depends on its start or its end only, and ~8 spans share each: computed once.
    left: dict[int, tuple[str, bool, bool]] = {}
    right: dict[int, tuple[bool, bool]] = {}
    for r, span in enumerate(spans):
        row = rows[r]
        words_ = span.text.split()
        first_token = token_index.get(span.start, 0)
        last_token = token_at_end.get(span.end)
        if last_token is None or last_token < first_token:
            last_token = first_token + len(_tokens(span.text)) - 1
        length = max(span.end - span.start, 1)
        if typed:
            row[col["typed_overlap"]] = max(max(0, min(span.end, e) - max(span.start, s)) / max(length, e - s)
                                            for s, e in typed)
        if rule_span is not None:
            shared = max(0, min(span.end, rule_span[1]) - max(span.start, rule_span[0]))
            row[col["rule_overlap"]] = shared / max(length, rule_span[1] - rule_span[0])
            row[col["rule_pick"]] = float(span.start == rule_span[0] and span.end == rule_span[1])
        lowered = [w.lower().strip("'’.,").removesuffix("'s") for w in words_]
        row[col["in_question_share"]] = sum(w in question or stem(w) in question_stems for w in lowered) / len(lowered)
        distances = [min(abs(p - first_token), abs(p - last_token)) for p in term_positions
                     if p < first_token or p > last_token]
        distance = min(distances) if distances else 30
        row[col["distance_log"]] = math.log1p(distance) / 3.5
        row[col["near_terms"]] = sum(1 for p in term_positions
                                     if first_token - 5 <= p < first_token or last_token < p <= last_token + 5) / 4
        row[col["n_words"]] = min(len(words_), MAX_SPAN_WORDS) / MAX_SPAN_WORDS
        row[col["n_words_log"]] = math.log1p(len(words_)) / 2.2
        row[col["one_word"]] = float(len(words_) == 1)
        capitalised = sum(w[:1].isupper() for w in words_) / len(words_)
        row[col["capitalised_share"]] = capitalised
        row[col["all_capitalised"]] = float(capitalised == 1.0)
        has_digit = float(any(ch.isdigit() for ch in span.text))
        row[col["has_digit"]] = has_digit
        if span.start not in left:
            before = text[:span.start].rstrip()
            previous = before.rsplit(None, 1)
            left[span.start] = (previous[-1].lower() if previous else "", before.endswith(","),
                                not before.strip(" \"“'"))
        previous_word, comma_before, at_start = left[span.start]
        if span.end not in right:
            after = text[span.end:]
            right[span.end] = (after.lstrip().startswith(","), not after.strip(" .!?\"”'"))
        comma_after, at_end = right[span.end]
        row[col["after_preposition"]] = float(previous_word in _PREPOSITIONS)
        row[col["after_copula"]] = float(previous_word in _COPULAS)
        row[col["after_comma"]] = float(comma_before)
        row[col["before_comma"]] = float(comma_after)
        row[col["sentence_start"]] = float(at_start)
        row[col["sentence_end"]] = float(at_end)
        if info.focus:
            near = [w for _, _, w in tokens[max(0, first_token - 3):first_token] + tokens[last_token + 1:last_token + 4]]
            row[col["focus_adjacent"]] = float(any(stem(w.lower()).startswith(info.focus) for w in near))
        row[col[f"typed_{group}"]] = row[col["typed_overlap"]]
        row[col[f"capitalised_{group}"]] = capitalised
        row[col[f"digit_{group}"]] = has_digit
    soft = _soft_columns(info, spans, word_vectors)
    for k, name in enumerate(("soft_in_question_mean", "soft_in_question_max", "head_similarity", "has_head")):
        rows[:, col[name]] = soft[:, k]
    return rows


def best_span(info: QuestionInfo, texts: list[str], model, word_vectors: WordVectors | None = None) -> str | None:
    """The most probable span of the first texts (the answer's sentences, most probable first)."""
    best: tuple[float, str] | None = None
    for order, text in enumerate(texts[:2]):
        spans = candidate_spans(text)
        if not spans:
            continue
        probabilities = model.predict(span_features(info, text, spans, word_vectors)) * (0.9 ** order)
        i = int(np.argmax(probabilities))
        if best is None or probabilities[i] > best[0]:
            best = (float(probabilities[i]), spans[i].text)
    return best[1].strip(" ,.;:\"“”'") if best else None
