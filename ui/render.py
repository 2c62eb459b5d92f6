"""HTML for the app's panels, built from the pipeline's JSON results.

Every piece of document, question or answer text goes through ``html.escape`` before it is placed in markup:
the corpus is user-supplied (uploads), so an article containing ``<script>`` must render as text, not run.
These functions are pure (strings in, HTML out) so they can be tested without a browser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import escape

from rag.answer.base import NOTHING_ASKED
from rag.claims import DISPUTED

VERDICTS = ("supported", "partial", "unsupported")
_MARKER = re.compile(r"\s*\[(\d+)\]")


def chip_class(turn: int, n: int) -> str:
    """The class that identifies a citation chip. The chatbot's sanitizer strips data-* attributes but keeps
    classes, so the (answer turn, citation number) pair travels in a class name the page script parses."""
    return f"rag-cite-{turn}-{n}"


def parse_chip_class(value: str) -> tuple[int, int] | None:
    match = re.fullmatch(r"rag-cite-(\d+)-(\d+)", value.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def badge(verdict: str) -> str:
    kind = verdict if verdict in VERDICTS else "neutral"
    return f'<span class="rag-badge rag-badge-{kind}">{escape(verdict)}</span>'


def highlight(text: str, start: int, end: int, mark_id: str | None = None) -> str:
    """``text`` escaped, with ``text[start:end]`` wrapped in <mark> (offsets are clamped to the text)."""
    start, end = max(0, min(start, len(text))), max(0, min(end, len(text)))
    start, end = min(start, end), max(start, end)
    id_attr = f' id="{escape(mark_id)}"' if mark_id else ""
    return (f"{escape(text[:start])}<mark class=\"rag-cited\"{id_attr}>{escape(text[start:end])}</mark>"
            f"{escape(text[end:])}")


def _inline(text: str) -> str:
    """Escaped text on one line. Chat messages are single-line HTML blocks because the chatbot's Markdown
    renderer leaves an HTML block alone until a blank line: no newline, so "*" or "_" in a quote stays literal."""
    return escape(text).replace("\r", "").replace("\n", "<br>")


def _chip(turn: int, n: int, verdict: str, origin: str = "model") -> str:
    kind = verdict if verdict in VERDICTS else "neutral"
    attributed = origin == "attributed"
    extra = " rag-chip-attributed" if attributed else ""
    how = ", attributed after the answer was written" if attributed else ""
    return (f'<span class="rag-chip rag-chip-{kind} {chip_class(turn, n)}{extra}" role="button" tabindex="0" '
            f'title="Citation {n} ({escape(verdict)}{how}): show it in the article">{n}</span>')


def confidence_label(confidence: float | None, backend: str = "extractive") -> str:
    """The answer's confidence in words and as a percentage: how likely the answer is to be right. It is a
    different thing from the verdict badges, which only say whether a sentence is backed by its span. For an
    LLM backend it is the model's own check, which nothing calibrated."""
    if confidence is None:
        return ""
    level = "high" if confidence >= 0.75 else "medium" if confidence >= 0.5 else "low"
    what = ("Estimated probability that this answer is right (calibrated on documents the model was not fitted on)"
            if backend == "extractive" else
            "The model's own check: its probability that the passages it cites say what the question asks "
            "(not calibrated)")
    return (f'<span class="rag-confidence rag-confidence-{level}" title="{what}">Confidence: {level} '
            f"({round(confidence * 100)}%)</span>")


def answer_message(answer: dict, turn: int) -> str:
    """The assistant's chat message: confidence, short answer emphasised, then the cited answer with [n] as chips."""
    if answer.get("abstained"):
        return ('<div class="rag-notice"><strong>No answer in the indexed articles.</strong> '
                f"{_inline(answer.get('answer') or '')}</div>")
    verdicts = {c["n"]: c.get("verdict", "unchecked") for c in answer.get("citations", [])}
    origins = {c["n"]: c.get("origin", "model") for c in answer.get("citations", [])}
    text = answer.get("answer") or ""
    short = answer.get("short_answer")
    # The short answer is also emphasised where it first occurs in the cited text.
    at = text.find(short) if short else -1
    emphasis = (at, at + len(short)) if short and at >= 0 else None
    parts: list[str] = []
    position = 0
    for match in _MARKER.finditer(text):
        parts.append(_emphasised(text, position, match.start(), emphasis))
        n = int(match.group(1))
        parts.append(" " + _chip(turn, n, verdicts.get(n, "unchecked"), origins.get(n, "model")) if n in verdicts else "")
        position = match.end()
    parts.append(_emphasised(text, position, len(text), emphasis))
    body = f'<div class="rag-answer-text">{"".join(parts)}</div>'
    if short:
        body = (f'<div class="rag-short"><span class="rag-short-label">Answer</span>'
                f"<strong>{_inline(short)}</strong></div>{body}")
    label = confidence_label(answer.get("confidence"), answer.get("backend") or "extractive")
    if label:
        body = f'<div class="rag-confidence-row">{label}</div>{body}'

    return f'<div class="rag-msg">{body}</div>'


