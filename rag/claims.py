"""Checking a claim or a quote against the corpus: the passages that best support it, with a verdict and its
reason.

Candidates are the sentences retrieval finds for the claim (with their neighbours) and every sentence that holds
a quote of the claim verbatim; each alone and with the sentence before it in its paragraph is a candidate
passage. Each passage gets ``PASSAGE_FEATURES`` (``ClaimFeaturizer``): the reader-checkable findings of
``rag.verify`` (figures, names, negation, quotes and speakers, word coverage) and how closely the model's
contextual word pieces of the claim are matched by the passage's (a paraphrase shares meaning, not words). With
a learned ``ClaimModel`` (``rag.claims_model``, fitted by ``rag.claims_training`` on 520 labelled claims about 25
documents; docs/claims.md) the passage most likely to state the claim is chosen and the verdict comes from its
features; the reason is the finding a reader can check. Without one (``RAG_CLAIM_MODEL=rules``) the rules of
``rag.verify`` decide.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rag.text import STOPWORDS, content_terms, normalize
from rag.types import CheckResult, Evidence
from rag.verify import (
    PARTIAL,
    SUPPORTED,
    UNSUPPORTED,
    Verdict,
    _close,
    _has_negation,
    _speakers,
    clean_answer_sentence,
    full_name_runs,
    names,
    negation_flips,
    numbers,
    quotes,
    rank,
    unresolved_names,
)

if TYPE_CHECKING:
    from rag.index import Index
    from rag.types import Sentence

# Features of one candidate passage for one claim (``ClaimFeaturizer.features_many``), in the order the models
# read them, each with the only direction it may push "the passage states the claim" (+1 up, -1 down): the
# models are fitted with those signs as constraints (``rag.claims_training``). Unconstrained, they learned how
# the training claims were written rather than what makes a claim true — e.g. that a claim sharing every word
# with its passage is suspect, because the altered claims of the sets were near copies and the true ones
# paraphrases — and called "The US killed Soleimani in early 2020" unsupported.
FEATURE_SIGNS = {
    "passage_probability": 1,  # the verdict models' extra input (rag.claims_model.VERDICT_FEATURES)
    "entailment": 1,  # an NLI model's log-odds that the chosen passage entails the claim (rag.nli; optional)
    "verbatim": 1, "coverage": 1, "coverage_idf": 1, "cosine": 1, "tokens": 1, "tokens_weakest": 1,
    "speaker_near": 1,
    "uncovered_idf_max": -1, "weak_share_50": -1, "weak_share_70": -1, "figure_missing": -1, "names_missing": -1,
    "names_missing_share": -1, "negation_differs": -1, "negation_flip": -1, "quote_missing": -1, "speaker_other": -1,
}
PASSAGE_FEATURES = tuple(f for f in FEATURE_SIGNS if f not in ("passage_probability", "entailment"))
_COLUMN = {name: i for i, name in enumerate(PASSAGE_FEATURES)}  # a feature's column in a features_many row
_SQUASH = re.compile(r"\W+")


def _squash(text: str) -> str:
    return _SQUASH.sub(" ", normalize(text).lower()).strip()


@dataclass(frozen=True)
class _Facts:
    terms: frozenset[str]  # content terms (stems)
    numbers: tuple[float, ...]  # values of its figures and number words
    negated: bool
    lowered: str  # normalised, lower-cased
    squashed: str  # lower-cased words separated by single spaces


class ClaimFeaturizer:
    """Per-index state for featurising claim / passage pairs: document frequencies of content terms and the
    sentences' stored vectors and word pieces."""

    def __init__(self, index: Index, embedder):
        self.index = index
        self.embedder = embedder
        df: dict[str, int] = {}
        for s in index.sentences:
            for t in set(content_terms(s.text)):
                df[t] = df.get(t, 0) + 1
        self.df = df
        self.n = max(len(index.sentences), 1)
        self._tokens: dict[int, np.ndarray] = {}
        self._documents: dict[str, str] = {}  # source -> normalised, lower-cased text
        self._sentence_facts: dict[int, _Facts] = {}

    def _facts(self, sentence: Sentence) -> _Facts:
        """What the features read of one sentence, worked out once per sentence and index (a claim's ~60
        candidate passages share their sentences, and most sentences are candidates again for the next claim)."""
        facts = self._sentence_facts.get(sentence.id)
        if facts is None:
            facts = self._sentence_facts[sentence.id] = _Facts(
                frozenset(content_terms(sentence.text)), tuple(v for _, v in numbers(sentence.text)),
                _has_negation(sentence.text), normalize(sentence.text).lower(), _squash(sentence.text))
        return facts

    def _preceding(self, sentence: Sentence, n: int) -> list[Sentence]:
        """Up to ``n`` sentences before this one in its document (a quote is often a paragraph of its own, its
        speaker introduced in the paragraph before)."""
        out = []
        for i in range(sentence.id - 1, max(sentence.id - n, 0) - 1, -1):
            s = self.index.sentences[i]
            if s.source != sentence.source:
                break
            out.insert(0, s)
        return out

    def _document_text(self, source: str) -> str:
        text = self._documents.get(source)
        if text is None:
            text = self._documents[source] = normalize(self.index.documents[source].text).lower()
        return text

    def idf(self, term: str) -> float:
        return math.log((self.n + 1) / (self.df.get(term, 0) + 0.5))

    def tokens_of(self, ids: list[int]) -> dict[int, np.ndarray]:
        """Word-piece vectors (float32) of these sentences: stored with the index, else encoded now."""
        missing = [i for i in dict.fromkeys(ids) if i not in self._tokens]
        if missing:
            many = getattr(self.index, "sentence_tokens_many", None)
            found = many(missing) if many is not None else {i: self.index.sentence_tokens(i) for i in missing}
            to_encode = [i for i in missing if found.get(i) is None]
            for i in missing:
                if found.get(i) is not None:
                    self._tokens[i] = np.asarray(found[i], dtype=np.float32)
            if to_encode:
                _, encoded = self.embedder.encode_with_tokens([self.index.sentences[i].text for i in to_encode])
                for i, rows in zip(to_encode, encoded, strict=True):
                    self._tokens[i] = np.asarray(rows, dtype=np.float16).astype(np.float32)
        return {i: self._tokens[i] for i in ids}

    def features_many(self, claim: str, groups: list[list[Sentence]]) -> np.ndarray:
        """One row of PASSAGE_FEATURES per group of sentences (a passage)."""
        claim = clean_answer_sentence(claim)
        vector = self.embedder.encode_query(claim)
        pieces, piece_words = self.embedder.encode_query_tokens(claim)
        weights, word_of_piece = _piece_weights(piece_words, self.idf)
        claim_terms = [t for t in dict.fromkeys(content_terms(claim))]
        idf = {t: self.idf(t) for t in claim_terms}
        total_idf = sum(idf.values()) or 1.0
        claim_numbers = numbers(claim)
        claim_names = names(claim)
        claim_runs = full_name_runs(claim)
        claim_quotes = quotes(claim)
        claim_negated = _has_negation(claim)
        squashed_claim = _squash(claim)
        tokens = self.tokens_of([s.id for g in groups for s in g])
        rows = np.zeros((len(groups), len(PASSAGE_FEATURES)), dtype=np.float32)
        for r, group in enumerate(groups):
            text = " ".join(s.text for s in group)
            facts = [self._facts(s) for s in group]
            terms = set().union(*(f.terms for f in facts))
            squashed = " ".join(f.squashed for f in facts)
            lowered = " ".join(f.lowered for f in facts)
            evidence_numbers = [v for f in facts for v in f.numbers]
            absent = [n for n in claim_names if n not in lowered and n.split("-")[-1] not in lowered]
            missing = unresolved_names(absent, claim_runs, lowered, self._document_text(group[0].source)) if absent else []
            # The rest of a full name the passage gives in part ("Qassem" of "Qassem Soleimani" against "said
            # Soleimani", the document naming him in full) is covered: without this the app's own example claim
            # was UNSUPPORTED for the first name the passage leaves out.
            resolved = {t for n in absent if n not in missing for t in content_terms(n)}
            covered = [t for t in claim_terms if t in terms or t in resolved]
            uncovered = [idf[t] for t in claim_terms if t not in terms and t not in resolved]
            passage_vector = self.index.sentence_vectors[[s.id for s in group]].sum(axis=0)
            passage_vector = passage_vector / (np.linalg.norm(passage_vector) or 1.0)
            piece_weights = weights
            if resolved:
                piece_weights = weights * np.array([not (set(content_terms(w)) & resolved) for w in piece_words],
                                                   dtype=np.float32)
                piece_weights = piece_weights / piece_weights.sum() if piece_weights.sum() > 0 else weights
            match, weakest, weak = _token_match(pieces, piece_weights, word_of_piece, [tokens[s.id] for s in group])
            figure_missing = any(not any(_close(v, w) for w in evidence_numbers) for _, v in claim_numbers)
            quote_missing = any(_squash(q) not in squashed for q in claim_quotes)
            speaker_other = speaker_near = 0.0
            if claim_quotes and not quote_missing:
                # Who the passage says spoke; a quote's speaker is often named a sentence or two before it.
                before = self._preceding(group[0], 2)
                near = normalize(" ".join([*(b.text for b in before), text])).lower()
                speakers = _speakers(" ".join([*(b.text for b in before), text]), claim_quotes)
                speaker_other = float(bool(speakers) and not any(
                    any(part.lower() in claim_names for part in sp.split()) for sp in speakers))
                speaker_near = float(any(n in near for n in claim_names))
            values = {
                "verbatim": float(bool(squashed_claim) and squashed_claim in squashed),
                "coverage": len(covered) / len(claim_terms) if claim_terms else 0.0,
                "coverage_idf": sum(idf[t] for t in covered) / total_idf,
                "uncovered_idf_max": max(uncovered, default=0.0) / math.log(self.n + 2),
                "cosine": float(vector @ passage_vector),
                "tokens": match,
                "tokens_weakest": weakest,
                "weak_share_50": weak[0],
                "weak_share_70": weak[1],
                "figure_missing": float(figure_missing),
                "names_missing": min(len(missing), 3) / 3,
                "names_missing_share": len(missing) / len(claim_names) if claim_names else 0.0,
                "negation_differs": float(claim_negated != any(f.negated for f in facts)),
                "negation_flip": float(bool(negation_flips(claim, text))),
                "quote_missing": float(quote_missing),
                "speaker_other": speaker_other,
                "speaker_near": speaker_near,
            }
            rows[r] = [values[name] for name in PASSAGE_FEATURES]
        return rows


