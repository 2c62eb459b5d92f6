"""Regressions for the hostile inputs and damaged state of issue 14, each reproduced through the real components
(the ``rag`` command on private copies of the corpus and index, the real model, FAISS and BM25).

Items 4 and 5 (citation markers in document text, the passages fence) are tested with the answer backends;
item 12 and the login rate limit in tests/test_hostile_api.py; item 13, file names with control characters and
the per-document limits in tests/test_hostile_corpus.py; properties over any input in tests/test_properties.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest

from rag import segment
from rag.documents import sha256_bytes
from rag.errors import InputFileError
from rag.index import load_index, open_index, read_manifest, stale_reason
from rag.pipeline import Pipeline
from rag.types import Document
from tests.test_bad_inputs import RagHome
from tests.test_cli import assert_one_line_error
from tests.test_index import ARTICLE_NAME, PROGRESS_BAR, snapshot

USAGE, INPUT_FILE, CORRUPT = 2, 3, 4


@pytest.fixture
def home(indexed_settings, rag_executable) -> RagHome:
    """Private copies of the session's corpus and built index, and the ``rag`` command pointed at them."""
    return RagHome(indexed_settings.corpus_dir.parent, rag_executable)


def corpus_names(home: RagHome) -> list[str]:
    """Every entry of the corpus folder, hidden ones included."""
    return sorted(p.name for p in (home.folder / "corpus").iterdir())


# ------------------------------------------------------------------ 1. sentence splitting is linear


def _lines(n: int) -> str:
    return "".join(f"w{i % 97}\n" for i in range(n))  # the probe's input, shorter


def _check_spans(doc: Document, sentences, chunks) -> None:
    for span in (*sentences, *chunks):
        assert doc.text[span.start : span.end] == span.text
    assert all(a.end <= b.start for a, b in zip(sentences, sentences[1:], strict=False))


@pytest.mark.slow
def test_a_long_block_of_short_lines_is_split_in_bounded_windows(monkeypatch):
    """30,000 lines in one block (117 kB): split whole, pysbd took about 5 s (3.9 MB: hours); now pysbd never
    sees more than WINDOW characters, every sentence is an exact span and no text is lost."""
    text = _lines(30_000)
    doc = Document("lines.txt", text, "lines", None, "-", "txt")
    seen: list[int] = []
    real = segment._segmenter()

    class Recording:
        def segment(self, block: str):
            seen.append(len(block))
            return real.segment(block)

    monkeypatch.setattr(segment, "_segmenter", lambda: Recording())
    sentences, chunks = segment.segment_document(doc, 0, 3, 1)
    assert seen and max(seen) <= segment.WINDOW
    _check_spans(doc, sentences, chunks)
    assert max(len(s.text) for s in sentences) <= segment.WINDOW
    covered = "".join(s.text for s in sentences)
    assert covered.replace("\n", "") == text.replace("\n", "")  # every word is in a sentence, once


def test_a_long_prose_block_splits_as_pysbd_splits_it_whole(article_text):
    """Windows end at the start of their last sentence, so a long paragraph is split where pysbd, given the
    whole paragraph, splits it (the article's paragraphs joined into one 17 kB block)."""
    paragraphs = [p.strip() for p in article_text.split("\n\n") if len(p.split()) > 12]
    block = " ".join(paragraphs).removeprefix("date 2026-03-06 ")
    assert len(block) > 5 * segment.WINDOW
    doc = Document("block.txt", block, "block", None, "-", "txt")
    sentences, chunks = segment.segment_document(doc, 0, 3, 1)
    _check_spans(doc, sentences, chunks)
    whole = segment._pysbd_spans(block, 0, len(block))
    assert len(sentences) == len(whole) and {s.start for s in sentences} == {s for s, _ in whole}


