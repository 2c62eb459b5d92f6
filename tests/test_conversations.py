"""Follow-up questions over the bundled article with the extractive backend: eval/conversations.jsonl (14
conversations of two and three turns, 18 follow-ups), each follow-up asked with the system's own earlier
answers as history, rewritten by carrying over entities (rag.answer.followup).

Measured with the shipped answer model on 2026-12-07: 16 of 18 follow-ups answered (88.9 %); asked without
history the same follow-ups score 16 of 18 too: on one article, content words ("stronghold", "spokesman")
retrieve the answer even next to an unresolved "he", and the answerer weighs the names a question holds, so a
rewrite naming "Qais al-Khazali" can cost the sentence that calls him "he" (the pipeline then lets the user's
own wording answer over the same passages). The misses: c03.3 is rewritten right but the answerer picks
another sentence; c12.2 ("What did the embassy assault trigger?") names nothing, is long enough to be taken as
standalone, and gets the sentence before the answer. The threshold sits just under the measured share, not at
100 %."""

from __future__ import annotations

import pytest

from rag.eval.conversations import load_conversations, run_conversations

MEASURED_FOLLOWUPS = 16 / 18


@pytest.fixture(scope="module")
def report(pipeline):
    return run_conversations(pipeline, load_conversations())


def test_conversation_set_is_large_enough():
    conversations = load_conversations()
    assert len(conversations) >= 10
    assert all(2 <= len(c["turns"]) <= 3 for c in conversations)


def test_follow_ups_are_answered(report):
    metrics = report["metrics"]
    assert metrics["followups"] == 18
    assert metrics["accuracy_followups"] >= MEASURED_FOLLOWUPS - 0.06, metrics  # 15 of 18 or better
    assert metrics["rewritten_followups"] >= 15  # every follow-up but the few that name their own entity


def test_rewritten_question_is_shown_and_retrieved(report):
    by_turn = {(r["id"], r["turn"]): r for r in report["results"]}
    assert by_turn[("c01", 2)]["standalone_question"] == "What does Esmail Ghaani lack?"
    assert by_turn[("c02", 2)]["standalone_question"] == "How big is Popular Mobilization Forces' annual budget?"
    assert by_turn[("c14", 2)]["standalone_question"] == "When did Israel kill Qassem Soleimani?"
    assert by_turn[("c01", 2)]["correct"] and by_turn[("c02", 2)]["correct"]


def test_a_conversation_set_over_other_documents_is_asked_of_a_corpus_of_them(tmp_path, capsys):
    """``--documents``: the conversations' own documents as a temporary corpus (eval/conversations-other.jsonl,
    72 conversations over 18 documents of eval/dev); each labelled follow-up says whether the question asked
    named what it points back to."""
    import json

    from rag.eval.conversations import main

    others = load_conversations("eval/conversations-other.jsonl")
    assert len(others) == 72 and len({c["document"] for c in others}) == 18
    assert all(t.get("refers_to") for c in others for t in c["turns"][1:])
    nile = [c for c in others if c["document"] == "enc-nile-river.txt"][:1]
    subset = tmp_path / "nile.jsonl"
    subset.write_text("".join(json.dumps(c) + "\n" for c in nile), encoding="utf-8")
    assert main(["--conversations", str(subset), "--documents", "eval/dev", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    metrics = report["metrics"]
    assert metrics["followups"] == metrics["followups_with_referent"] == len(nile[0]["turns"]) - 1
    assert {r["referent_named"] for r in report["results"][1:]} <= {True, False}
    assert main(["--conversations", str(subset), "--documents", str(tmp_path)]) == 2  # the document is not there
