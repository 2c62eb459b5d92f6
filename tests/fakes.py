"""Test doubles that stand in for the real model where a test is about something else.

``HashingEmbedder`` has the interface of ``rag.embeddings.Embedder`` (``info``, ``dim``, ``backend``,
``encode``, ``encode_query``, ``encode_with_tokens``, ``encode_with_token_words``, ``encode_query_tokens``)
and returns deterministic, unit-normalised float32 vectors built by hashing
stemmed content words (plus adjacent-word pairs) into signed buckets, so texts sharing words are close
and the same text always gets the same vector, in any process. No model, torch or onnxruntime is loaded:
a pipeline over the bundled article is built with it in about a second. Its vectors are not the model's,
so answer quality and the model's figures are tested with the real embedder (the ``embedder`` and
``pipeline`` fixtures), never with this one.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from rag.model_files import ModelInfo
from rag.text import content_terms

FAKE_MODEL_ID = "tests/hashing-embedder"


def _bucket(feature: str, dim: int) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % dim, 1.0 if (value >> 63) & 1 else -1.0


class HashingEmbedder:
    """A deterministic bag-of-words embedder with the real ``Embedder``'s interface."""

    backend = "hashing"

    def __init__(self, dim: int = 384):
        self.dim = dim
        # The manifest records the model's sha256; a distinct one keeps an index built with this embedder
        # from ever passing for one built with the real model (and the other way round).
        sha = hashlib.sha256(f"{FAKE_MODEL_ID}:{dim}".encode()).hexdigest()
        self.info = ModelInfo(FAKE_MODEL_ID, Path(__file__).resolve().parent, sha)
        self.calls = 0  # encode() calls, for tests about caching and re-embedding

    def _vector(self, text: str) -> np.ndarray:
        terms = content_terms(text)
        features = terms + [f"{a} {b}" for a, b in zip(terms, terms[1:], strict=False)] or [f"<raw>{text}"]
        vector = np.zeros(self.dim, dtype=np.float32)
        for feature in features:
            index, sign = _bucket(feature, self.dim)
            vector[index] += sign
        norm = float(np.linalg.norm(vector))
        if norm == 0.0:  # features that cancel out: fall back to one bucket so the vector stays unit length
            vector[_bucket(f"<raw>{text}", self.dim)[0]] = 1.0
            norm = 1.0
        return vector / norm

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool | None = None) -> np.ndarray:
        self.calls += 1
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.ascontiguousarray(np.stack([self._vector(t) for t in texts]), dtype=np.float32)

    def encode_with_tokens(self, texts: list[str], batch_size: int = 64,
                           progress: bool | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
        """The texts' vectors and, per text, one row per content word (that word's own vector)."""
        return self.encode(texts), [self._token_rows(t) for t in texts]

    def encode_with_token_words(self, texts: list[str], batch_size: int = 64, progress: bool | None = None
                                ) -> tuple[np.ndarray, list[np.ndarray], list[tuple[str, ...]]]:
        """As ``encode_with_tokens``, plus the content word of each row."""
        return self.encode(texts), [self._token_rows(t) for t in texts], [tuple(content_terms(t)) for t in texts]

    def _token_rows(self, text: str) -> np.ndarray:
        terms = content_terms(text)
        if not terms:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._vector(t) for t in terms]).astype(np.float32)

    def encode_query(self, text: str) -> np.ndarray:
        return _cached_query(self, text)

    def encode_query_tokens(self, text: str) -> tuple[np.ndarray, tuple[str, ...]]:
        """One row per content word, each its own word."""
        return self._token_rows(text), tuple(content_terms(text))

    def word_table(self) -> None:
        """No table of vocabulary word vectors: the answerer embeds the words it needs (with this fake)."""
        return None


@lru_cache(maxsize=4096)
def _cached_query(embedder: HashingEmbedder, text: str) -> np.ndarray:
    vector = embedder.encode([text])[0]
    vector.setflags(write=False)
    return vector
