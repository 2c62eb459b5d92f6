"""A question with no content word ("Who?", "When?", "the") is not answered from the corpus: every entry point
(``rag ask``, ``--json``, the API, the app) goes through ``Pipeline.ask_stream``, which abstains with a note and
confidence 0 before retrieval. A chat follow-up is checked after it is rewritten, so "And when?" still answers
when the conversation gives it content."""

from __future__ import annotations

import pytest

from rag.answer.base import NOTHING_ASKED, AnswerBackend
from rag.answer.question import names_nothing


@pytest.mark.parametrize("question", ["Who", "Who?", "When?", "the", "  ?! ", "And why?", "What did he say?",
                                      "Is it?", "How about them?"])
def test_questions_that_name_nothing(question):
    assert names_nothing(question)


@pytest.mark.parametrize("question", ["Who replaced Qassem Soleimani?", "Erbil?", "2019?", "What happened?",
                                      "How many militias are there?", "When (Qais al-Khazali)?"])
def test_questions_that_name_something(question):
    assert not names_nothing(question)


class _Untouchable(AnswerBackend):
    """A backend that must not be asked (nothing is retrieved or answered for a contentless question)."""

    name = "untouchable"

    def execute(self, request):
        raise AssertionError(f"the backend was asked {request.question!r}")


def test_the_backend_is_never_asked(fake_pipeline):
    fake_pipeline.use_backend(_Untouchable(), spec="untouchable")
    try:
        pieces = list(fake_pipeline.ask_stream("Who?", backend="untouchable"))
    finally:
        fake_pipeline.forget_backend("untouchable")
    assert pieces[0] == NOTHING_ASKED
    answer = pieces[-1]
    assert answer.abstained and answer.confidence == 0.0 and answer.backend == "untouchable"


# ------------------------------------------------------------------ the real model on the bundled article


@pytest.mark.parametrize("question", ["Who?", "the"])
def test_contentless_questions_abstain_with_confidence_zero(pipeline, question):
    answer = pipeline.ask(question)
    assert answer.abstained
    assert answer.confidence == 0.0
    assert answer.answer == NOTHING_ASKED
    assert answer.citations == [] and answer.short_answer is None and answer.hits == []
    record = answer.to_json()
    assert record["abstained"] is True and record["confidence"] == 0.0 and record["question"] == question


def test_an_ordinary_question_still_answers(pipeline):
    answer = pipeline.ask("Who replaced Qassem Soleimani?")
    assert not answer.abstained
    assert answer.confidence > 0.3
    assert "Ghaani" in answer.answer


def test_follow_ups_are_checked_after_rewriting(pipeline):
    history = [{"question": "What did Qais al-Khazali say?",
                "answer": "Qais al-Khazali, a US-sanctioned commander whose militia's banners were raised by the "
                          "protesters, issued an anodyne statement on X condemning the US.",
                "short_answer": "anodyne statement"}]
    answer = pipeline.ask("And when?", history=history)
    assert answer.standalone_question == "When did Qais al-Khazali say it?"
    assert answer.answer != NOTHING_ASKED and answer.confidence > 0
    # Without a conversation to lean on, the same words name nothing.
    alone = pipeline.ask("And when?")
    assert alone.abstained and alone.confidence == 0.0 and alone.standalone_question is None


def test_the_cli_shows_the_note(pipeline, capsys):
    from rag.cli import _print_answer

    _print_answer(pipeline.ask("When?"))
    out = capsys.readouterr().out
    assert NOTHING_ASKED in out
    assert "retrieved passages do not contain it" not in out and "confidence" not in out
    # (the app's rendering of it: tests/test_ui.py)
