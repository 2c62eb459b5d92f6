"""Word-level text helpers shared by BM25, the extractive answerer and the citation verifier."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having
    he her here hers herself him himself his how i if in into is it its itself just me more most my myself no
    nor not now of off on once only or other our ours ourselves out over own same she should so some such than
    that the their theirs them themselves then there these they this those through to too under until up very
    was we were what when where which while who whom why will with would you your yours yourself yourselves
    s t don didn doesn isn wasn weren won wouldn couldn shouldn ll re ve d m also said says say according
    """.split()
)

# Capitalised words that open sentences without being names.
FUNCTION_CAPS = frozenset(
    """A An The In On At But And Or If It He She They We I His Her Their Our This That These Those There What
    Who When Where Why How Which After Before During Since Still Even Some Many Most One For With As By From To
    Of Yes No So Also According Amid Besides Then Now While Although Despite Both Among None""".split()
)
# Names so common in news about this region that they identify nothing on their own ("US", "Iran"):
# a question entity or an answer candidate made only of these says nothing.
GENERIC_NAMES = frozenset(
    """us u.s. american americans iran iranian iraq iraqi israel israeli reuters shi'ite shi'ites sunni western
    islamic republic""".split()
)

# A word: initialisms ("A.J.", "U.S.") first, so they stay one word instead of two dropped letters; then letters
# and digits, with inner hyphens and apostrophes kept ("al-Khazali", "Shi'ite").
_WORD = re.compile(r"(?:[^\W\d_]\.){2,}|[\w]+(?:[-'’][\w]+)*", re.UNICODE)


def normalize(text: str) -> str:
    """Fold typographic quotes and dashes, NFKC; keeps offsets meaningless, so only for comparison."""
    text = unicodedata.normalize("NFKC", text)
    return (
        text.replace("‘", "'")
        .replace("’", "'")
        .replace("“", '"')
        .replace("”", '"')
        .replace("–", "-")
        .replace("—", "-")
    )


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    return _stemmer().stemWord(word)


def words(text: str) -> list[str]:
    """Lower-cased words, possessive "'s" removed, hyphenated words kept whole and also split."""
    out: list[str] = []
    for match in _WORD.finditer(normalize(text).lower()):
        word = match.group(0)
        if word.endswith("."):
            word = word.replace(".", "")
        if word.endswith("'s"):
            word = word[:-2]
        out.append(word)
        if "-" in word:
            out.extend(part for part in word.split("-") if part)
    return out


def content_terms(text: str) -> list[str]:
    """Stemmed words without stopwords: the tokens BM25 indexes and overlap is measured on."""
    return [stem(w) for w in words(text) if w not in STOPWORDS and len(w) > 1 or w.isdigit()]
