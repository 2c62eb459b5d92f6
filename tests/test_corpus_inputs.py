"""Robustness review of inputs: a byte order mark, unreadable files and files without a sentence dropped into
the corpus folder, an overlap as large as a chunk, two files of one name, a missing corpus folder, a bad value in
.env, the login counts file of a server without login, UTF-16 text, HTML in the charset it declares, and
subfolders and broken links in the corpus folder. Library-level cases use the hashing embedder
(tests/fakes.py), or the real model on a copy of the session's index; the ``rag`` command runs where the exit
code or the printed line is the point."""

from __future__ import annotations

import codecs
import json
import logging
import shutil

import pytest

from rag.cli import build_parser, make_settings
from rag.corpus import checked_names
from rag.documents import read_document, sha256_bytes
from rag.errors import InputFileError, UsageError
from rag.index import build_index, load_index, open_index, read_manifest, stale_reason
from rag.pipeline import Pipeline
from rag.settings import Settings
from tests.conftest import make_fake_pipeline, write_file
from tests.test_cli import assert_one_line_error
from tests.test_hostile_inputs import home  # noqa: F401 (fixture)
from tests.test_index import ARTICLE_NAME, PROGRESS_BAR

USAGE, INPUT_FILE = 2, 3
BOM = b"\xef\xbb\xbf"
MAYOR = b"BOM file: The mayor said hello on Sunday.\n"


def _spans_match(index) -> None:
    for span in (*index.sentences, *index.chunks):
        assert index.documents[span.source].text[span.start : span.end] == span.text


# ------------------------------------------------------------------ 1. a UTF-8 byte order mark


@pytest.mark.parametrize("suffix", [".txt", ".md"])
def test_a_byte_order_mark_is_not_part_of_the_text_or_the_title(tmp_path, suffix):
    path = tmp_path / f"bom{suffix}"
    path.write_bytes(BOM + MAYOR)
    doc = read_document(path)
    assert doc.text == MAYOR.decode("utf-8")
    assert doc.title == "BOM file: The mayor said hello on Sunday."
    assert doc.sha256 == sha256_bytes(BOM + MAYOR)  # of the file as stored: what the stale check compares


def test_a_byte_order_mark_is_left_out_of_html_too(tmp_path):
    path = tmp_path / "page.html"
    path.write_bytes(BOM + b"<html><head><title>Mayor</title></head><body><article><p>The mayor of Springfield "
                     b"said hello to the crowd on Sunday morning.</p></article></body></html>")
    assert "\ufeff" not in read_document(path).text + read_document(path).title


