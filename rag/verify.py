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

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

from rag.text import FUNCTION_CAPS, STOPWORDS, content_terms, normalize, word_list

SUPPORTED, PARTIAL, UNSUPPORTED = "supported", "partial", "unsupported"
_RANK = {SUPPORTED: 2, PARTIAL: 1, UNSUPPORTED: 0}

_MARKER = re.compile(r"\s*\[\d+\]")
_EMPHASIS = re.compile(r"\*\*|__")
_QUOTE = re.compile(r"[\"“”]([^\"“”]{3,}?)[\"“”]|(?<![A-Za-z])[‘']([^‘’']{8,}?)[’'](?![A-Za-z])")
_NEGATION = frozenset(word_list("negations.txt"))
# Where a negation's reach ends: the end of its clause (punctuation, a conjunction) or NEGATION_REACH words.
_CLAUSE_END = frozenset({"but", "and", "or", "while", "whereas", "although", "though", "because", "however"})
NEGATION_REACH = 6
# "un-likely", "in-correctly": a word that is another word of the pair of texts with a negating prefix.
_NEGATING_PREFIXES = ("un", "in", "im", "il", "ir", "non")
_MIN_PREFIXED_BASE = 5  # "unless"/"less", "inform"/"form" are not negations
# Figures written with digits: thousands grouped by commas or by (thin, no-break) spaces ("150 000"), a
# decimal part, and a scale word after it ("1.5 million") or a suffix on it ("$5m", "1.2bn"; "k" only after a
# currency sign). A spaced "m" is metres, not millions.
_DIGIT_FIGURE = re.compile(
    r"(?P<currency>[$£€])?"
    r"(?P<whole>\d{1,3}(?:[ \u00a0\u202f]\d{3})+(?![\d,])|\d[\d,]*)(?P<decimal>\.\d+)?"
    r"(?:(?P<suffix>bn|m|k)\b|\s*(?P<scale>trillion|billion|million|thousand)\b)?",
    re.IGNORECASE,
)
_SCALE = {"trillion": 1e12, "billion": 1e9, "bn": 1e9, "million": 1e6, "m": 1e6, "thousand": 1e3, "k": 1e3}
_UNITS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
          "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
          "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
          "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_WORD_SCALES = {"thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12}
# Plurals that give an order of magnitude, not a figure ("hundreds of homes"): each stands alone.
_VAGUE = {"dozens": 12, "hundreds": 100, "thousands": 1e3, "millions": 1e6, "billions": 1e9}
_NUMBER_WORDS = {**_UNITS, "hundred": 100, "dozen": 12, **_WORD_SCALES, **_VAGUE}
_LETTERS = re.compile(r"[a-z]+")


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
    """(surface, value) of every figure in ``text``, in order: digits ("150,000", "150 000", "$3 billion",
    "1.5m") and number words ("two-dozen" 24, "three hundred thousand" 300,000, "a million"); a lone "one" is
    left out (mostly a pronoun: "one of the…")."""
    found: list[tuple[int, str, float]] = []
    taken: list[tuple[int, int]] = []
    for m in _DIGIT_FIGURE.finditer(text):
        whole = re.sub(r"[^\d]", "", m.group("whole"))
        if not whole:
            continue
        value = float(whole + (m.group("decimal") or ""))
        unit = m.group("scale") or m.group("suffix")
        if unit and (unit.lower() != "k" or m.group("currency")):
            value *= _SCALE[unit.lower()]
            end = m.end()
        else:
            end = m.end("decimal") if m.group("decimal") else m.end("whole")
        surface = text[m.start():end].rstrip(",.")
        found.append((m.start(), surface, value))
        taken.append((m.start(), end))
    lowered = text.lower()
    tokens = [t for t in _LETTERS.finditer(lowered)
              if (t.group(0) in _NUMBER_WORDS or t.group(0) == "and") and not any(a <= t.start() < b for a, b in taken)]

    def adjacent(left: re.Match, right: re.Match) -> bool:
        return not lowered[left.end():right.start()].strip(" -\u00a0")

    i = 0
    while i < len(tokens):
        if tokens[i].group(0) == "and":
            i += 1
            continue
        run = [tokens[i]]
        while i + 1 < len(tokens) and run[-1].group(0) not in _VAGUE:
            nxt = tokens[i + 1]
            if nxt.group(0) == "and":  # "one hundred and five"
                after = tokens[i + 2] if i + 2 < len(tokens) else None
                if (after is None or after.group(0) not in _UNITS or run[-1].group(0) not in ("hundred", *_WORD_SCALES)
                        or not adjacent(run[-1], nxt) or not adjacent(nxt, after)):
                    break
                run.append(after)
                i += 2
                continue
            if nxt.group(0) in _VAGUE or not adjacent(run[-1], nxt):
                break
            run.append(nxt)
            i += 1
        i += 1
        names = [t.group(0) for t in run]
        if names == ["one"]:
            continue
        found.append((run[0].start(), text[run[0].start():run[-1].end()], _word_value(names)))
    return [(surface, value) for _, surface, value in sorted(found, key=lambda f: f[0])]