def _piece_weights(piece_words: tuple[str, ...], idf: Callable[[str], float]) -> tuple[np.ndarray, list[int]]:
    """Per piece: its word's idf (0 for words that are not content terms) shared among the word's pieces, summing
    to 1; and per piece the index of its word (consecutive pieces of one word share it)."""
    word_index, previous, word_of_piece = -1, None, []
    for w in piece_words:
        if w is not previous:
            word_index += 1
            previous = w
        word_of_piece.append(word_index)
    counts: dict[int, int] = {}
    for k in word_of_piece:
        counts[k] = counts.get(k, 0) + 1
    raw = []
    for w, k in zip(piece_words, word_of_piece, strict=True):
        terms = content_terms(w)
        raw.append((idf(terms[0]) if terms else 0.0) / counts[k])
    weights = np.array(raw, dtype=np.float32)
    if weights.sum() <= 0:
        weights = np.ones(len(piece_words), dtype=np.float32)
    return weights / weights.sum(), word_of_piece


def _token_match(pieces: np.ndarray, weights: np.ndarray, word_of_piece: list[int],
                 rows: list[np.ndarray]) -> tuple[float, float, tuple[float, float]]:
    """The idf-weighted mean of each claim piece's best cosine to the passage's pieces; the weakest content
    word's (its pieces' mean); and the idf-weighted share of content words matched below 0.5 and below 0.7 (a
    claim joining a stated fact to an unstated one leaves a whole clause unmatched)."""
    rows = [r for r in rows if len(r)]
    if not len(pieces) or not rows:
        return 0.0, 0.0, (1.0, 1.0)
    best = (pieces @ np.concatenate(rows).T).max(axis=1)
    words: dict[int, list[float]] = {}
    word_weight: dict[int, float] = {}
    for k, b, w in zip(word_of_piece, best, weights, strict=True):
        if w > 0:
            words.setdefault(k, []).append(float(b))
            word_weight[k] = word_weight.get(k, 0.0) + float(w)
    scores = {k: sum(v) / len(v) for k, v in words.items()}
    weakest = min(scores.values(), default=float(best.min()))
    total = sum(word_weight.values()) or 1.0
    weak = tuple(sum(word_weight[k] for k, v in scores.items() if v < level) / total for level in (0.5, 0.7))
    return float(weights @ best), weakest, weak


