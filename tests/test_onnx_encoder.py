"""The ONNX encoder gives the sentence-transformers vectors (to 1e-4 cosine), refuses a tampered export,
and the embedder falls back to sentence-transformers when ONNX cannot be used."""

from __future__ import annotations

import json
import logging
import re
import shutil

import numpy as np
import pytest

from rag import onnx_encoder
from rag.embeddings import Embedder, resolve_model
from rag.errors import ModelError
from rag.settings import Settings

pytestmark = pytest.mark.slow  # compares against sentence-transformers, which imports torch


@pytest.fixture(scope="module")
def model_info():
    settings = Settings()
    return resolve_model(settings.embed_model, settings.model_cache_dir)


@pytest.fixture(scope="module")
def onnx_embedder(model_info):
    embedder = Embedder(model_info, backend="onnx", cache_dir=Settings().model_cache_dir)
    assert embedder.backend == "onnx"
    return embedder


@pytest.fixture(scope="module")
def torch_embedder(model_info):
    embedder = Embedder(model_info, backend="torch")
    assert embedder.backend == "torch"
    return embedder


@pytest.fixture(scope="module")
def article_sentences(article_text) -> list[str]:
    sentences = [s.strip() for s in re.split(r"(?<=[.!?\"”])\s+", article_text) if len(s.strip()) > 20]
    assert len(sentences) >= 50
    return sentences[:50]


def _cosine_gaps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return 1.0 - np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_onnx_vectors_match_sentence_transformers_on_article_sentences(
    onnx_embedder, torch_embedder, article_sentences
):
    onnx_vectors = onnx_embedder.encode(article_sentences, batch_size=16)
    reference = torch_embedder.encode(article_sentences)
    assert onnx_vectors.shape == reference.shape == (50, 384)
    assert onnx_vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(onnx_vectors, axis=1), 1.0, atol=1e-5)
    assert _cosine_gaps(onnx_vectors, reference).max() <= onnx_encoder.MAX_COSINE_GAP


def test_single_queries_match_batched_reference(onnx_embedder, torch_embedder, article_sentences):
    # Queries are encoded one at a time (no padding); the reference encodes them padded in one batch.
    queries = ["Who replaced Soleimani?", *article_sentences[:5]]
    single = np.vstack([onnx_embedder.encode([q]) for q in queries])
    assert _cosine_gaps(single, torch_embedder.encode(queries)).max() <= onnx_encoder.MAX_COSINE_GAP
    assert onnx_embedder.dim == torch_embedder.dim == 384


def test_export_marker_records_verification(onnx_embedder, model_info):
    folder = onnx_encoder.onnx_folder(model_info, Settings().model_cache_dir)
    marker = json.loads((folder / onnx_encoder.MARKER_FILE).read_text())
    assert marker["model_sha256"] == model_info.sha256
    assert marker["max_cosine_gap"] <= onnx_encoder.MAX_COSINE_GAP
    assert marker["verified_sentences"] == len(onnx_encoder.VERIFICATION_SENTENCES)


def test_tampered_export_is_refused_on_load(onnx_embedder, model_info, tmp_path):
    source = onnx_encoder.onnx_folder(model_info, Settings().model_cache_dir)
    copy = onnx_encoder.onnx_folder(model_info, tmp_path)
    copy.mkdir()
    for name in (onnx_encoder.MARKER_FILE, onnx_encoder.PROBE_VECTORS_FILE):
        shutil.copy(source / name, copy / name)
    (copy / onnx_encoder.MODEL_FILE).symlink_to(source / onnx_encoder.MODEL_FILE)
    assert onnx_encoder.load(model_info, tmp_path).dim == 384

    probes = np.load(copy / onnx_encoder.PROBE_VECTORS_FILE)
    np.save(copy / onnx_encoder.PROBE_VECTORS_FILE, probes[::-1].copy())  # vectors no longer match their probes
    with pytest.raises(ModelError, match="differ from sentence-transformers"):
        onnx_encoder.load(model_info, tmp_path)


def test_missing_export_is_reported(model_info, tmp_path):
    with pytest.raises(ModelError, match="no verified ONNX export"):
        onnx_encoder.load(model_info, tmp_path)


def test_unsupported_pooling_is_refused(tmp_path):
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]))
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    with pytest.raises(ModelError, match="mean pooling only"):
        onnx_encoder._pipeline_config(tmp_path)