def _word_value(names: list[str]) -> float:
    """The value of a run of number words: "three hundred thousand" 300,000, "two-dozen" 24."""
    if len(names) == 1 and names[0] in _VAGUE:
        return float(_VAGUE[names[0]])
    total = current = 0.0
    for name in names:
        if name in _UNITS:
            current += _UNITS[name]
        elif name == "hundred":
            current = (current or 1) * 100
        elif name == "dozen":
            current = (current or 1) * 12
        else:
            total += (current or 1) * _WORD_SCALES[name]
            current = 0.0
    return float(total + current)


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


_FULL_NAME = re.compile(r"[A-Z][\w'’.-]*[A-Za-z0-9](?:\s+(?:al-|de |van |von )?[A-Z][\w'’.-]*[A-Za-z0-9])*")


def full_name_runs(text: str) -> list[list[str]]:
    """The lower-cased words of every run of two or more capitalised words ("Qassem Soleimani")."""
    runs = ([t.lower().rstrip(".").removesuffix("'s").removesuffix("’s") for t in m.group(0).split()]
            for m in _FULL_NAME.finditer(normalize(text)))
    return [run for run in runs if len(run) > 1]


def unresolved_names(missing: list[str], runs: list[list[str]], passage: str, document: str) -> list[str]:
    """The claim's names absent from the passage that are not the rest of a full name whose other part the
    passage holds, as the document writes it: "Gareth Stansfield said ..." against a passage that says "said
    Stansfield" when the document introduced him as Gareth Stansfield (``passage`` and ``document`` normalised
    and lower-cased)."""
    resolved: set[str] = set()
    for run in runs:
        # The passage holds the name's last word, as a later mention of a person does. Not its first words:
        # "the Great Barrier Reef" does not make "Great Barrier Reef Marine Park Authority" (a body a claim
        # gave words it never said) the passage's.
        if run[-1] not in missing and run[-1] in passage and " ".join(run) in document:
            resolved.update(run[:-1])
    return [n for n in missing if n not in resolved]


@functools.lru_cache(maxsize=8)
def _lowered(document: str) -> str:
    return normalize(document).lower()  # once per document: a claim is judged against ~60 of its passages


def _has_negation(text: str) -> bool:
    lowered = normalize(text).lower()
    return any(_is_negation(w) for w in re.findall(r"[a-z']+", lowered))


def _is_negation(word: str) -> bool:
    return word in _NEGATION or word.endswith("n't")


@functools.lru_cache(maxsize=4096)  # a claim is analysed against every candidate passage, and twice in judge
def _negated_stems(text: str) -> tuple[frozenset[str], frozenset[str]]:
    """(stems of the first content word after each negation, stems of the content words no negation reaches)
    in ``text``. A negation reaches the words after it up to the end of its clause, at most NEGATION_REACH of
    them; the first content word is what it negates ("no one was injured": one; "were not party to it": party;
    "not only" negates nothing). Only that word counts as negated: "did not win the final" and "lost the final"
    do not disagree about "final"."""
    negated, plain = set(), set()
    seeking = 0  # words left in which to find the negated word
    in_clause = False  # a negation's clause, after (or without) its negated word: neither negated nor plain
    for token in re.findall(r"[a-z0-9'’]+|[^\sa-z0-9'’]", normalize(text).lower()):
        if not token[0].isalnum() or token in _CLAUSE_END:
            seeking, in_clause = 0, False
        elif _is_negation(token):
            seeking, in_clause = NEGATION_REACH, True
        elif token == "only" and seeking == NEGATION_REACH:  # "not only ... but also"
            seeking, in_clause = 0, False
        elif seeking:
            terms = content_terms(token)
            negated.update(terms)
            seeking = 0 if terms else seeking - 1
        elif not in_clause:
            plain.update(content_terms(token))
    return frozenset(negated), frozenset(plain)


