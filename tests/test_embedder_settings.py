"""The embedder is built from the caller's settings, never from the environment behind the caller's back.

The bug this guards against: ``Embedder`` used to read its own ``Settings()``, so
``Pipeline.load(Settings(embed_backend="torch"))`` ran ONNX whenever RAG_EMBED_BACKEND (or .env) said so.
"""

from __future__ import annotations

import pytest

from rag.embeddings import Embedder
from rag.model_files import resolve_model
from rag.pipeline import Pipeline
from rag.settings import DEFAULT_MODEL_CACHE_DIR, Settings


@pytest.fixture(scope="module")
def model_info():
    settings = Settings()
    return resolve_model(settings.embed_model, settings.model_cache_dir)


def test_embedder_arguments_are_all_it_reads(model_info, monkeypatch, tmp_path):
    monkeypatch.setenv("RAG_EMBED_BACKEND", "torch")
    monkeypatch.setenv("RAG_MODEL_CACHE_DIR", str(tmp_path))
    embedder = Embedder(model_info)
    assert (embedder._backend_setting, embedder._cache_dir) == ("auto", DEFAULT_MODEL_CACHE_DIR)
    with pytest.raises(ValueError, match="'auto', 'onnx' or 'torch'"):
        Embedder(model_info, backend="cuda")


def test_from_settings_takes_model_backend_and_cache_folder(model_info, monkeypatch, tmp_path):
    monkeypatch.setenv("RAG_EMBED_BACKEND", "onnx")
    settings = Settings(embed_backend="torch", model_cache_dir=DEFAULT_MODEL_CACHE_DIR)
    embedder = Embedder.from_settings(settings)
    assert embedder.info == model_info
    assert embedder._cache_dir == DEFAULT_MODEL_CACHE_DIR
    assert embedder.backend == "torch"  # chosen without loading anything


@pytest.mark.parametrize(("environment", "chosen"), [("onnx", "torch"), ("torch", "onnx")])
def test_pipeline_load_honours_the_callers_embed_backend(indexed_settings, monkeypatch, environment, chosen):
    monkeypatch.setenv("RAG_EMBED_BACKEND", environment)
    settings = indexed_settings.model_copy(update={"embed_backend": chosen})
    pipeline = Pipeline.load(settings)
    assert pipeline.embedder.backend == chosen
    if chosen == "onnx":  # the export the session's embedder made; no torch needed to use it
        assert pipeline.search("Who replaced Qassem Soleimani?", 1)


def test_pipeline_load_with_settings_built_from_keywords(indexed_settings, monkeypatch):
    monkeypatch.setenv("RAG_EMBED_BACKEND", "onnx")
    pipeline = Pipeline.load(Settings(corpus_dir=indexed_settings.corpus_dir, index_dir=indexed_settings.index_dir,
                                      embed_backend="torch"))
    assert pipeline.embedder.backend == "torch"