def candidate_groups(claim: str, index: Index, candidates: set[int]) -> list[list[Sentence]]:
    """Each candidate sentence alone and with the sentence before it in its paragraph; sentences that hold a
    quote of the claim verbatim join the candidates."""
    candidates = set(candidates)
    for quote in quotes(claim):
        needle = _squash(quote)
        for s in index.sentences:
            if needle and needle in _squash(s.text):
                candidates.add(s.id)
    groups: list[list[Sentence]] = []
    for sid in sorted(candidates):
        s = index.sentences[sid]
        groups.append([s])
        prev = index.sentences[sid - 1] if sid > 0 else None
        if prev is not None and prev.source == s.source and prev.paragraph == s.paragraph:
            groups.append([prev, s])
    return groups


def check_claim(claim: str, index: Index, candidates: set[int], judge: Callable[[str, str, str], Verdict],
                model=None, featurizer: ClaimFeaturizer | None = None, nli=None) -> CheckResult:
    """Judge the claim against every candidate passage; the best three passages are the evidence. With a
    ``model`` (``rag.claims_model.ClaimModel``) and a ``featurizer`` the learned models choose the passage
    and give the verdict; the reason comes from ``judge`` on that passage (what a reader can check). A model
    fitted with an NLI model needs that model as ``nli`` (``rag.nli.EntailmentModel``): it scores the chosen
    passage only (about 33 ms a check on 2 cores: bench/claims_check.py)."""
    groups = candidate_groups(claim, index, candidates)
    if not groups:
        return CheckResult(claim, UNSUPPORTED, "no passage of the corpus relates to this claim", [])
    if model is not None and featurizer is not None:
        matrix = featurizer.features_many(claim, groups)
        support = model.passage.predict(matrix)
        order = [int(i) for i in np.argsort(-support, kind="stable")]
        best = order[0]
        passage = " ".join(s.text for s in groups[best])
        entailment = float(nli.entailment([(passage, claim)])[0]) if model.nli_sha256 else None
        verdict = model.verdict(matrix[best], float(support[best]), entailment)
        document = index.documents[groups[best][0].source].text
        judged = judge(claim, passage, document)
        if overruled(verdict, judged.verdict):
            reason = (f"judged to state it as a whole (meaning match {matrix[best][_COLUMN['tokens']]:.2f}), but the "
                      f"word-level check says: {judged.reason}")
            verdict = PARTIAL
        else:
            reason = _reason(verdict, judged, matrix[best], claim, passage)
        ranked = [(float(support[i]), groups[i]) for i in order]
        if verdict != SUPPORTED:
            reason, ranked = _quote_elsewhere(claim, reason, ranked, judge)
        return CheckResult(claim, verdict, reason, _passages(index, ranked))
    judged = [(judge(claim, " ".join(x.text for x in g), index.documents[g[0].source].text), g) for g in groups]
    judged.sort(key=lambda vg: (-rank(vg[0].verdict), -vg[0].score, len(vg[1])))
    best_verdict = judged[0][0]
    reason, ranked = best_verdict.reason, [(v.score, g) for v, g in judged]
    if best_verdict.verdict != SUPPORTED:
        reason, ranked = _quote_elsewhere(claim, reason, ranked, judge)
    return CheckResult(claim, best_verdict.verdict, reason, _passages(index, ranked))