def test_a_long_run_of_blank_space_is_one_pass():
    """The old block pattern backtracked over every blank position of a line (a 20 kB line of spaces: 1.6 s;
    1 MB: hours)."""
    text = "Talks resumed in Muscat.\n" + " " * 1_000_000 + "\nOmani mediators shuttled between them."
    doc = Document("blank.txt", text, "blank", None, "-", "txt")
    sentences, _ = segment.segment_document(doc, 0, 3, 1)
    assert [s.text for s in sentences] == ["Talks resumed in Muscat.", "Omani mediators shuttled between them."]


@pytest.mark.slow
def test_index_add_of_a_block_of_many_short_lines_completes(home):
    lines = home.folder / "lines.txt"
    lines.write_text(_lines(30_000), encoding="utf-8")
    added = home.run("index", "add", str(lines), timeout=300)
    assert added.returncode == 0, added.stderr
    assert "added lines.txt (116,900 characters)" in added.stdout
    found = home.run("search", "w42", "--json")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)["hits"]
    assert any(hit["source"] == "lines.txt" and "w42\n" in hit["text"] for hit in hits)


# ------------------------------------------------------------------ 2. the corpus changes only with its index

KILLED = 137


def _add_dying_at(home: RagHome, path, step: str) -> subprocess.CompletedProcess:
    """`rag index add PATH` in a process that dies (os._exit, no cleanup) when it reaches ``step`` of rag.corpus."""
    script = (
        "import os, sys\n"
        "from rag import corpus\n"
        f"setattr(corpus.Staged, {step!r}, lambda *a, **k: os._exit({KILLED}))\n"
        "from rag.cli import main\n"
        "sys.exit(main(['index', 'add', sys.argv[1]]))\n"
    )
    return subprocess.run([sys.executable, "-c", script, str(path)], env=home.environment(), cwd=home.folder,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def talks(home):
    path = home.folder / "talks.txt"
    path.write_text("Negotiators met in Muscat on Tuesday to discuss a ceasefire.\n", encoding="utf-8")
    return path


def _files_and_index(home: RagHome) -> dict:
    """snapshot() without the corpus folder's hidden staging folders."""
    settings = home.settings
    live = settings.index_path.resolve()
    return {"live build": live, "manifest.json": (live / "manifest.json").read_bytes(),
            "corpus": {p.name: p.read_bytes() for p in sorted(settings.corpus_dir.iterdir()) if p.is_file()}}


@pytest.mark.slow
def test_add_killed_before_its_index_is_committed_leaves_no_trace(home, talks):
    before = snapshot(home.settings)
    visible = _files_and_index(home)
    died = _add_dying_at(home, talks, "mark_committed")
    assert died.returncode == KILLED, died.stderr
    # Nothing visible changed: the file is not in the corpus, the index is the old one and is current.
    assert _files_and_index(home) == visible
    assert [p for p in corpus_names(home) if not p.startswith(".staging-")] == [ARTICLE_NAME]
    info = home.run("index", "info")
    assert info.returncode == 0 and "rebuilding" not in info.stderr, info.stderr
    assert corpus_names(home) == [ARTICLE_NAME]  # the dead process's staging folder is gone
    assert snapshot(home.settings) == before


@pytest.mark.slow
def test_add_killed_after_its_index_is_committed_is_completed_without_a_rebuild(home, talks, embedder):
    live_before = home.settings.index_path.resolve()
    died = _add_dying_at(home, talks, "move_in")
    assert died.returncode == KILLED, died.stderr
    assert home.settings.index_path.resolve() != live_before  # the new index was swapped in...
    assert "talks.txt" not in corpus_names(home)  # ...but the file not moved in yet
    live_after = home.settings.index_path.resolve()
    found = home.run("search", "Where did the ceasefire negotiators meet?", "--json")
    assert found.returncode == 0, found.stderr
    assert "completing an interrupted `rag index add` (its index was committed): talks.txt" in found.stderr
    assert "rebuilding" not in found.stderr
    assert json.loads(found.stdout)["hits"][0]["source"] == "talks.txt"
    assert corpus_names(home) == sorted([ARTICLE_NAME, "talks.txt"])
    assert home.settings.index_path.resolve() == live_after
    assert stale_reason(home.settings, read_manifest(home.settings.index_path), embedder.info) is None


@pytest.mark.slow
def test_add_killed_while_embedding_leaves_corpus_and_index_as_they_were(home, rag_executable):
    """A real SIGKILL of `rag index add` while it embeds: the file never reaches the corpus."""
    before = snapshot(home.settings)
    visible = _files_and_index(home)
    big = home.folder / "logistics.txt"
    big.write_text("\n\n".join(" ".join(f"Convoy {p}-{s} carried {p * 10 + s} crates to depot {p} near Mosul."
                                        for s in range(4)) for p in range(400)), encoding="utf-8")
    stderr_file = home.folder / "add.stderr"
    with stderr_file.open("wb") as stderr:
        add = subprocess.Popen([rag_executable, "index", "add", str(big)], env=home.environment(), cwd=home.folder,
                               stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + 120
            while not PROGRESS_BAR.search(stderr_file.read_text(errors="replace")):
                assert add.poll() is None, f"add ended before it was killed: {stderr_file.read_text()}"
                assert time.monotonic() < deadline, "add never started embedding"
                time.sleep(0.05)
            add.send_signal(signal.SIGKILL)
        finally:
            add.kill()
            add.wait()
    assert _files_and_index(home) == visible
    info = home.run("index", "info")
    assert info.returncode == 0 and "rebuilding" not in info.stderr, info.stderr
    assert snapshot(home.settings) == before  # the staging folder of the killed process is gone too


# ------------------------------------------------------------------ 3. limits on extracted text


def _pdf(objects: list[bytes]) -> bytes:
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1) + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    return out + b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)


