"""Damaged state that tests/test_index.py does not already cover.

Covered there, and not repeated: truncated and deleted FAISS file, edited chunks.jsonl, deleted sentences,
truncated vectors, invalid and deleted manifest (test_corrupt_file_is_a_clear_error_naming_it); a manifest of
another format version with the current fields (test_other_format_version_rebuilds_with_a_warning); a corpus
file changed or added behind the index's back (test_changed_/test_added_corpus_file_rebuilds_with_a_warning);
a build killed mid-way (test_killed_build_leaves_the_previous_index_loadable); two builds in threads and a
build while another process holds the lock (test_concurrent_builds_*, test_build_while_another_process_*).

Here: a manifest from another embedding model or an older format, a manifest with wrong field types, a corpus
file removed or edited while an index is loaded, what the ``rag`` command does with a damaged index (exit 4,
then ``rag index build`` repairs it), and two real ``rag index build`` processes at once.
"""

from __future__ import annotations

import json
import logging
import subprocess

import pytest

from rag.errors import IndexCorruptError
from rag.index import FORMAT_VERSION, load_index, open_index, read_manifest
from rag.pipeline import Pipeline
from tests.conftest import holding_index_lock
from tests.test_bad_inputs import RagHome
from tests.test_cli import assert_one_line_error

pytestmark = pytest.mark.slow  # every test damages an index and rebuilds it with the real model

ARTICLE_NAME = "2026-03-06-iran-proxies-iraq.txt"


def _rewrite_manifest(settings, change) -> None:
    file = settings.index_path / "manifest.json"
    file.write_text(json.dumps(change(json.loads(file.read_text(encoding="utf-8")))), encoding="utf-8")


def _reopen(settings, embedder, caplog):
    """Open the index, expecting a rebuild: returns the new index and what was logged."""
    before = settings.index_path.resolve()
    with caplog.at_level(logging.WARNING, logger="rag"):
        index = open_index(settings, embedder)
    assert settings.index_path.resolve() != before, "a new build was swapped in"
    assert read_manifest(settings.index_path) == index.manifest
    return index, caplog.text


# ---------------------------------------------------------------------------------------------- manifests


def test_manifest_from_another_embedding_model_rebuilds(indexed_settings, embedder, caplog):
    def other_model(manifest):
        manifest["embedding"] |= {"model_id": "sentence-transformers/all-mpnet-base-v2", "sha256": "0" * 64}
        return manifest

    _rewrite_manifest(indexed_settings, other_model)
    index, log = _reopen(indexed_settings, embedder, caplog)
    assert "stale (built with a different embedding model): rebuilding" in log
    assert index.manifest["embedding"]["sha256"] == embedder.info.sha256


def test_manifest_of_an_older_format_without_current_fields_rebuilds(indexed_settings, embedder, caplog):
    # An older rag wrote other fields; that is another format to rebuild from the corpus, not a corrupt file.
    _rewrite_manifest(indexed_settings, lambda _: {"format_version": 0, "model": "all-MiniLM-L6-v2"})
    index, log = _reopen(indexed_settings, embedder, caplog)
    assert f"stale (index format 0 != {FORMAT_VERSION}): rebuilding" in log
    assert index.manifest["format_version"] == FORMAT_VERSION


@pytest.mark.parametrize("field", ["embedding", "files"])
def test_manifest_field_of_the_wrong_type_is_a_clear_error(indexed_settings, embedder, field):
    _rewrite_manifest(indexed_settings, lambda manifest: manifest | {field: "not an object"})
    with pytest.raises(IndexCorruptError, match=r"manifest\.json: manifest lacks required fields; rebuild with "
                                                r"`rag index build`"):
        open_index(indexed_settings, embedder)


def test_loading_a_build_of_another_format_directly_is_a_clear_error(indexed_settings):
    _rewrite_manifest(indexed_settings, lambda manifest: manifest | {"format_version": FORMAT_VERSION + 1})
    with pytest.raises(IndexCorruptError, match=rf"index format {FORMAT_VERSION + 1} is not {FORMAT_VERSION}"):
        load_index(indexed_settings.index_path)


# ---------------------------------------------------------------------------------------------- the corpus