def overruled(verdict: str, rules_verdict: str) -> bool:
    """Whether a SUPPORTED of the learned checker becomes PARTIAL: the rules, on the same passage, find a
    disqualifier (a figure, a name, a quote, negation) that makes the claim UNSUPPORTED. Measured LODO on the 520
    labelled claims (MiniLM): accuracy 0.663 either way, false support 0.108 -> 0.100, supported claims called
    supported 0.615 -> 0.612; PARTIAL whenever the rules say anything but SUPPORTED went too far (accuracy 0.631,
    false support 0.065, supported recall 0.542). A fact-checker had found 6 of 10 negation flips SUPPORTED."""
    return verdict == SUPPORTED and rules_verdict == UNSUPPORTED


def _quote_elsewhere(claim: str, reason: str, ranked: list[tuple[float, list[Sentence]]],
                     judge: Callable[[str, str], Verdict]) -> tuple[str, list[tuple[float, list[Sentence]]]]:
    """A quote "not found verbatim" in the judged passage that another candidate holds verbatim: the reason says
    whom the article gives it to, and that passage is shown next to the one judged. (A tester gave Seif's words
    to Abu Turab al-Tamimi: the passage judged was Tamimi's, "not found verbatim" read as "made up", and no
    passage shown held the quote.)"""
    if not (reason.startswith('quote "') and "not found verbatim" in reason):
        return reason, ranked
    said = [_squash(q) for q in quotes(claim)]
    for position, (score, group) in enumerate(ranked[1:], 1):
        text = " ".join(s.text for s in group)
        if all(q in _squash(text) for q in said):
            found = judge(claim, text)
            moved = [ranked[0], (score, group), *ranked[1:position], *ranked[position + 1:]]
            return f"{reason}, but the article has it elsewhere (shown below): {found.reason}", moved
    return reason, ranked