def shared_stream_pdf(pages: int, lines: int = 200) -> bytes:
    """Every page draws the same compressed content stream: a small file whose text is huge (the probe's 803 kB
    PDF of 5,000 such pages extracts to 67 MB)."""
    content = "BT /F1 10 Tf 40 780 Td 12 TL " + " ".join(
        f"(Line {i} of the page every page shares: the militia convoys moved north.) Tj T*" for i in range(lines)
    ) + " ET"
    stream = zlib.compress(content.encode("latin-1"), 9)
    kids = " ".join(f"{5 + i} 0 R" for i in range(pages)).encode()
    page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R /Resources << /Font << /F1 4 0 R >> >> >>"
    return _pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % pages,
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        *[page] * pages,
    ])


@pytest.mark.slow
def test_pdf_whose_text_exceeds_the_limit_is_refused_while_extracting(home):
    pdf = home.folder / "expands.pdf"
    pdf.write_bytes(shared_stream_pdf(2000))  # 0.3 MB of file, 30 MB of text
    assert pdf.stat().st_size < 400_000
    before = snapshot(home.settings)
    started = time.monotonic()
    result = home.run("index", "add", str(pdf), env={"RAG_MAX_TEXT_CHARS": "200000"})
    assert_one_line_error(result, INPUT_FILE)
    assert result.stderr.strip() == ("rag: error: expands.pdf: its text is longer than the 200,000-character limit "
                                     "(RAG_MAX_TEXT_CHARS)")
    assert time.monotonic() - started < 60  # extraction stopped after a few pages, not after 2,000
    assert snapshot(home.settings) == before


@pytest.mark.slow
def test_pdf_beyond_a_pypdf_safety_limit_is_an_input_error(home):
    pdf = home.folder / "bomb.pdf"
    # A cross-reference table declaring 99,999,999 objects in a file of a few hundred bytes.
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>"]
    pdf.write_bytes(_pdf(objects).replace(b"xref\n0 4\n", b"xref\n0 99999999\n"))
    result = home.run("index", "add", str(pdf))
    assert_one_line_error(result, INPUT_FILE)
    assert result.stderr.strip().startswith("rag: error: bomb.pdf: refused: the PDF exceeds a safety limit of pypdf "
                                            "(Declared size 99999999 exceeds allowed limit")