def test_an_invalid_byte_after_a_byte_order_mark_is_counted_from_the_file_start(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(BOM + b"caf\xe9\n")
    with pytest.raises(InputFileError, match=r"^latin1\.txt: not valid UTF-8 text \(byte 6\)"):
        read_document(path)


def test_an_index_built_with_a_byte_order_mark_in_its_text_is_stale_and_rebuilt(tmp_path, fake_embedder, caplog):
    pipeline = make_fake_pipeline(tmp_path, fake_embedder)
    settings = pipeline.settings
    (settings.corpus_dir / "bom.txt").write_bytes(BOM + MAYOR)
    index = build_index(settings, fake_embedder)
    assert index.documents["bom.txt"].text == MAYOR.decode("utf-8")
    assert not any(s.text.startswith("\ufeff") for s in index.sentences)
    _spans_match(index)
    assert stale_reason(settings, read_manifest(settings.index_path), fake_embedder.info) is None

    # An index built before (its manifest without "bom_stripped") holds the BOM in its text: stale, rebuilt.
    manifest_file = settings.index_path / "manifest.json"
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    del manifest["bom_stripped"]
    manifest_file.write_text(json.dumps(manifest), encoding="utf-8")
    assert stale_reason(settings, manifest, fake_embedder.info) == "byte order mark of bom.txt indexed as text"
    with caplog.at_level(logging.WARNING, logger="rag"):
        rebuilt = open_index(settings, fake_embedder)
    assert "is stale (byte order mark of bom.txt indexed as text): rebuilding" in caplog.text
    assert rebuilt.manifest["bom_stripped"] is True and rebuilt.documents["bom.txt"].text == MAYOR.decode("utf-8")

    # Without a BOM file in the corpus, such an older index is current: no rebuild for nothing.
    (settings.corpus_dir / "bom.txt").unlink()
    build_index(settings, fake_embedder)
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    del manifest["bom_stripped"]
    assert stale_reason(settings, manifest, fake_embedder.info) is None


def test_an_index_that_skipped_a_file_an_older_reader_could_not_decode_is_rebuilt(tmp_path, fake_embedder, caplog):
    """UTF-16 files and HTML in a declared charset were skipped as binary / not UTF-8 by older builds; their
    checksum unchanged, such an index counted as current and kept skipping them."""
    pipeline = make_fake_pipeline(tmp_path, fake_embedder)
    settings = pipeline.settings
    (settings.corpus_dir / "notepad.txt").write_bytes(codecs.BOM_UTF16_LE + MAYOR.decode("utf-8").encode("utf-16-le"))
    build_index(settings, fake_embedder)
    manifest_file = settings.index_path / "manifest.json"
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    assert manifest["text_decoding"] == 2 and "notepad.txt" in {d["id"] for d in manifest["documents"]}
    # As an older build left it: the file skipped as binary, no "text_decoding" key.
    old = dict(manifest, documents=[d for d in manifest["documents"] if d["id"] != "notepad.txt"],
               skipped=[{"id": "notepad.txt", "sha256": sha256_bytes((settings.corpus_dir / "notepad.txt").read_bytes()),
                         "reason": "looks binary, not text"}])
    del old["text_decoding"]
    assert stale_reason(settings, old, fake_embedder.info) == \
        "skipped by a build that read fewer encodings: notepad.txt"
    # A file that is still unreadable does not make a current build stale again (no rebuild loop).
    (settings.corpus_dir / "notepad.txt").write_bytes(b"\x00\x01 binary")
    index = build_index(settings, fake_embedder)
    assert [s["id"] for s in index.manifest["skipped"]] == ["notepad.txt"]
    assert stale_reason(settings, read_manifest(settings.index_path), fake_embedder.info) is None


@pytest.mark.slow
def test_rag_ask_cites_a_bom_file_without_the_mark(home, tmp_path):  # noqa: F811
    """The review's reproduction: `rag index add bom.txt`, then the citation's text began with U+FEFF."""
    bom = tmp_path / "bom.txt"
    bom.write_bytes(BOM + MAYOR)
    added = home.run("index", "add", str(bom))
    assert added.returncode == 0, added.stderr
    result = home.run("ask", "What did the mayor say on Sunday?", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    citation = answer["citations"][0]
    assert citation["source"] == "bom.txt" and citation["text"] == "BOM file: The mayor said hello on Sunday."
    assert (citation["start"], citation["end"]) == (0, len(citation["text"]))
    assert "\ufeff" not in result.stdout


# ------------------------------------------------------------------ 2. unreadable files in the corpus folder

UNREADABLE = {
    "binary.txt": (b"GIF89a\x00\x01\x02\x03", "looks binary, not text"),
    "latin1.txt": (b"caf\xe9 au lait\n", "not valid UTF-8 text (byte 3); save it as UTF-8"),
    "empty.md": (b"", "file is empty"),
    "broken.pdf": (b"%PDF-1.4\n garbage", "damaged or truncated PDF"),
}


def test_unreadable_corpus_files_are_skipped_listed_and_do_not_make_the_index_stale(tmp_path, fake_embedder,
                                                                                   caplog):
    pipeline = make_fake_pipeline(tmp_path, fake_embedder)
    settings = pipeline.settings
    for name, (data, _) in UNREADABLE.items():
        (settings.corpus_dir / name).write_bytes(data)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rag"):
        index = open_index(settings, fake_embedder)  # stale (files added): rebuilt from the readable ones
    assert set(index.documents) == {ARTICLE_NAME}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for name, (_, reason) in UNREADABLE.items():
        assert any(w.startswith(f"{name}: skipped, not indexed: {reason}") for w in warnings), warnings
    skipped = {s["id"]: s for s in index.manifest["skipped"]}
    assert set(skipped) == set(UNREADABLE)
    assert skipped["binary.txt"] == {"id": "binary.txt", "sha256": sha256_bytes(UNREADABLE["binary.txt"][0]),
                                     "reason": "looks binary, not text"}
    # Recorded with their checksums: the next command finds the index current and does not rebuild again.
    assert stale_reason(settings, read_manifest(settings.index_path), fake_embedder.info) is None

    # A skipped file that is fixed makes the index stale, and is indexed.
    (settings.corpus_dir / "latin1.txt").write_text("The café opened on Monday. It serves tea.\n", encoding="utf-8")
    assert stale_reason(settings, read_manifest(settings.index_path), fake_embedder.info) == \
        "corpus changed (changed: latin1.txt)"
    index = open_index(settings, fake_embedder)
    assert "latin1.txt" in index.documents and "latin1.txt" not in {s["id"] for s in index.manifest["skipped"]}


def test_an_add_keeps_skipping_unreadable_corpus_files_but_refuses_an_unreadable_new_one(tmp_path, fake_embedder):
    pipeline = make_fake_pipeline(tmp_path, fake_embedder)
    settings = pipeline.settings
    (settings.corpus_dir / "binary.txt").write_bytes(UNREADABLE["binary.txt"][0])
    note = tmp_path / "note.txt"
    note.write_text("The mayor of Springfield opened a bridge on Monday.\n", encoding="utf-8")
    pipeline.add_documents([note])
    assert set(pipeline.index.documents) == {ARTICLE_NAME, "note.txt"}
    assert [s["id"] for s in pipeline.index.manifest["skipped"]] == ["binary.txt"]
    assert stale_reason(settings, read_manifest(settings.index_path), fake_embedder.info) is None
    other = tmp_path / "other" / "binary.txt"
    other.parent.mkdir()
    other.write_bytes(UNREADABLE["binary.txt"][0])
    with pytest.raises(InputFileError, match="^binary.txt: looks binary, not text$"):
        pipeline.add_documents([other], replace=True)


def test_a_corpus_that_cannot_be_indexed_at_all_keeps_the_index_it_had(tmp_path, fake_embedder, caplog):
    pipeline = make_fake_pipeline(tmp_path, fake_embedder)
    settings = pipeline.settings
    (settings.corpus_dir / ARTICLE_NAME).write_bytes(b"\x00\x01 overwritten by a binary file")
    with caplog.at_level(logging.WARNING, logger="rag"):
        index = open_index(settings, fake_embedder)
    assert set(index.documents) == {ARTICLE_NAME}  # the index as it was built
    assert "could not be rebuilt" in caplog.text and "corpus folder has no readable documents (skipped: " \
        f"{ARTICLE_NAME})" in caplog.text
    with pytest.raises(InputFileError, match="has no readable documents"):
        build_index(settings, fake_embedder)  # an explicit build says so


@pytest.mark.slow
def test_one_binary_file_dropped_into_the_corpus_no_longer_stops_every_command(home):  # noqa: F811
    """The review's reproduction: binary.txt copied into the corpus folder by hand made `rag ask`, `rag search` and
    `rag index info` fail with exit 3."""
    (home.folder / "corpus" / "binary.txt").write_bytes(b"GIF89a\x00\x01\x02\x03")
    info = home.run("index", "info")
    assert info.returncode == 0, info.stderr
    assert info.stderr.splitlines() == [
        "rag: index 'default' is stale (corpus changed (added: binary.txt)): rebuilding",
        "rag: binary.txt: skipped, not indexed: looks binary, not text"]
    assert "  skipped   binary.txt (not indexed: looks binary, not text)" in info.stdout.splitlines()
    assert json.loads(home.run("index", "info", "--json").stdout)["skipped"][0]["id"] == "binary.txt"
    answer = home.run("ask", "Who replaced Qassem Soleimani?")
    assert answer.returncode == 0 and answer.stderr == "", answer.stderr  # current: no rebuild, no warning
    assert "Esmail Ghaani" in answer.stdout
    refused = home.run("index", "add", "--replace", str(home.folder / "corpus" / "binary.txt"))
    assert_one_line_error(refused, INPUT_FILE, "binary.txt: looks binary, not text")


# Read fine, but yield no sentence (only a heading-like line): found only when the build splits them. They used
# to stop every build and `rag index add` with "no sentences found" (exit 3).
WITHOUT_SENTENCES = {
    "dashes.txt": b"----\n",
    "nav.html": b"<html><body><nav>menu</nav></body></html>",
}


def _place_files_without_sentences(settings, tmp_path) -> dict[str, bytes]:
    """The review's cases, placed by hand: a line of dashes, a page of navigation only, and a symbolic link to a
    one-line file outside the corpus (as to /etc/hostname). Returns each name's bytes."""
    placed = dict(WITHOUT_SENTENCES)
    for name, data in WITHOUT_SENTENCES.items():
        (settings.corpus_dir / name).write_bytes(data)
    hostname = write_file(tmp_path / "hostname", b"buildbox-7\n")
    (settings.corpus_dir / "host.txt").symlink_to(hostname)
    placed["host.txt"] = hostname.read_bytes()
    return placed


def test_corpus_files_without_a_sentence_are_skipped_listed_and_do_not_make_the_index_stale(
        indexed_settings, embedder, tmp_path, caplog):
    settings = indexed_settings
    placed = _place_files_without_sentences(settings, tmp_path)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rag"):
        index = build_index(settings, embedder)
    assert set(index.documents) == {ARTICLE_NAME}
    assert [d["id"] for d in index.manifest["documents"]] == [ARTICLE_NAME]
    assert index.manifest["counts"]["documents"] == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"{name}: skipped, not indexed: no sentences found" for name in sorted(placed)]
    assert index.manifest["skipped"] == [{"id": name, "sha256": sha256_bytes(placed[name]),
                                          "reason": "no sentences found"} for name in sorted(placed)]
    _spans_match(load_index(settings.index_path))
    # Recorded with their checksums: the next command finds the index current and does not rebuild again.
    assert stale_reason(settings, read_manifest(settings.index_path), embedder.info) is None

    # A skipped file that is given sentences makes the index stale, and is indexed.
    (settings.corpus_dir / "dashes.txt").write_text("----\n\nThe ferry resumed service on Monday.\n", encoding="utf-8")
    assert stale_reason(settings, read_manifest(settings.index_path), embedder.info) == \
        "corpus changed (changed: dashes.txt)"
    index = open_index(settings, embedder)
    assert "dashes.txt" in index.documents
    assert [s["id"] for s in index.manifest["skipped"]] == ["host.txt", "nav.html"]


def test_a_corpus_file_whose_paragraphs_all_repeat_another_is_still_indexed(indexed_settings, embedder):
    """Not "without a sentence": its paragraphs are indexed once, from the first file (duplicates, issue 14)."""
    settings = indexed_settings
    shutil.copy(settings.corpus_dir / ARTICLE_NAME, settings.corpus_dir / "wire-copy.txt")
    index = build_index(settings, embedder)
    assert set(index.documents) == {ARTICLE_NAME, "wire-copy.txt"}
    assert index.manifest["skipped"] == []


def test_a_corpus_file_too_slow_to_split_is_skipped_and_listed_not_fatal(indexed_settings, embedder, caplog):
    """A file whose splitting into sentences exceeds RAG_MAX_DOC_SECONDS stopped every build (and every
    command fell back to the old index): now it is left out like an unreadable file, with the reason."""
    from tests.conftest import make_settings
    from tests.test_hostile_corpus import _distinct_paragraphs

    settings = make_settings(indexed_settings.corpus_dir.parent, max_doc_seconds=2)  # the article takes ~0.1 s
    slow = settings.corpus_dir / "slow.txt"
    slow.write_text(_distinct_paragraphs(12_000), encoding="utf-8")  # ~7 s to split on this machine
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rag"):
        index = build_index(settings, embedder)
    assert set(index.documents) == {ARTICLE_NAME}
    reason = "refused: splitting it into sentences took more than 2 s (RAG_MAX_DOC_SECONDS); split it into smaller files"
    assert index.manifest["skipped"] == [{"id": "slow.txt", "sha256": sha256_bytes(slow.read_bytes()), "reason": reason}]
    assert f"slow.txt: skipped, not indexed: {reason}" in caplog.text
    assert stale_reason(settings, read_manifest(settings.index_path), embedder.info) is None
    # Raising the limit makes the index stale (the next command retries the file), lowering it does not.
    assert stale_reason(settings.model_copy(update={"max_doc_seconds": 600}), read_manifest(settings.index_path),
                        embedder.info) == ("limits raised since files were skipped for them "
                                           "(RAG_MAX_DOC_SECONDS 2 -> 600: slow.txt)")
    assert stale_reason(settings.model_copy(update={"max_doc_seconds": 1}), read_manifest(settings.index_path),
                        embedder.info) is None


def test_a_corpus_file_skipped_for_its_size_is_indexed_once_the_limit_is_raised(indexed_settings, embedder):
    from tests.conftest import make_settings

    small = make_settings(indexed_settings.corpus_dir.parent, max_file_mb=0.02)  # the article is ~12 KB
    big = write_file(small.corpus_dir / "big.txt", b"The ferry resumed service on Monday. " * 1000)  # 37 KB
    index = build_index(small, embedder)
    assert [s["id"] for s in index.manifest["skipped"]] == ["big.txt"] and "big.txt" not in index.documents
    assert stale_reason(small, read_manifest(small.index_path), embedder.info) is None
    larger = small.model_copy(update={"max_file_mb": 1.0})
    assert stale_reason(larger, read_manifest(small.index_path), embedder.info) == (
        "limits raised since files were skipped for them (RAG_MAX_FILE_MB 0.02 -> 1: big.txt)")
    index = open_index(larger, embedder)
    assert big.name in index.documents and index.manifest["skipped"] == []


def test_an_add_skips_corpus_files_without_a_sentence_but_refuses_a_new_one(indexed_settings, embedder, tmp_path):
    settings = indexed_settings
    _place_files_without_sentences(settings, tmp_path)
    pipeline = Pipeline(settings, embedder, open_index(settings, embedder))
    note = write_file(tmp_path / "note.txt", b"The mayor of Springfield opened a bridge on Monday.\n")
    pipeline.add_documents([note])
    assert set(pipeline.index.documents) == {ARTICLE_NAME, "note.txt"}
    assert [s["id"] for s in pipeline.index.manifest["skipped"]] == ["dashes.txt", "host.txt", "nav.html"]
    assert stale_reason(settings, read_manifest(settings.index_path), embedder.info) is None

    # Given explicitly, such a file is refused in one line and nothing changes, whether new or replacing one.
    from tests.test_index import snapshot

    before = snapshot(settings)
    (tmp_path / "new").mkdir()
    heading = write_file(tmp_path / "new" / "heading.txt", b"Just a heading\n")
    with pytest.raises(InputFileError, match=r"^heading\.txt: no sentences found$"):
        pipeline.add_documents([heading])
    dashes = write_file(tmp_path / "new" / "dashes.txt", b"-----\n")
    with pytest.raises(InputFileError, match=r"^dashes\.txt: no sentences found$"):
        pipeline.add_documents([dashes], replace=True)
    assert snapshot(settings) == before


def test_a_corpus_with_no_sentence_left_is_refused_and_keeps_the_index_it_had(indexed_settings, embedder, caplog):
    settings = indexed_settings
    (settings.corpus_dir / ARTICLE_NAME).write_bytes(b"----\n")  # the only document, overwritten
    with caplog.at_level(logging.WARNING, logger="rag"):
        index = open_index(settings, embedder)
    assert set(index.documents) == {ARTICLE_NAME}  # the index as it was built
    assert "could not be rebuilt" in caplog.text
    assert f"corpus folder has no readable documents (skipped: {ARTICLE_NAME})" in caplog.text
    with pytest.raises(InputFileError, match=rf"corpus folder has no readable documents \(skipped: {ARTICLE_NAME}\)$"):
        build_index(settings, embedder)  # an explicit build says so


@pytest.mark.slow
def test_one_file_without_a_sentence_placed_in_the_corpus_no_longer_stops_builds_or_adds(home, tmp_path):  # noqa: F811
    """The tester's reproduction: dashes.txt placed in the corpus folder made `rag index build` and every later
    `rag index add` fail with "dashes.txt: no sentences found" (exit 3), and `rag ask` warn on every run that the
    index could not be rebuilt. Likewise a page of navigation only and a symbolic link to a one-line file."""
    placed = _place_files_without_sentences(home.settings, tmp_path)
    build = home.run("index", "build")
    assert build.returncode == 0, build.stderr
    assert [line for line in build.stderr.splitlines() if not PROGRESS_BAR.search(line)] == [
        f"rag: {name}: skipped, not indexed: no sentences found" for name in sorted(placed)]
    for name in placed:
        assert f"  skipped   {name} (not indexed: no sentences found)" in build.stdout.splitlines()
    info = home.run("index", "info")
    assert info.returncode == 0 and info.stderr == "", info.stderr  # current: no rebuild, no warning
    assert "  skipped   dashes.txt (not indexed: no sentences found)" in info.stdout.splitlines()
    listed = json.loads(home.run("index", "info", "--json").stdout)["skipped"]
    assert [(s["id"], s["reason"]) for s in listed] == [(name, "no sentences found") for name in sorted(placed)]

    good = write_file(tmp_path / "good.txt", b"The council of Springfield approved the new budget on Friday.\n")
    added = home.run("index", "add", str(good))
    assert added.returncode == 0, added.stderr
    assert "added good.txt" in added.stdout
    assert (home.folder / "corpus" / "good.txt").exists()
    answer = home.run("ask", "Who replaced Qassem Soleimani?")
    assert answer.returncode == 0 and answer.stderr == "", answer.stderr  # no "could not be rebuilt" warning
    assert "Esmail Ghaani" in answer.stdout

    # Given to `rag index add`, such a file is refused in one line, and nothing changes.
    from tests.test_index import snapshot

    before = snapshot(home.settings)
    heading = write_file(tmp_path / "heading.txt", b"----\n")
    refused = home.run("index", "add", str(heading))
    assert_one_line_error(refused, INPUT_FILE, "heading.txt: no sentences found")
    assert snapshot(home.settings) == before


# ------------------------------------------------------------------ 3. an overlap as large as a chunk


@pytest.mark.parametrize(("sentences", "overlap"), [(3, 3), (3, 5), (1, 1)])
def test_an_overlap_not_smaller_than_a_chunk_is_an_invalid_setting(tmp_path, monkeypatch, sentences, overlap):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAG_CHUNK_SENTENCES", str(sentences))
    monkeypatch.setenv("RAG_CHUNK_OVERLAP", str(overlap))
    with pytest.raises(UsageError) as refused:
        make_settings(build_parser().parse_args(["index", "info"]))
    assert str(refused.value) == (f"invalid setting chunk_overlap: Value error, RAG_CHUNK_OVERLAP ({overlap}) must "
                                  f"be smaller than RAG_CHUNK_SENTENCES ({sentences})")
    assert refused.value.exit_code == USAGE
    assert Settings(_env_file=None, chunk_sentences=sentences, chunk_overlap=sentences - 1).chunk_overlap == \
        sentences - 1


def test_rag_index_info_refuses_an_overlap_it_would_misreport(home):  # noqa: F811
    result = home.run("index", "info", env={"RAG_CHUNK_OVERLAP": "5"})
    assert_one_line_error(result, USAGE, "invalid setting chunk_overlap", "RAG_CHUNK_OVERLAP (5) must be smaller "
                          "than RAG_CHUNK_SENTENCES (3)")


# ------------------------------------------------------------------ 4. two files of one name


def test_two_files_of_one_name_are_refused_naming_the_file(tmp_path):
    with pytest.raises(InputFileError) as refused:
        checked_names([tmp_path / "a" / "crlf.txt", tmp_path / "b" / "crlf.txt"])
    assert str(refused.value) == (f"crlf.txt: more than one file of this name given ({tmp_path}/a/crlf.txt, "
                                  f"{tmp_path}/b/crlf.txt); a document's id is its file name, so each name can be "
                                  "added once")


def test_rag_index_add_of_two_files_of_one_name_names_it(home, tmp_path):  # noqa: F811
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "crlf.txt").write_bytes(b"The mayor spoke.\r\n")
    result = home.run("index", "add", str(tmp_path / "a" / "crlf.txt"), str(tmp_path / "b" / "crlf.txt"))
    assert_one_line_error(result, INPUT_FILE, "rag: error: crlf.txt: more than one file of this name given")


