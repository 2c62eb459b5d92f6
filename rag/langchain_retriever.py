"""The hybrid retriever as a LangChain ``BaseRetriever``, for use in users' own chains."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever


class RagRetriever(BaseRetriever):
    """Returns chunks as LangChain Documents whose metadata carries source, start, end, chunk_id and score.

    >>> from rag.pipeline import Pipeline
    >>> retriever = Pipeline.load().as_langchain_retriever(k=4)
    >>> docs = retriever.invoke("Who is Qais al-Khazali?")
    """

    hybrid: Any
    k: int = 5

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[LCDocument]:
        return [
            LCDocument(
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
            for hit in self.hybrid.search(query, self.k)
        ]
