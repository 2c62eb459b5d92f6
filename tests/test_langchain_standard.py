"""The LangChain retriever passes LangChain's own standard suite (``langchain-tests``'
``RetrieversIntegrationTests``), and behaves like ``rag search``: same validation, same index, k per call.

The standard suite runs on the hashing embedder (it checks the interface, not ranking quality), and once on
the real model; tests/test_retrieval.py checks the real retriever's spans.
"""

from __future__ import annotations

import pytest
from langchain_core.documents import Document as LCDocument
from langchain_tests.integration_tests import RetrieversIntegrationTests

from rag.errors import UsageError
from rag.langchain_retriever import RagRetriever
from tests.conftest import make_fake_pipeline

QUERY = "Who replaced Qassem Soleimani?"


class TestRagRetrieverStandard(RetrieversIntegrationTests):
    """LangChain's standard retriever tests, on a pipeline over the bundled article (hashing embedder)."""

    @pytest.fixture(autouse=True)
    def _use_pipeline(self, fake_pipeline):
        self._pipeline = fake_pipeline

    @property
    def retriever_constructor(self) -> type[RagRetriever]:
        return RagRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"pipeline": self._pipeline}

    @property
    def retriever_query_example(self) -> str:
        return QUERY


@pytest.mark.slow
class TestRagRetrieverStandardRealModel(TestRagRetrieverStandard):
    """The same suite on the real model's pipeline."""

    @pytest.fixture(autouse=True)
    def _use_pipeline(self, pipeline):
        self._pipeline = pipeline


def test_documents_carry_their_chunk_id_and_exact_spans(fake_pipeline, article_text):
    docs = fake_pipeline.as_langchain_retriever().invoke(QUERY, k=4)
    hits = fake_pipeline.search(QUERY, 4)
    assert [d.id for d in docs] == [h.chunk.id for h in hits]
    for doc in docs:
        assert isinstance(doc, LCDocument)
        assert doc.id == doc.metadata["chunk_id"]
        assert article_text[doc.metadata["start"] : doc.metadata["end"]] == doc.page_content


def test_k_at_call_time_overrides_the_constructor_and_the_setting(fake_pipeline):
    assert fake_pipeline.settings.top_k == 5
    assert len(fake_pipeline.as_langchain_retriever().invoke(QUERY)) == 5
    retriever = fake_pipeline.as_langchain_retriever(k=4)
    assert len(retriever.invoke(QUERY)) == 4
    assert len(retriever.invoke(QUERY, k=2)) == 2
    assert [d.id for d in retriever.invoke(QUERY, k=2)] == [d.id for d in retriever.invoke(QUERY)][:2]


@pytest.mark.parametrize("k", [0, -1, 51, 2.5, True, "3"])
def test_k_out_of_range_is_refused(fake_pipeline, k):
    with pytest.raises(UsageError, match="k must be a whole number from 1 to 50"):
        fake_pipeline.as_langchain_retriever().invoke(QUERY, k=k)


def test_constructor_k_out_of_range_is_refused(fake_pipeline):
    with pytest.raises(ValueError, match="k must be a whole number"):
        RagRetriever(pipeline=fake_pipeline, k=0)


@pytest.mark.parametrize("query", ["", "   \n\t", "\x00\x01", "😀", "x" * 2001])
def test_queries_are_validated_like_rag_search(fake_pipeline, query):
    """The retriever refuses exactly what ``Pipeline.search`` (behind ``rag search``) refuses, with the same
    message, instead of embedding an empty or oversized query."""
    with pytest.raises(UsageError) as from_search:
        fake_pipeline.search(query)
    with pytest.raises(UsageError) as from_retriever:
        fake_pipeline.as_langchain_retriever().invoke(query)
    assert str(from_retriever.value) == str(from_search.value)


def test_queries_are_cleaned_like_rag_search(fake_pipeline):
    messy = "  Who replaced\u200b Qassem Soleimani?? !!\n"
    assert [d.id for d in fake_pipeline.as_langchain_retriever().invoke(messy)] == [
        h.chunk.id for h in fake_pipeline.search(messy)
    ]


def test_retriever_follows_documents_added_after_it_was_made(tmp_path):
    pipeline = make_fake_pipeline(tmp_path / "home")
    retriever = pipeline.as_langchain_retriever(k=3)
    query = "zeppelin marmalade observatory"
    assert not any("zeppelin" in d.page_content.lower() for d in retriever.invoke(query))
    note = tmp_path / "zeppelin.txt"
    note.write_text("The zeppelin marmalade observatory opened in Basra on Tuesday.\n", encoding="utf-8")
    pipeline.add_documents([note])
    docs = retriever.invoke(query)
    assert docs[0].metadata["source"] == "zeppelin.txt"
    assert docs[0].id == "zeppelin.txt#0"
