"""Building, saving and loading the persisted index.

Layout of ``RAG_INDEX_DIR/<name>`` (a symlink to the current build under ``.builds/``, swapped atomically,
so a crash mid-build leaves the previous index in place):

- ``manifest.json``: format version, embedding model id/sha256/dim, chunking parameters, per-document sha256,
  the corpus files skipped because they cannot be read or yield no sentence (``skipped``: id, sha256, reason),
  counts, the sha256 of every other file of the build (verified once, when the index is loaded), creation time
  and build duration;
- ``documents.jsonl``: each document's id, title, date, sha256 and the text offsets index into;
- ``sentences.jsonl`` and ``chunks.jsonl``: spans with ``source``/``start``/``end``/``text``;
- ``vectors.faiss``: chunk vectors (FAISS flat or HNSW); ``sentence_vectors.npy``: sentence vectors;
- ``words.json`` and ``word_vectors.npy``: the corpus vocabulary (``rag.text.soft_words``) and each word's
  vector, for the answerer's word-level soft matches (a PostgreSQL store keeps them in its ``words`` table;
  an index without them takes words from the model's vocabulary table, ``rag.word_table``, or embeds them on
  first use);
- ``bm25/``: the BM25 index in bm25s's own format.

Nothing is pickled. A build never needs the previous index to load: vectors are reused from it only when its
files match their checksums, so ``rag index build`` repairs any damage.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from rag import corpus
from rag.bm25 import BM25Index
from rag.documents import (
    DocumentLimits,
    Skipped,
    corpus_files,
    no_documents,
    read_corpus,
    sha256_bytes,
    skip_file,
    starts_with_bom,
)
from rag.embeddings import Embedder, ModelInfo
from rag.errors import IndexCorruptError, IndexLockedError, InputFileError
from rag.segment import Seen, segment_document
from rag.settings import Settings
from rag.store import FaissStore
from rag.text import soft_words
from rag.types import Chunk, Document, Sentence

if TYPE_CHECKING:
    import numpy as np

FORMAT_VERSION = 2  # 2: every file of the build has its checksum in the manifest
SEGMENTER = "pysbd-0.3.4+rag-4"  # bump when segmentation or BM25 tokenisation changes
# 2: UTF-16/32 files with a byte order mark and HTML in the charset it declares are read (1, or no key: UTF-8 only)
TEXT_DECODING = 2
_UNREADABLE_BEFORE = ("looks binary", "not valid UTF-8")  # reasons an older build skipped what may read now
log = logging.getLogger("rag")
_JSONL_FILES = ("documents.jsonl", "sentences.jsonl", "chunks.jsonl")
# Files a build always has; the manifest must give each one's sha256 (a missing or null checksum is refused).
REQUIRED_FILES = (*_JSONL_FILES, "sentence_vectors.npy", "vectors.faiss", *BM25Index.REQUIRED_FILES)
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Words of the vocabulary embedded at build, the most frequent first. Embedding a word costs about 0.5 ms in a
# batch but 2-4 ms when the answerer has to do it for one question (an ONNX call of its own); the bundled
# article has 826 such words, a 1M-sentence corpus a few hundred thousand, of which the rare ones are embedded
# when a question first needs them.
MAX_INDEXED_WORDS = 50_000


@dataclass
class Index:
    """An index in memory. ``documents`` is keyed by document id; citations resolve only through it."""

    path: Path
    manifest: dict
    documents: dict[str, Document]
    sentences: list[Sentence]
    chunks: list[Chunk]
    store: FaissStore
    sentence_vectors: np.ndarray
    bm25: BM25Index
    words: tuple[str, ...] = ()  # the vocabulary embedded at build, row by row in ``word_vectors``
    word_vectors: np.ndarray | None = field(default=None, repr=False)
    # Every sentence's word-piece vectors (``Embedder.encode_with_tokens``), float16, laid end to end: sentence i
    # owns rows token_offsets[i]:token_offsets[i + 1]. None for a build made before they were stored (and for
    # PostgreSQL stores): the answerer then encodes the candidates it needs.
    token_vectors: np.ndarray | None = field(default=None, repr=False)
    token_offsets: np.ndarray | None = field(default=None, repr=False)

    def sentence_tokens(self, sentence_id: int) -> np.ndarray | None:
        """The stored word-piece vectors of one sentence (float16 rows), or None when the build has none."""
        if self.token_vectors is None or self.token_offsets is None:
            return None
        return self.token_vectors[self.token_offsets[sentence_id] : self.token_offsets[sentence_id + 1]]


# ---------------------------------------------------------------- building


def _expected_fingerprint(settings: Settings, model: ModelInfo) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "model_sha256": model.sha256,
        "chunking": {
            "chunk_sentences": settings.chunk_sentences,
            "chunk_overlap": settings.chunk_overlap,
            "segmenter": SEGMENTER,
        },
        "index_type": settings.index_type,
    }


def _manifest_fingerprint(manifest: dict) -> dict:
    return {
        "format_version": manifest.get("format_version"),
        "model_sha256": manifest.get("embedding", {}).get("sha256"),
        "chunking": manifest.get("chunking"),
        "index_type": manifest.get("index_type"),
    }


def _write_jsonl(path: Path, rows) -> str:
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    path.write_bytes(data)
    return sha256_bytes(data)


def _reusable_vectors(settings: Settings, model: ModelInfo) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Vectors of the current index keyed by text, and its sentences' word-piece vectors (float16 rows) keyed by
    text, so a rebuild only embeds what is new.

    Only from files that match the manifest's checksums and hold finite vectors: whatever state the previous
    index is in (missing, empty, edited, a folder in place of a file), the build goes on without it."""
    try:
        path = settings.index_path
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        if manifest["embedding"]["sha256"] != model.sha256:
            return {}, {}
        import numpy as np

        files = manifest["files"]
        sentences_data = (path / "sentences.jsonl").read_bytes()
        vectors_data = (path / "sentence_vectors.npy").read_bytes()
        if (sha256_bytes(sentences_data) != files["sentences.jsonl"]
                or sha256_bytes(vectors_data) != files["sentence_vectors.npy"]):
            return {}, {}
        sentences = [json.loads(line)["text"] for line in sentences_data.decode("utf-8").splitlines() if line.strip()]
        vectors = np.load(io.BytesIO(vectors_data), allow_pickle=False)
        if (vectors.ndim != 2 or len(vectors) != len(sentences) or vectors.shape[1] != manifest["embedding"]["dim"]
                or not np.isfinite(vectors).all()):
            return {}, {}
        reusable = dict(zip(sentences, vectors, strict=True))
        try:
            words, word_vectors = _read_words(path, files, manifest["embedding"]["dim"])
            reusable.update(zip(words, word_vectors, strict=True))
        except IndexCorruptError:
            pass
        tokens: dict[str, np.ndarray] = {}
        try:
            token_vectors, offsets = _read_tokens(path, files, manifest["embedding"]["dim"], len(sentences))
            if token_vectors is not None:
                tokens = {t: token_vectors[offsets[i] : offsets[i + 1]] for i, t in enumerate(sentences)}
        except IndexCorruptError:
            pass
        return reusable, tokens
    except Exception as exc:  # any damage: build without reuse
        log.debug("not reusing vectors of the previous index: %s: %s", type(exc).__name__, exc)
        return {}, {}


