"""The app built over the real session pipeline, and the HTML it renders (no server, no browser)."""

from __future__ import annotations

import re

import gradio as gr
import pytest

from rag.errors import UsageError
from rag.settings import Settings
from ui import render
from ui.app import (
    ParagraphLocator,
    _checked_uploads,
    _message,
    _one_per_name,
    build_app,
    cited_passages,
    documents_table,
    evidence_passages,
    shared_pipeline,
)

INJECTION = '<script>alert("x")</script><img src=x onerror="alert(1)">'


@pytest.fixture(scope="module")
def app(pipeline):
    return build_app(pipeline)


def _blocks_of(app: gr.Blocks, kind: type) -> list:
    return [block for block in app.blocks.values() if isinstance(block, kind)]


def test_build_app_returns_blocks_with_the_four_tabs(app):
    assert isinstance(app, gr.Blocks)
    labels = [str(tab.label) for tab in _blocks_of(app, gr.Tab)]
    assert labels == ["Chat", "Check a claim", "Evaluate", "Documents"]


def test_build_app_only_constructs(app):
    assert not app.is_running


def test_named_api_endpoints_are_public_and_ui_handlers_are_private(app):
    visibility = {fn.api_name: fn.api_visibility for fn in app.fns.values()}
    for name in ("ask", "check", "search", "documents"):
        assert visibility.get(name) == "public", name
    public = {name for name, seen in visibility.items() if seen == "public"}
    assert public == {"ask", "check", "search", "documents"}


def test_the_served_pipeline_is_loaded_once_per_process(pipeline):
    first = shared_pipeline(pipeline.settings)
    assert shared_pipeline(pipeline.settings) is first


def test_queue_concurrency_is_bounded_by_the_settings(app, pipeline):
    assert app._queue.default_concurrency_limit == pipeline.settings.max_concurrency


def test_settings_controls_carry_help_from_the_settings_object(app, pipeline):
    from rag.settings import Settings

    infos = {str(block.label): block.info for block in _blocks_of(app, gr.Dropdown) + _blocks_of(app, gr.Slider)}
    assert infos["Backend"] == Settings.help("backend")
    assert infos["Passages retrieved (top-k)"] == Settings.help("top_k")


def test_documents_table_lists_the_indexed_article(pipeline):
    rows = documents_table(pipeline)
    assert [row[0] for row in rows] == list(pipeline.index.documents)
    assert rows[0][2] == "2026-03-06" and rows[0][3] > 0


def test_cited_passage_is_the_paragraph_around_the_citation(pipeline, article_text):
    answer = pipeline.ask("Who replaced Qassem Soleimani?").to_json()
    passages = cited_passages(pipeline, ParagraphLocator(pipeline), answer)
    assert passages and len(passages) == len(answer["citations"])
    for passage, citation in zip(passages, answer["citations"], strict=True):
        assert passage.paragraph[passage.start : passage.end] == citation["text"]
        assert passage.paragraph in article_text and "\n\n" not in passage.paragraph.strip()
        assert len(passage.paragraph) >= len(citation["text"])


def test_evidence_passages_highlight_the_checked_span(pipeline):
    result = pipeline.check("Soleimani's replacement, Esmail Ghaani, lacks the same stature.").to_json()
    passages = evidence_passages(pipeline, ParagraphLocator(pipeline), result)
    assert passages
    for passage, evidence in zip(passages, result["passages"], strict=True):
        assert passage.paragraph[passage.start : passage.end] == evidence["text"]


# ---------------------------------------------------------------------------------------------- rendering


def _answer(text: str, short: str | None = None, abstained: bool = False) -> dict:
    return {
        "question": "q",
        "answer": text,
        "abstained": abstained,
        "short_answer": short,
        "citations": [{"n": 1, "source": INJECTION, "start": 0, "end": 5, "text": INJECTION, "verdict": "supported",
                       "reason": INJECTION}],
        "checks": [{"sentence": f"{INJECTION} [1]", "cited": [1], "verdict": "partial", "reason": INJECTION}],
        "warnings": [INJECTION],
    }


def _assert_no_markup_from(text: str, html: str) -> None:
    assert "<script" not in html and "<img" not in html and "onerror=\"" not in html
    assert "&lt;script&gt;" in html, "the injected text should still be shown, as text"
    assert text  # the injected text was really used


def test_answer_message_escapes_answer_and_short_answer():
    html = render.answer_message(_answer(f"{INJECTION} says [1].", short=INJECTION), turn=3)
    _assert_no_markup_from(INJECTION, html)
    assert render.chip_class(3, 1) in html
    assert "\n" not in html, "a one-line HTML block keeps the chatbot's Markdown away from the text"


