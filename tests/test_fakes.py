"""The hashing embedder of tests/fakes.py keeps the real embedder's contract, so tests can rely on it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from rag.embeddings import Embedder
from tests.conftest import ROOT
from tests.fakes import HashingEmbedder

TEXTS = ["Who replaced Qassem Soleimani?", "Esmail Ghaani replaced Soleimani.", "", "!!!", "The budget grew."]


def test_same_interface_as_the_real_embedder():
    public = {name for name in dir(Embedder) if not name.startswith("_")} - {"model", "from_settings"}
    assert public <= set(dir(HashingEmbedder(8)))


def test_vectors_are_unit_float32_rows_of_the_declared_dimension():
    embedder = HashingEmbedder(64)
    vectors = embedder.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 64) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert embedder.encode([]).shape == (0, 64)
    query = embedder.encode_query(TEXTS[0])
    assert np.array_equal(query, vectors[0]) and not query.flags.writeable


def test_texts_sharing_words_are_closer_than_unrelated_ones():
    embedder = HashingEmbedder()
    question, answer, unrelated = embedder.encode([TEXTS[0], TEXTS[1], "Oil prices fell in Asian trading."])
    assert question @ answer > question @ unrelated + 0.2


def test_deterministic_across_processes():
    """Hashes are blake2b, not Python's per-process salted hash(): another interpreter gets the same vector."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from tests.fakes import HashingEmbedder; "
            "print(HashingEmbedder(32).encode([sys.argv[2]])[0].tolist())")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT), TEXTS[0]], capture_output=True, text=True, check=True)
    assert np.allclose(eval(out.stdout), HashingEmbedder(32).encode([TEXTS[0]])[0])  # noqa: S307 (our own list)


def test_fake_pipeline_answers_with_exact_spans(fake_pipeline, article_text):
    """The whole pipeline runs on the fake (real segmentation, FAISS, BM25 and answer code): spans are exact."""
    hits = fake_pipeline.search("Esmail Ghaani Soleimani replacement", 3)
    assert any("Ghaani" in h.chunk.text for h in hits)
    for hit in hits:
        assert article_text[hit.chunk.start : hit.chunk.end] == hit.chunk.text
    assert fake_pipeline.embedder.info.sha256 != "" and fake_pipeline.index.manifest["embedding"]["dim"] == 384
