"""LLM backends against the loopback OpenAI stub: the first-token and idle limits that replace one total
timeout, the 'reading the passages' progress events, prompt_tokens from the server's usage report, and a
prompt whose prefix stays the same from one request to the next (a server's prompt cache reuses it)."""

from __future__ import annotations

import re

import pytest

from rag.answer import Reading, create_backend
from rag.answer.llm import build_messages
from rag.errors import BackendError
from rag.settings import Settings
from tests.openai_stub import OpenAIStub

ANSWER = "Esmail Ghaani replaced Qassem Soleimani, whose killing Trump ordered, as the coordinator of the militias [1]."


def _backend(pipeline, url: str, spec: str, **limits):
    settings = pipeline.settings.model_copy(update=limits)
    backend = create_backend(f"openai-compatible:{url}#tiny", settings, pipeline.index, pipeline.embedder)
    pipeline.use_backend(backend, spec=spec)
    return spec


def test_timeout_settings_map_the_former_single_timeout(monkeypatch):
    for name in ("RAG_LLM_TIMEOUT", "RAG_LLM_FIRST_TOKEN_TIMEOUT", "RAG_LLM_IDLE_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    defaults = Settings()
    assert (defaults.first_token_timeout, defaults.idle_timeout) == (120.0, 30.0)
    monkeypatch.setenv("RAG_LLM_TIMEOUT", "45")
    assert (Settings().first_token_timeout, Settings().idle_timeout) == (45.0, 45.0)
    monkeypatch.setenv("RAG_LLM_IDLE_TIMEOUT", "10")
    assert (Settings().first_token_timeout, Settings().idle_timeout) == (45.0, 10.0)


@pytest.mark.slow  # waits for a 1 s limit to run out, by design
def test_no_first_token_in_time_is_a_clear_error(pipeline):
    with OpenAIStub(ANSWER, first_token_delay=3.0) as server:
        spec = _backend(pipeline, server.url, "slow-first-token", llm_first_token_timeout=0.6, llm_idle_timeout=5.0)
        with pytest.raises(BackendError, match=r"timed out: sent no first token within 0.6 s "
                                               r"\(RAG_LLM_FIRST_TOKEN_TIMEOUT.*--backend extractive"):
            pipeline.ask("Who replaced Qassem Soleimani?", backend=spec)


@pytest.mark.slow  # waits for a 1 s limit to run out, by design
def test_a_stalled_stream_is_a_clear_error(pipeline):
    with OpenAIStub(ANSWER, chunk_delay=1.5) as server:
        spec = _backend(pipeline, server.url, "stalling", llm_first_token_timeout=5.0, llm_idle_timeout=0.5)
        with pytest.raises(BackendError, match=r"stalled for 0.5 s between two tokens \(RAG_LLM_IDLE_TIMEOUT\)"):
            pipeline.ask("Who replaced Qassem Soleimani?", backend=spec)


@pytest.mark.slow
def test_a_slow_reader_and_a_long_steady_answer_are_fine(pipeline):
    """The first token after 1.2 s and 1.8 s of streaming: both longer than the idle limit, neither a stall."""
    with OpenAIStub(ANSWER, first_token_delay=1.2, chunk_delay=0.12) as server:
        spec = _backend(pipeline, server.url, "slow-steady", llm_first_token_timeout=4.0, llm_idle_timeout=0.6)
        pieces = list(pipeline.ask_stream("Who replaced Qassem Soleimani?", backend=spec, progress=True))
    readings = [p for p in pieces if isinstance(p, Reading)]
    assert readings and readings[0].passages > 0  # "the model is reading N passages" while it waits
    answer = pieces[-1]
    assert not answer.abstained and "Ghaani" in answer.answer
    assert answer.timings_ms["first_token"] >= 1000
    # Without progress=True no Reading event reaches the caller.
    with OpenAIStub(ANSWER, first_token_delay=1.2) as server:
        spec = _backend(pipeline, server.url, "slow-quiet", llm_first_token_timeout=4.0)
        assert not [p for p in pipeline.ask_stream("Who replaced Qassem Soleimani?", backend=spec)
                    if isinstance(p, Reading)]


def test_prompt_tokens_come_from_the_servers_usage_report(pipeline):
    with OpenAIStub(ANSWER, prompt_tokens=612) as server:
        spec = _backend(pipeline, server.url, "usage")
        answer = pipeline.ask("Who replaced Qassem Soleimani?", backend=spec)
        assert server.requests[0]["stream_options"] == {"include_usage": True}
    assert answer.prompt_tokens == 612 and answer.to_json()["prompt_tokens"] == 612


def test_prompt_tokens_are_counted_by_the_servers_tokenizer_when_it_reports_no_usage(pipeline):
    """llama-cpp-python's server streams no usage: the prompt is counted with its /extras/tokenize/count
    (the stub counts words), plus the ChatML framing of the four messages."""
    with OpenAIStub(ANSWER) as server:
        spec = _backend(pipeline, server.url, "count")
        answer = pipeline.ask("Who replaced Qassem Soleimani?", backend=spec)
        messages = server.requests[0]["messages"]
    assert server.tokenized == [m["content"] for m in messages]
    assert answer.prompt_tokens == sum(len(m["content"].split()) for m in messages) + 5 * 4 + 3


def test_prompt_prefix_is_stable_and_passages_are_focused(pipeline):
    """Everything but the last message is identical across questions; passages are a few sentences (the
    nearest the question, each with the sentence before it), in document order."""
    backend = pipeline.backend("openai-compatible:http://127.0.0.1:9/v1#tiny")
    first = pipeline.prepare("Who replaced Qassem Soleimani?", backend)
    second = pipeline.prepare("How many fighters does the Popular Mobilization Forces have?", backend)
    a, b = build_messages(first), build_messages(second)
    assert [m.content for m in a[:-1]] == [m.content for m in b[:-1]]
    assert len(a) == 4 and a[2].type == "ai" and re.search(r"\[\d\]", a[2].content)  # the worked example
    for request, needle in ((first, "Esmail Ghaani"), (second, "150,000-strong")):
        ids = [s.id for s in request.passages]
        assert ids == sorted(ids) and len(ids) <= 2 * pipeline.settings.llm_sentences
        assert any(needle in s.text for s in request.passages)
    extractive = pipeline.prepare("Who replaced Qassem Soleimani?", pipeline.backend("extractive"))
    assert len(first.passages) < len(extractive.passages)
