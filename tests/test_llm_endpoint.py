"""The LLM backend against a real HTTP server on loopback that speaks the OpenAI chat protocol.

The server is a stub (tests/openai_stub.py), not a model: it answers with scripted text. What is real is
everything on our side: the backend factory, LangChain's ChatOpenAI client, streaming over SSE, timeouts,
the prompt files, marker parsing and verification.
"""

from __future__ import annotations

import re

import pytest

from rag.answer import NO_ANSWER
from rag.errors import BackendError
from tests.openai_stub import OpenAIStub


def answer_citing(pattern: str, template: str):
    """A reply function: find the passage number whose text contains ``pattern`` in the prompt."""

    def reply(body: dict) -> str:
        prompt = body["messages"][-1]["content"]
        n = next(m.group(1) for m in re.finditer(r"^\[(\d+)\] (.*)$", prompt, re.M) if pattern in m.group(2))
        return template.format(n=n)

    return reply


def test_openai_compatible_endpoint_streams_a_cited_answer(pipeline):
    with OpenAIStub(answer_citing("Esmail Ghaani", "Soleimani was replaced by Esmail Ghaani [{n}].")) as server:
        spec = f"openai-compatible:{server.url}#tiny-model"
        pieces = list(pipeline.ask_stream("Who replaced Qassem Soleimani?", backend=spec))
    answer = pieces[-1]
    assert len(pieces) > 3  # streamed in several pieces before the final answer
    assert answer.backend == spec and not answer.abstained
    assert answer.answer == "Soleimani was replaced by Esmail Ghaani [1]."
    citation = answer.citations[0]
    assert "Esmail Ghaani" in citation.text
    assert citation.text == pipeline.index.documents[citation.source].text[citation.start : citation.end]
    assert answer.checks[0].verdict == "supported"
    request = server.requests[0]
    assert request["model"] == "tiny-model" and request["stream"] is True and request["temperature"] == 0.0
    system, user = request["messages"][0]["content"], request["messages"][-1]["content"]
    assert NO_ANSWER in system and "<passages-" in user and "Question: Who replaced Qassem Soleimani?" in user


def test_endpoint_no_answer_phrase_is_an_abstention(pipeline):
    with OpenAIStub(NO_ANSWER) as server:
        answer = pipeline.ask("How old is A.J.?", backend=f"openai-compatible:{server.url}")
    assert answer.abstained and answer.answer == NO_ANSWER and answer.citations == []


def test_endpoint_misquote_is_flagged(pipeline):
    reply = answer_citing("Everything changed", 'Fahs said "nothing changed after Nasrallah was killed" [{n}].')
    with OpenAIStub(reply) as server:
        answer = pipeline.ask("What did Mustafa Fahs say about Nasrallah?", backend=f"openai-compatible:{server.url}")
    assert answer.checks[0].verdict == "unsupported"
    assert "not found verbatim" in answer.checks[0].reason


@pytest.mark.slow
def test_slow_endpoint_times_out_with_a_clear_error(pipeline):
    settings = pipeline.settings.model_copy(update={"llm_timeout": 0.5})
    from rag.answer import create_backend

    with OpenAIStub("too late [1].", delay=3.0) as server:
        backend = create_backend(f"openai-compatible:{server.url}", settings, pipeline.index, pipeline.embedder)
        pipeline.use_backend(backend, spec="slow-endpoint")
        with pytest.raises(BackendError, match=r"timed out.*--backend extractive"):
            pipeline.ask("Who is A.J.?", backend="slow-endpoint")


def test_ollama_backend_streams_from_ollama_host(pipeline, monkeypatch):
    from tests.openai_stub import OllamaStub

    with OllamaStub("The article does not say.") as server:
        monkeypatch.setenv("OLLAMA_HOST", server.host)
        pipeline.forget_backend("ollama:llama3.1")
        answer = pipeline.ask("How old is A.J.?", backend="ollama:llama3.1")
    assert answer.backend == "ollama:llama3.1" and answer.abstained
    assert server.requests[0]["model"] == "llama3.1"


def test_an_answer_the_models_own_check_rejects_is_withdrawn(pipeline):
    """The answer streams, then a one-token check request asks whether the cited passage says what the
    question asks; below RAG_LLM_MIN_CHECK the final answer is an abstention that says why."""
    reply = answer_citing("Esmail Ghaani", "Esmail Ghaani leads the Quds Force [{n}].")
    with OpenAIStub(reply, check=0.2) as server:
        pieces = list(pipeline.ask_stream("How old is Esmail Ghaani?", backend=f"openai-compatible:{server.url}"))
    answer = pieces[-1]
    assert "".join(p for p in pieces if isinstance(p, str)).startswith("Esmail Ghaani leads")  # it was streamed
    assert answer.abstained and answer.answer == NO_ANSWER and answer.citations == []
    assert answer.confidence == pytest.approx(0.2, abs=1e-6)
    assert any("withdrawn" in w and "RAG_LLM_MIN_CHECK" in w for w in answer.warnings)
    (check,) = server.checks
    user = check["messages"][-1]["content"]
    assert "Esmail Ghaani" in user and "Question: How old is Esmail Ghaani?" in user
    assert check["max_tokens"] == 1 and check["logprobs"] is True


def test_an_answer_the_check_accepts_keeps_its_citations_and_gets_the_checks_confidence(pipeline):
    reply = answer_citing("Esmail Ghaani", "Soleimani was replaced by Esmail Ghaani [{n}].")
    with OpenAIStub(reply, check=0.9) as server:
        answer = pipeline.ask("Who replaced Qassem Soleimani?", backend=f"openai-compatible:{server.url}")
    assert not answer.abstained and answer.checks[0].verdict == "supported"
    assert answer.confidence == pytest.approx(0.9, abs=1e-6)


def test_no_check_for_an_abstention_or_when_switched_off(pipeline):
    with OpenAIStub(NO_ANSWER, check=0.9) as server:
        assert pipeline.ask("How old is A.J.?", backend=f"openai-compatible:{server.url}").abstained
    assert server.checks == []
    from rag.answer import create_backend

    settings = pipeline.settings.model_copy(update={"llm_answer_check": False})
    reply = answer_citing("Esmail Ghaani", "Esmail Ghaani leads the Quds Force [{n}].")
    with OpenAIStub(reply, check=0.1) as server:
        backend = create_backend(f"openai-compatible:{server.url}", settings, pipeline.index, pipeline.embedder)
        pipeline.use_backend(backend, spec="unchecked-endpoint")
        answer = pipeline.ask("Who replaced Qassem Soleimani?", backend="unchecked-endpoint")
    assert not answer.abstained and answer.confidence is None and server.checks == []


def test_a_check_that_gets_no_yes_or_no_keeps_the_answer_unchecked(pipeline):
    reply = answer_citing("Esmail Ghaani", "Soleimani was replaced by Esmail Ghaani [{n}].")
    with OpenAIStub(reply) as server:  # the stub answers the check with "?"
        answer = pipeline.ask("Who replaced Qassem Soleimani?", backend=f"openai-compatible:{server.url}")
    assert len(server.checks) == 1 and not answer.abstained and answer.confidence is None