# ------------------------------------------------------------------ 5. a missing corpus folder


def test_a_missing_corpus_folder_is_warned_about_and_the_index_served(tmp_path, fake_embedder, caplog):
    pipeline = make_fake_pipeline(tmp_path, fake_embedder)
    shutil.rmtree(pipeline.settings.corpus_dir)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rag"):
        index = open_index(pipeline.settings, fake_embedder)
    assert set(index.documents) == {ARTICLE_NAME}
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        f"corpus folder {pipeline.settings.corpus_dir} does not exist: answering from index 'default' as it was "
        "built"]


# ------------------------------------------------------------------ 6. a bad value in .env


def test_a_bad_value_from_env_file_says_it_came_from_there(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAG_TOP_K", raising=False)
    (tmp_path / ".env").write_text("RAG_TOP_K=zero\n", encoding="utf-8")
    args = build_parser().parse_args(["search", "Ghaani"])
    with pytest.raises(UsageError) as refused:
        make_settings(args)
    message = str(refused.value)
    assert message.startswith("invalid setting top_k: Input should be a valid integer")
    assert message.endswith(f" (from {tmp_path}/.env)") and "\n" not in message
    monkeypatch.setenv("RAG_TOP_K", "zero")  # the environment wins over .env: the bad value is the environment's
    with pytest.raises(UsageError) as refused:
        make_settings(args)
    assert ".env" not in str(refused.value)
    monkeypatch.delenv("RAG_TOP_K")
    (tmp_path / ".env").write_text("rag_top_k=99\n", encoding="utf-8")  # names ignore case, as pydantic-settings'
    with pytest.raises(UsageError, match=r"^invalid setting top_k: .* \(from .*\.env\)$"):
        make_settings(args)


def test_rag_names_the_env_file_a_bad_value_came_from(home):  # noqa: F811
    (home.folder / ".env").write_text("RAG_TOP_K=zero\n", encoding="utf-8")
    result = home.run("search", "Who replaced Qassem Soleimani?")
    assert_one_line_error(result, USAGE, "invalid setting top_k", f"(from {home.folder}/.env)")


# ------------------------------------------------------------------ 7. the login counts file


def test_a_server_without_login_creates_no_login_counts_file(tmp_path, fake_embedder):
    from ui.login import failures_file
    from ui.server import create_api

    pipeline = make_fake_pipeline(tmp_path, fake_embedder)
    create_api(pipeline)
    assert not failures_file(pipeline.settings).exists()
    with_login = Pipeline(pipeline.settings.model_copy(update={"auth": "editor:s3cret-Pass"}), fake_embedder,
                          pipeline.index)
    create_api(with_login)
    assert failures_file(pipeline.settings).exists()


# ------------------------------------------------------------------ 8. UTF-16 (and UTF-32) text with a BOM

# As Windows Notepad ("Unicode") and PowerShell (Out-File, > in Windows PowerShell) save text: a byte order
# mark, then UTF-16 with Windows line ends. They were refused or skipped as "looks binary, not text".
FERRY = ("Ferry notice\r\n\r\nThe Springfield ferry was renamed “Bluebird” on Tuesday by the harbour master, "
         "Zoë Okafor.\r\nThe new name was chosen by the town’s schoolchildren.\r\n")
WIDE = {
    "utf-16-le": codecs.BOM_UTF16_LE,
    "utf-16-be": codecs.BOM_UTF16_BE,
    "utf-32-le": codecs.BOM_UTF32_LE,
    "utf-32-be": codecs.BOM_UTF32_BE,
}


def _wide(text: str, encoding: str) -> bytes:
    return WIDE[encoding] + text.encode(encoding)


@pytest.mark.parametrize("suffix", [".txt", ".md"])
@pytest.mark.parametrize("encoding", list(WIDE))
def test_a_utf16_or_utf32_file_is_decoded_by_its_byte_order_mark(tmp_path, encoding, suffix):
    path = write_file(tmp_path / f"ferry{suffix}", _wide(FERRY, encoding))
    doc = read_document(path)
    assert doc.text == FERRY  # the mark left out: offsets index this text
    assert doc.title == "Ferry notice"
    assert doc.sha256 == sha256_bytes(path.read_bytes())  # the file as stored: what the stale check compares


def test_a_utf16_html_page_is_decoded_by_its_byte_order_mark(tmp_path):
    page = ("<html><head><title>Ferry</title></head><body><article><p>The Springfield ferry was renamed "
            "“Bluebird” on Tuesday by the harbour master.</p></article></body></html>")
    doc = read_document(write_file(tmp_path / "ferry.html", _wide(page, "utf-16-le")))
    assert doc.text == "The Springfield ferry was renamed “Bluebird” on Tuesday by the harbour master."
    assert doc.title == "Ferry" and doc.fmt == "html"


@pytest.mark.parametrize(("data", "message"), [
    # Without a byte order mark nothing is guessed: UTF-16's NUL bytes still look binary.
    (FERRY.encode("utf-16-le"), "ferry.txt: looks binary, not text"),
    # A NUL character in UTF-16 text is as binary as a NUL byte in UTF-8 text.
    (_wide("GIF89a\x00\x01\x02", "utf-16-le"), "ferry.txt: looks binary, not text"),
    # Cut in the middle of a character: the byte is counted from the file start, the mark included.
    (_wide("The ferry", "utf-16-le")[:-1], "ferry.txt: not valid UTF-16 LE text (byte 18); save it as UTF-8"),
    (_wide("ab", "utf-16-be") + b"\xdc\x00",  # a lone low surrogate
     "ferry.txt: not valid UTF-16 BE text (byte 6); save it as UTF-8"),
])
def test_a_utf16_file_that_is_not_utf16_text_is_refused_in_one_line(tmp_path, data, message):
    with pytest.raises(InputFileError) as refused:
        read_document(write_file(tmp_path / "ferry.txt", data))
    assert str(refused.value) == message


def test_a_utf16_corpus_file_is_indexed_and_cited_at_offsets_of_its_decoded_text(indexed_settings, embedder):
    """The real build and answerer on a copy of the session's corpus: the Notepad file is indexed (it was
    skipped as binary), each span indexes its decoded text, and the answer's citations point into that
    text."""
    settings = indexed_settings
    write_file(settings.corpus_dir / "ferry.txt", _wide(FERRY, "utf-16-le"))
    shelbyville = FERRY.replace("Springfield", "Shelbyville")
    write_file(settings.corpus_dir / "ferry-be.md", _wide(shelbyville, "utf-16-be"))
    index = build_index(settings, embedder)
    assert set(index.documents) == {ARTICLE_NAME, "ferry.txt", "ferry-be.md"}
    assert index.manifest["skipped"] == []
    assert index.documents["ferry.txt"].text == FERRY
    _spans_match(load_index(settings.index_path))  # the stored text and every span, as read back
    assert stale_reason(settings, read_manifest(settings.index_path), embedder.info) is None
    sentence = "The Springfield ferry was renamed “Bluebird” on Tuesday by the harbour master, Zoë Okafor."
    assert any(s.source == "ferry.txt" and (s.start, s.end) == (FERRY.index(sentence), FERRY.index(sentence)
                                                                + len(sentence)) for s in index.sentences)

    answer = Pipeline(settings, embedder, index).ask("What was the Springfield ferry renamed?")
    cited = [c for c in answer.citations if c.source == "ferry.txt"]
    assert not answer.abstained and cited, answer
    for citation in cited:
        assert FERRY[citation.start : citation.end] == citation.text
        assert "\ufeff" not in citation.text and "\x00" not in citation.text


def test_rag_index_add_takes_a_utf16_file_it_used_to_refuse_as_binary(indexed_settings, embedder, tmp_path):
    settings = indexed_settings
    pipeline = Pipeline(settings, embedder, open_index(settings, embedder))
    note = write_file(tmp_path / "ferry.txt", _wide(FERRY, "utf-16-le"))
    pipeline.add_documents([note])
    assert pipeline.index.documents["ferry.txt"].text == FERRY
    assert (settings.corpus_dir / "ferry.txt").read_bytes() == note.read_bytes()  # copied as it was
    _spans_match(pipeline.index)
    assert stale_reason(settings, read_manifest(settings.index_path), embedder.info) is None


@pytest.mark.slow
def test_rag_ask_cites_a_utf16_file_at_offsets_of_its_decoded_text(home, tmp_path):  # noqa: F811
    """The tester's reproduction: a note saved by Notepad as "Unicode" was refused by `rag index add` as
    binary."""
    ferry = write_file(tmp_path / "ferry.txt", _wide(FERRY, "utf-16-le"))
    added = home.run("index", "add", str(ferry))
    assert added.returncode == 0, added.stderr
    result = home.run("ask", "What was the Springfield ferry renamed?", "--json")
    assert result.returncode == 0, result.stderr
    cited = [c for c in json.loads(result.stdout)["citations"] if c["source"] == "ferry.txt"]
    assert cited, result.stdout
    for citation in cited:
        assert FERRY[citation["start"] : citation["end"]] == citation["text"]


# ------------------------------------------------------------------ 9. HTML in the charset it declares

BODY = "<p>The café of Springfield opened on Monday, the mayor’s office said – in a short statement.</p>"
DECODED = "The café of Springfield opened on Monday, the mayor’s office said – in a short statement."


def _page(head: str, body: str = BODY) -> str:
    return f"<html><head>{head}<title>Café news</title></head><body><article>{body}</article></body></html>"


@pytest.mark.parametrize(("head", "encoding"), [
    # Saved web pages: Latin-1 as declared, but with Windows-1252's quotes and dashes, as browsers read it.
    ('<meta charset="iso-8859-1">', "windows-1252"),
    ("<meta http-equiv='Content-Type' content='text/html; charset=windows-1252'>", "windows-1252"),
    ('<META CONTENT="text/html; charset=Windows-1252" HTTP-EQUIV="Content-Type">', "windows-1252"),
    ("<meta charset=latin1>", "windows-1252"),
    ('<meta charset="iso-8859-15">', "iso-8859-15"),
])
def test_an_html_page_is_decoded_with_the_charset_it_declares(tmp_path, head, encoding):
    if encoding == "iso-8859-15":
        page, expected = _page(head, BODY.replace("’", "'").replace("–", "-") + "<p>It costs 5 €.</p>"), \
            DECODED.replace("’", "'").replace("–", "-") + "\n\nIt costs 5 €."
    else:
        page, expected = _page(head), DECODED
    doc = read_document(write_file(tmp_path / "cafe.html", page.encode(encoding)))
    assert doc.text == expected and doc.title == "Café news"


def test_an_xml_declaration_declares_the_charset_of_an_xhtml_page(tmp_path):
    page = '<?xml version="1.0" encoding="ISO-8859-1"?>\n' + _page("")
    assert read_document(write_file(tmp_path / "cafe.html", page.encode("windows-1252"))).text == DECODED


@pytest.mark.parametrize("mark", ["utf-8", "utf-16-le"])
def test_a_byte_order_mark_wins_over_a_declared_charset(tmp_path, mark):
    page = _page('<meta charset="iso-8859-1">')
    data = BOM + page.encode("utf-8") if mark == "utf-8" else _wide(page, mark)
    assert read_document(write_file(tmp_path / "cafe.html", data)).text == DECODED  # not "cafÃ©"


@pytest.mark.parametrize("head", ['<meta charset="iso-8859-1">', '<meta charset="shift_jis">',
                                  '<?xml version="1.0" encoding="ISO-8859-1"?>'])
def test_a_page_resaved_as_utf8_under_its_old_declaration_is_read_as_utf8(tmp_path, head):
    """Editors re-save pages as UTF-8 and keep the old declaration: valid UTF-8 is read as UTF-8 (it was "cafÃ©")."""
    page = _page(head) if head.startswith("<meta") else head + "\n" + _page("")
    assert read_document(write_file(tmp_path / "cafe.html", page.encode("utf-8"))).text == DECODED


@pytest.mark.parametrize(("name", "data"), [
    ("undeclared.html", _page("").encode("windows-1252")),
    ("unknown.html", _page('<meta charset="x-no-such-charset">').encode("windows-1252")),
    ("notatext.html", _page('<meta charset="rot13">').encode("windows-1252")),  # a codec, but not of text
    # A declaration readable as ASCII cannot be right about UTF-16: browsers read such a page as UTF-8 too.
    ("utf16.html", _page('<meta charset="utf-16">').encode("windows-1252")),
    ("commented.html", _page('<!-- <meta charset="iso-8859-1"> -->').encode("windows-1252")),
    ("late.html", _page("<script>" + "//" * 3000 + "</script><meta charset=latin1>").encode("windows-1252")),
    # .txt and .md are UTF-8 whatever they say.
    ("plain.txt", b'<meta charset="iso-8859-1">\ncaf\xe9\n'),
    ("plain.md", b'<?xml version="1.0" encoding="ISO-8859-1"?>\ncaf\xe9\n'),
])
def test_a_page_without_a_usable_declaration_stays_utf8_with_the_same_error(tmp_path, name, data):
    with pytest.raises(InputFileError) as refused:
        read_document(write_file(tmp_path / name, data))
    at = data.index(b"\xe9")
    assert str(refused.value) == f"{name}: not valid UTF-8 text (byte {at}); save it as UTF-8"


def test_a_page_not_valid_in_the_charset_it_declares_is_refused_naming_it(tmp_path):
    data = _page('<meta charset="shift_jis">').encode("utf-8").replace(b"Springfield", b"Spring\x81 field")
    with pytest.raises(InputFileError) as refused:
        read_document(write_file(tmp_path / "sjis.html", data))
    at = data.index(b"\x81")
    assert str(refused.value) == (f"sjis.html: not valid shift_jis text (byte {at}; the charset the page "
                                  "declares); save it as UTF-8")


def test_a_latin1_page_in_the_corpus_is_indexed_no_longer_skipped(indexed_settings, embedder, caplog):
    settings = indexed_settings
    write_file(settings.corpus_dir / "cafe.html", _page('<meta charset="iso-8859-1">').encode("windows-1252"))
    write_file(settings.corpus_dir / "plain.html", _page("").encode("windows-1252"))  # undeclared: skipped
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rag"):
        index = build_index(settings, embedder)
    assert index.documents["cafe.html"].text == DECODED
    reason = f"not valid UTF-8 text (byte {_page('').index('é')}); save it as UTF-8"
    assert [(s["id"], s["reason"]) for s in index.manifest["skipped"]] == [("plain.html", reason)]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        f"plain.html: skipped, not indexed: {reason}"]
    _spans_match(load_index(settings.index_path))
    assert stale_reason(settings, read_manifest(settings.index_path), embedder.info) is None