@pytest.mark.slow
def test_text_file_over_the_text_limit_is_refused(home):
    text = home.folder / "long.md"
    text.write_text("A sentence about Basra. " * 100, encoding="utf-8")
    result = home.run("index", "add", str(text), env={"RAG_MAX_TEXT_CHARS": "1000"})
    assert_one_line_error(result, INPUT_FILE)
    assert result.stderr.strip() == ("rag: error: long.md: its text is longer than the 1,000-character limit "
                                     "(RAG_MAX_TEXT_CHARS)")


# ------------------------------------------------------------------ 6. hidden file names


@pytest.mark.parametrize("name", [".hidden_notes.txt", "..txt", ".md"])
@pytest.mark.slow
def test_hidden_file_name_is_refused_by_index_add(home, tmp_path, name):
    path = tmp_path / name
    path.write_text("Talks resumed in Muscat on Tuesday.", encoding="utf-8")
    before = snapshot(home.settings)
    result = home.run("index", "add", str(path))
    assert_one_line_error(result, INPUT_FILE)
    assert result.stderr.strip() == (f"rag: error: {name}: a file name starting with '.' is hidden and would never "
                                     "be indexed; rename it")
    assert snapshot(home.settings) == before


def test_hidden_file_name_is_refused_by_the_library(indexed_settings, embedder, tmp_path):
    """The library's add (the app's indexing jobs run the same checks: tests/test_jobs.py)."""
    pipeline = Pipeline(indexed_settings, embedder, open_index(indexed_settings, embedder))
    hidden = tmp_path / ".hidden_notes.txt"
    hidden.write_text("Talks resumed in Muscat on Tuesday.", encoding="utf-8")
    before = snapshot(indexed_settings)
    with pytest.raises(InputFileError, match=r"^\.hidden_notes\.txt: a file name starting with '\.' is hidden"):
        pipeline.add_documents([hidden])
    assert snapshot(indexed_settings) == before


# ------------------------------------------------------------------ 7. `rag index build` repairs any damage


def _live(home: RagHome, name: str):
    return home.settings.index_path / name


def _nan_vectors(path) -> None:
    vectors = np.load(path, allow_pickle=False)
    np.save(path, np.full_like(vectors, np.nan), allow_pickle=False)


def _replace_by_folder(path) -> None:
    path.unlink()
    path.mkdir()


def _rewrite_manifest(home: RagHome, change) -> None:
    file = _live(home, "manifest.json")
    file.write_text(json.dumps(change(json.loads(file.read_text(encoding="utf-8")))), encoding="utf-8")


