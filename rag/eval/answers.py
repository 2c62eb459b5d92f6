"""SQuAD's answer normalisation, on its own: the gold loader refuses aliases it leaves empty and the metrics
compare answers with it (rag.eval.metrics imports rag.eval.gold, so neither can hold it for the other)."""

from __future__ import annotations

import re
import string
import unicodedata

from rag.text import normalize

_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD normalisation (lower-case, drop punctuation, drop a/an/the, collapse whitespace), after folding
    typographic quotes and dashes, which SQuAD's ASCII punctuation list would otherwise keep."""
    text = normalize(text).lower()
    text = "".join(ch for ch in text if ch not in string.punctuation and not unicodedata.category(ch).startswith("P"))
    return " ".join(_ARTICLES.sub(" ", text).split())