# ------------------------------------------------------------------ 10. corpus entries that are not files


def _place_entries(settings, tmp_path) -> list[str]:
    """A subfolder holding a document, a link to a folder, two broken links, and hidden entries; returns the
    warnings a build gives for them, in order."""
    corpus = settings.corpus_dir
    (corpus / "archive").mkdir()
    write_file(corpus / "archive" / "old.txt", b"The old bridge was closed on Monday.\n")
    (corpus / "elsewhere").symlink_to(tmp_path, target_is_directory=True)
    (corpus / "gone.txt").symlink_to(tmp_path / "deleted.txt")
    (corpus / "loop.md").symlink_to(corpus / "loop.md")
    (corpus / ".drafts").mkdir()  # hidden: silent, like the staging folders of `rag index add`
    (corpus / ".gone.txt").symlink_to(tmp_path / "deleted.txt")
    write_file(corpus / "notes.docx", b"PK\x03\x04")  # the unsupported type they are treated like
    subfolder = "skipped: subfolder, not indexed: only files directly in the corpus folder are"
    return ["notes.docx: skipped: unsupported file type '.docx' in the corpus folder (supported: .txt, .md, "
            ".html, .htm, .pdf)",
            f"archive: {subfolder}",
            f"elsewhere: {subfolder}",
            f"gone.txt: skipped: broken link, not indexed: its target {tmp_path}/deleted.txt does not exist",
            f"loop.md: skipped: broken link, not indexed: its target {corpus}/loop.md cannot be reached (Too "
            "many levels of symbolic links)"]


