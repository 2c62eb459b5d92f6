"""Word-level text helpers shared by BM25, the extractive answerer and the citation verifier."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from importlib import resources


def word_list(name: str) -> tuple[str, ...]:
    """A general-English word list shipped as package data (``rag/data/en/<name>``): one entry per line,
    ``#`` comments and blank lines ignored. Knowledge is data: no list here is tuned to one article."""
    text = resources.files("rag").joinpath("data", "en", name).read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))


def alias_table() -> dict[str, tuple[str, ...]]:
    """Lower-cased name -> the other forms that name the same thing ("united states" -> "US", "America"...)."""
    table: dict[str, tuple[str, ...]] = {}
    for line in word_list("aliases.tsv"):
        name, *forms = [part.strip() for part in line.split("\t") if part.strip()]
        table[name.lower()] = tuple(forms)
    return table


STOPWORDS = frozenset(word_list("stopwords.txt"))
# Capitalised words that open sentences without being names.
FUNCTION_CAPS = frozenset(word_list("function_caps.txt"))

# Initialisms ("A.J.", "U.S.") first, so they stay one word instead of two dropped letters.
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


def soft_words(text: str) -> list[str]:
    """Lower-cased content words for soft (word-vector) matching: no stopwords, figures or one- and two-letter
    words. The index embeds the vocabulary of these once (``rag.index``); the answerer compares them."""
    return [w for w in words(text) if w not in STOPWORDS and len(w) > 2 and not any(ch.isdigit() for ch in w)]