def test_answer_message_turns_markers_into_chips_and_emphasises_the_short_answer():
    answer = _answer("Esmail Ghaani replaced him [1].", short="Esmail Ghaani")
    html = render.answer_message(answer, turn=0)
    assert "[1]" not in html
    assert re.search(r'class="rag-chip rag-chip-supported rag-cite-0-1"[^>]*>1</span>', html)
    assert "<strong>Esmail Ghaani</strong> replaced him" in html
    assert 'class="rag-short"' in html


def test_abstention_is_a_neutral_notice_not_an_error():
    html = render.answer_message(_answer("The article does not say.", abstained=True), turn=0)
    assert "rag-notice" in html and "error" not in html
    assert "rag-chip" not in html


def test_a_question_naming_nothing_says_so_instead_of_blaming_the_passages():
    from rag.answer.base import NOTHING_ASKED

    answer = {**_answer(NOTHING_ASKED, abstained=True), "citations": [], "checks": [], "warnings": []}
    assert NOTHING_ASKED in render.answer_message(answer, turn=0)
    panel = render.sources_panel(answer, [], turn=0)
    assert "Nothing was searched" in panel and "No retrieved passage" not in panel


def test_markers_without_a_citation_are_dropped():
    html = render.answer_message(_answer("Claim [7]."), turn=0)
    assert "[7]" not in html and "rag-cite-0-7" not in html


def test_sources_panel_escapes_everything_and_highlights_the_cited_sentence():
    passage = render.CitedPassage(1, INJECTION, INJECTION, INJECTION, f"Before. {INJECTION} After.", 8,
                                  8 + len(INJECTION), "supported", INJECTION)
    html = render.sources_panel(_answer(f"{INJECTION} [1]"), [passage], turn=0, selected=1)
    _assert_no_markup_from(INJECTION, html)
    assert '<mark class="rag-cited">&lt;script&gt;' in html
    assert "rag-source-selected" in html and "rag-badge-supported" in html and "rag-badge-partial" in html


def test_article_view_escapes_the_document_and_marks_the_span():
    text = f"Title\n\n{INJECTION} The cited sentence. Tail."
    start = text.index("The cited")
    html = render.article_view(INJECTION, "2026-03-06", text, start, start + len("The cited sentence."), INJECTION)
    _assert_no_markup_from(INJECTION, html)
    assert '<mark class="rag-cited" id="rag-article-mark">The cited sentence.</mark>' in html


def test_check_result_escapes_claim_reason_and_passages():
    result = {"claim": INJECTION, "verdict": "unsupported", "reason": INJECTION, "passages": []}
    passage = render.EvidencePassage(INJECTION, INJECTION, f"x {INJECTION}", 2, 2 + len(INJECTION), 0.5)
    html = render.check_result(result, [passage])
    _assert_no_markup_from(INJECTION, html)
    assert "rag-badge-unsupported" in html


def test_check_result_does_not_call_passages_that_state_nothing_of_the_claim_closest():
    result = {"claim": "The ferry runs every hour.", "verdict": "unsupported", "reason": "r", "passages": []}
    far = [render.EvidencePassage("a.txt", "A", "Unrelated text.", 0, 9, 0.001)]
    assert "No passage comes close" in render.check_result(result, far) and "states it: 0%" in \
        render.check_result(result, far)
    near = [render.EvidencePassage("a.txt", "A", "The ferry runs.", 0, 9, 0.79)] + far
    html = render.check_result(result, near)
    assert "Closest passages" in html and "states it: 79%" in html


def test_a_supported_verdict_the_word_level_check_disputes_is_shown_as_disputed():
    """Testers read the green badge and missed the reason's "though the word-level check says: negation differs"."""
    from rag.claims import DISPUTED

    far = [render.EvidencePassage("a.txt", "A", "He said it.", 0, 5, 0.001)]
    disputed = {"claim": "c", "verdict": "supported", "passages": [],
                "reason": f"judged to state it as a whole (90% ...), {DISPUTED} negation differs"}
    html = render.check_result(disputed, far)
    assert "rag-badge-supported" in html and ">disputed</span>" in html and "rag-reason-disputed" in html
    assert "Closest passages" in html  # a verdict other than unsupported found something: not "none comes close"
    plain = render.check_result({**disputed, "reason": "quote found"}, far)
    assert "disputed" not in plain and "rag-reason-disputed" not in plain
    # a quote found but given another speaker: its passage does come close
    other = {"claim": "c", "verdict": "unsupported", "passages": [],
             "reason": "quote found, but the article attributes it to A.J., not Khazali"}
    assert "Closest passages" in render.check_result(other, far)