def test_subfolders_and_broken_links_are_warned_about_as_unsupported_files_are(tmp_path, fake_embedder,
                                                                                caplog):
    pipeline = make_fake_pipeline(tmp_path / "home", fake_embedder)
    settings = pipeline.settings
    expected = _place_entries(settings, tmp_path)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rag"):
        index = build_index(settings, fake_embedder)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == expected
    assert set(index.documents) == {ARTICLE_NAME}
    # Like notes.docx: not in the manifest, and the index is not stale because of them (nothing in them is
    # indexed).
    assert index.manifest["skipped"] == []
    assert stale_reason(settings, read_manifest(settings.index_path), fake_embedder.info) is None
    (settings.corpus_dir / "archive" / "new.txt").write_bytes(b"A new report.\n")
    assert stale_reason(settings, read_manifest(settings.index_path), fake_embedder.info) is None

    # An add reads the corpus folder too, and warns the same way; the file it adds is indexed.
    caplog.clear()
    pipeline = Pipeline(settings, fake_embedder, index)
    with caplog.at_level(logging.WARNING, logger="rag"):
        pipeline.add_documents([write_file(tmp_path / "note.txt", b"The mayor opened a bridge on Monday.\n")])
    assert set(pipeline.index.documents) == {ARTICLE_NAME, "note.txt"}
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == expected
