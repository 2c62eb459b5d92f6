"""User text (questions, queries, claims) checked and cleaned once, the same way for the CLI, the app, the API,
the LangChain retriever and evaluation."""

from __future__ import annotations

import re
import unicodedata

from rag.errors import UsageError

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
# Emoji and pictographs: no news article answers them, yet they move the question's embedding enough to
# change the answer ("Who replaced Qassem Soleimani? 😀" abstained). Variation selectors and keycaps go with them.
_PICTOGRAPHS = re.compile(r"[\u2600-\u27bf\u2b00-\u2bff\ufe0e\ufe0f\u20e3\U0001f000-\U0001faff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")

def _is_format_character(char: str) -> bool:
    return unicodedata.category(char) == "Cf"


def _collapse_trailing_punctuation(text: str) -> str:
    """ "Who replaced Soleimani? !!" asks what "Who replaced Soleimani?" asks: a trailing run of marks only
    moves the embedding. The dot closing an initialism ("A.J.?") stays."""
    run = re.search(r"[\s?!.]+$", text)
    if run is None or (len(run.group(0)) < 2 and " " not in run.group(0)):
        return text
    body, marks = text[: run.start()], run.group(0)
    if marks.startswith(".") and re.search(r"\b(?:[A-Za-z]\.)+[A-Za-z]$", body):
        body, marks = body + ".", marks[1:]
    return body + ("?" if "?" in marks else "!" if "!" in marks else "." if "." in marks else "")


def clean_text_input(text: str, max_chars: int, what: str = "question") -> str:
    """Validate user text: no control characters, not empty, not longer than the limit."""
    if not isinstance(text, str):
        raise UsageError(f"{what} must be text")
    if _SURROGATE.search(text):  # undecodable bytes (e.g. Latin-1 on stdin) arrive as lone surrogates
        raise UsageError(f"{what} is not valid UTF-8 text")
    # Invisible format characters (zero-width space, RTL override, BOM...) are removed, not made spaces:
    # pasted text carries them inside words ("Sole\u200bimani"), and a space there splits the name.
    if not text.isascii():  # format characters are never ASCII; skip the per-character pass for plain text
        text = "".join(char for char in text if not _is_format_character(char))
    text = _CONTROL.sub(" ", text.replace("\t", " ").replace("\n", " ").replace("\r", " "))
    text = _PICTOGRAPHS.sub(" ", text)
    text = re.sub(r"\s+", " ", text).strip()
    text = _collapse_trailing_punctuation(text)
    if not text:
        raise UsageError(f"{what} is empty")
    if len(text) > max_chars:
        raise UsageError(f"{what} is {len(text):,} characters; the limit is {max_chars:,} (RAG_MAX_QUESTION_CHARS)")
    return text