def test_status_and_streaming_messages_escape():
    _assert_no_markup_from(INJECTION, render.status_line(INJECTION))
    _assert_no_markup_from(INJECTION, render.streaming_message(INJECTION))
    _assert_no_markup_from(INJECTION, render.question_message(INJECTION))
    assert render.status_line("") == ""


def test_unknown_verdicts_get_a_neutral_badge():
    assert "rag-badge-neutral" in render.badge('"><script>')
    assert "<script>" not in render.badge('"><script>')


def test_highlight_clamps_offsets():
    assert render.highlight("abc", -5, 99) == '<mark class="rag-cited">abc</mark>'
    assert render.highlight("abc", 2, 1) == 'a<mark class="rag-cited">b</mark>c'


def test_chip_class_round_trips():
    assert render.parse_chip_class(render.chip_class(12, 3)) == (12, 3)
    assert render.parse_chip_class("rag-cite-1-x") is None
    assert render.parse_chip_class("") is None


# ---------------------------------------------------------------------------------------------- uploads


def test_upload_limits(pipeline, tmp_path):
    settings = pipeline.settings.model_copy(update={"max_uploads": 2, "max_file_mb": 0.001})
    small = [tmp_path / f"{name}.txt" for name in "abc"]
    for path in small:
        path.write_text("A short note.", encoding="utf-8")
    with pytest.raises(UsageError, match="choose"):
        _checked_uploads([], settings)
    with pytest.raises(UsageError, match="at most 2"):
        _checked_uploads([str(p) for p in small], settings)
    big = tmp_path / "big.txt"
    big.write_text("x" * 2000, encoding="utf-8")
    with pytest.raises(UsageError, match="larger than"):
        _checked_uploads([str(big)], settings)
    exe = tmp_path / "tool.exe"
    exe.write_bytes(b"MZ")
    with pytest.raises(UsageError, match="unsupported type"):
        _checked_uploads([str(exe)], settings)
    assert _checked_uploads([str(p) for p in small[:2]], settings) == small[:2]


def test_the_upload_list_holds_each_file_name_once(tmp_path):
    first, again, other = (str(tmp_path / "1" / "note.txt"), str(tmp_path / "2" / "note.txt"),
                           str(tmp_path / "1" / "other.md"))
    assert _one_per_name([first, other, again]) == [again, other]  # the latest choice, in the first one's place
    assert _one_per_name([first, other]) == [first, other]
    assert _one_per_name(None) is None and _one_per_name([]) == []
    for path in (tmp_path / "2" / "note.txt", tmp_path / "1" / "other.md"):
        path.parent.mkdir(exist_ok=True)
        path.write_text("The mayor spoke.\n", encoding="utf-8")
    settings = Settings(_env_file=None)  # the default limits
    assert [str(p) for p in _checked_uploads([first, other, again], settings)] == [again, other]


def test_failures_become_one_line_messages():
    assert _message(UsageError("question is empty")) == "question is empty"
    assert _message(ValueError("boom")).startswith("internal error: ValueError: boom")


@pytest.mark.parametrize(("confidence", "label"), [(0.91, "Confidence: high (91%)"), (0.6, "Confidence: medium (60%)"),
                                                   (0.12, "Confidence: low (12%)")])
def test_answer_shows_its_confidence_as_words_and_a_number(confidence, label):
    """The confidence is a visible label, not only a colour, and is told apart from the verdict badges."""
    html = render.answer_message({**_answer("Esmail Ghaani replaced him [1]."), "confidence": confidence}, turn=0)
    assert label in html and "probability that this answer" in html
    assert "Confidence" not in render.answer_message(_answer("Esmail Ghaani replaced him [1]."), turn=0)


def test_an_llm_answers_confidence_is_labelled_as_the_models_own_check():
    answer = {**_answer("Esmail Ghaani replaced him [1]."), "confidence": 0.8, "backend": "openai-compatible:x"}
    html = render.answer_message(answer, turn=0)
    assert "Confidence: high (80%)" in html and "model's own check" in html and "calibrated on documents" not in html


def test_sources_panel_says_supported_is_not_correct():
    answer = {**_answer("Esmail Ghaani replaced him [1]."),
              "checks": [{"sentence": "Esmail Ghaani replaced him [1].", "cited": [1], "verdict": "supported",
                          "reason": "all content words are in the cited span"}]}
    html = render.sources_panel(answer, [], turn=0)
    assert "not that it answers the question" in html