class LearnedJudge:
    """The learned claim checker as the verifier of an LLM's answer sentences against the sentences they cite
    (``rag.answer.citations.assemble``): the claim model's P(supported) of the sentence against them, SUPPORTED
    from ``min_support``, flagged UNSUPPORTED only below ``flag_below`` (chosen so that few true sentences are
    flagged), PARTIAL between. Its ``score`` is that probability, which ranks passages for attribution. On the
    labelled claims against their evidence (LODO) it flags more false sentences than the rules at their rate of
    true ones flagged; on 68 sentences of a real LLM it flagged 7 of 12 false ones (rules 2) but 13 of 50 true ones
    (rules 4), so it is used only with RAG_LLM_VERIFIER=learned (docs/claims.md, "Answer sentences")."""

    def __init__(self, model, featurizer: ClaimFeaturizer, rules: Callable[[str, str], Verdict], nli=None):
        if model.flag_below is None:
            raise ValueError("the claim model has no operating point for answer sentences")
        self.model, self.featurizer, self.rules, self.nli = model, featurizer, rules, nli

    def __call__(self, claim: str, sentences: list[Sentence]) -> Verdict:
        sentences = sorted({s.id: s for s in sentences}.values(), key=lambda s: s.id)  # document order, once each
        row = self.featurizer.features_many(claim, [sentences])[0]
        probability = float(self.model.passage.predict(row[None, :])[0])
        passage = " ".join(s.text for s in sentences)
        entailment = float(self.nli.entailment([(passage, claim)])[0]) if self.model.nli_sha256 else None
        support = self.model.support_probability(row, probability, entailment)
        verdict = self.model.sentence_verdict(support)
        return Verdict(verdict, _reason(verdict, self.rules(claim, passage), row, claim, passage), support)


# How a SUPPORTED reason says the rules disagree (a figure, a name, negation, a quote's speaker): the app shows
# such a verdict as disputed (testers read the green badge and missed the reason).
DISPUTED = "though the word-level check says:"


def _reason(verdict: str, judged: Verdict, row: np.ndarray, claim: str, passage: str) -> str:
    """Why, in terms a reader can check against the passage shown: the rule finding (a figure, a name, a quote,
    negation) when it points the same way as the verdict; else the words where a near copy of the passage
    differs from it; else what the match says. (An NLI model's score is left out: the one measured puts clear
    entailments near P 0.5, which a reader would take for doubt.)"""
    col = _COLUMN
    if verdict == SUPPORTED:
        if judged.verdict == SUPPORTED:
            return judged.reason
        # Not "in other words": the rule finding that disagrees is said too (a verbatim quote given the wrong
        # speaker read as a paraphrase, and the wrong speaker went unmentioned).
        return (f"judged to state it as a whole ({row[col['coverage']]:.0%} of the claim's content words, meaning "
                f"match {row[col['tokens']]:.2f}), {DISPUTED} {judged.reason}")
    different = difference(claim, passage)
    if judged.verdict == SUPPORTED or (different and judged.reason.startswith("only ")):
        if different:
            return different
        return (f"the closest passage does not state all of it (meaning match {row[col['tokens']]:.2f}; its "
                f"weakest word matches at {row[col['tokens_weakest']]:.2f})")
    return judged.reason