DAMAGE = {
    "empty sentence_vectors.npy": lambda home: _live(home, "sentence_vectors.npy").write_bytes(b""),
    "NaN sentence_vectors.npy": lambda home: _nan_vectors(_live(home, "sentence_vectors.npy")),
    "sentence_vectors.npy a folder": lambda home: _replace_by_folder(_live(home, "sentence_vectors.npy")),
    "sentences.jsonl a folder": lambda home: _replace_by_folder(_live(home, "sentences.jsonl")),
    "empty manifest": lambda home: _live(home, "manifest.json").write_bytes(b""),
    "manifest a folder": lambda home: _replace_by_folder(_live(home, "manifest.json")),
    "manifest documents not a list": lambda home: _rewrite_manifest(home, lambda m: m | {"documents": "x"}),
    "manifest checksums null": lambda home: _rewrite_manifest(
        home, lambda m: m | {"files": dict.fromkeys(m["files"])}),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.slow
def test_index_build_repairs_any_damage(home, damage):
    DAMAGE[damage](home)
    rebuilt = home.run("index", "build")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "Traceback" not in rebuilt.stderr
    index = load_index(home.settings.index_path)
    assert np.isfinite(index.sentence_vectors).all() and index.store.all_finite()
    found = home.run("search", "Who replaced Qassem Soleimani?", "--json")
    assert found.returncode == 0, found.stderr
    assert "Esmail Ghaani" in json.loads(found.stdout)["hits"][0]["text"]


# ------------------------------------------------------------------ 8. every index file is checked


def _flip_byte(path, offset_from_end: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x01
    path.write_bytes(bytes(data))


def _forge_checksum(home: RagHome, name: str) -> None:
    digest = sha256_bytes(_live(home, name).read_bytes())
    _rewrite_manifest(home, lambda m: m | {"files": m["files"] | {name: digest}})


TAMPERED = {
    # name -> (damage, the message after "rag: error: <index path>/")
    "NaN sentence vectors": (lambda home: _nan_vectors(_live(home, "sentence_vectors.npy")),
                             "sentence_vectors.npy: checksum does not match the manifest (edited?)"),
    "bit flip in vectors.faiss": (lambda home: _flip_byte(_live(home, "vectors.faiss")),
                                  "vectors.faiss: checksum does not match the manifest (edited?)"),
    "bit flip in BM25 scores": (lambda home: _flip_byte(_live(home, "bm25/data.csc.index.npy"), 4),
                                "bm25/data.csc.index.npy: checksum does not match the manifest (edited?)"),
    "BM25 vocabulary edited": (
        lambda home: _live(home, "bm25/vocab.index.json").write_text('{"ghaani": 0}', encoding="utf-8"),
        "bm25/vocab.index.json: checksum does not match the manifest (edited?)"),
    "null checksum": (lambda home: _rewrite_manifest(home, lambda m: m | {"files": m["files"] | {"vectors.faiss": None}}),
                      "manifest.json: manifest has no valid checksum for vectors.faiss"),
    "checksum left out": (
        lambda home: _rewrite_manifest(home, lambda m: m | {"files": {k: v for k, v in m["files"].items()
                                                                      if k != "sentence_vectors.npy"}}),
        "manifest.json: manifest has no valid checksum for sentence_vectors.npy"),
    "NaN vectors with a forged checksum": (
        lambda home: (_nan_vectors(_live(home, "sentence_vectors.npy")), _forge_checksum(home, "sentence_vectors.npy")),
        "sentence_vectors.npy: holds values that are not finite float32 numbers"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
@pytest.mark.slow
def test_tampered_binary_index_file_is_refused(home, case):
    damage, message = TAMPERED[case]
    damage(home)
    result = home.run("search", "Who replaced Qassem Soleimani?")
    assert_one_line_error(result, CORRUPT)
    assert result.stderr.strip() == f"rag: error: {home.settings.index_path}/{message}; rebuild with `rag index build`"


def test_files_are_verified_once_at_load_not_per_question(indexed_settings, embedder, monkeypatch):
    from rag import index as index_module

    hashed: list[str] = []
    real = index_module._file_sha256
    monkeypatch.setattr(index_module, "_file_sha256", lambda path: hashed.append(path.name) or real(path))
    pipeline = Pipeline(indexed_settings, embedder, open_index(indexed_settings, embedder))
    assert {"vectors.faiss", "sentence_vectors.npy", "data.csc.index.npy"} <= set(hashed)
    hashed.clear()
    for _ in range(3):
        assert "Esmail Ghaani" in pipeline.search("Who replaced Qassem Soleimani?")[0].chunk.text
    assert hashed == []


# ------------------------------------------------------------------ 9. files of other types in the corpus folder


@pytest.mark.slow
def test_unsupported_file_in_the_corpus_is_skipped_with_a_warning(home):
    (home.folder / "corpus" / "notes.docx").write_bytes(b"PK\x03\x04 not really a docx")
    live = home.settings.index_path.resolve()
    info = home.run("index", "info")
    assert info.returncode == 0, info.stderr
    assert info.stderr == ""  # the index is current: nothing to rebuild
    assert "  ignored   notes.docx (unsupported file type, not indexed)" in info.stdout.splitlines()
    assert home.settings.index_path.resolve() == live
    rebuilt = home.run("index", "build")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stderr.splitlines() == [
        "rag: notes.docx: skipped: unsupported file type '.docx' in the corpus folder "
        "(supported: .txt, .md, .html, .htm, .pdf)"]
    found = home.run("search", "Who replaced Qassem Soleimani?", "--json")
    assert found.returncode == 0 and found.stderr == "", found.stderr


# ------------------------------------------------------------------ 10. standard input decoded strictly


@pytest.mark.slow
def test_undecodable_line_on_strict_stdin_is_reported_for_that_line_only(home):
    lines = b"Who replaced Qassem Soleimani?\nWho replaced \xff\xfe Qassem Soleimani?\nWhere is Ghaani from?\n"
    result = home.run("ask", "--json", "-", stdin=lines, env={"PYTHONIOENCODING": "utf-8:strict"})
    assert result.returncode == USAGE, result.stderr
    assert result.stderr == ""
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 3
    assert "Esmail Ghaani" in records[0]["answer"]
    assert records[1] == {"question": "Who replaced \ufffd\ufffd Qassem Soleimani?",
                          "error": "question is not valid UTF-8 text"}
    assert "answer" in records[2]


# ------------------------------------------------------------------ 11. proper exit codes, never 70


def test_env_file_that_is_not_utf8_is_a_usage_error(home):
    (home.folder / ".env").write_bytes(b"RAG_TOP_K=3\nRAG_BACKEND=caf\xe9\n")
    result = home.run("search", "Who replaced Qassem Soleimani?")
    assert_one_line_error(result, USAGE)
    assert result.stderr.strip() == (f"rag: error: {home.folder}/.env: not valid UTF-8 text (byte 27); "
                                     "save it as UTF-8")


MANIFEST_DAMAGE = {
    "manifest a folder": (lambda home: _replace_by_folder(_live(home, "manifest.json")),
                          "manifest.json: manifest unreadable (Is a directory)"),
    "chunks.jsonl a folder": (lambda home: _replace_by_folder(_live(home, "chunks.jsonl")),
                              "chunks.jsonl: unreadable (Is a directory)"),
    "documents not a list": (lambda home: _rewrite_manifest(home, lambda m: m | {"documents": {"id": "x"}}),
                             "manifest.json: manifest lacks required fields"),
    "a document without its id": (lambda home: _rewrite_manifest(home, lambda m: m | {"documents": [{}]}),
                                  "manifest.json: manifest lacks required fields"),
    "no counts": (lambda home: _rewrite_manifest(home, lambda m: {k: v for k, v in m.items() if k != "counts"}),
                  "manifest.json: manifest lacks required fields"),
}


@pytest.mark.parametrize("case", list(MANIFEST_DAMAGE))
@pytest.mark.parametrize("command", [("index", "info"), ("search", "Who replaced Qassem Soleimani?")],
                         ids=["info", "search"])
@pytest.mark.slow
def test_damaged_manifest_or_file_exits_4(home, case, command):
    damage, message = MANIFEST_DAMAGE[case]
    damage(home)
    result = home.run(*command)
    assert_one_line_error(result, CORRUPT)
    assert result.stderr.strip() == f"rag: error: {home.settings.index_path}/{message}; rebuild with `rag index build`"


@pytest.mark.parametrize("name", ["../../escape", "/tmp/escape", "..", "a/b", ".hidden", ""])
@pytest.mark.slow
def test_index_name_must_stay_inside_the_index_folder(home, name):
    before = sorted(p.name for p in home.folder.parent.iterdir())
    for result in (home.run("index", "build", env={"RAG_INDEX_NAME": name}),
                   home.run("search", "Ghaani", "--index-name", name)):
        assert_one_line_error(result, USAGE)
        assert result.stderr.strip().startswith("rag: error: invalid setting index_name: Value error, "
                                                "RAG_INDEX_NAME must be a plain name")
    assert sorted(p.name for p in home.folder.parent.iterdir()) == before
    assert not list((home.folder / "index" / ".builds").glob("escape-*"))
