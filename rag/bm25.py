"""BM25 over chunks with bm25s, saved in bm25s's own format (numpy arrays + JSON, no pickle)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from rag.errors import IndexCorruptError
from rag.text import content_terms

if TYPE_CHECKING:
    import numpy as np


def _bm25s():
    import bm25s

    # bm25s sets its own logger to DEBUG when imported, which would print "Building index from tokens"
    # through the CLI's log handler on every build.
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


class BM25Index:
    FOLDER = "bm25"

    def __init__(self, retriever):
        self._retriever = retriever
        self._vocab = retriever.vocab_dict

    @classmethod
    def build(cls, texts: list[str]) -> BM25Index:
        bm25s = _bm25s()
        retriever = bm25s.BM25(k1=1.2, b=0.75)
        # An empty token keeps documents without content words indexable.
        retriever.index([content_terms(t) or [""] for t in texts], show_progress=len(texts) > 50_000)
        return cls(retriever)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every chunk for the query (zeros when no query term is in the vocabulary)."""
        import numpy as np

        ids = [self._vocab[t] for t in content_terms(query) if t in self._vocab]
        if not ids:
            return np.zeros(self._retriever.scores["num_docs"], dtype=np.float32)
        return self._retriever.get_scores(ids)

    def save(self, path: Path) -> None:
        self._retriever.save(str(path / self.FOLDER))

    @classmethod
    def load(cls, path: Path) -> BM25Index:
        bm25s = _bm25s()
        folder = path / cls.FOLDER
        if not folder.is_dir():
            raise IndexCorruptError(f"{folder}: BM25 folder missing; rebuild with `rag index build`")
        try:
            retriever = bm25s.BM25.load(str(folder), mmap=False, allow_pickle=False)
        except (OSError, ValueError, KeyError, json.JSONDecodeError, EOFError):
            raise IndexCorruptError(f"{folder}: BM25 files unreadable; rebuild with `rag index build`") from None
        return cls(retriever)