def _embed(embedder: Embedder, texts: list[str], cache: dict[str, np.ndarray]) -> np.ndarray:
    import numpy as np

    missing = sorted({t for t in texts if t not in cache})
    if missing:
        cache.update(zip(missing, embedder.encode(missing), strict=True))
    if not texts:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    return np.stack([cache[t] for t in texts]).astype(np.float32)


def _embed_with_tokens(embedder: Embedder, texts: list[str], cache: dict[str, np.ndarray],
                       token_cache: dict[str, np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The texts' vectors and word-piece vectors, encoding only texts missing from either cache (one run
    gives both; an embedder without ``encode_with_tokens``, such as a test double, gives no token rows)."""
    import numpy as np

    missing = sorted({t for t in texts if t not in cache or t not in token_cache})
    if missing:
        if hasattr(embedder, "encode_with_tokens"):
            vectors, tokens = embedder.encode_with_tokens(missing)
        else:
            vectors, tokens = embedder.encode(missing), [np.zeros((0, embedder.dim), np.float32)] * len(missing)
        for text, vector, rows in zip(missing, vectors, tokens, strict=True):
            cache.setdefault(text, vector)
            token_cache[text] = rows.astype(np.float16)
    if not texts:
        return np.zeros((0, embedder.dim), dtype=np.float32), []
    return np.stack([cache[t] for t in texts]).astype(np.float32), [token_cache[t] for t in texts]


def _lock(settings: Settings, timeout: float | None = None):
    from filelock import FileLock

    settings.index_dir.mkdir(parents=True, exist_ok=True)
    return FileLock(str(settings.index_dir / f".{settings.index_name}.lock"),
                    timeout=settings.lock_timeout if timeout is None else timeout)


@contextlib.contextmanager
def build_lock(settings: Settings) -> Iterator[None]:
    """Hold the build lock of the settings' index (waiting at most RAG_LOCK_TIMEOUT, then IndexLockedError)."""
    from filelock import Timeout

    lock = _lock(settings)
    try:
        lock.acquire()
    except Timeout:
        raise IndexLockedError(
            f"another build of index '{settings.index_name}' is running (lock {lock.lock_file}); "
            f"waited {settings.lock_timeout:.0f}s"
        ) from None
    try:
        yield
    finally:
        lock.release()


def build_index(
    settings: Settings,
    embedder: Embedder,
    documents: list[Document] | None = None,
    only_if_stale: bool = False,
    staged: corpus.Staged | None = None,
) -> Index:
    """Build the index from the corpus (or the given documents) and swap it in atomically.

    With ``only_if_stale``, a build that finds (once it holds the lock) that another process has just
    produced a current index loads that one instead of building again. With ``staged`` files (``rag index
    add``), the index is built from the corpus plus those files, which are moved into the corpus only once the
    index is swapped in (rag.corpus). A build never needs the previous index to load.
    """
    with build_lock(settings):
        corpus.recover(settings.corpus_dir)
        if only_if_stale and staged is None and settings.index_path.exists():
            try:
                manifest = read_manifest(settings.index_path)
                if stale_reason(settings, manifest, embedder.info) is None:
                    return load_index(settings.index_path, manifest)
            except IndexCorruptError:
                pass  # the build below replaces it
        return _build_locked(settings, embedder, documents, staged)


NO_SENTENCES = "no sentences found"


def segment_corpus(settings: Settings, docs: list[Document], limits: DocumentLimits | None = None,
                   seen: Seen | None = None, first_sentence_id: int = 0, found: Collection[str] = (),
                   ) -> tuple[list[Sentence], list[Chunk], list[dict], dict[str, str]]:
    """Sentences, chunks and the manifest's per-document entries of a corpus, as every store indexes it, and
    the documents left out (id -> reason).

    ``seen`` and ``first_sentence_id`` continue an indexed corpus (an incremental add: the paragraphs and chunks
    already indexed, and the number of sentences), so documents appended to it are segmented as a build of
    the whole would segment them after those.

    A document that yields no sentence (only headings, a line of dashes, a menu; one whose paragraphs all
    repeat earlier ones does not count), or whose splitting takes longer than RAG_MAX_DOC_SECONDS, is refused
    with an InputFileError, unless its id is in ``found``: the files found in the corpus folder, not given to
    ``rag index add``. Such a file is left out, with no entry in the sentences, chunks and per-document entries
    and no duplicate count, as ``rag.documents.read_corpus`` leaves out the files it cannot read (the caller
    records it: ``left_out``)."""
    sentences: list[Sentence] = []
    chunks: list[Chunk] = []
    per_doc = []
    dropped: dict[str, str] = {}
    seen = Seen() if seen is None else seen  # identical paragraphs and chunks are indexed once (rag.segment)
    for doc in docs:
        skipped = seen.skipped_paragraphs
        try:
            doc_sentences, doc_chunks = segment_document(
                doc, first_sentence_id + len(sentences), settings.chunk_sentences, settings.chunk_overlap, seen,
                limits,
            )
        except InputFileError as exc:  # too slow to split (it left ``seen`` as it was)
            if doc.id not in found:
                raise
            message = str(exc)
            dropped[doc.id] = message.removeprefix(f"{doc.id}: ")
            continue
        duplicates = seen.skipped_paragraphs - skipped
        if not doc_sentences and not duplicates:
            if doc.id in found:
                dropped[doc.id] = NO_SENTENCES
                continue  # left out whole: it adds no sentence or chunk, and no duplicate count
            raise InputFileError(f"{doc.id}: {NO_SENTENCES}")
        sentences.extend(doc_sentences)
        chunks.extend(doc_chunks)
        per_doc.append(
            {"id": doc.id, "sha256": doc.sha256, "title": doc.title, "date": doc.date, "format": doc.fmt,
             "chars": len(doc.text), "sentences": len(doc_sentences), "chunks": len(doc_chunks),
             "duplicate_paragraphs": duplicates}
        )
    if seen.skipped_paragraphs or seen.skipped_chunks:
        log.info("indexed once: %d duplicate paragraphs and %d duplicate chunks skipped",
                 seen.skipped_paragraphs, seen.skipped_chunks)
    return sentences, chunks, per_doc, dropped


def left_out(docs: list[Document], dropped: dict[str, str]) -> tuple[list[Document], list[Skipped]]:
    """The documents ``segment_corpus`` indexed, and those it left out (files found in the corpus folder without
    a sentence, or too slow to split), each recorded as skipped with a one-line warning naming it and the
    reason, as unreadable files are."""
    if not dropped:
        return docs, []
    return ([d for d in docs if d.id not in dropped],
            [skip_file(d.id, d.sha256, dropped[d.id]) for d in docs if d.id in dropped])


def _build_locked(settings: Settings, embedder: Embedder, documents: list[Document] | None,
                  staged: corpus.Staged | None = None) -> Index:
    import numpy as np

    started = time.perf_counter()
    max_bytes, max_chars = int(settings.max_file_mb * 1e6), settings.max_text_chars
    limits = DocumentLimits.from_settings(settings)
    # Files of the corpus folder that cannot be read, or yield no sentence: left out, listed in the manifest.
    skipped: list[Skipped] = []
    found: Collection[str] = ()  # documents read from the corpus folder, not given: skipped, not refused
    if staged is not None:
        docs = staged.documents()
        skipped = staged.skipped
        found = {d.id for d in docs} - set(staged.names)
    elif documents is not None:
        docs = documents
    else:
        docs, skipped = read_corpus(settings.corpus_dir, max_bytes=max_bytes, max_chars=max_chars, limits=limits)
        found = {d.id for d in docs}
    sentences, chunks, per_doc, dropped = segment_corpus(settings, docs, limits, found=found)
    docs, without_sentences = left_out(docs, dropped)
    if without_sentences:
        skipped = sorted([*skipped, *without_sentences], key=lambda s: s.id)
        if not docs:
            raise no_documents(settings.corpus_dir, skipped)
    cache, token_cache = _reusable_vectors(settings, embedder.info)
    sentence_vectors, sentence_tokens = _embed_with_tokens(embedder, [s.text for s in sentences], cache, token_cache)
    chunk_vectors = _embed(embedder, [c.text for c in chunks], cache)
    words = vocabulary(sentences)
    word_vectors = _embed(embedder, list(words), cache)
    if not (np.isfinite(sentence_vectors).all() and np.isfinite(chunk_vectors).all()
            and np.isfinite(word_vectors).all()):
        raise RuntimeError("the embedding model produced non-finite vectors")
    store = FaissStore(embedder.dim, settings.index_type)
    store.add(chunk_vectors)
    bm25 = BM25Index.build([c.text for c in chunks])

    builds = settings.index_dir / ".builds"
    builds.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    target = builds / f"{settings.index_name}-{stamp}-{os.getpid()}"
    target.mkdir()
    files = {
        "documents.jsonl": _write_jsonl(target / "documents.jsonl", (asdict(d) for d in docs)),
        "sentences.jsonl": _write_jsonl(target / "sentences.jsonl", (asdict(s) for s in sentences)),
        "chunks.jsonl": _write_jsonl(target / "chunks.jsonl", (asdict(c) for c in chunks)),
    }
    np.save(target / "sentence_vectors.npy", sentence_vectors, allow_pickle=False)
    files["words.json"] = _write_json(target / "words.json", list(words))
    np.save(target / "word_vectors.npy", word_vectors, allow_pickle=False)
    token_offsets = np.cumsum([0, *(len(t) for t in sentence_tokens)], dtype=np.int64)
    token_vectors = (np.concatenate(sentence_tokens) if sentence_tokens
                     else np.zeros((0, embedder.dim))).astype(np.float16)
    np.save(target / "token_vectors.npy", token_vectors, allow_pickle=False)
    np.save(target / "token_offsets.npy", token_offsets, allow_pickle=False)
    store.save(target)
    bm25.save(target)
    for file in sorted(p for p in target.rglob("*") if p.is_file()):
        files.setdefault(file.relative_to(target).as_posix(), _file_sha256(file))
    manifest = {
        **_expected_fingerprint(settings, embedder.info),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "build_seconds": round(time.perf_counter() - started, 3),
        "embedding": {"model_id": embedder.info.model_id, "sha256": embedder.info.sha256, "dim": embedder.dim},
        "documents": per_doc,
        # Files of the corpus folder left out because they cannot be read or yield no sentence, with their
        # sha256: the index is not stale because of them until they change (stale_reason).
        "skipped": [asdict(s) for s in skipped],
        # Documents' text never begins with a byte order mark (rag.documents._decode): an index built before
        # (no such key) holding a document whose file has one is stale (stale_reason).
        "bom_stripped": True,
        # Which encodings the build could read (TEXT_DECODING): a file skipped as binary or not UTF-8 by an
        # older build may be readable now, and such an index is stale (stale_reason).
        "text_decoding": TEXT_DECODING,
        # The limits a file of the corpus folder was skipped for: raising one makes the index stale (a file
        # skipped at RAG_MAX_DOC_SECONDS on a busy machine is retried once the user raises the limit).
        "limits": {name: getattr(settings, name) for name in LIMIT_SETTINGS},
        "counts": {"documents": len(docs), "sentences": len(sentences), "chunks": len(chunks)},
        "files": files,
    }
    manifest.pop("model_sha256")
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    if staged is not None:
        staged.mark_committed(target, settings.index_path)
    _swap_in(settings, target)
    if staged is not None:
        staged.move_in()
    # The model's vocabulary vectors (rag.word_table) are made once per model and cache folder: made here,
    # the first build waits for them (about 5 s) instead of the first question. Never raises.
    if hasattr(embedder, "word_table"):
        embedder.word_table()
    return Index(
        settings.index_path, manifest, {d.id: d for d in docs}, sentences, chunks, store, sentence_vectors, bm25,
        words, word_vectors, token_vectors, token_offsets,
    )


def vocabulary(sentences: list[Sentence], limit: int = MAX_INDEXED_WORDS) -> tuple[str, ...]:
    """The words the answerer matches softly (``rag.text.soft_words``), by the number of sentences holding
    them, most first (ties alphabetically), at most ``limit``."""
    counts: Counter[str] = Counter()
    for s in sentences:
        counts.update(set(soft_words(s.text)))
    return tuple(sorted(counts, key=lambda w: (-counts[w], w))[:limit])


def _write_json(path: Path, value) -> str:
    data = json.dumps(value, ensure_ascii=False).encode("utf-8")
    path.write_bytes(data)
    return sha256_bytes(data)


def _read_words(path: Path, files: dict, dim: int) -> tuple[tuple[str, ...], np.ndarray | None]:
    """The build's vocabulary and its vectors; ``((), None)`` for a build made before they were stored."""
    import numpy as np

    if "words.json" not in files:
        return (), None
    words_file, vectors_file = path / "words.json", path / "word_vectors.npy"
    try:
        data = words_file.read_bytes()
        if sha256_bytes(data) != files["words.json"] or sha256_bytes(vectors_file.read_bytes()) != files.get(
                "word_vectors.npy"):
            raise _rebuild(words_file, "does not match its checksum")
        words = json.loads(data.decode("utf-8"))
        vectors = np.load(vectors_file, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        raise _rebuild(words_file, "or word_vectors.npy is unreadable") from None
    if (not isinstance(words, list) or not all(isinstance(w, str) for w in words) or vectors.dtype != np.float32
            or vectors.shape != (len(words), dim) or not np.isfinite(vectors).all()):
        raise _rebuild(vectors_file, "does not hold one finite float32 vector per word of words.json")
    return tuple(words), vectors


def _read_tokens(path: Path, files: dict, dim: int, n_sentences: int,
                 verify: bool = True) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The build's word-piece vectors (memory-mapped: they are 12 times the size of the sentence vectors) and
    their per-sentence offsets; ``(None, None)`` for a build made before they were stored. ``verify=False``
    when the caller has checked both files against the manifest already."""
    import numpy as np

    if "token_vectors.npy" not in files:
        return None, None
    vectors_file, offsets_file = path / "token_vectors.npy", path / "token_offsets.npy"
    try:
        if verify:
            _verify_file(vectors_file, files[vectors_file.name])
            _verify_file(offsets_file, files[offsets_file.name])
        vectors = np.load(vectors_file, allow_pickle=False, mmap_mode="r")
        offsets = np.load(offsets_file, allow_pickle=False)
    except (OSError, ValueError, EOFError, KeyError):
        raise _rebuild(vectors_file, "or token_offsets.npy is unreadable") from None
    if (vectors.dtype != np.float16 or vectors.ndim != 2 or vectors.shape[1] != dim or offsets.dtype != np.int64
            or offsets.shape != (n_sentences + 1,) or offsets[0] != 0 or offsets[-1] != len(vectors)
            or (np.diff(offsets) < 0).any() or not np.isfinite(vectors).all()):
        raise _rebuild(vectors_file, "does not hold finite float16 rows laid out as token_offsets.npy says")
    return vectors, offsets


def _swap_in(settings: Settings, target: Path) -> None:
    link = settings.index_path
    tmp_link = settings.index_dir / f".{settings.index_name}.link-{os.getpid()}"
    if tmp_link.is_symlink() or tmp_link.exists():
        tmp_link.unlink()
    os.symlink(os.path.relpath(target, settings.index_dir), tmp_link)
    if link.is_dir() and not link.is_symlink():  # a plain folder (copied index): move it aside first
        shutil.rmtree(link)
    os.replace(tmp_link, link)
    for old in _builds_of(settings):
        if old.resolve() != target.resolve():
            shutil.rmtree(old, ignore_errors=True)


def _builds_of(settings: Settings) -> list[Path]:
    """Build folders of this index (not of another whose name starts the same, e.g. 'default-2')."""
    builds = settings.index_dir / ".builds"
    if not builds.is_dir():
        return []
    name = re.compile(rf"{re.escape(settings.index_name)}-\d{{8}}T\d{{12}}-\d+")
    return [p for p in builds.iterdir() if name.fullmatch(p.name)]


# ---------------------------------------------------------------- loading


def _rebuild(file: Path, problem: str) -> IndexCorruptError:
    return IndexCorruptError(f"{file}: {problem}; rebuild with `rag index build`")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _manifest_is_complete(manifest: dict) -> bool:
    """The fields of the current format that loading, staleness checks and ``rag index info`` read."""
    embedding, files, counts = manifest.get("embedding"), manifest.get("files"), manifest.get("counts")
    chunking, documents = manifest.get("chunking"), manifest.get("documents")
    skipped = manifest.get("skipped", [])  # absent from builds made before unreadable files were skipped
    return (
        isinstance(embedding, dict) and _is_int(embedding.get("dim")) and embedding["dim"] > 0
        and isinstance(embedding.get("model_id"), str) and isinstance(embedding.get("sha256"), str)
        and isinstance(files, dict)
        and isinstance(counts, dict) and all(_is_int(counts.get(k)) for k in ("documents", "sentences", "chunks"))
        and isinstance(chunking, dict) and all(_is_int(chunking.get(k)) for k in ("chunk_sentences", "chunk_overlap"))
        and isinstance(manifest.get("index_type"), str) and isinstance(manifest.get("created"), str)
        and isinstance(manifest.get("build_seconds"), int | float)
        and isinstance(documents, list)
        and all(
            isinstance(d, dict) and isinstance(d.get("id"), str) and isinstance(d.get("sha256"), str)
            and isinstance(d.get("date"), str | None) and all(_is_int(d.get(k)) for k in ("chars", "sentences", "chunks"))
            for d in documents
        )
        and isinstance(skipped, list)
        and all(
            isinstance(s, dict) and isinstance(s.get("id"), str) and isinstance(s.get("sha256"), str | None)
            and isinstance(s.get("reason"), str)
            for s in skipped
        )
    )


def read_manifest(path: Path) -> dict:
    file = path / "manifest.json"
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _rebuild(file, "manifest missing") from None
    except (ValueError, UnicodeDecodeError):
        raise _rebuild(file, "manifest is not valid JSON") from None
    except OSError as exc:  # a folder in its place, no permission...
        raise _rebuild(file, f"manifest unreadable ({exc.strerror or type(exc).__name__})") from None
    if not isinstance(manifest, dict):
        raise _rebuild(file, "manifest lacks required fields")
    if manifest.get("format_version") != FORMAT_VERSION:
        # Another format has other fields: stale_reason() reports the version and the index is rebuilt.
        return manifest
    if not _manifest_is_complete(manifest):
        raise _rebuild(file, "manifest lacks required fields")
    files = manifest["files"]
    for name in REQUIRED_FILES:
        if not isinstance(files.get(name), str) or not _SHA256.fullmatch(files[name]):
            raise _rebuild(file, f"manifest has no valid checksum for {name}")
    for name, sha in files.items():
        parts = name.split("/")
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha) or name.startswith("/") or ".." in parts or "" in parts:
            raise _rebuild(file, f"manifest has an invalid file entry {name!r}")
    return manifest


def stale_reason(settings: Settings, manifest: dict, model: ModelInfo) -> str | None:
    """Why the saved index no longer matches the corpus, model or settings; None when it is current."""
    expected, found = _expected_fingerprint(settings, model), _manifest_fingerprint(manifest)
    if found["format_version"] != expected["format_version"]:
        return f"index format {found['format_version']} != {expected['format_version']}"
    if found["model_sha256"] != expected["model_sha256"]:
        return "built with a different embedding model"
    if found["chunking"] != expected["chunking"]:
        return "chunking parameters changed"
    if found["index_type"] != expected["index_type"]:
        return f"index type {found['index_type']} != {expected['index_type']}"
    documents = manifest.get("documents")
    if not isinstance(documents, list) or not all(isinstance(d, dict) and "id" in d for d in documents):
        return "manifest has no document list"
    indexed = {d["id"]: d.get("sha256") for d in documents}
    try:
        files = corpus_files(settings.corpus_dir)
    except InputFileError:
        # The corpus folder is gone: the index is all we have, keep serving it, but say so.
        log.warning("corpus folder %s does not exist: answering from index '%s' as it was built",
                    settings.corpus_dir, settings.index_name)
        return None
    current: dict[str, str | None] = {}
    with_bom = set()
    for p in files:
        try:
            data = p.read_bytes()
        except OSError:  # cannot be read: the build skips it (rag.documents.read_corpus) and records None
            current[p.name] = None
            continue
        current[p.name] = sha256_bytes(data)
        if starts_with_bom(data):
            with_bom.add(p.name)
    known = _skipped_files(manifest) | indexed
    if current != known:
        added, removed = set(current) - set(known), set(known) - set(current)
        changed = {k for k in set(current) & set(known) if current[k] != known[k]}
        parts = [f"{label}: {', '.join(sorted(names))}" for label, names in
                 (("added", added), ("removed", removed), ("changed", changed)) if names]
        return "corpus changed (" + "; ".join(parts) + ")"
    if not manifest.get("bom_stripped") and with_bom & set(indexed):
        return f"byte order mark of {', '.join(sorted(with_bom & set(indexed)))} indexed as text"
    raised = _raised_limits(settings, manifest)
    if raised:
        return "limits raised since files were skipped for them (" + "; ".join(raised) + ")"
    decoding = manifest.get("text_decoding", 1)
    if not isinstance(decoding, int) or decoding < TEXT_DECODING:
        retry = sorted(s["id"] for s in manifest.get("skipped") or []
                       if isinstance(s, dict) and str(s.get("reason", "")).startswith(_UNREADABLE_BEFORE))
        if retry:
            return f"skipped by a build that read fewer encodings: {', '.join(retry)}"
    return None


LIMIT_SETTINGS = ("max_file_mb", "max_text_chars", "max_pdf_pages", "max_block_lines", "max_doc_seconds")


def _raised_limits(settings: Settings, manifest: dict) -> list[str]:
    """The limits higher now than at the build that skipped a file for them ("RAG_MAX_DOC_SECONDS 0.01 -> 600:
    slow.txt"); a file skipped for a limit names its setting in the reason."""
    built = manifest.get("limits")
    if not isinstance(built, dict):
        return []
    raised = []
    for name in LIMIT_SETTINGS:
        env, before, now = f"RAG_{name.upper()}", built.get(name), getattr(settings, name)
        files = [s["id"] for s in manifest.get("skipped") or []
                 if isinstance(s, dict) and env in str(s.get("reason", ""))]
        if files and isinstance(before, int | float) and now > before:
            raised.append(f"{env} {before:g} -> {now:g}: {', '.join(sorted(files))}")
    return raised


def _skipped_files(manifest: dict) -> dict[str, str | None]:
    """The files of the corpus folder the build left out because they could not be read: id -> sha256."""
    skipped = manifest.get("skipped")
    if not isinstance(skipped, list):
        return {}
    return {s["id"]: s.get("sha256") for s in skipped if isinstance(s, dict) and isinstance(s.get("id"), str)}


def _file_sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _verify_file(file: Path, expected_sha: str) -> None:
    try:
        actual = _file_sha256(file)
    except FileNotFoundError:
        raise _rebuild(file, "missing") from None
    except OSError as exc:  # a folder in its place, no permission...
        raise _rebuild(file, f"unreadable ({exc.strerror or type(exc).__name__})") from None
    if actual != expected_sha:
        raise _rebuild(file, "checksum does not match the manifest (edited?)")


def _read_jsonl(path: Path, expected_sha: str) -> list[dict]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _rebuild(path, "missing") from None
    except OSError as exc:
        raise _rebuild(path, f"unreadable ({exc.strerror or type(exc).__name__})") from None
    if sha256_bytes(data) != expected_sha:
        raise _rebuild(path, "checksum does not match the manifest (edited?)")
    try:
        rows = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    except (ValueError, UnicodeDecodeError):
        raise _rebuild(path, "not valid JSON lines") from None
    if not all(isinstance(row, dict) for row in rows):
        raise _rebuild(path, "not valid JSON lines")
    return rows


def load_index(path: Path, manifest: dict | None = None) -> Index:
    """Load a build, verifying once every file against its checksum in the manifest (binary files before they
    are parsed), every span against its document and every vector for finiteness."""
    import numpy as np

    manifest = manifest or read_manifest(path)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexCorruptError(f"{path}: index format {manifest.get('format_version')} is not {FORMAT_VERSION}; "
                                "rebuild with `rag index build`")
    files = manifest["files"]
    for name, sha in files.items():
        if name not in _JSONL_FILES:  # those are verified as they are read, below
            _verify_file(path / name, sha)
    try:
        docs = [Document(**row) for row in _read_jsonl(path / "documents.jsonl", files["documents.jsonl"])]
        sentences = [Sentence(**row) for row in _read_jsonl(path / "sentences.jsonl", files["sentences.jsonl"])]
        chunks = [
            Chunk(**{**row, "sentence_ids": tuple(row["sentence_ids"])})
            for row in _read_jsonl(path / "chunks.jsonl", files["chunks.jsonl"])
        ]
    except (TypeError, KeyError):
        raise IndexCorruptError(f"{path}: index rows have unexpected fields; rebuild with `rag index build`") from None
    documents = {d.id: d for d in docs}
    for span in (*sentences, *chunks):
        doc = documents.get(span.source)
        if doc is None or not isinstance(span.start, int) or not isinstance(span.end, int) \
                or doc.text[span.start : span.end] != span.text:
            raise IndexCorruptError(f"{path}: span {span.source}:{span.start}-{span.end} does not match its document; "
                                    "rebuild with `rag index build`")
    dim = manifest["embedding"]["dim"]
    store = FaissStore.load(path, manifest.get("index_type", "flat"), dim)
    vectors_file = path / "sentence_vectors.npy"
    try:
        sentence_vectors = np.load(vectors_file, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        raise IndexCorruptError(f"{vectors_file}: unreadable; rebuild with `rag index build`") from None
    if len(store) != len(chunks) or sentence_vectors.shape != (len(sentences), dim):
        raise IndexCorruptError(f"{path}: vector counts do not match chunks/sentences; rebuild with `rag index build`")
    if sentence_vectors.dtype != np.float32 or not np.isfinite(sentence_vectors).all():
        raise _rebuild(vectors_file, "holds values that are not finite float32 numbers")
    if not store.all_finite():
        raise _rebuild(path / FaissStore.FILE, "holds values that are not finite numbers")
    bm25 = BM25Index.load(path)
    words, word_vectors = _read_words(path, files, dim)
    token_vectors, token_offsets = _read_tokens(path, files, dim, len(sentences), verify=False)  # checked above
    return Index(path, manifest, documents, sentences, chunks, store, sentence_vectors, bm25, words, word_vectors,
                 token_vectors, token_offsets)


def open_index(settings: Settings, embedder: Embedder, rebuild_if_stale: bool = True) -> Index:
    """Load the index, building it when missing and rebuilding it (with a message) when stale."""
    path = settings.index_path
    _clean_up_after_killed_processes(settings)
    if not path.exists():
        log.warning("index '%s' not found at %s: building it from %s", settings.index_name, path, settings.corpus_dir)
        return build_index(settings, embedder, only_if_stale=True)
    manifest = read_manifest(path)
    reason = stale_reason(settings, manifest, embedder.info)
    if reason is not None:
        if not rebuild_if_stale:
            raise IndexCorruptError(f"{path}: index is stale ({reason}); rebuild with `rag index build`")
        log.warning("index '%s' is stale (%s): rebuilding", settings.index_name, reason)
        try:
            return build_index(settings, embedder, only_if_stale=True)
        except InputFileError as exc:
            # The corpus cannot be indexed as it is now (no readable document left, a document that cannot be
            # split...): keep answering from the index as it was built rather than from nothing.
            try:
                index = load_index(path, read_manifest(path))
            except IndexCorruptError:
                raise exc from None
            log.warning("index '%s' could not be rebuilt (%s): answering from it as it was built",
                        settings.index_name, exc)
            return index
    return load_index(path, manifest)


STALE_LOCK_WAIT_S = 2.0


def _clean_up_after_killed_processes(settings: Settings) -> None:
    """Remove what killed builds and adds left: build folders never swapped in, and staging folders of the corpus
    (whose files are moved in when their index was committed, rag.corpus). Skipped while a build runs."""
    live = settings.index_path.resolve() if settings.index_path.exists() else None
    stale = corpus.stale_staging(settings.corpus_dir)
    if not stale and all(p.resolve() == live for p in _builds_of(settings)):
        return
    from filelock import Timeout

    # A staging folder is stale once its process is a zombie, but a process that ends from one of its threads
    # (os._exit in rag.net.exit_with_parent) shows as a zombie while its other threads still hold the build lock
    # for a few milliseconds: wait a moment for it then (a CI run once found the lock still held and left the
    # folder behind). Without stale staging, a held lock is a build that runs: skip at once.
    try:
        with _lock(settings, timeout=STALE_LOCK_WAIT_S if stale else 0):
            corpus.recover(settings.corpus_dir)
            live = settings.index_path.resolve() if settings.index_path.exists() else None
            for build in _builds_of(settings):
                if build.resolve() != live:
                    shutil.rmtree(build, ignore_errors=True)
    except Timeout:
        pass  # a build is running; it cleans up when it swaps its index in
