"""Hybrid retrieval: dense (FAISS) and BM25 rankings fused by reciprocal rank fusion."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rag.embeddings import Embedder
from rag.types import Hit

if TYPE_CHECKING:
    from rag.index import Index


class HybridRetriever:
    def __init__(self, index: Index, embedder: Embedder, rrf_k: int = 60, candidates: int = 50):
        self.index, self.embedder, self.rrf_k, self.candidates = index, embedder, rrf_k, candidates

    def search(self, query: str, k: int = 5) -> list[Hit]:
        import numpy as np

        n_chunks = len(self.index.chunks)
        if n_chunks == 0 or k <= 0:
            return []
        depth = min(n_chunks, max(self.candidates, 4 * k))
        query_vector = self.embedder.encode_query(query)
        dense_scores, dense_ids = self.index.store.search(query_vector[None, :], depth)
        dense = {int(i): float(s) for s, i in zip(dense_scores[0], dense_ids[0], strict=True) if i >= 0}

        bm25_all = self.index.bm25.scores(query)
        top = np.argpartition(-bm25_all, depth - 1)[:depth] if depth < n_chunks else np.arange(n_chunks)
        top = top[np.argsort(-bm25_all[top], kind="stable")]
        bm25 = {int(i): float(bm25_all[i]) for i in top if bm25_all[i] > 0}

        fused: dict[int, float] = {}
        for ranking in (list(dense), list(bm25)):
            for rank, chunk_row in enumerate(ranking):
                fused[chunk_row] = fused.get(chunk_row, 0.0) + 1.0 / (self.rrf_k + rank + 1)
        order = sorted(fused, key=lambda row: (-fused[row], -dense.get(row, -1.0)))[:k]
        return [
            Hit(
                rank=rank + 1,
                score=fused[row],
                chunk=self.index.chunks[row],
                dense_score=dense.get(row),
                bm25_score=float(bm25_all[row]),
            )
            for rank, row in enumerate(order)
        ]

    def lexical_search(self, query: str, k: int) -> list[Hit]:
        """BM25 only: cheap (no query embedding), used for second-hop lookups of names."""
        import numpy as np

        scores = self.index.bm25.scores(query)
        k = min(k, len(scores))
        if k <= 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [
            Hit(rank=r + 1, score=float(scores[i]), chunk=self.index.chunks[int(i)], bm25_score=float(scores[i]))
            for r, i in enumerate(top)
            if scores[i] > 0
        ]


def retriever_for(index: Index, embedder: Embedder, rrf_k: int = 60):
    """The hybrid retriever of an index: FAISS + BM25 in memory, or PostgreSQL's two rankings (rag.pgstore)."""
    if index.bm25 is None:
        from rag.pgstore import PgRetriever

        return PgRetriever(index, embedder, rrf_k=rrf_k)
    return HybridRetriever(index, embedder, rrf_k=rrf_k)
