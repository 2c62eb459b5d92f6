"""Finding the embedding model's files offline: the packaged zips, their extraction and checksums."""

from __future__ import annotations

import hashlib
import zipfile
from importlib import metadata

import pytest

from rag import model_files
from rag.errors import ModelError
from rag.model_files import BUNDLED_SHA256, MPNET_SHA256, resolve_model


def _zip(path, files: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def test_a_zip_with_one_top_folder_is_extracted_from_inside_it_and_verified(tmp_path):
    weights = b"not really weights"
    archive = _zip(tmp_path / "m.zip", {"some-model/model.safetensors": weights, "some-model/config.json": b"{}"})
    target = tmp_path / "cache" / "some-model-abc"
    model_files._extract_safely(archive, target, hashlib.sha256(weights).hexdigest(), "reinstall it")
    assert (target / "model.safetensors").read_bytes() == weights and (target / "config.json").is_file()
    assert model_files._verified_sha(target) == hashlib.sha256(weights).hexdigest()


def test_a_zip_whose_weights_fail_the_checksum_leaves_nothing_behind(tmp_path):
    archive = _zip(tmp_path / "m.zip", {"model.safetensors": b"tampered"})
    target = tmp_path / "cache" / "m"
    with pytest.raises(ModelError, match="does not match the expected 78c0197b6159.*make install-mpnet"):
        model_files._extract_safely(archive, target, MPNET_SHA256, "reinstall its packages: make install-mpnet")
    assert not target.exists() and list((tmp_path / "cache").iterdir()) == []


def test_mpnet_without_its_packages_says_how_to_install_them(tmp_path, monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(ModelError, match="not installed .*make install-mpnet"):
        resolve_model("all-mpnet-base-v2", tmp_path)
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".mpnet-")] == [], "no joined zip left behind"


def test_an_unknown_model_name_lists_what_is_accepted(tmp_path):
    with pytest.raises(ModelError, match="'all-MiniLM-L6-v2', 'all-mpnet-base-v2' or a local"):
        resolve_model("no-such-model", tmp_path)


def test_the_bundled_model_is_extracted_once_and_verified(tmp_path):
    info = resolve_model("all-MiniLM-L6-v2", tmp_path)
    assert info.sha256 == BUNDLED_SHA256 and (info.path / "model.safetensors").is_file()
    assert resolve_model("all-MiniLM-L6-v2", tmp_path) == info


def _mpnet_installed() -> bool:
    try:
        return all(metadata.distribution(name) for name, _ in model_files.MPNET_PARTS)
    except metadata.PackageNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _mpnet_installed(), reason="all-mpnet-base-v2 not installed (make install-mpnet)")
def test_mpnet_is_joined_from_its_five_packages_and_verified(tmp_path):
    info = resolve_model("all-mpnet-base-v2", tmp_path)
    assert info.sha256 == MPNET_SHA256 and info.model_id == "sentence-transformers/all-mpnet-base-v2"
    assert (info.path / "modules.json").is_file() and (info.path / "tokenizer.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [info.path.name], "the joined zip is removed"


@pytest.mark.slow
@pytest.mark.skipif(not _mpnet_installed(), reason="all-mpnet-base-v2 not installed (make install-mpnet)")
def test_with_mpnet_the_answerer_uses_the_model_fitted_on_mpnet_and_answers_with_citations(tmp_path, caplog):
    """RAG_EMBED_MODEL=all-mpnet-base-v2 end to end: the real model indexes the bundled article, the shipped
    answer and claim models fitted on its features are the ones chosen (no calibration warning), and a
    question is answered with its evidence cited."""
    from rag.answer import scorer
    from rag.embeddings import Embedder
    from rag.index import open_index
    from rag.pipeline import Pipeline
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, embed_model="all-mpnet-base-v2")
    embedder = Embedder.from_settings(settings)
    assert embedder.info.sha256 == MPNET_SHA256 and embedder.dim == 768
    pipeline = Pipeline(settings, embedder, open_index(settings, embedder))
    scorer._warned.clear()
    with caplog.at_level("WARNING", logger="rag"):
        answer = pipeline.ask("Who replaced Qassem Soleimani?")
        claim_model = pipeline.claim_model()
    assert not [r for r in caplog.records if "was fitted with the embedding model" in r.getMessage()]
    assert scorer.shipped_model_name(MPNET_SHA256) == f"answerer-{MPNET_SHA256[:12]}.json"
    assert claim_model.meta["embedding"]["sha256"] == MPNET_SHA256
    assert "Ghaani" in answer.answer and answer.citations and not answer.abstained and answer.confidence > 0.5
    assert answer.short_answer == "Esmail Ghaani"