def test_auto_falls_back_to_sentence_transformers(model_info, torch_embedder, monkeypatch, caplog, tmp_path):
    def unavailable(*args, **kwargs):
        raise ModelError("onnxruntime cannot load it (simulated)")

    monkeypatch.setattr(onnx_encoder, "load_or_export", unavailable)
    embedder = Embedder(model_info, backend="auto", cache_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="rag"):
        assert embedder.backend == "torch"
    assert "using sentence-transformers" in caplog.text
    vector = embedder.encode_query("Who replaced Soleimani?")
    assert np.allclose(vector, torch_embedder.encode(["Who replaced Soleimani?"])[0], atol=1e-6)


def test_forced_onnx_backend_reports_why_it_is_unavailable(model_info, monkeypatch, tmp_path):
    def unavailable(*args, **kwargs):
        raise ModelError("simulated failure")

    monkeypatch.setattr(onnx_encoder, "load_or_export", unavailable)
    with pytest.raises(ModelError, match="ONNX embedding backend unavailable: simulated failure"):
        Embedder(model_info, backend="onnx", cache_dir=tmp_path).encode(["Who replaced Soleimani?"])


def test_backend_setting_comes_from_the_settings_not_the_environment(model_info, monkeypatch):
    monkeypatch.setenv("RAG_EMBED_BACKEND", "onnx")
    assert Embedder.from_settings(Settings(embed_backend="torch")).backend == "torch"


def test_token_vectors_match_sentence_transformers(onnx_embedder, torch_embedder, article_sentences):
    texts = ["Who replaced Soleimani?", *article_sentences[:8]]
    onnx_vectors, onnx_tokens = onnx_embedder.encode_with_tokens(texts, batch_size=4)
    reference_vectors, reference_tokens = torch_embedder.encode_with_tokens(texts)
    # The pooled vectors from the two-output run are exactly what ``encode`` gives.
    assert np.array_equal(onnx_vectors, onnx_embedder.encode(texts, batch_size=4))
    assert _cosine_gaps(onnx_vectors, reference_vectors).max() <= onnx_encoder.MAX_COSINE_GAP
    for text, ours, theirs in zip(texts, onnx_tokens, reference_tokens, strict=True):
        assert ours.dtype == np.float32 and ours.shape == theirs.shape and ours.shape[1] == 384
        # One row per word piece that carries a word: no [CLS]/[SEP], no punctuation.
        assert 0 < len(ours) <= len(text.split()) * 4
        assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
        assert _cosine_gaps(ours, theirs).max() <= onnx_encoder.MAX_COSINE_GAP


def test_text_without_words_has_no_token_rows(onnx_embedder):
    vectors, tokens = onnx_embedder.encode_with_tokens(["...", "“?”", "Iraq."])
    assert vectors.shape == (3, 384)
    assert [t.shape for t in tokens] == [(0, 384), (0, 384), (1, 384)]


def test_a_question_is_encoded_once_for_its_vector_and_its_tokens(onnx_embedder, monkeypatch):
    question = "Which militia leader was the subject of the sanctions?"
    calls = []
    original = onnx_embedder.encode_with_token_words
    monkeypatch.setattr(onnx_embedder, "encode_with_token_words",
                        lambda texts, *args, **kw: calls.append(texts) or original(texts, *args, **kw))
    tokens, words = onnx_embedder.encode_query_tokens(question)
    vector = onnx_embedder.encode_query(question)
    assert calls == [[question]]
    assert np.allclose(vector, onnx_embedder.encode([question])[0], atol=1e-6)
    assert tokens.shape[1] == 384 and len(tokens) == len(words) >= 9
    assert set(words) == {"which", "militia", "leader", "was", "the", "subject", "of", "sanctions"}
    assert onnx_embedder.encode_query_tokens(question)[0] is tokens


def test_token_words_name_the_word_each_kept_piece_belongs_to():
    tokens = ["[CLS]", "who", "replaced", "sole", "##iman", "##i", "'", "s", "?", "[SEP]", "[PAD]"]
    special = [1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]
    mask = [1] * 10 + [0]
    word_ids = [None, 0, 1, 2, 2, 2, 3, 4, 5, None, None]
    assert onnx_encoder.token_words(tokens, special, mask, word_ids) == (
        "who", "replaced", "soleimani", "soleimani", "soleimani", "s")
    hidden = np.arange(11 * 4, dtype=np.float32).reshape(11, 4)
    assert onnx_encoder.token_rows(hidden, tokens, special, mask).shape == (6, 4)