# Words, and figures whole ("150,000-strong", "1.5"; splitting at the comma or point said "150" where the
# claim says "200").
_WORDS = re.compile(r"\d[\d,.]*\d(?:-[^\W\d_][\w'’]*)*|[\w'’]+(?:-[\w'’]+)*")


def departures(claim: str, passage: str) -> list[tuple[int, int, str]]:
    """Where a claim that copies most of a passage departs from it: (weight, position, description) for words
    replaced, words the claim adds, and negations the claim leaves out, inside the copied stretch (or at the
    claim's end). Empty when the claim is not mostly a copy (at least 60 % of its words in passage order) or
    nothing it changes carries content. Words the claim moved rather than changed are no departure: a stretch whose
    every word the passage holds elsewhere ("President Donald Trump ordered the killing" against "The killing,
    ordered by President Donald Trump, sent ...") is the passage reordered."""
    import difflib

    a = _WORDS.findall(normalize(clean_answer_sentence(claim)).lower())
    b = _WORDS.findall(normalize(passage).lower())
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    blocks = [m for m in matcher.get_matching_blocks() if m.size]
    if not a or sum(m.size for m in blocks) < 0.6 * len(a):
        return []
    start = blocks[0].a + blocks[0].size
    content = lambda words: sum(w not in STOPWORDS for w in words)  # noqa: E731
    in_passage = set(b)
    found: list[tuple[int, int, str]] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal" or i1 < start or (i2 > blocks[-1].a and i2 != len(a)):
            continue  # only departures inside the copied stretch, or the claim's own ending
        claimed, said = a[i1:i2], b[j1:j2]
        if tag in ("replace", "delete") and all(w in in_passage for w in claimed):
            continue  # moved, not changed
        if i2 == len(a):  # the claim ends here: the passage goes on, only its next words are the counterpart
            said = said[: len(claimed)]
        if tag == "replace" and len(claimed) <= 6 and len(said) <= 6 and content(claimed + said):
            found.append((2 + content(claimed + said), i1, f'"{" ".join(said)}" where the claim says '
                                                          f'"{" ".join(claimed)}"'))
        elif tag == "delete" and len(claimed) <= 6 and content(claimed):
            found.append((1 + content(claimed), i1, f'nothing where the claim says "{" ".join(claimed)}"'))
        elif tag == "insert" and len(said) <= 6 and any(_has_negation(w) for w in said):
            found.append((3, i1, f'"{" ".join(said)}", which the claim leaves out'))
    return found


def difference(claim: str, passage: str) -> str | None:
    """The departures of a near copy from its passage, in the passage's words ('the passage says "lacks" where
    the claim says "has"'): at most two, those with the most content words, in claim order."""
    found = departures(claim, passage)
    if not found:
        return None
    named = sorted(sorted(found, key=lambda f: -f[0])[:2], key=lambda f: f[1])
    return "the passage says " + ", and ".join(text for _, _, text in named)


def _passages(index: Index, ranked: list[tuple[float, list[Sentence]]]) -> list[Evidence]:
    """Up to three distinct passages, best first; a passage of two sentences that are not neighbours gives
    each its own entry (a passage's text is always ``document[start:end]``)."""
    passages, seen = [], set()
    for score, group in ranked:
        runs: list[list[Sentence]] = []
        for s in group:
            if runs and runs[-1][-1].source == s.source and runs[-1][-1].id + 1 == s.id:
                runs[-1].append(s)
            else:
                runs.append([s])
        for run in runs:
            first, last = run[0], run[-1]
            key = (first.source, first.start, last.end)
            if key in seen:
                continue
            seen.add(key)
            doc = index.documents[first.source]
            passages.append(Evidence(first.source, first.start, last.end, doc.text[first.start : last.end],
                                     round(score, 4)))
            if len(passages) == 3:
                return passages
    return passages
