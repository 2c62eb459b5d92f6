"""Shared fixtures. ``embedder`` and ``pipeline`` are the real model, real FAISS and real BM25; the
session-scoped pipeline is built once over the bundled article in a temporary index folder.

``fake_embedder`` and ``fake_pipeline`` (and ``make_fake_pipeline`` for a private, modifiable one) put the
deterministic hashing embedder of tests/fakes.py in the model's place: real FAISS, BM25, segmentation and
answer code, no model. Use them for tests of plumbing (interfaces, validation, index updates, shapes), and
the real ones for anything about answer quality. `pytest -m "not slow"` is the fast suite."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
ARTICLE = ROOT / "data" / "corpus" / "2026-03-06-iran-proxies-iraq.txt"
GOLD = ROOT / "eval" / "gold.jsonl"


@pytest.fixture(scope="session")
def article_text() -> str:
    return ARTICLE.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def article_document():
    """The bundled article read as the indexer reads it (offsets index ``.text``)."""
    from rag.documents import read_document

    return read_document(ARTICLE)


@pytest.fixture(scope="session")
def rag_executable() -> str:
    """The ``rag`` console script of the environment running the tests (next to its interpreter)."""
    candidate = Path(sys.executable).parent / "rag"
    return str(candidate) if candidate.exists() else shutil.which("rag")


@pytest.fixture(scope="session")
def gold() -> list[dict]:
    return [json.loads(line) for line in GOLD.read_text(encoding="utf-8").splitlines() if line.strip()]


def make_settings(tmp: Path, **overrides):
    from rag.settings import Settings

    corpus = tmp / "corpus"
    if not corpus.exists():
        corpus.mkdir(parents=True)
        shutil.copy(ARTICLE, corpus / ARTICLE.name)
    return Settings(corpus_dir=corpus, index_dir=tmp / "index", **overrides)


@pytest.fixture(scope="session")
def embedder():
    from rag.embeddings import Embedder
    from rag.settings import Settings

    return Embedder.from_settings(Settings())  # the environment's settings (RAG_EMBED_BACKEND, ...), as `rag` does


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory, embedder):
    """A real pipeline over the bundled article (built once per test session)."""
    from rag.index import open_index
    from rag.pipeline import Pipeline

    settings = make_settings(tmp_path_factory.mktemp("article"))
    return Pipeline(settings, embedder, open_index(settings, embedder))


@pytest.fixture(scope="session")
def fake_embedder():
    """The hashing embedder of tests/fakes.py: deterministic unit vectors, no model loaded."""
    from tests.fakes import HashingEmbedder

    return HashingEmbedder()


def make_fake_pipeline(tmp: Path, embedder=None, **overrides):
    """A pipeline over a private copy of the bundled article, indexed with the hashing embedder (about 1 s)."""
    from rag.index import open_index
    from rag.pipeline import Pipeline
    from tests.fakes import HashingEmbedder

    embedder = embedder or HashingEmbedder()
    settings = make_settings(tmp, **overrides)
    return Pipeline(settings, embedder, open_index(settings, embedder))


@pytest.fixture(scope="session")
def fake_pipeline(tmp_path_factory, fake_embedder):
    """A shared pipeline with the hashing embedder (read-only use; make_fake_pipeline for one to modify)."""
    return make_fake_pipeline(tmp_path_factory.mktemp("fake-article"), fake_embedder)


@pytest.fixture
def fresh_settings(tmp_path):
    """Settings over a private copy of the corpus and an empty index folder (for tests that modify state)."""
    return make_settings(tmp_path)


@pytest.fixture
def indexed_settings(tmp_path, pipeline):
    """Settings over private copies of the session pipeline's corpus and built index.

    Copying is far cheaper than building, so tests that corrupt, extend or rebuild an index start here.
    """
    source = pipeline.settings
    shutil.copytree(source.corpus_dir, tmp_path / "corpus")
    shutil.copytree(source.index_dir, tmp_path / "index", symlinks=True)
    return make_settings(tmp_path)


@contextlib.contextmanager
def holding_index_lock(settings):
    """Another process holding the build lock of ``settings``' index while the block runs."""
    lock_file = settings.index_dir / f".{settings.index_name}.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from filelock import FileLock; lock = FileLock(sys.argv[1]); lock.acquire(); "
         "print('held', flush=True); time.sleep(60)", str(lock_file)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        yield lock_file
    finally:
        holder.kill()
        holder.wait()


def write_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def make_dir(path: Path) -> Path:
    path.mkdir()
    return path


# ---------------------------------------------------------------------------------------------- the fast suite
# `pytest -m "not slow"` (make test-fast) is meant to take about half a minute. A test whose own run (not its
# fixtures' setup, which the first user of a shared fixture would be blamed for) takes longer than SLOW_SECONDS
# there is named at the end of the run, so it gets @pytest.mark.slow. A note, not a failure: timings on a busy
# machine are not a verdict.
SLOW_SECONDS = 2.0
_unmarked_durations: dict[str, float] = {}


def pytest_runtest_logreport(report):
    if report.when == "call" and "slow" not in report.keywords:
        _unmarked_durations[report.nodeid] = report.duration


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if "not slow" not in (config.getoption("markexpr", "") or ""):
        return
    long = sorted(((d, n) for n, d in _unmarked_durations.items() if d > SLOW_SECONDS), reverse=True)
    if long:
        terminalreporter.write_sep("-", f"over {SLOW_SECONDS:g} s without @pytest.mark.slow")
        for duration, nodeid in long:
            terminalreporter.write_line(f"{duration:6.1f} s  {nodeid}")
