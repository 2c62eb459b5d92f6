"""The hybrid retriever as a LangChain ``BaseRetriever``, for use in users' own chains.

It holds the pipeline, not a retriever: every call goes through ``Pipeline.search``, so a query is cleaned and
refused exactly as ``rag search`` does (empty, over-long, control characters...), and the search runs on the
pipeline's current index, including documents added after the retriever was made. It passes LangChain's
standard ``RetrieversIntegrationTests`` (tests/test_langchain_standard.py).
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field, field_validator

from rag.errors import UsageError


def _checked_k(k: Any) -> int:
    """``k`` held to RAG_TOP_K's range, as ``rag search --k`` is (a bool, a fraction or 0 is refused)."""
    from rag.settings import Settings

    field = Settings.model_fields["top_k"]
    low = next(rule.ge for rule in field.metadata if hasattr(rule, "ge"))
    high = next(rule.le for rule in field.metadata if hasattr(rule, "le"))
    if isinstance(k, bool) or not isinstance(k, int) or not low <= k <= high:
        raise UsageError(f"k must be a whole number from {low} to {high}, got {k!r}")
    return k


class RagRetriever(BaseRetriever):
    """Returns chunks as LangChain Documents: ``id`` is the chunk id, ``page_content`` its text, and metadata
    carries source, start, end (offsets into the document's text), chunk_id, section, score and rank.

    >>> from rag.pipeline import Pipeline
    >>> retriever = Pipeline.load().as_langchain_retriever(k=4)
    >>> docs = retriever.invoke("Who is Qais al-Khazali?")
    >>> docs = retriever.invoke("Who is Qais al-Khazali?", k=2)   # k per call
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    pipeline: Any = Field(description="The rag.pipeline.Pipeline to search (its current index at each call).")
    k: int | None = Field(None, description="Passages per call; None: the pipeline's top_k setting.")

    @field_validator("k")
    @classmethod
    def _k_in_range(cls, k: Any) -> int | None:
        try:
            return None if k is None else _checked_k(k)
        except UsageError as exc:  # pydantic reports ValueErrors as a ValidationError naming the field
            raise ValueError(str(exc)) from None

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None
    ) -> list[LCDocument]:
        wanted = k if k is not None else self.k if self.k is not None else self.pipeline.settings.top_k
        return [
            LCDocument(
                id=hit.chunk.id,
                page_content=hit.chunk.text,
                metadata={
                    "source": hit.chunk.source,
                    "start": hit.chunk.start,
                    "end": hit.chunk.end,
                    "chunk_id": hit.chunk.id,
                    "section": hit.chunk.section,
                    "score": hit.score,
                    "rank": hit.rank,
                },
            )
            for hit in self.pipeline.search(query, _checked_k(wanted))
        ]