def question_message(question: str, standalone: str | None = None) -> str:
    """The user's message; a follow-up also shows the standalone question it was rewritten into (what was
    searched for and answered)."""
    rewritten = (f'<div class="rag-rewritten" title="Your follow-up, rewritten from the conversation: this is '
                 f'what was searched for">Searched for: {_inline(standalone)}</div>') if standalone else ""
    return f'<div class="rag-question">{_inline(question)}{rewritten}</div>'


def reading_message(passages: int, elapsed_s: float) -> str:
    """Before an LLM's first token: it is reading the passages (a local model on a CPU takes a while)."""
    return (f'<div class="rag-msg rag-streaming rag-reading">The model is reading {passages} passages… '
            f"{elapsed_s:.0f} s<span class=\"rag-caret\"></span></div>")


def _emphasised(text: str, start: int, end: int, emphasis: tuple[int, int] | None) -> str:
    """``text[start:end]`` escaped, with the part inside ``emphasis`` (if any) in <strong>."""
    if emphasis is None or emphasis[1] <= start or emphasis[0] >= end:
        return _inline(text[start:end])
    low, high = max(start, emphasis[0]), min(end, emphasis[1])
    return f"{_inline(text[start:low])}<strong>{_inline(text[low:high])}</strong>{_inline(text[high:end])}"


def streaming_message(partial_text: str) -> str:
    """An answer still being written (LLM backends); markers become chips once the answer is verified."""
    return f'<div class="rag-msg rag-streaming">{_inline(partial_text)}<span class="rag-caret"></span></div>'


@dataclass(frozen=True)
class CitedPassage:
    """A cited span located inside its paragraph (offsets of the span are relative to ``paragraph``)."""

    n: int
    source: str
    title: str
    date: str | None
    paragraph: str
    start: int
    end: int
    verdict: str
    reason: str


def sources_panel(answer: dict | None, passages: list[CitedPassage], turn: int, selected: int | None = None) -> str:
    """Each cited passage with the cited sentence highlighted in its paragraph and its verdict, then the
    verification of every answer sentence."""
    if answer is None:
        return _placeholder("Sources", "Ask a question: the passages the answer cites appear here, with the cited "
                                       "sentence highlighted and whether it supports the answer.")
    if answer.get("abstained") and answer.get("answer") == NOTHING_ASKED:
        return _placeholder("Sources", "Nothing was searched: the question names nothing to look for.")
    if answer.get("abstained"):
        return _placeholder("Sources", "No retrieved passage contains the answer, so the assistant abstained "
                                       "instead of guessing.")
    cards = []
    for p in passages:
        chosen = " rag-source-selected" if p.n == selected else ""
        date = f" · {escape(p.date)}" if p.date else ""
        cards.append(
            f'<div class="rag-source{chosen} {chip_class(turn, p.n)}" role="button" tabindex="0" '
            f'title="Show this passage in the article">'
            f'<div class="rag-source-head"><span class="rag-source-n">{p.n}</span>'
            f'<span class="rag-source-title">{escape(p.title)}{date}</span>{badge(p.verdict)}</div>'
            f'<div class="rag-source-para">{highlight(p.paragraph, p.start, p.end)}</div>'
            f'<div class="rag-source-reason">{escape(p.reason)}</div></div>'
        )
    checks = answer.get("checks") or []
    rows = "".join(
        f'<li>{badge(c["verdict"])}<span class="rag-check-sentence">{escape(_MARKER.sub("", c["sentence"]))}</span>'
        f'<span class="rag-check-cites">{escape(" ".join(f"[{n}]" for n in c["cited"]) or "no citation")}</span>'
        f'<span class="rag-check-reason">{escape(c["reason"])}</span></li>'
        for c in checks
    )
    check_list = (f'<div class="rag-subhead">Sentence checks</div><ul class="rag-checks">{rows}</ul>'
                  if rows else "")
    # First in the panel, above the green badges: below them (in a panel that scrolls) it went unread, and a
    # wrong answer with SUPPORTED citations read as a right one.
    confidence = answer.get("confidence")
    how_sure = (f" How likely the answer is right: {round(100 * confidence)} % (the confidence above the answer)."
                if isinstance(confidence, int | float) else " See the confidence above the answer.")
    note = ('<div class="rag-note rag-note-first">"supported" means a sentence is backed by the span it cites, '
            f"not that it answers the question.{escape(how_sure)}</div>")
    warnings = "".join(f'<div class="rag-warning">{escape(w)}</div>' for w in answer.get("warnings") or [])
    return (f'<div class="rag-panel"><div class="rag-panel-title">Sources</div>{note}{"".join(cards)}'
            f"{check_list}{warnings}</div>")


