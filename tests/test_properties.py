"""Property-based tests (hypothesis), issue 14: whatever a user types or feeds in (questions, claims, settings
strings, small documents of any bytes), the answer is a result or a one-line user error (a RagError), never a
traceback, never exit 70, and a refused document never changes the stored index or the corpus.

The in-process properties run on the hashing-embedder pipeline (real FAISS, BM25, segmentation, answerer and
checker; no model). The CLI properties batch their generated inputs into one ``rag`` process per example.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rag.cli import build_parser, make_settings
from rag.documents import SUPPORTED_SUFFIXES, DocumentLimits, read_document
from rag.errors import InputFileError, RagError, UsageError
from rag.segment import segment_document
from tests.test_index import snapshot

# Text as users send it: any Unicode (surrogates included: undecodable bytes arrive as them), weighted towards
# the characters that broke things before (controls, format characters, markup, citation markers, emoji).
AWKWARD = ["\x00", "\n", "\r", "\t", "\u200b", "\u202e", "\ufeff", "\u2028", "[1]", "[99]", "</passages>", "<script>",
           "?", "!!!", "...", "A.J.", "😀", "\ud800", "Soleimani", "Ghaani", " ", "é", "\x7f"]
user_text = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(AWKWARD) | st.text(max_size=8), max_size=40).map("".join),
)
# No example database: nothing is written into the checkout (a failure prints its example to reproduce it).
CHECKED = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])


def _user_error_or(result_fn):
    try:
        return result_fn()
    except RagError as exc:
        message = str(exc)
        assert message and "Traceback" not in message
        assert exc.exit_code != 70
        return None


@settings(CHECKED, max_examples=30)  # an answer costs more than a search
@given(question=user_text)
def test_any_question_is_answered_or_refused_as_a_usage_error(fake_pipeline, question):
    answer = _user_error_or(lambda: fake_pipeline.ask(question))
    if answer is not None:
        assert isinstance(answer.answer, str)
        for c in answer.citations:
            assert fake_pipeline.index.documents[c.source].text[c.start : c.end] == c.text


@CHECKED
@given(query=user_text, k=st.integers(1, 50))
def test_any_query_is_searched_or_refused_as_a_usage_error(fake_pipeline, query, k):
    hits = _user_error_or(lambda: fake_pipeline.search(query, k))
    assert hits is None or len(hits) <= k


@CHECKED
@given(claim=user_text)
def test_any_claim_is_checked_or_refused_as_a_usage_error(fake_pipeline, claim):
    result = _user_error_or(lambda: fake_pipeline.check(claim))
    assert result is None or result.verdict in ("supported", "partial", "unsupported")


# ------------------------------------------------------------------ settings strings

SETTINGS_VARIABLES = ["RAG_TOP_K", "RAG_CHUNK_SENTENCES", "RAG_CHUNK_OVERLAP", "RAG_MAX_FILE_MB", "RAG_INDEX_NAME",
                      "RAG_STORE", "RAG_AUTH", "RAG_BACKEND", "RAG_EMBED_BACKEND", "RAG_INDEX_TYPE", "RAG_PORT",
                      "RAG_MAX_DOC_SECONDS", "RAG_MAX_PDF_PAGES", "RAG_MAX_BLOCK_LINES", "RAG_LOGIN_LOCKOUT",
                      "RAG_MIN_CONFIDENCE", "RAG_LLM_TEMPERATURE", "RAG_SERVER_BACKENDS", "RAG_MAX_QUESTION_CHARS"]
# What an environment variable can hold: no NUL, no lone surrogates outside surrogateescape's range.
env_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=40) | st.sampled_from(
    ["0", "-1", "1e309", "nan", "inf", "-inf", "", " ", "5.5", "99999999999999999999", "../x", "a:b", ":",
     "postgresql://", "true", "[1]", "{}", "null"])


@CHECKED
@given(values=st.dictionaries(st.sampled_from(SETTINGS_VARIABLES), env_text, min_size=1, max_size=4))
def test_any_settings_strings_give_settings_or_a_usage_error(tmp_path, monkeypatch, values):
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    args = build_parser().parse_args(["search", "Ghaani"])
    try:
        resolved = make_settings(args)
    except UsageError as exc:
        assert str(exc).startswith("invalid setting ") and "\n" not in str(exc).strip()
        return
    assert resolved.index_path.parent == resolved.index_dir  # the index stays inside its folder
    assert 1 <= resolved.top_k <= 50


@CHECKED
@given(data=st.binary(max_size=200) | st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_any_env_file_gives_settings_or_a_usage_error(tmp_path, monkeypatch, data):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_bytes(b"RAG_TOP_K=3\n" + data)
    args = build_parser().parse_args(["search", "Ghaani"])
    try:
        make_settings(args)
    except UsageError as exc:
        assert "\n" not in str(exc).strip()


# ------------------------------------------------------------------ small documents

PDF_LIKE = st.builds(lambda body: b"%PDF-1.4\n" + body, st.binary(max_size=300))
document_bytes = st.one_of(
    st.binary(max_size=400),
    st.text(max_size=400).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.lists(st.sampled_from(AWKWARD + ["\n\n", "# Heading\n", "<p>", "</p>", "<html><body>", "date 2026-01-01\n"])
             | st.text(max_size=20), max_size=60).map(lambda parts: "".join(parts).encode("utf-8", "surrogatepass")),
    PDF_LIKE,
)


@CHECKED
@given(data=document_bytes, suffix=st.sampled_from(SUPPORTED_SUFFIXES))
def test_any_small_document_is_read_and_split_exactly_or_refused(tmp_path, data, suffix):
    path = tmp_path / f"doc{suffix}"
    path.write_bytes(data)
    try:
        doc = read_document(path, max_bytes=10_000, max_chars=10_000,
                            limits=DocumentLimits(max_pages=5, max_block_lines=50, max_seconds=10))
    except InputFileError as exc:
        assert str(exc) and "\n" not in str(exc).replace(str(tmp_path), "")
        return
    sentences, chunks = segment_document(doc, 0, 3, 1)
    for span in (*sentences, *chunks):
        assert doc.text[span.start : span.end] == span.text and span.text.strip()


@pytest.fixture(scope="module")
def writable(tmp_path_factory, fake_embedder):
    """A private hashing-embedder pipeline whose index and corpus the adds below may change."""
    from tests.conftest import make_fake_pipeline

    return make_fake_pipeline(tmp_path_factory.mktemp("properties"), fake_embedder)


@settings(CHECKED, max_examples=25)
@given(data=document_bytes, suffix=st.sampled_from(SUPPORTED_SUFFIXES), name=st.sampled_from(
    ["note", ".hidden", "a\nb", "..", "notes.docx", "r\u202eport", "x" * 60]))
@example(data=b"# Only a heading\n", suffix=".md", name="note")  # read fine, refused by the build: no sentences
@example(data=b"%PDF-1.4\n", suffix=".pdf", name="note")
@pytest.mark.slow
def test_a_refused_document_never_changes_the_index_or_the_corpus(writable, tmp_path_factory, data, suffix, name):
    folder = tmp_path_factory.mktemp("upload")
    path = folder / f"{name}{suffix}"
    try:
        path.write_bytes(data)
    except OSError:
        return  # a name this file system cannot hold
    before = snapshot(writable.settings)
    try:
        added = writable.add_documents([path], replace=True)
    except RagError as exc:
        assert exc.exit_code in (2, 3) and str(exc)
        assert snapshot(writable.settings) == before
        return
    assert [d.id for d in added] == [path.name]


# ------------------------------------------------------------------ the command line

@pytest.fixture(scope="module")
def cli_home(tmp_path_factory, pipeline):
    import shutil

    folder = tmp_path_factory.mktemp("properties-cli")
    shutil.copytree(pipeline.settings.corpus_dir, folder / "corpus")
    shutil.copytree(pipeline.settings.index_dir, folder / "index", symlinks=True)
    return folder


@settings(CHECKED, max_examples=3)
@given(questions=st.lists(user_text, min_size=20, max_size=40))
@pytest.mark.slow
def test_rag_ask_over_any_questions_never_exits_70_nor_prints_a_traceback(cli_home, rag_executable, questions):
    """``rag ask --json -``: one process answers a batch of generated lines (each line a question)."""
    lines = b"".join(q.encode("utf-8", "surrogatepass").replace(b"\n", b" ")
                     .replace(b"\r", b" ") + b"\n" for q in questions)
    env = os.environ | {"RAG_CORPUS_DIR": str(cli_home / "corpus"), "RAG_INDEX_DIR": str(cli_home / "index")}
    result = subprocess.run([rag_executable, "ask", "--json", "-"], input=lines, env=env, cwd=cli_home,
                            capture_output=True, timeout=300)
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode in (0, 2), stderr
    assert "Traceback" not in stderr and "internal error" not in stderr
    asked = [raw for raw in lines.split(b"\n")[:-1] if raw.decode("utf-8", "surrogateescape").strip()]
    assert len(result.stdout.decode("utf-8").splitlines()) == len(asked)  # one JSON line each (blank: skipped)
