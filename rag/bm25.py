"""BM25 over chunks: built with bm25s and saved in bm25s's own format (numpy arrays + JSON, no pickle).

Queries are scored straight from the saved arrays (bm25s's precomputed per-term scores in a CSC matrix), so
loading an index and answering a question never import bm25s, which pulls in scipy: about 0.2 s of every
cold start. The sums are made in the same order as bm25s's, so the scores are identical.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from rag.errors import IndexCorruptError
from rag.text import content_terms

if TYPE_CHECKING:
    import numpy as np

# bm25s methods whose scores live entirely in the sparse matrix (bm25l and bm25+ add a per-term score for
# documents without the term, kept in another array; those indexes are scored by bm25s itself).
_SPARSE_METHODS = {"robertson", "lucene", "atire"}
_ARRAYS = ("data", "indices", "indptr")


def _bm25s():
    import bm25s

    # bm25s sets its own logger to DEBUG when imported, which would print "Building index from tokens"
    # through the CLI's log handler on every build.
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


class BM25Index:
    FOLDER = "bm25"
    # What a build writes (relative to the index folder); the index's manifest holds the checksum of each.
    REQUIRED_FILES = ("bm25/params.index.json", "bm25/vocab.index.json", "bm25/data.csc.index.npy",
                      "bm25/indices.csc.index.npy", "bm25/indptr.csc.index.npy")

    def __init__(self, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, num_docs: int,
                 vocab: dict[str, int], retriever=None):
        self._data, self._indices, self._indptr = data, indices, indptr
        self._num_docs = num_docs
        self._vocab = vocab
        self._retriever = retriever  # the bm25s object: kept after a build (to save it) or for other methods

    @classmethod
    def _from_retriever(cls, retriever) -> BM25Index:
        s = retriever.scores
        return cls(s["data"], s["indices"], s["indptr"], int(s["num_docs"]), retriever.vocab_dict, retriever)

    @classmethod
    def build(cls, texts: list[str]) -> BM25Index:
        bm25s = _bm25s()
        retriever = bm25s.BM25(k1=1.2, b=0.75)
        # An empty token keeps documents without content words indexable.
        retriever.index([content_terms(t) or [""] for t in texts], show_progress=len(texts) > 50_000)
        return cls._from_retriever(retriever)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every chunk for the query (zeros when no query term is in the vocabulary)."""
        import numpy as np

        ids = [self._vocab[t] for t in content_terms(query) if t in self._vocab]
        if self._retriever is not None and getattr(self._retriever, "nonoccurrence_array", None) is not None:
            if not ids:
                return np.zeros(self._num_docs, dtype=np.float32)
            return self._retriever.get_scores(ids)
        scores = np.zeros(self._num_docs, dtype=self._data.dtype)
        for term in ids:  # term by term, as bm25s adds them; a repeated term counts again, as in bm25s
            if term + 1 >= len(self._indptr):
                continue  # a vocabulary entry without postings (bm25s's empty token)
            start, end = self._indptr[term], self._indptr[term + 1]
            # Within one term's postings every document appears once, so fancy-index += is exact.
            scores[self._indices[start:end]] += self._data[start:end]
        return scores

    def save(self, path: Path) -> None:
        if self._retriever is None:
            raise RuntimeError("a loaded BM25 index is saved by copying its folder; only a built one is written")
        self._retriever.save(str(path / self.FOLDER))

    @classmethod
    def load(cls, path: Path) -> BM25Index:
        import numpy as np

        folder = path / cls.FOLDER
        if not folder.is_dir():
            raise IndexCorruptError(f"{folder}: BM25 folder missing; rebuild with `rag index build`")
        try:
            params = json.loads((folder / "params.index.json").read_text(encoding="utf-8"))
            if params.get("method", "lucene") not in _SPARSE_METHODS:
                return cls._load_with_bm25s(folder)
            arrays = [np.load(folder / f"{name}.csc.index.npy", allow_pickle=False) for name in _ARRAYS]
            vocab = json.loads((folder / "vocab.index.json").read_text(encoding="utf-8"))
            num_docs = int(params["num_docs"])
        except (OSError, ValueError, KeyError, TypeError, EOFError):
            raise IndexCorruptError(f"{folder}: BM25 files unreadable; rebuild with `rag index build`") from None
        data, indices, indptr = arrays
        # bm25s's vocabulary may end with tokens that have no postings (its empty token), hence <=.
        if (len(indptr) - 1 > len(vocab) or len(data) != len(indices) or int(indptr[-1]) != len(data)
                or (len(indices) and int(indices.max()) >= num_docs) or not np.isfinite(data).all()):
            raise IndexCorruptError(f"{folder}: BM25 arrays are inconsistent; rebuild with `rag index build`")
        return cls(data, indices, indptr, num_docs, vocab)

    @classmethod
    def _load_with_bm25s(cls, folder: Path) -> BM25Index:
        bm25s = _bm25s()
        try:
            retriever = bm25s.BM25.load(str(folder), mmap=False, allow_pickle=False)
        except (OSError, ValueError, KeyError, json.JSONDecodeError, EOFError):
            raise IndexCorruptError(f"{folder}: BM25 files unreadable; rebuild with `rag index build`") from None
        return cls._from_retriever(retriever)
