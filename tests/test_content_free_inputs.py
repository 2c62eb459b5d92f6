"""Inputs that state or name nothing, and follow-ups whose rewrite passes the length limit: regressions from a
tester's session, through the real pipeline (real model, real index) and the real ``rag`` command."""

from __future__ import annotations

import pytest

from rag.errors import UsageError
from tests.test_bad_inputs import home  # noqa: F401  (module fixture: private corpus and index copies)
from tests.test_cli import assert_one_line_error


@pytest.mark.parametrize("claim", ["x", "Iran", "He said.", "1", "?!"])
def test_a_claim_that_states_nothing_is_refused_not_called_supported(pipeline, claim):
    # "x" matched "statement on X" and was SUPPORTED, "verbatim in the cited passage".
    with pytest.raises(UsageError, match="claim states nothing to check"):
        pipeline.check(claim)


def test_a_two_word_claim_is_still_checked(pipeline):
    assert pipeline.check("Soleimani was killed").verdict in ("supported", "partial", "unsupported")


@pytest.mark.parametrize("query", ["?!", "-", "the", "Who?"])
def test_a_search_that_names_nothing_is_refused(pipeline, query):
    # "?!" returned five ranked hits: noise presented as results.
    with pytest.raises(UsageError, match="query names nothing to look for"):
        pipeline.search(query)


def test_content_free_check_and_search_are_one_line_usage_errors(home):  # noqa: F811
    assert_one_line_error(home.run("check", "x"), 2, "claim states nothing to check")
    assert_one_line_error(home.run("search", "?!"), 2, "query names nothing to look for")


def test_a_follow_up_under_the_limit_is_answered_even_when_its_rewrite_is_over_it(pipeline):
    """The limit is on what the user typed: "When did Israel kill Hassan Nasrallah?" then a 1,990-character
    question was refused as 2,004 characters, the length of its rewrite with the conversation's names."""
    limit = pipeline.settings.max_question_chars
    first = pipeline.ask("When did Israel kill Hassan Nasrallah?")
    history = [{"question": first.question, "answer": first.answer}]
    follow_up = ("And what did he say about it " * 200)[: limit - 10].rstrip() + "?"
    assert len(follow_up) <= limit
    answer = pipeline.ask(follow_up, history=history)
    assert answer.question == follow_up
    assert answer.standalone_question is None or len(answer.standalone_question) <= limit