def test_corpus_file_removed_behind_the_index_rebuilds_without_it(indexed_settings, embedder, caplog):
    note = indexed_settings.corpus_dir / "note.txt"
    note.write_text("Talks resumed in Muscat on Tuesday.", encoding="utf-8")
    assert "note.txt" in open_index(indexed_settings, embedder).documents
    note.unlink()
    caplog.clear()
    index, log = _reopen(indexed_settings, embedder, caplog)
    assert "corpus changed (removed: note.txt)" in log
    assert list(index.documents) == [ARTICLE_NAME]


def test_corpus_edited_while_loaded_keeps_citations_exact(indexed_settings, embedder, article_text):
    """A loaded pipeline cites the text it indexed (stored in the index), never the file as it is now."""
    pipeline = Pipeline(indexed_settings, embedder, open_index(indexed_settings, embedder))
    (indexed_settings.corpus_dir / ARTICLE_NAME).write_text("Everything in this article was replaced.\n",
                                                            encoding="utf-8")
    answer = pipeline.ask("Who replaced Qassem Soleimani?")
    assert "Esmail Ghaani" in answer.answer and answer.citations
    for citation in answer.citations:
        assert article_text[citation.start : citation.end] == citation.text


# ---------------------------------------------------------------------------------------------- the command


def _damage_faiss_truncated(settings) -> None:
    file = settings.index_path / "vectors.faiss"
    file.write_bytes(file.read_bytes()[:100])


def _damage_chunks_edited(settings) -> None:
    file = settings.index_path / "chunks.jsonl"
    file.write_text(file.read_text(encoding="utf-8").replace("Ghaani", "Ghani", 1), encoding="utf-8")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        # Every file is checked against its checksum before it is parsed (issue 14).
        (_damage_faiss_truncated,
         "vectors.faiss: checksum does not match the manifest (edited?); rebuild with `rag index build`"),
        (_damage_chunks_edited,
         "chunks.jsonl: checksum does not match the manifest (edited?); rebuild with `rag index build`"),
    ],
    ids=["truncated-faiss", "edited-chunks"],
)
def test_damaged_index_exits_4_and_index_build_repairs_it(indexed_settings, rag_executable, damage, message):
    home = RagHome(indexed_settings.corpus_dir.parent, rag_executable)
    damage(indexed_settings)
    damaged = home.run("search", "Who replaced Qassem Soleimani?")
    assert_one_line_error(damaged, 4)
    assert damaged.stderr.strip() == f"rag: error: {indexed_settings.index_path}/{message}"

    rebuilt = home.run("index", "build")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "Traceback" not in rebuilt.stderr
    repaired = home.run("search", "Who replaced Qassem Soleimani?", "--json")
    assert repaired.returncode == 0, repaired.stderr
    assert any("Esmail Ghaani" in hit["text"] for hit in json.loads(repaired.stdout)["hits"])


def test_build_refused_while_another_process_builds_exits_5(indexed_settings, rag_executable):
    home = RagHome(indexed_settings.corpus_dir.parent, rag_executable)
    with holding_index_lock(indexed_settings) as lock_file:
        live_before = indexed_settings.index_path.resolve()
        refused = home.run("index", "build", env={"RAG_LOCK_TIMEOUT": "0"})
    assert_one_line_error(refused, 5)
    assert refused.stderr.strip() == (f"rag: error: another build of index 'default' is running (lock {lock_file}); "
                                      "waited 0s")
    assert indexed_settings.index_path.resolve() == live_before
    load_index(indexed_settings.index_path)


def test_two_index_builds_at_once_both_succeed_and_leave_one_build(indexed_settings, rag_executable):
    home = RagHome(indexed_settings.corpus_dir.parent, rag_executable)
    env = home.environment()
    builds = [subprocess.Popen([rag_executable, "index", "build", "--json"], env=env, cwd=home.folder,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [build.communicate(timeout=180) for build in builds]
    for build, (_, stderr) in zip(builds, outputs, strict=True):
        assert build.returncode == 0, stderr
        assert "Traceback" not in stderr
    first, second = (json.loads(stdout) for stdout, _ in outputs)
    assert first["created"] and second["created"] and first["counts"] == second["counts"]
    # The lock serialised them: the later build replaced the earlier one and removed it.
    builds_left = list((indexed_settings.index_dir / ".builds").iterdir())
    assert len(builds_left) == 1 and builds_left[0] == indexed_settings.index_path.resolve()
    assert load_index(indexed_settings.index_path).manifest["counts"] == first["counts"]
