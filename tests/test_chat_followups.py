"""Follow-ups where users meet them: the /ask API's history, the `rag chat` REPL, and the chat's rendering of
the rewritten question, the 'model is reading' notice and attributed citations."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from ui import render


def test_user_message_shows_the_rewritten_question_escaped():
    html = render.question_message("What does he lack?", "What does <b>Esmail Ghaani</b> lack?")
    assert "Searched for: What does &lt;b&gt;Esmail Ghaani&lt;/b&gt; lack?" in html
    assert "Searched for" not in render.question_message("Who replaced Qassem Soleimani?")


def test_reading_notice_and_attributed_chips():
    assert "The model is reading 9 passages… 12 s" in render.reading_message(9, 12.4)
    answer = {"answer": "Ghaani replaced him. [1] He lacks stature. [2]", "citations": [
        {"n": 1, "verdict": "supported", "origin": "model"},
        {"n": 2, "verdict": "supported", "origin": "attributed"}]}
    html = render.answer_message(answer, 0)
    assert 'class="rag-chip rag-chip-supported rag-cite-0-1"' in html
    assert 'class="rag-chip rag-chip-supported rag-cite-0-2 rag-chip-attributed"' in html
    assert render.parse_chip_class("rag-cite-0-2") == (0, 2)


@pytest.fixture(scope="module")
def client(pipeline):
    from gradio_client import Client

    from ui.app import build_app, start

    settings = pipeline.settings.model_copy(update={"host": "127.0.0.1", "port": 0, "auth": None})
    app = build_app(pipeline)
    _, url, _ = start(app, settings, block=False, quiet=True)
    yield Client(url, verbose=False, download_files=False)
    app.close()


def test_api_ask_takes_a_history(client):
    first = client.predict("Who replaced Qassem Soleimani?", api_name="/ask")
    follow = client.predict("What does he lack?", "", 0, [first], api_name="/ask")
    assert follow["question"] == "What does he lack?"
    assert follow["standalone_question"] == "What does Esmail Ghaani lack?"
    assert "stature" in follow["answer"]
    pairs = client.predict("What does he lack?", "", 0, [["Who replaced Qassem Soleimani?", first["answer"]]],
                           api_name="/ask")
    assert pairs["standalone_question"] == "What does Esmail Ghaani lack?"
    alone = client.predict("What does he lack?", api_name="/ask")
    assert alone["standalone_question"] is None
    with pytest.raises(Exception, match="history"):
        client.predict("What does he lack?", "", 0, ["not a turn"], api_name="/ask")


def test_api_abstains_on_a_question_naming_nothing_unless_the_history_gives_it_content(client):
    from rag.answer.base import NOTHING_ASKED

    alone = client.predict("Who?", api_name="/ask")
    assert alone["abstained"] and alone["confidence"] == 0 and alone["answer"] == NOTHING_ASKED
    first = client.predict("Who replaced Qassem Soleimani?", api_name="/ask")
    follow = client.predict("Who?", "", 0, [first], api_name="/ask")
    assert follow["standalone_question"] and follow["answer"] != NOTHING_ASKED


@pytest.mark.slow
def test_rag_chat_rewrites_follow_ups(pipeline, rag_executable, tmp_path):
    settings = pipeline.settings
    env = os.environ | {"RAG_CORPUS_DIR": str(settings.corpus_dir), "RAG_INDEX_DIR": str(settings.index_dir)}
    lines = "Who replaced Qassem Soleimani?\nWhat does he lack?\n/reset\nWhat does he lack?\n"
    result = subprocess.run([rag_executable, "chat", "--json"], input=lines, env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [a["standalone_question"] for a in answers] == [None, "What does Esmail Ghaani lack?", None]
    assert "stature" in answers[1]["answer"]
    text = subprocess.run([rag_executable, "chat"], input=lines, env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert "(searching for: What does Esmail Ghaani lack?)" in text.stdout
    assert "(new conversation)" in text.stdout


def test_chat_tab_rewrites_follow_ups_and_shows_the_rewritten_question(pipeline):
    from ui.app import build_app

    app = build_app(pipeline)
    ask_in_chat = next(f.fn for f in app.fns.values() if getattr(f.fn, "__name__", "") == "ask_in_chat")
    *_, first = ask_in_chat("Who replaced Qassem Soleimani?", [], [], "extractive", 5)
    chat, answered = first[0], first[1]
    *_, second = ask_in_chat("What does he lack?", chat, answered, "extractive", 5)
    chat, answered = second[0], second[1]
    assert answered[1]["standalone_question"] == "What does Esmail Ghaani lack?"
    assert "Searched for: What does Esmail Ghaani lack?" in chat[-2]["content"]  # under the user's question
    assert "stature" in chat[-1]["content"]
