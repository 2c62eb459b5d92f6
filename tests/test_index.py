"""The persisted index: manifest, staleness, corruption, locking, bad input files, crash safety, no pickle."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from rag.documents import sha256_bytes
from rag.embeddings import BUNDLED_MODEL_ID, BUNDLED_SHA256
from rag.errors import IndexCorruptError, IndexLockedError, InputFileError
from rag.index import FORMAT_VERSION, build_index, load_index, open_index, read_manifest, stale_reason
from rag.pipeline import Pipeline
from tests.conftest import holding_index_lock, make_dir, write_file

ARTICLE_NAME = "2026-03-06-iran-proxies-iraq.txt"
# tqdm's bar ("  3%|▎   | 1/23 [...]"), printed by the embedder while it encodes many texts.
PROGRESS_BAR = re.compile(r"\d+%\|")


def minimal_pdf(lines: list[str]) -> bytes:
    """A one-page PDF with the given text lines in Helvetica, written by hand (valid xref offsets)."""

    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    content = "BT /F1 12 Tf 72 720 Td 16 TL " + " ".join(f"({escape(line)}) Tj T*" for line in lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(content)} >>\nstream\n{content}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref_at = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref_at}\n%%EOF\n".encode()
    return out


def snapshot(settings) -> dict:
    """Everything a failed add must leave untouched: the live build, its files, and the corpus folder."""
    live = settings.index_path.resolve()
    return {
        "live build": live,
        "manifest.json": (live / "manifest.json").read_bytes(),
        "chunks.jsonl": (live / "chunks.jsonl").read_bytes(),
        "builds": sorted(p.name for p in (settings.index_dir / ".builds").iterdir()),
        "corpus": {p.name: p.read_bytes() for p in sorted(settings.corpus_dir.iterdir())},
    }


# ---------------------------------------------------------------- manifest


def test_manifest_records_what_the_index_was_built_from(pipeline, article_text):
    manifest = read_manifest(pipeline.index.path)
    assert manifest == pipeline.index.manifest
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["embedding"] == {"model_id": BUNDLED_MODEL_ID, "sha256": BUNDLED_SHA256, "dim": 384}
    assert manifest["chunking"]["chunk_sentences"] == pipeline.settings.chunk_sentences
    assert manifest["chunking"]["chunk_overlap"] == pipeline.settings.chunk_overlap
    assert manifest["chunking"]["segmenter"].startswith("pysbd")
    assert manifest["index_type"] == "flat"
    (doc,) = manifest["documents"]
    assert doc["id"] == ARTICLE_NAME
    assert doc["sha256"] == sha256_bytes(article_text.encode("utf-8"))
    assert doc["date"] == "2026-03-06"
    assert manifest["counts"] == {
        "documents": 1,
        "sentences": len(pipeline.index.sentences),
        "chunks": len(pipeline.index.chunks),
    }
    assert datetime.fromisoformat(manifest["created"]).tzinfo is not None
    assert manifest["build_seconds"] > 0
    for name, digest in manifest["files"].items():
        assert sha256_bytes((pipeline.index.path / name).read_bytes()) == digest, name


def test_no_pickle_anywhere_in_the_built_index(pipeline):
    import numpy as np

    files = [p for p in pipeline.index.path.resolve().rglob("*") if p.is_file()]
    assert {"manifest.json", "vectors.faiss", "sentence_vectors.npy", "chunks.jsonl"} <= {p.name for p in files}
    for file in files:
        assert file.suffix not in (".pkl", ".pickle"), file
        # Pickle protocols 2+ start with the PROTO opcode 0x80.
        assert file.read_bytes()[:1] != b"\x80", f"{file} looks like a pickle"
        if file.suffix == ".npy":
            np.load(file, allow_pickle=False)  # raises if the array needs pickle


def test_the_vocabulary_is_embedded_with_the_index_and_read_back(pipeline, embedder):
    import numpy as np

    from rag.text import soft_words

    index = pipeline.index
    words = set(soft_words(" ".join(s.text for s in index.sentences)))
    assert set(index.words) == words and len(index.words) == len(words)
    assert index.word_vectors.shape == (len(words), 384) and index.word_vectors.dtype == np.float32
    holding = [sum(w in soft_words(s.text) for s in index.sentences) for w in index.words[:20]]
    assert holding == sorted(holding, reverse=True), "the words in most sentences first"
    row = index.words.index("quds")
    assert float(index.word_vectors[row] @ embedder.encode(["quds"])[0]) > 0.9999, "the word's own vector"
    loaded = load_index(index.path)
    assert loaded.words == index.words and np.array_equal(loaded.word_vectors, index.word_vectors)


def _as_built_before(path: Path, *files: str) -> None:
    """Make the build at ``path`` look like one made before ``files`` were stored: gone, and not in its manifest."""
    manifest = read_manifest(path)
    for name in files:
        (path / name).unlink()
        del manifest["files"][name]
    (path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def test_an_index_built_before_word_vectors_loads_without_them(indexed_settings, embedder):
    _as_built_before(indexed_settings.index_path, "words.json", "word_vectors.npy")
    index = open_index(indexed_settings, embedder)
    assert index.words == () and index.word_vectors is None
    answer = Pipeline(indexed_settings, embedder, index).ask("Who replaced Qassem Soleimani?")
    assert answer.citations and not answer.abstained


def test_sentence_token_vectors_are_stored_with_the_index_and_read_back(pipeline, embedder):
    import numpy as np

    index = pipeline.index
    assert {"token_vectors.npy", "token_offsets.npy"} <= set(index.manifest["files"])
    assert index.token_vectors.dtype == np.float16 and index.token_vectors.shape[1] == 384
    assert index.token_offsets.shape == (len(index.sentences) + 1,) and index.token_offsets[-1] == len(index.token_vectors)
    sentence = next(s for s in index.sentences if "Ghaani" in s.text)
    _, (expected,) = embedder.encode_with_tokens([sentence.text])
    rows = index.sentence_tokens(sentence.id)
    assert rows.shape == expected.shape and len(rows) >= len(sentence.text.split()) // 2
    assert float(np.abs(rows.astype(np.float32) - expected).max()) < 2e-3, "float16 copies of the model's rows"
    loaded = load_index(index.path)
    assert np.array_equal(loaded.token_vectors, index.token_vectors)
    assert np.array_equal(loaded.token_offsets, index.token_offsets)


def test_an_index_built_before_token_vectors_answers_the_same(indexed_settings, embedder, pipeline):
    _as_built_before(indexed_settings.index_path, "token_vectors.npy", "token_offsets.npy")
    index = open_index(indexed_settings, embedder)
    assert index.token_vectors is None and index.sentence_tokens(0) is None
    question = "Who replaced Qassem Soleimani?"
    old, new = Pipeline(indexed_settings, embedder, index).ask(question), pipeline.ask(question)
    assert [c.text for c in old.citations] == [c.text for c in new.citations]
    assert abs(old.confidence - new.confidence) < 0.01, "the candidates' token vectors are encoded when needed"


def test_a_rebuild_encodes_only_new_sentences(indexed_settings, embedder, monkeypatch):
    from rag.index import build_index as rebuild

    encoded: list[str] = []
    real = embedder.encode_with_tokens

    def recording(texts, *args, **kwargs):
        encoded.extend(texts)
        return real(texts, *args, **kwargs)

    monkeypatch.setattr(embedder, "encode_with_tokens", recording)
    before = read_manifest(indexed_settings.index_path)
    write_file(indexed_settings.corpus_dir / "extra.txt", b"A new paragraph about glaciers. It has two sentences.\n")
    index = rebuild(indexed_settings, embedder)
    assert sorted(encoded) == ["A new paragraph about glaciers.", "It has two sentences."]
    assert index.token_offsets[-1] == len(index.token_vectors) and len(index.sentences) == before["counts"]["sentences"] + 2


def test_the_answerer_embeds_only_words_the_index_lacks(pipeline):
    from rag.answer.features import Featurizer

    encoded: list[list[str]] = []

    class Recording:
        def encode(self, texts):
            encoded.append(list(texts))
            return pipeline.embedder.encode(texts)

    featurizer = Featurizer(pipeline.index, Recording())
    featurizer.word_vectors.matrix(["militias", "quds", "militias"])
    assert encoded == []
    featurizer.word_vectors.matrix(["quds", "zeppelin"])
    assert encoded == [["zeppelin"]]


# ---------------------------------------------------------------- staleness


def _rebuild_after(settings, embedder, caplog) -> tuple[dict, str]:
    before = settings.index_path.resolve()
    with caplog.at_level(logging.WARNING, logger="rag"):
        index = open_index(settings, embedder)
    assert settings.index_path.resolve() != before, "a new build was swapped in"
    assert not before.exists(), "the replaced build was cleaned up"
    assert read_manifest(settings.index_path) == index.manifest
    return index.manifest, caplog.text


@pytest.mark.slow
def test_changed_chunking_setting_rebuilds_with_a_warning(indexed_settings, embedder, caplog):
    settings = indexed_settings.model_copy(update={"chunk_sentences": 2})
    manifest, log = _rebuild_after(settings, embedder, caplog)
    assert "stale (chunking parameters changed): rebuilding" in log
    assert manifest["chunking"]["chunk_sentences"] == 2


@pytest.mark.slow
def test_changed_corpus_file_rebuilds_with_a_warning(indexed_settings, embedder, caplog):
    article = indexed_settings.corpus_dir / ARTICLE_NAME
    article.write_text(article.read_text(encoding="utf-8") + "\n\nA late paragraph was added.\n", encoding="utf-8")
    manifest, log = _rebuild_after(indexed_settings, embedder, caplog)
    assert f"corpus changed (changed: {ARTICLE_NAME})" in log
    assert manifest["documents"][0]["sha256"] == sha256_bytes(article.read_bytes())


@pytest.mark.slow
def test_added_corpus_file_rebuilds_with_a_warning(indexed_settings, embedder, caplog):
    (indexed_settings.corpus_dir / "note.txt").write_text("Talks resumed in Muscat on Tuesday.", encoding="utf-8")
    manifest, log = _rebuild_after(indexed_settings, embedder, caplog)
    assert "corpus changed (added: note.txt)" in log
    assert manifest["counts"]["documents"] == 2


@pytest.mark.slow
def test_other_format_version_rebuilds_with_a_warning(indexed_settings, embedder, caplog):
    manifest_file = indexed_settings.index_path / "manifest.json"
    old = json.loads(manifest_file.read_text(encoding="utf-8"))
    manifest_file.write_text(json.dumps(old | {"format_version": FORMAT_VERSION + 1}), encoding="utf-8")
    manifest, log = _rebuild_after(indexed_settings, embedder, caplog)
    assert f"index format {FORMAT_VERSION + 1} != {FORMAT_VERSION}" in log
    assert manifest["format_version"] == FORMAT_VERSION


@pytest.mark.slow
def test_hnsw_index_type_rebuilds_and_searches(indexed_settings, embedder, caplog):
    settings = indexed_settings.model_copy(update={"index_type": "hnsw"})
    manifest, _ = _rebuild_after(settings, embedder, caplog)
    assert manifest["index_type"] == "hnsw"
    hits = Pipeline(settings, embedder, open_index(settings, embedder)).search("Who replaced Soleimani?", 3)
    assert any("Esmail Ghaani" in h.chunk.text for h in hits)


def test_stale_index_without_rebuild_is_a_clear_error(indexed_settings, embedder):
    settings = indexed_settings.model_copy(update={"chunk_overlap": 0})
    with pytest.raises(IndexCorruptError, match=r"stale \(chunking parameters changed\).*rag index build"):
        open_index(settings, embedder, rebuild_if_stale=False)


# ---------------------------------------------------------------- corruption


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _edit_one_chunk(path: Path) -> None:
    path.write_text(path.read_text(encoding="utf-8").replace("Soleimani", "Solemani", 1), encoding="utf-8")


@pytest.mark.parametrize(
    ("file", "damage"),
    [
        ("vectors.faiss", _truncate),
        ("vectors.faiss", Path.unlink),
        ("chunks.jsonl", _edit_one_chunk),
        ("sentences.jsonl", Path.unlink),
        ("sentence_vectors.npy", _truncate),
        ("word_vectors.npy", _truncate),
        ("words.json", lambda p: p.write_text('["militia"]', encoding="utf-8")),
        ("token_vectors.npy", _truncate),
        ("token_offsets.npy", lambda p: p.write_bytes(p.read_bytes()[:-8] + bytes(8))),
        ("manifest.json", lambda p: p.write_text("{not json", encoding="utf-8")),
        ("manifest.json", Path.unlink),
    ],
    ids=["truncated-faiss", "deleted-faiss", "edited-chunks", "deleted-sentences", "truncated-npy",
         "truncated-word-vectors", "edited-words", "truncated-token-vectors", "edited-token-offsets",
         "invalid-manifest", "deleted-manifest"],
)
def test_corrupt_file_is_a_clear_error_naming_it(indexed_settings, embedder, file, damage):
    damage(indexed_settings.index_path / file)
    with pytest.raises(IndexCorruptError) as raised:
        open_index(indexed_settings, embedder)
    message = str(raised.value)
    assert file in message
    assert "rag index build" in message


def test_missing_bm25_folder_is_a_clear_error(indexed_settings, embedder):
    shutil.rmtree(indexed_settings.index_path / "bm25")
    with pytest.raises(IndexCorruptError, match=r"bm25.*rag index build"):
        open_index(indexed_settings, embedder)


# ---------------------------------------------------------------- concurrent builds


@pytest.mark.slow
def test_concurrent_builds_in_threads_run_one_after_the_other(indexed_settings, embedder, monkeypatch):
    import rag.index

    real_build = rag.index._build_locked
    running, overlaps, finished = [], [], []

    def observed_build(*args, **kwargs):
        if running:
            overlaps.append(threading.current_thread().name)
        running.append(1)
        try:
            time.sleep(0.3)  # widen the window in which a missing lock would show as an overlap
            return real_build(*args, **kwargs)
        finally:
            running.pop()

    monkeypatch.setattr(rag.index, "_build_locked", observed_build)
    errors = []

    def build():
        try:
            finished.append(build_index(indexed_settings, embedder))
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=build, name=f"builder-{n}") for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert overlaps == [], "two builds ran at the same time"
    assert len(finished) == 2
    assert len(list((indexed_settings.index_dir / ".builds").iterdir())) == 1
    assert load_index(indexed_settings.index_path).manifest == finished[-1].manifest


@pytest.mark.slow
def test_second_thread_build_with_no_wait_is_locked_out(indexed_settings, embedder, monkeypatch):
    import rag.index

    real_build = rag.index._build_locked
    inside, release = threading.Event(), threading.Event()

    def held_build(*args, **kwargs):
        inside.set()
        release.wait(timeout=60)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(rag.index, "_build_locked", held_build)
    first = threading.Thread(target=build_index, args=(indexed_settings, embedder))
    first.start()
    try:
        assert inside.wait(timeout=60)
        impatient = indexed_settings.model_copy(update={"lock_timeout": 0})
        with pytest.raises(IndexLockedError, match="another build of index 'default' is running"):
            build_index(impatient, embedder)
    finally:
        release.set()
        first.join(timeout=120)
    load_index(indexed_settings.index_path)


def test_build_while_another_process_holds_the_lock_is_locked_out(indexed_settings, embedder):
    with holding_index_lock(indexed_settings):
        before = snapshot(indexed_settings)
        with pytest.raises(IndexLockedError, match=r"\.default\.lock"):
            build_index(indexed_settings.model_copy(update={"lock_timeout": 0}), embedder)
        assert snapshot(indexed_settings) == before


# ---------------------------------------------------------------- adding files


@pytest.fixture
def extendable(indexed_settings, embedder):
    return Pipeline(indexed_settings, embedder, open_index(indexed_settings, embedder))


BAD_FILES = {
    "empty": lambda d: write_file(d / "empty.txt", b""),
    "whitespace only": lambda d: write_file(d / "blank.md", b"  \n\n \t\n"),
    "binary": lambda d: write_file(d / "image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))),
    "not utf-8": lambda d: write_file(d / "latin1.txt", "Café in Erbil, naïve résumé.".encode("latin-1")),
    "unsupported suffix": lambda d: write_file(d / "report.docx", b"PK\x03\x04 not really a docx"),
    "no suffix": lambda d: write_file(d / "README", b"Plain text without a suffix."),
    "directory": lambda d: make_dir(d / "folder.txt"),
    "missing": lambda d: d / "missing.txt",
    "oversized": lambda d: write_file(d / "huge.txt", b"A long sentence about Baghdad. " * 40_000),
    "truncated pdf": lambda d: write_file(d / "broken.pdf", minimal_pdf(["A sentence about Basra."])[:200]),
    "not a pdf": lambda d: write_file(d / "fake.pdf", b"just text pretending to be a PDF"),
    "html without text": lambda d: write_file(
        d / "empty.html", b"<html><head><script>var x = 1;</script></head><body><nav></nav></body></html>"
    ),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_file_is_rejected_and_index_untouched(extendable, tmp_path, kind):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    bad = BAD_FILES[kind](uploads)
    if kind == "oversized":
        # 1.2 MB against a 1 MB limit (the default limit is 20 MB; no need to write that much).
        extendable.settings = extendable.settings.model_copy(update={"max_file_mb": 1.0})
    index_before, state_before = extendable.index, snapshot(extendable.settings)
    with pytest.raises(InputFileError) as raised:
        extendable.add_documents([bad])
    assert bad.name in str(raised.value)
    assert "\n" not in str(raised.value)
    assert extendable.index is index_before
    assert snapshot(extendable.settings) == state_before


def test_one_bad_file_among_good_ones_adds_nothing(extendable, tmp_path):
    good = write_file(tmp_path / "good.txt", b"Talks resumed in Muscat on Tuesday.")
    bad = write_file(tmp_path / "bad.txt", b"")
    before = snapshot(extendable.settings)
    with pytest.raises(InputFileError, match="bad.txt"):
        extendable.add_documents([good, bad])
    assert snapshot(extendable.settings) == before


def test_file_failing_during_the_build_is_rolled_back(extendable, tmp_path):
    # Reads fine, but holds only a heading, so segmentation finds no sentence once the rebuild has started.
    only_heading = write_file(tmp_path / "heading.txt", b"Just a heading")
    before = snapshot(extendable.settings)
    with pytest.raises(InputFileError, match="heading.txt: no sentences"):
        extendable.add_documents([only_heading])
    assert snapshot(extendable.settings) == before


def test_existing_name_needs_replace(extendable, tmp_path):
    same_name = write_file(tmp_path / ARTICLE_NAME, b"A different article with the same file name.")
    before = snapshot(extendable.settings)
    with pytest.raises(InputFileError, match=r"already in the corpus \(to update it, replace it: `rag index add --replace`"):
        extendable.add_documents([same_name])
    assert snapshot(extendable.settings) == before


GOOD_FILES = {
    "markdown": (
        "talks.md",
        b"# Ceasefire talks\n\nNegotiators met in Muscat on Tuesday to discuss a ceasefire. "
        b"Omani mediators shuttled between the delegations.\n",
        "Where did the ceasefire negotiators meet?",
        "Negotiators met in Muscat on Tuesday",
        "Ceasefire talks",
    ),
    "html": (
        "strike.html",
        b"<html><head><title>Port strike</title></head><body><nav>Home | News | Sport</nav><article>"
        b"<h1>Port strike in Umm Qasr</h1>"
        b"<p>Dock workers in Umm Qasr walked out on Sunday over unpaid wages, halting grain imports.</p>"
        b"<p>The port authority said talks with the union would resume this week.</p>"
        b"</article><footer>Copyright</footer></body></html>",
        "Why did dock workers walk out in Umm Qasr?",
        "Dock workers in Umm Qasr walked out on Sunday over unpaid wages",
        "Port strike in Umm Qasr",
    ),
    "pdf": (
        "refinery.pdf",
        minimal_pdf([
            "The Basra refinery expansion was approved by the oil ministry in March.",
            "Engineers expect the first cargo of refined fuel in 2027.",
        ]),
        "When was the Basra refinery expansion approved?",
        "The Basra refinery expansion was approved by the oil ministry in March.",
        None,
    ),
}


@pytest.mark.parametrize("kind", list(GOOD_FILES))
@pytest.mark.slow
def test_valid_file_is_added_and_searchable(extendable, tmp_path, embedder, kind):
    name, data, question, answer, section = GOOD_FILES[kind]
    (added,) = extendable.add_documents([write_file(tmp_path / name, data)])
    assert added.id == name
    assert (extendable.settings.corpus_dir / name).read_bytes() == data
    manifest = extendable.index.manifest
    assert manifest["counts"]["documents"] == 2
    assert {d["id"] for d in manifest["documents"]} == {ARTICLE_NAME, name}

    top = extendable.search(question, 3)[0]
    assert top.chunk.source == name
    assert answer in top.chunk.text
    assert top.chunk.section == section
    doc = extendable.index.documents[name]
    assert doc.text[top.chunk.start : top.chunk.end] == top.chunk.text

    # What was written to disk is current: reopening loads it without a rebuild.
    assert stale_reason(extendable.settings, read_manifest(extendable.settings.index_path), embedder.info) is None


# ---------------------------------------------------------------- crash safety


@pytest.mark.slow
def test_killed_build_leaves_the_previous_index_loadable(indexed_settings, embedder, tmp_path, rag_executable):
    """Kill a real `rag index build` while it embeds a large corpus: the old index must still load."""
    live_before = indexed_settings.index_path.resolve()
    manifest_before = read_manifest(indexed_settings.index_path)
    article = indexed_settings.corpus_dir / ARTICLE_NAME
    original_article = article.read_bytes()
    # Enough new sentences (> 512) that the embedder shows its progress bar: the sign that it is embedding.
    for doc in range(12):
        paragraphs = [
            " ".join(
                f"Convoy {doc}-{p}-{s} carried {doc * 100 + p * 10 + s} crates of supplies to depot {p} near Mosul."
                for s in range(4)
            )
            for p in range(30)
        ]
        (indexed_settings.corpus_dir / f"logistics-{doc:02d}.txt").write_text("\n\n".join(paragraphs), encoding="utf-8")

    stderr_file = tmp_path / "build.stderr"
    env = os.environ | {
        "RAG_CORPUS_DIR": str(indexed_settings.corpus_dir),
        "RAG_INDEX_DIR": str(indexed_settings.index_dir),
    }
    with stderr_file.open("wb") as stderr:
        build = subprocess.Popen([rag_executable, "index", "build"], env=env, cwd=tmp_path,
                                 stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + 120
            while not PROGRESS_BAR.search(stderr_file.read_text(errors="replace")):
                assert build.poll() is None, f"build ended before it was killed: {stderr_file.read_text()}"
                assert time.monotonic() < deadline, "build never started embedding"
                time.sleep(0.05)
            build.send_signal(signal.SIGKILL)
        finally:
            build.kill()
            build.wait()
    assert build.returncode == -signal.SIGKILL

    assert indexed_settings.index_path.resolve() == live_before
    index = load_index(indexed_settings.index_path)
    assert index.manifest == manifest_before
    assert [p.name for p in (indexed_settings.index_dir / ".builds").iterdir()] == [live_before.name]
    # The killed process's lock died with it, and the old index still answers once the corpus is as before.
    for extra in indexed_settings.corpus_dir.glob("logistics-*.txt"):
        extra.unlink()
    assert article.read_bytes() == original_article
    from filelock import FileLock

    with FileLock(str(indexed_settings.index_dir / ".default.lock"), timeout=0):
        pass
    assert stale_reason(indexed_settings, index.manifest, embedder.info) is None
