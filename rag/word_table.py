"""Vectors of the general-English words the embedding model knows, embedded once per model and kept on disk.

The answerer compares single words by their MiniLM vectors ("sacked" / "fired"; ``rag.answer.features``). The
corpus's own words are embedded with the index (``rag.index``); a question's words that the corpus lacks used to
be embedded while answering, one ONNX call per question costing 2-4 ms (measured on the bundled article's 179
questions: 117 needed one, the answer stage's p50 6.3 ms against 4.0 ms with every word at hand). This table
holds the whole words of the model's own WordPiece vocabulary (``tokenizer.json``: about 21,000 for MiniLM once
stopwords, figures and short words are dropped; 236 of the 255 question words absent from the bundled article
are among them), embedded in about 5 s with the ONNX encoder.

It lives in ``<model_cache_dir>/words-<model sha256[:12]>/``: ``words.json`` (the words, in row order),
``vectors.npy`` (float32, memory-mapped: rows are read when used) and ``marker.json`` (format, model sha256, row
count and file size). On every load three rows are re-embedded and compared with the table (the ONNX export's
probe check, ``rag.onnx_encoder``), so a damaged file or a table of another model is rebuilt, never used.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from rag.text import soft_words

if TYPE_CHECKING:
    import numpy as np

    from rag.model_files import ModelInfo


class Embedder(Protocol):
    """What the table needs of ``rag.embeddings.Embedder`` (which builds it: no import back)."""

    info: ModelInfo

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool | None = None) -> np.ndarray: ...

log = logging.getLogger("rag")

FORMAT = 1
WORDS_FILE, VECTORS_FILE, MARKER_FILE = "words.json", "vectors.npy", "marker.json"
MIN_PROBE_COSINE = 0.9999


class WordTable:
    """Word -> row of ``vectors``; ``get`` returns None for a word the table lacks."""

    def __init__(self, words: list[str], vectors: np.ndarray):
        self.rows = {w: i for i, w in enumerate(words)}
        self.vectors = vectors

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, word: str) -> np.ndarray | None:
        row = self.rows.get(word)
        return None if row is None else self.vectors[row]


def folder_for(embedder: Embedder, cache_dir: Path) -> Path:
    return cache_dir / f"words-{embedder.info.sha256[:12]}"


def vocabulary_words(model_path: Path) -> list[str]:
    """The whole words of the model's WordPiece vocabulary that the answerer compares (``soft_words``),
    sorted; empty when the model has no ``tokenizer.json`` with a vocabulary."""
    try:
        vocab = json.loads((model_path / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return sorted(w for w in vocab if isinstance(w, str) and w.isalpha() and soft_words(w) == [w])


def _probe_rows(count: int) -> list[int]:
    return sorted({0, count // 2, count - 1}) if count else []


def load(embedder: Embedder, cache_dir: Path) -> WordTable | None:
    """The table of this model when one is on disk and passes its probes; None otherwise."""
    import numpy as np

    folder = folder_for(embedder, cache_dir)
    try:
        marker = json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))
        if (marker.get("format") != FORMAT or marker.get("model_sha256") != embedder.info.sha256
                or (folder / VECTORS_FILE).stat().st_size != marker["vectors_bytes"]):
            return None
        words = json.loads((folder / WORDS_FILE).read_text(encoding="utf-8"))
        vectors = np.load(folder / VECTORS_FILE, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if (not isinstance(words, list) or len(words) != marker.get("words") or vectors.dtype != np.float32
            or vectors.ndim != 2 or vectors.shape[0] != len(words)):
        return None
    rows = _probe_rows(len(words))
    probes = embedder.encode([words[r] for r in rows])
    if probes.shape[1] != vectors.shape[1]:
        return None
    cosines = np.sum(probes * np.asarray(vectors[rows]), axis=1)
    if not (np.isfinite(cosines).all() and cosines.min() >= MIN_PROBE_COSINE):
        log.warning("%s: word vectors do not match the model (probe cosine %.4f); rebuilding them", folder,
                    float(np.nan_to_num(cosines).min()))
        return None
    return WordTable(words, vectors)


def build(embedder: Embedder, cache_dir: Path) -> WordTable | None:
    """Embed the model's vocabulary words and move the table into place atomically (a concurrent build of
    the same table is harmless: the first one in place stays)."""
    import numpy as np

    words = vocabulary_words(embedder.info.path)
    if not words:
        return None
    target = folder_for(embedder, cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".words-build-", dir=target.parent))
    started = time.perf_counter()
    try:
        vectors = np.ascontiguousarray(embedder.encode(words, batch_size=256, progress=False), dtype=np.float32)
        if not np.isfinite(vectors).all():
            return None
        (tmp / WORDS_FILE).write_text(json.dumps(words, ensure_ascii=False), encoding="utf-8")
        np.save(tmp / VECTORS_FILE, vectors, allow_pickle=False)
        marker = {"format": FORMAT, "model_id": embedder.info.model_id, "model_sha256": embedder.info.sha256,
                  "words": len(words), "vectors_bytes": (tmp / VECTORS_FILE).stat().st_size,
                  "build_seconds": round(time.perf_counter() - started, 2)}
        (tmp / MARKER_FILE).write_text(json.dumps(marker, indent=2), encoding="utf-8")
        if target.exists():
            aside = Path(tempfile.mkdtemp(prefix=".words-stale-", dir=target.parent))
            with contextlib.suppress(OSError):  # another process moved it already
                target.rename(aside / target.name)
            shutil.rmtree(aside, ignore_errors=True)
        with contextlib.suppress(OSError):  # another process put its table in place meanwhile
            tmp.rename(target)
        log.info("embedded %d vocabulary words into %s in %.1f s", len(words), target, time.perf_counter() - started)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return load(embedder, cache_dir)


_lock = threading.Lock()


def load_or_build(embedder: Embedder, cache_dir: Path, allow_build: bool) -> WordTable | None:
    """The table, built first when there is none and ``allow_build``; None when it cannot be had. Never
    raises: without a table the answerer embeds the words it needs one question at a time, as before."""
    with _lock:
        try:
            table = load(embedder, cache_dir)
            if table is None and allow_build:
                table = build(embedder, cache_dir)
            return table
        except Exception as exc:  # a read-only or full cache folder, an engine failure: answer without it
            log.warning("vocabulary word vectors unavailable (%s: %s)", type(exc).__name__, exc)
            return None
