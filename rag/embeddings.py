"""The embedding model: encoding text into normalised vectors with the engine its caller chooses.

Finding and verifying the model's files is rag.model_files (its names are re-exported here for callers);
the onnxruntime engine is rag.onnx_encoder. Nothing is ever downloaded: HF_HUB_OFFLINE is forced on before
sentence-transformers is imported.
"""

from __future__ import annotations

import logging
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from rag.errors import ModelError
from rag.model_files import BUNDLED_MODEL_ID, BUNDLED_SHA256, ModelInfo, file_sha256, resolve_model
from rag.settings import DEFAULT_MODEL_CACHE_DIR

if TYPE_CHECKING:
    import numpy as np

    from rag.settings import Settings
    from rag.word_table import WordTable

log = logging.getLogger("rag")
_UNSET = object()
EmbedBackend = Literal["auto", "onnx", "torch"]


class Embedder:
    """Encodes texts into L2-normalised float32 vectors with a sentence-transformers model.

    ``backend`` picks the engine: 'onnx' runs a verified ONNX export on onnxruntime (rag.onnx_encoder; no
    torch import), 'torch' runs sentence-transformers, which stays the reference the export is checked
    against, and 'auto' (the default) tries onnx and falls back to torch. The export lives in ``cache_dir``.
    Only the arguments count: no RAG_* setting or .env is read here; ``Embedder.from_settings(settings)``
    builds one from the caller's settings (model, backend, cache folder).
    """

    def __init__(self, info: ModelInfo, backend: EmbedBackend = "auto", cache_dir: Path | None = None):
        if backend not in ("auto", "onnx", "torch"):
            raise ValueError(f"embedding backend must be 'auto', 'onnx' or 'torch', got {backend!r}")
        self.info = info
        self._model = None
        self._backend_setting = backend
        self._cache_dir = cache_dir if cache_dir is not None else DEFAULT_MODEL_CACHE_DIR
        self._onnx = None
        self._engine: str | None = None  # "onnx" or "torch" once chosen
        self._choose_lock = threading.Lock()
        self._word_table: object = _UNSET

    @classmethod
    def from_settings(cls, settings: Settings) -> Embedder:
        """The embedder ``settings`` describe: its embed_model (found and verified), embed_backend and
        model_cache_dir, whatever the environment says."""
        return cls(
            resolve_model(settings.embed_model, settings.model_cache_dir),
            backend=settings.embed_backend,
            cache_dir=settings.model_cache_dir,
        )

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

    def encode_with_tokens(self, texts: list[str], batch_size: int = 64,
                           progress: bool | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
        """The texts' vectors (as ``encode``) and, from the same run of the model, each text's word-piece
        vectors: the transformer's contextual output per token before pooling, L2-normalised float32, special
        tokens and punctuation dropped (``rag.onnx_encoder.token_rows``). The answerer matches a question's
        tokens against a sentence's (``rag.answer.features``)."""
        vectors, tokens, _ = self.encode_with_token_words(texts, batch_size, progress)
        return vectors, tokens

    def encode_with_token_words(self, texts: list[str], batch_size: int = 64, progress: bool | None = None
                                ) -> tuple[np.ndarray, list[np.ndarray], list[tuple[str, ...]]]:
        """As ``encode_with_tokens``, plus per text the word each token row is a piece of
        (``rag.onnx_encoder.token_words``)."""
        show = progress if progress is not None else len(texts) >= 512
        if self.backend == "onnx":
            return self._onnx.encode_with_token_words(texts, batch_size=batch_size, progress=show)
        return self._reference_encode_with_tokens(texts, batch_size, show)

    def _reference_encode_with_tokens(self, texts: list[str], batch_size: int = 64, progress: bool = False
                                      ) -> tuple[np.ndarray, list[np.ndarray], list[tuple[str, ...]]]:
        import numpy as np

        from rag.onnx_encoder import token_rows, token_words

        if not texts:
            return np.zeros((0, self._reference_dim()), dtype=np.float32), [], []
        model = self.model
        outputs = model.encode(texts, batch_size=batch_size, output_value=None, show_progress_bar=progress)
        tokenizer = model.tokenizer
        special = set(tokenizer.all_special_ids)
        vectors, tokens, words = [], [], []
        for text, out in zip(texts, outputs, strict=True):
            ids = [int(i) for i in out["input_ids"]]
            mask = [int(m) for m in out["attention_mask"]]
            hidden = out["token_embeddings"].detach().float().cpu().numpy()
            n = min(len(ids), len(hidden))
            pieces = tokenizer.convert_ids_to_tokens(ids[:n])
            flags = [int(i in special) for i in ids[:n]]
            tokens.append(token_rows(hidden[:n], pieces, flags, mask[:n]))
            # The same tokenisation again, for the word each piece belongs to (the model's output lacks it).
            word_ids = tokenizer(text, truncation=True, max_length=model.max_seq_length).word_ids()
            words.append(token_words(pieces, flags, mask[:n], (word_ids + [None] * n)[:n]))
            vectors.append(out["sentence_embedding"].detach().float().cpu().numpy())
        matrix = np.stack(vectors).astype(np.float32)
        matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(matrix), tokens, words

    def encode_query(self, text: str) -> np.ndarray:
        return _cached_query(self, text)[0]

    def encode_query_tokens(self, text: str) -> tuple[np.ndarray, tuple[str, ...]]:
        """The question's word-piece vectors and the word each is a piece of (see ``encode_with_token_words``),
        from the same cached run as its ``encode_query`` vector: a question is encoded once."""
        return _cached_query(self, text)[1:]

    def word_table(self) -> WordTable | None:
        """Vectors of the model's vocabulary words (``rag.word_table``), loaded on first call; built then
        (about 5 s, once per model and cache folder) when the ONNX engine is in use. None when unavailable."""
        if self._word_table is _UNSET:
            from rag import word_table

            self._word_table = word_table.load_or_build(self, self._cache_dir, allow_build=self.backend == "onnx")
        return self._word_table


@lru_cache(maxsize=2048)
def _cached_query(embedder: Embedder, text: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    vectors, tokens, words = embedder.encode_with_token_words([text])
    vector, token_vectors = vectors[0], tokens[0]
    vector.setflags(write=False)
    token_vectors.setflags(write=False)
    return vector, token_vectors, words[0]


__all__ = ["BUNDLED_MODEL_ID", "BUNDLED_SHA256", "Embedder", "ModelInfo", "file_sha256", "resolve_model"]
