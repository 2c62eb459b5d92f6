"""Vector stores behind one small interface, so another engine (e.g. a Qdrant server) can be added later
without touching callers. Vectors are L2-normalised, so inner product is cosine similarity."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING

from rag.errors import IndexCorruptError

if TYPE_CHECKING:
    import numpy as np

# Searches with at most this many queries run on one OpenMP thread.
_FEW_QUERIES = 4


class VectorStore(ABC):
    """Maps row numbers to vectors and answers nearest-neighbour queries."""

    @abstractmethod
    def add(self, vectors: np.ndarray) -> None: ...

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, row ids), each of shape (len(queries), k); missing results have id -1."""

    @abstractmethod
    def save(self, path: Path) -> None: ...

    @abstractmethod
    def __len__(self) -> int: ...


class FaissStore(VectorStore):
    """FAISS exact inner-product (``flat``) or HNSW graph (``hnsw``) index, persisted with faiss.write_index."""

    FILE = "vectors.faiss"

    def __init__(self, dim: int, kind: str = "flat", hnsw_m: int = 32, ef_search: int = 128, index=None):
        import faiss

        self.dim, self.kind, self.ef_search = dim, kind, ef_search
        if index is not None:
            self.index = index
        elif kind == "flat":
            self.index = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            self.index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = 200
        else:
            raise ValueError(f"unknown FAISS index kind: {kind}")
        if kind == "hnsw":
            self.index.hnsw.efSearch = ef_search

    def add(self, vectors: np.ndarray) -> None:
        self.index.add(vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, len(self))
        if k <= 0:
            import numpy as np

            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        if len(queries) > _FEW_QUERIES:
            return self.index.search(queries, k)
        import faiss

        # A single query (what the pipeline sends) is fastest on one thread: an OpenMP team costs more in
        # start-up and barriers than it saves, and on a busy 2-core machine it waits for the other core
        # (bench/run.py: flat 10k p50 0.4 ms on one thread vs 8-18 ms on two under load). The thread count is
        # per calling thread in OpenMP, so concurrent searches in other threads are not affected.
        previous = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return self.index.search(queries, k)
        finally:
            faiss.omp_set_num_threads(previous)

    def save(self, path: Path) -> None:
        import faiss

        faiss.write_index(self.index, str(path / self.FILE))

    @classmethod
    def load(cls, path: Path, kind: str, dim: int) -> FaissStore:
        import faiss

        file = path / cls.FILE
        if not file.is_file():
            raise IndexCorruptError(f"{file}: FAISS file missing; rebuild with `rag index build`")
        try:
            index = faiss.read_index(str(file))
        except RuntimeError:
            raise IndexCorruptError(f"{file}: FAISS file unreadable or truncated; rebuild with `rag index build`") from None
        if index.d != dim:
            raise IndexCorruptError(f"{file}: dimension {index.d} != manifest {dim}; rebuild with `rag index build`")
        return cls(dim, kind, index=index)

    def all_finite(self) -> bool:
        """Whether every stored vector is finite (read in place, without a copy)."""
        import faiss
        import numpy as np

        flat = faiss.downcast_index(self.index.storage) if hasattr(self.index, "storage") else self.index
        if not hasattr(flat, "codes") or flat.codes.size() == 0:
            return True
        codes = faiss.rev_swig_ptr(flat.codes.data(), flat.codes.size())
        return bool(np.isfinite(codes.view(np.float32)).all())

    def __len__(self) -> int:
        return int(self.index.ntotal)
