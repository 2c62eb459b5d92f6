"""The named API endpoints, called with gradio_client against a real server on a free loopback port."""

from __future__ import annotations

import pytest
from gradio_client import Client

from rag.types import search_json
from ui.app import build_app, start


@pytest.fixture(scope="module")
def server(pipeline):
    """The app over the session pipeline, served on 127.0.0.1 (port 0: any free port)."""
    settings = pipeline.settings.model_copy(update={"host": "127.0.0.1", "port": 0, "auth": None})
    app = build_app(pipeline)
    _, url, _ = start(app, settings, block=False, quiet=True)
    yield url
    app.close()


@pytest.fixture(scope="module")
def client(server):
    return Client(server, verbose=False, download_files=False)


def test_server_binds_loopback(server):
    assert server.startswith("http://127.0.0.1:")


def test_ask_returns_a_cited_answer_whose_spans_are_article_offsets(client, article_text):
    answer = client.predict("Who replaced Qassem Soleimani?", api_name="/ask")
    assert "Ghaani" in answer["answer"]
    assert answer["short_answer"] == "Esmail Ghaani"
    assert not answer["abstained"] and answer["citations"]
    for citation in answer["citations"]:
        assert citation["source"] == "2026-03-06-iran-proxies-iraq.txt"
        assert article_text[citation["start"] : citation["end"]] == citation["text"]
        assert citation["verdict"] == "supported"
    assert any("Ghaani" in c["text"] for c in answer["citations"])
    assert f"[{answer['citations'][0]['n']}]" in answer["answer"]
    assert all(check["verdict"] == "supported" for check in answer["checks"])


def test_ask_accepts_backend_and_k(client):
    answer = client.predict("How many fighters does the Popular Mobilization Forces have?", "extractive", 3,
                            api_name="/ask")
    assert answer["backend"] == "extractive"
    assert "150,000" in answer["answer"]


def test_ask_abstains_on_a_question_the_article_does_not_answer(client):
    answer = client.predict("What is the capital of France?", api_name="/ask")
    assert answer["abstained"] is True
    assert answer["citations"] == []


def test_callers_cannot_pick_a_backend_the_server_did_not_enable(client):
    """An open choice would let any caller make the server send requests to any URL, or spend its API key."""
    with pytest.raises(Exception, match="not enabled on this server"):
        client.predict("Who is A.J.?", "openai-compatible:http://10.0.0.1:8000/v1", 0, api_name="/ask")


def test_ask_reports_user_errors_as_messages(client):
    with pytest.raises(Exception, match="question is empty"):
        client.predict("   ", api_name="/ask")


def test_check_supports_a_quote_with_highlightable_passages(client, article_text):
    result = client.predict("Soleimani's replacement, Esmail Ghaani, lacks the same stature and authority.",
                            api_name="/check")
    assert result["verdict"] == "supported"
    assert result["reason"]
    assert result["passages"]
    for passage in result["passages"]:
        assert article_text[passage["start"] : passage["end"]] == passage["text"]
    assert "Ghaani" in result["passages"][0]["text"]


def test_check_rejects_an_invented_claim(client):
    result = client.predict("The Popular Mobilization Forces have 900,000 fighters in Norway.", api_name="/check")
    assert result["verdict"] != "supported"


def test_search_and_documents_endpoints(client, pipeline, article_text):
    result = client.predict("Popular Mobilization Forces budget", 3, api_name="/search")
    # The shape of `rag search --json` (tests/test_cli.py checks that one): {query, hits}.
    assert set(result) == {"query", "hits"} and result["query"] == "Popular Mobilization Forces budget"
    assert result == search_json("Popular Mobilization Forces budget", pipeline.search("Popular Mobilization Forces budget", 3))
    hits = result["hits"]
    assert len(hits) == 3 and hits[0]["rank"] == 1
    assert all(article_text[h["start"] : h["end"]] == h["text"] for h in hits)
    documents = client.predict(api_name="/documents")
    assert [d["id"] for d in documents] == ["2026-03-06-iran-proxies-iraq.txt"]


@pytest.mark.slow
def test_basic_auth_from_settings(pipeline):
    settings = pipeline.settings.model_copy(update={"host": "127.0.0.1", "port": 0, "auth": "editor:s3cret-pass"})
    app = build_app(pipeline)
    _, url, _ = start(app, settings, block=False, quiet=True)
    try:
        with pytest.raises(Exception):  # noqa: B017 (gradio_client raises different types per version)
            Client(url, verbose=False)
        with pytest.raises(Exception):  # noqa: B017
            Client(url, auth=("editor", "wrong"), verbose=False)
        client = Client(url, auth=("editor", "s3cret-pass"), verbose=False)
        assert client.predict(api_name="/documents")
    finally:
        app.close()