def article_view(title: str, date: str | None, text: str, start: int, end: int, label: str) -> str:
    """The whole article with the cited span marked; the page script scrolls the mark into view."""
    date_html = f'<span class="rag-article-date">{escape(date)}</span>' if date else ""
    return (f'<div class="rag-panel rag-article-panel"><div class="rag-article-head">'
            f'<span class="rag-article-title">{escape(title)}</span>{date_html}'
            f'<span class="rag-article-label">{escape(label)}</span></div>'
            f'<div class="rag-article">{highlight(text, start, end, mark_id="rag-article-mark")}</div></div>')


def article_placeholder(message: str = "Click a citation chip or a source to read the passage in its article.") -> str:
    return _placeholder("Article", message)


def _placeholder(title: str, message: str) -> str:
    return (f'<div class="rag-panel"><div class="rag-panel-title">{escape(title)}</div>'
            f'<div class="rag-empty">{escape(message)}</div></div>')


@dataclass(frozen=True)
class EvidencePassage:
    source: str
    title: str
    paragraph: str
    start: int  # relative to paragraph
    end: int
    score: float


NEAR_PASSAGE = 0.05  # below this probability of stating the claim for every passage, none is "close"


def check_result(result: dict, passages: list[EvidencePassage]) -> str:
    """Verdict on a claim, its reason, and the best passages with the matching span highlighted."""
    cards = "".join(
        f'<div class="rag-source"><div class="rag-source-head"><span class="rag-source-n">{i}</span>'
        f'<span class="rag-source-title">{escape(p.title)}</span>'
        f'<span class="rag-score" title="how likely this passage states the claim">states it: '
        f'{p.score:.0%}</span></div>'
        f'<div class="rag-source-para">{highlight(p.paragraph, p.start, p.end)}</div></div>'
        for i, p in enumerate(passages, 1)
    )
    if not cards:
        cards = '<div class="rag-empty">No passage of the corpus relates to this claim.</div>'
    # An off-topic claim still gets its three nearest passages, each at ~0 %: headed "closest", they read as
    # evidence.
    # ... unless the verdict found something there (a quote found, given another speaker: "comes close" it does)
    close = (max((p.score for p in passages), default=1.0) >= NEAR_PASSAGE or result["verdict"] != "unsupported"
             or "quote found" in result["reason"])
    heading = "Closest passages" if close else "No passage comes close; the nearest ones"
    # SUPPORTED while the word-level check names a figure, name, negation or speaker that differs: shown as
    # disputed, the reason marked, so that the green badge is not all a reader takes away.
    disputed = result["verdict"] == "supported" and DISPUTED in result["reason"]
    flag = ('<span class="rag-badge rag-badge-partial" title="the word-level check disagrees: read the reason">'
            'disputed</span>') if disputed else ""
    return (f'<div class="rag-panel"><div class="rag-verdict">{badge(result["verdict"])}{flag}'
            f'<span class="rag-claim">{escape(result["claim"])}</span></div>'
            f'<div class="rag-reason{" rag-reason-disputed" if disputed else ""}">{escape(result["reason"])}</div>'
            f'<div class="rag-subhead">{heading}</div>{cards}</div>')


def status_line(message: str, kind: str = "error") -> str:
    """A one-line message in the page (errors from the pipeline, upload results)."""
    if not message:
        return ""
    kind = kind if kind in ("error", "ok", "info") else "info"
    # One line (long messages end in an ellipsis; errors wrap instead); the full text is in the tooltip.
    return f'<div class="rag-status rag-status-{kind}" title="{escape(message)}">{escape(message)}</div>'
