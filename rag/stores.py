"""Where the index lives, by ``RAG_STORE``: ``local`` (the folder, rag.index: FAISS + BM25) or a PostgreSQL URL
(rag.pgstore: pgvector + full-text). Callers open and build through here; another engine is one module with
the same two functions and a retriever (rag.retrieval.retriever_for)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rag import index as local

if TYPE_CHECKING:
    from rag.corpus import Staged
    from rag.embeddings import Embedder
    from rag.index import Index
    from rag.settings import Settings
    from rag.types import Document


def open_index(settings: Settings, embedder: Embedder, rebuild_if_stale: bool = True,
               current: Index | None = None) -> Index:
    """The settings' index: built when missing, rebuilt (with a message) when stale. ``current``: the caller's
    index of this store, which a store that can (PostgreSQL) extends by what was added since."""
    if settings.store != "local":
        from rag import pgstore

        return pgstore.open_index(settings, embedder, rebuild_if_stale, current=current)
    return local.open_index(settings, embedder, rebuild_if_stale)


def build_index(settings: Settings, embedder: Embedder, documents: list[Document] | None = None,
                only_if_stale: bool = False, staged: Staged | None = None, current: Index | None = None) -> Index:
    """Build the settings' index from the corpus folder (or the given documents, or the store's documents plus
    ``staged`` files) and make it current for readers in one step. ``current``: the caller's index of this
    store, which a store that adds incrementally (PostgreSQL) extends when it is still the latest."""
    if settings.store != "local":
        from rag import pgstore

        return pgstore.build_index(settings, embedder, documents, staged, current=current)
    return local.build_index(settings, embedder, documents, only_if_stale=only_if_stale, staged=staged)