def negation_flips(claim: str, passage: str) -> list[tuple[str, str]]:
    """Words the claim and the passage share that only one of them negates, each with the side that negates it
    ("claim" or "passage"): "were party to it" against "were not party to it" gives ("party", "passage"), "one
    of the keepers was injured" against "no one was injured" ("one", "passage"), and a word that is the other
    text's word with a negating prefix counts too ("unlikely" against "likely"). A word both negate, or that
    one text has negated and plain, does not count; nor does a paraphrase that negates with other words
    ("failed to win" / "lost"). Unlike ``_has_negation`` on each side, a negation elsewhere in a long passage
    does not fire it."""
    claim_negated, claim_plain = _negated_stems(claim)
    passage_negated, passage_plain = _negated_stems(passage)
    flipped = {t: "claim" for t in claim_negated - claim_plain if t in passage_plain - passage_negated}
    flipped |= {t: "passage" for t in passage_negated - passage_plain if t in claim_plain - claim_negated}
    sides = {"claim": claim, "passage": passage}
    found = [(_surface(stem_, sides[side]), side) for stem_, side in flipped.items()]
    words_of = {side: set(re.findall(r"[a-z]+", normalize(text).lower())) for side, text in sides.items()}
    for side, other in (("claim", "passage"), ("passage", "claim")):
        found += [(w, side) for w in sorted(words_of[side]) for prefix in _NEGATING_PREFIXES
                  if w.startswith(prefix) and len(w) - len(prefix) >= _MIN_PREFIXED_BASE
                  and w[len(prefix):] in words_of[other]]
    return sorted(set(found))


def _negation_concerns_both(claim: str, passage: str) -> bool:
    """Whether a word some negation of one text negates is in the other text at all. "Soleimani's replacement,
    Esmail Ghaani, lacks the same stature" negates "stature"; the claim "Soleimani's replacement was Esmail
    Ghaani" does not mention it, so the negation is no disagreement with it (a test of LLM answer checks caught
    "negation differs" there once "lacks" counted as a negation)."""
    claim_negated, claim_plain = _negated_stems(claim)
    passage_negated, passage_plain = _negated_stems(passage)
    claim_terms, passage_terms = claim_negated | claim_plain, passage_negated | passage_plain
    return bool(claim_negated & passage_terms or passage_negated & claim_terms) or not (claim_negated or passage_negated)


def _surface(term: str, text: str) -> str:
    """The first word of ``text`` whose stem is ``term`` (as written there, lower-cased)."""
    return next((w for w in re.findall(r"[a-z0-9'’]+", normalize(text).lower()) if term in content_terms(w)), term)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(abs(a), abs(b), 1.0)


@dataclass
class Verdict:
    verdict: str
    reason: str
    score: float  # 0..1 support strength, for ranking candidate spans


def judge(claim: str, evidence: str, similarity: Callable[[str, str], float] | None = None,
          document: str | None = None) -> Verdict:
    """How well ``evidence`` (one span or several concatenated) supports ``claim``. With the text of the document
    the evidence comes from, a name the evidence gives in part ("said Soleimani") and the document in full ("Qassem
    Soleimani") is not missing."""
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

    missing_names = sorted(n for n in names(claim) if n not in n_evidence and n.split("-")[-1] not in n_evidence)
    if missing_names and document:
        resolved = set(missing_names)
        missing_names = unresolved_names(missing_names, full_name_runs(claim), n_evidence, _lowered(document))
        resolved -= set(missing_names)
    else:
        resolved = set()
    claim_terms = [t for t in content_terms(claim) if t not in STOPWORDS]
    evidence_terms = set(content_terms(evidence)) | {t for n in resolved for t in content_terms(n)}
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

    negation_differs = _has_negation(claim) != _has_negation(evidence) and _negation_concerns_both(claim, evidence)
    quoted = quotes(claim)

    if quoted and not missing_names and coverage >= 0.5:
        speakers = _speakers(evidence, quoted)
        attributed = f", attributed to {', '.join(speakers)}" if speakers else ""
        return Verdict(SUPPORTED, f"quote found{attributed}", max(score, 0.9))
    if quoted and missing_names:
        outside = evidence
        for q in quotes(evidence):
            outside = outside.replace(q, " ")
        # Whom a said/told pattern names, else every capitalised word outside the quotes (which mixes in places:
        # "attributes it to Iran, Iraqi, Khazali").
        speakers = [sp for sp in _speakers(evidence, quoted) if not names(sp) & names(claim)] or [
            _display(n, evidence) for n in sorted(names(outside) - names(claim) - {"reuters"})]
        claimed = ", ".join(_display(n, claim) for n in missing_names[:3])
        if speakers:
            return Verdict(UNSUPPORTED, f"quote found, but the article attributes it to {', '.join(speakers[:3])}, "
                           f"not {claimed}", max(score, 0.9))
        return Verdict(PARTIAL, f"quote found; the cited passage does not name its speaker ({claimed})", 0.5)
    flips = negation_flips(claim, evidence) if coverage >= 0.5 else []
    if flips:
        word, side = flips[0]
        return Verdict(UNSUPPORTED, f'negation differs on "{word}": only the {side} negates it', score * 0.5)
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
