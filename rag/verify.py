"""Citation verification: does a cited span support an answer sentence (or a user's claim)?

Verdicts come from evidence a reader can check, each giving a reason:
- quoted speech must appear verbatim in the cited span (and the named speaker must be there too);
- numbers (figures, years, number words) must agree: "figure 200,000 in the claim, 150,000 in the article";
- names (capitalised words) must appear in the span;
- negation must agree;
- the remaining content words must be covered lexically, or the sentence must be close in embedding space.

This stands in for an NLI model (none with a licence installs offline); the evaluation report says so. It gives
the verdicts on extractive answers' sentences, the reasons of the learned claim checker (``rag.claims``, which
decides ``rag check`` and LLM answers' sentence verdicts), and everything with RAG_CLAIM_MODEL=rules.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from rag.text import FUNCTION_CAPS, STOPWORDS, content_terms, normalize, words

SUPPORTED, PARTIAL, UNSUPPORTED = "supported", "partial", "unsupported"
_RANK = {SUPPORTED: 2, PARTIAL: 1, UNSUPPORTED: 0}

_MARKER = re.compile(r"\s*\[\d+\]")
_EMPHASIS = re.compile(r"\*\*|__")
_QUOTE = re.compile(r"[\"“”]([^\"“”]{3,}?)[\"“”]|(?<![A-Za-z])[‘']([^‘’']{8,}?)[’'](?![A-Za-z])")
_NUMBER = re.compile(r"\$?\d[\d,]*(?:\.\d+)?(?:\s*(?:billion|million|thousand|bn|m)\b)?", re.IGNORECASE)
_NEGATION = {"not", "no", "never", "none", "nothing", "neither", "nor", "without", "didn't", "doesn't", "don't",
             "isn't", "wasn't", "weren't", "haven't", "hasn't", "hadn't", "won't", "wouldn't", "couldn't", "cannot",
             "can't", "unable", "declined", "refused", "yet"}
_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17,
    "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "hundred": 100,
    "thousand": 1000, "dozen": 12, "dozens": 12, "hundreds": 100, "thousands": 1000, "million": 1e6,
}
_SCALE = {"billion": 1e9, "bn": 1e9, "million": 1e6, "m": 1e6, "thousand": 1e3}


def clean_answer_sentence(sentence: str) -> str:
    return _EMPHASIS.sub("", _MARKER.sub("", sentence)).strip()


def quotes(text: str, min_words: int = 2) -> list[str]:
    found = []
    for m in _QUOTE.finditer(text):
        q = (m.group(1) or m.group(2) or "").strip(" ,.")
        if len(q.split()) >= min_words:
            found.append(q)
    return found


def numbers(text: str) -> list[tuple[str, float]]:
    """(surface, value) for digit figures and number words; "two-dozen" counts as 24."""
    out: list[tuple[str, float]] = []
    for m in _NUMBER.finditer(text):
        surface = m.group(0).strip().rstrip(",.")
        digits = re.sub(r"[^\d.]", "", surface.split()[0] if " " in surface else surface)
        try:
            value = float(digits.rstrip("."))
        except ValueError:
            continue
        unit = re.search(r"(billion|million|thousand|bn|m)\b", surface, re.IGNORECASE)
        if unit:
            value *= _SCALE[unit.group(1).lower()]
        out.append((surface, value))
    tokens = words(text)
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t in _NUMBER_WORDS and t not in ("one",):
            value, surface = _NUMBER_WORDS[t], [t]
            if "-" in t:
                i += 1
                continue
            nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
            if nxt in ("dozen", "hundred", "thousand", "million"):
                value *= _NUMBER_WORDS[nxt]
                surface.append(nxt)
                i += 1
            out.append((" ".join(surface), float(value)))
        elif "-" in t and all(p in _NUMBER_WORDS for p in t.split("-")):
            a, b = t.split("-", 1)
            value = _NUMBER_WORDS[a] * _NUMBER_WORDS[b] if b in ("dozen", "hundred", "thousand") else _NUMBER_WORDS[a] + _NUMBER_WORDS[b]
            out.append((t, float(value)))
            i += 1  # skip the split parts that words() appends
            while i + 1 < len(tokens) and tokens[i + 1] in t.split("-"):
                i += 1
        i += 1
    return out


_NAME = re.compile(r"\b[A-Z][\w'’.-]*[A-Za-z0-9]")

def names(text: str) -> set[str]:
    """Capitalised words that are not sentence-initial function words, stemmed for comparison."""
    found = set()
    for m in _NAME.finditer(normalize(text)):
        token = m.group(0).rstrip(".").removesuffix("'s").removesuffix("’s")
        if token in FUNCTION_CAPS or len(token) < 2:
            continue
        found.add(token.lower())
    return found


def _has_negation(text: str) -> bool:
    lowered = normalize(text).lower()
    return any(w in _NEGATION or w.endswith("n't") for w in re.findall(r"[a-z']+", lowered))


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(abs(a), abs(b), 1.0)


@dataclass
class Verdict:
    verdict: str
    reason: str
    score: float  # 0..1 support strength, for ranking candidate spans


def judge(claim: str, evidence: str, similarity: Callable[[str, str], float] | None = None) -> Verdict:
    """How well ``evidence`` (one span or several concatenated) supports ``claim``."""
    claim = clean_answer_sentence(claim)
    n_claim, n_evidence = normalize(claim).lower(), normalize(evidence).lower()
    squash = lambda s: re.sub(r"\W+", " ", s).strip()  # noqa: E731
    if squash(n_claim) and squash(n_claim) in squash(n_evidence):
        claimed_quotes = quotes(claim)
        if claimed_quotes:
            speakers = _speakers(evidence, claimed_quotes)
            attributed = f", attributed to {', '.join(speakers)}" if speakers else ""
            return Verdict(SUPPORTED, f"quote found verbatim{attributed}", 1.0)
        return Verdict(SUPPORTED, "verbatim in the cited passage", 1.0)

    claim_terms = [t for t in content_terms(claim) if t not in STOPWORDS]
    evidence_terms = set(content_terms(evidence))
    coverage = sum(t in evidence_terms for t in claim_terms) / len(claim_terms) if claim_terms else 0.0
    semantic = similarity(claim, evidence) if similarity is not None else coverage
    score = 0.5 * coverage + 0.5 * max(semantic, 0.0)  # relevance, also used to rank refuting passages

    for quote in quotes(claim):
        if squash(normalize(quote).lower()) not in squash(n_evidence):
            return Verdict(UNSUPPORTED, f'quote "{quote}" not found verbatim in the cited passage', score * 0.5)

    evidence_numbers = numbers(evidence)
    for surface, value in numbers(claim):
        if not any(_close(value, v) for _, v in evidence_numbers):
            if evidence_numbers:
                nearest = min(evidence_numbers, key=lambda sv: abs(sv[1] - value))[0]
                return Verdict(UNSUPPORTED, f"figure {surface} in the claim, {nearest} in the article", score * 0.5)
            return Verdict(UNSUPPORTED, f"figure {surface} not in the cited passage", score * 0.4)

    missing_names = sorted(n for n in names(claim) if n not in n_evidence and n.split("-")[-1] not in n_evidence)
    negation_differs = _has_negation(claim) != _has_negation(evidence)
    quoted = quotes(claim)

    if quoted and not missing_names and coverage >= 0.5:
        speakers = _speakers(evidence, quoted)
        attributed = f", attributed to {', '.join(speakers)}" if speakers else ""
        return Verdict(SUPPORTED, f"quote found{attributed}", max(score, 0.9))
    if quoted and missing_names:
        outside = evidence
        for q in quotes(evidence):
            outside = outside.replace(q, " ")
        speakers = [_display(n, evidence) for n in sorted(names(outside) - names(claim) - {"reuters"})]
        claimed = ", ".join(_display(n, claim) for n in missing_names[:3])
        if speakers:
            return Verdict(UNSUPPORTED, f"quote found, but the article attributes it to {', '.join(speakers[:3])}, "
                           f"not {claimed}", max(score, 0.9))
        return Verdict(PARTIAL, f"quote found; the cited passage does not name its speaker ({claimed})", 0.5)
    if missing_names:
        who = ", ".join(_display(n, claim) for n in missing_names[:3])
        verdict = PARTIAL if coverage >= 0.5 else UNSUPPORTED
        return Verdict(verdict, f"name(s) not in the cited passage: {who}", score * 0.6)
    if negation_differs and coverage >= 0.5:
        return Verdict(PARTIAL, "negation differs between the claim and the passage", score * 0.6)
    if coverage >= 0.8 or (coverage >= 0.6 and semantic >= 0.7):
        return Verdict(SUPPORTED, f"{coverage:.0%} of the content words are in the cited passage", score)
    if coverage >= 0.45 or semantic >= 0.6:
        return Verdict(PARTIAL, f"only {coverage:.0%} of the content words are in the cited passage", score)
    return Verdict(UNSUPPORTED, f"the cited passage does not state this ({coverage:.0%} word overlap)", score)


def _display(token: str, text: str) -> str:
    """A lower-cased name token as it is written in ``text``."""
    match = re.search(re.escape(token), normalize(text), re.IGNORECASE)
    return match.group(0) if match else token


_NAME_RUN = r"((?:[A-Z][\w'’.-]+)(?:\s+(?:al-)?[A-Z][\w'’.-]+)*)"
_SAID_NAME = re.compile(r"\b(?:said|says|told|according to)\s+" + _NAME_RUN)
_NAME_SAID = re.compile(_NAME_RUN + r"\s+(?:said|says|told|added)\b")


def _speakers(evidence: str, claimed_quotes: list[str]) -> list[str]:
    """Who the passage says spoke ("..., said Mustafa Fahs" / "A.J. said")."""
    outside = normalize(evidence)
    for q in quotes(evidence):
        outside = outside.replace(normalize(q), " ")
    found = [m.group(1).rstrip(".,") for pattern in (_SAID_NAME, _NAME_SAID) for m in pattern.finditer(outside)]
    return list(dict.fromkeys(n for n in found if n not in FUNCTION_CAPS and n != "Reuters"))[:2]


def best_of(verdicts: list[Verdict]) -> Verdict:
    return max(verdicts, key=lambda v: (_RANK[v.verdict], v.score))


def rank(verdict: str) -> int:
    return _RANK[verdict]
