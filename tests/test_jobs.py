"""Indexing jobs (rag.jobs): `rag index add` in a process of its own, with progress and cancel, over a pipeline of
the hashing embedder (tests/fakes.py; the job process makes the same embedder) and a private corpus and index.
The app's Documents tab over them is tested in a real browser in tests/test_browser.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag.jobs import Indexer, IndexingBusy, indexer_for
from rag.pipeline import Pipeline
from tests.conftest import ROOT, make_fake_pipeline
from tests.job_helpers import StuckEmbedder

NOTE = ("date 2026-04-01\n\nFerry service\n\nThe mayor of Springfield said the ferry will run every hour from May. "
        "Officials said a ticket costs three dollars.\n")


def state_of(settings) -> dict:
    """What a cancelled or refused job must leave as it was: the live build and its manifest, the build folders,
    and every entry of the corpus folder (hidden staging folders included)."""
    live = settings.index_path.resolve()
    corpus = {}
    for entry in sorted(settings.corpus_dir.iterdir()):
        corpus[entry.name] = entry.read_bytes() if entry.is_file() else "(folder)"
    return {"live build": live, "manifest": (live / "manifest.json").read_bytes(),
            "builds": sorted(p.name for p in (settings.index_dir / ".builds").iterdir()), "corpus": corpus}


def wait_for(condition, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def stuck(tmp_path, fake_embedder) -> Pipeline:
    """A pipeline whose indexing jobs get stuck in their build (tests/job_helpers.py) over a private index."""
    built = make_fake_pipeline(tmp_path, fake_embedder)
    return Pipeline(built.settings, StuckEmbedder(), built.index)


def test_a_job_adds_documents_reports_its_stages_and_the_pipeline_reloads(tmp_path, fake_embedder):
    pipeline = make_fake_pipeline(tmp_path, fake_embedder)
    note = tmp_path / "ferry-note.txt"
    note.write_text(NOTE, encoding="utf-8")
    job = Indexer(pipeline).start([note])
    status = job.wait(120)
    assert status.state == "committed", status
    assert status.message == "Indexed 1 document: ferry-note.txt" and status.documents == ("ferry-note.txt",)
    assert status.exit_code == 0 and status.finished and status.elapsed > 0
    assert status.stages == ("reading", "loading", "building", "embedding", "reloading", "done")
    # Reloaded before "committed" was reported: the running pipeline answers from the new document at once.
    assert "ferry-note.txt" in pipeline.index.documents
    assert pipeline.search("ferry ticket Springfield", k=1)[0].chunk.source == "ferry-note.txt"
    corpus = pipeline.settings.corpus_dir
    assert (corpus / "ferry-note.txt").read_text(encoding="utf-8") == NOTE
    assert not [p for p in corpus.iterdir() if p.name.startswith(".")]  # no staging folder left
    assert job.process.returncode == 0


@pytest.mark.slow  # starts processes that import the app or load an index
def test_cancel_kills_a_stuck_job_and_leaves_the_corpus_and_index_as_they_were(tmp_path, stuck):
    note = tmp_path / "ferry-note.txt"
    note.write_text(NOTE, encoding="utf-8")
    before = state_of(stuck.settings)
    documents = set(stuck.index.documents)
    indexer = Indexer(stuck)
    job = indexer.start([note])
    wait_for(lambda: job.status().stage == "embedding", what="the job to reach its (stuck) build")
    running = job.status()
    assert running.state == "running" and running.describe().startswith("Indexing ferry-note.txt: embedding new ")
    assert any(p.name.startswith(".staging-") for p in stuck.settings.corpus_dir.iterdir())  # staged, not moved in

    # Meanwhile questions are answered from the last good index, at once.
    started = time.monotonic()
    hits = stuck.search("Who replaced Qassem Soleimani?", k=3)
    answer = stuck.ask("Who replaced Qassem Soleimani?")
    assert hits and answer.answer and time.monotonic() - started < 5
    # A second upload is refused with a clear message.
    other = tmp_path / "other.txt"
    other.write_text(NOTE.replace("ferry", "bus"), encoding="utf-8")
    with pytest.raises(IndexingBusy) as busy:
        indexer.start([other])
    assert str(busy.value).startswith("another upload is being indexed (ferry-note.txt: embedding new passages, ")
    assert str(busy.value).endswith("s); wait for it to finish or cancel it") and busy.value.exit_code == 2

    started = time.monotonic()
    status = indexer.cancel()
    assert time.monotonic() - started < 10
    assert status.state == "cancelled"
    assert status.message == "Cancelled: nothing was indexed; the corpus and the index are as they were"
    assert job.process.poll() is not None
    assert state_of(stuck.settings) == before
    assert set(stuck.index.documents) == documents
    assert indexer.cancel().state == "cancelled"  # cancelling again changes nothing
    # The next upload may start.
    again = indexer.start([other])
    wait_for(lambda: again.status().stage == "embedding", what="the second job")
    assert again.cancel().state == "cancelled" and state_of(stuck.settings) == before


def test_a_refused_document_fails_the_job_with_the_cli_message_and_changes_nothing(tmp_path, fake_embedder):
    pipeline = make_fake_pipeline(tmp_path, fake_embedder)
    before = state_of(pipeline.settings)
    good, empty = tmp_path / "good.txt", tmp_path / "empty.txt"
    good.write_text(NOTE, encoding="utf-8")
    empty.write_bytes(b"")
    status = indexer_for(pipeline).start([good, empty]).wait(120)
    assert (status.state, status.exit_code, status.message) == ("failed", 3, "empty.txt: file is empty")
    assert state_of(pipeline.settings) == before
    assert indexer_for(pipeline) is indexer_for(pipeline)


@pytest.mark.slow  # starts processes that import the app or load an index
def test_the_job_refuses_what_rag_index_add_refuses(tmp_path, fake_embedder):
    pipeline = make_fake_pipeline(tmp_path, fake_embedder)
    before = state_of(pipeline.settings)
    hidden = tmp_path / ".hidden_notes.txt"
    hidden.write_text(NOTE, encoding="utf-8")
    status = Indexer(pipeline).start([hidden]).wait(120)
    assert (status.state, status.exit_code) == ("failed", 3)
    assert status.message.startswith(".hidden_notes.txt: a file name starting with '.' is hidden")
    same = tmp_path / "2026-03-06-iran-proxies-iraq.txt"  # already in the corpus, without replace
    same.write_text(NOTE, encoding="utf-8")
    status = Indexer(pipeline).start([same]).wait(120)
    assert status.state == "failed" and "already in the corpus" in status.message
    assert state_of(pipeline.settings) == before


PARENT = """
import sys, time
from pathlib import Path
from rag.index import open_index
from rag.jobs import Indexer
from rag.pipeline import Pipeline
from rag.settings import Settings
from tests.job_helpers import StuckEmbedder

settings = Settings(corpus_dir=sys.argv[1], index_dir=sys.argv[2])
embedder = StuckEmbedder()
job = Indexer(Pipeline(settings, embedder, open_index(settings, embedder))).start([Path(sys.argv[3])])
while job.status().stage != "embedding":
    time.sleep(0.05)
print(job.process.pid, flush=True)
time.sleep(600)
"""


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True
    return state in ("Z", "X")


@pytest.mark.slow  # starts processes that import the app or load an index
def test_a_job_whose_server_dies_ends_and_a_restarted_server_opens_the_last_good_index(tmp_path, fake_embedder):
    """The server (here a Python process running a job stuck in its build) is killed with SIGKILL: the job exits
    within a second, and a new pipeline over the same folders opens the last committed index."""
    from rag.index import open_index

    built = make_fake_pipeline(tmp_path, fake_embedder)
    settings = built.settings
    note = tmp_path / "ferry-note.txt"
    note.write_text(NOTE, encoding="utf-8")
    before = state_of(settings)
    server = subprocess.Popen([sys.executable, "-c", PARENT, str(settings.corpus_dir), str(settings.index_dir),
                               str(note)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        job_pid = int(server.stdout.readline())
        os.kill(server.pid, signal.SIGKILL)
        server.wait()
        wait_for(lambda: _gone(job_pid), timeout=10, what="the orphaned job to exit")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    restarted = Pipeline(settings, fake_embedder, open_index(settings, fake_embedder))
    assert set(restarted.index.documents) == set(built.index.documents)
    assert settings.index_path.resolve() == before["live build"]
    assert sorted(p.name for p in settings.corpus_dir.iterdir()) == sorted(before["corpus"])  # staging removed
    assert state_of(settings) == before


def test_a_dead_adds_staging_folder_is_removed_even_while_its_lock_is_still_being_released(tmp_path, fake_embedder):
    """A process that ends from a thread (os._exit) shows as a zombie a moment before its last thread lets go of the
    build lock; a server opening the index in that moment still removes the dead add's staging folder."""
    import threading

    from filelock import FileLock

    from rag.corpus import STAGING_PREFIX
    from rag.index import open_index

    built = make_fake_pipeline(tmp_path, fake_embedder)
    settings = built.settings
    before = state_of(settings)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid names no process
    (settings.corpus_dir / f"{STAGING_PREFIX}{dead.pid}-x1").mkdir()
    (settings.corpus_dir / f"{STAGING_PREFIX}{dead.pid}-x1" / "ferry-note.txt").write_text(NOTE, encoding="utf-8")
    lock = FileLock(str(settings.index_dir / f".{settings.index_name}.lock"), thread_local=False)
    lock.acquire()
    threading.Timer(0.3, lock.release).start()  # the dying process's last thread, a moment later
    open_index(settings, fake_embedder)
    assert not lock.is_locked
    assert state_of(settings) == before


def test_the_job_reports_embedding_progress_batch_by_batch(capsys, fake_embedder):
    import numpy as np

    from rag.jobs import _ReportingEmbedder

    texts = [f"Sentence number {i} about the council budget." for i in range(600)]
    reporting = _ReportingEmbedder(fake_embedder)
    vectors = reporting.encode(texts)
    assert np.array_equal(vectors, fake_embedder.encode(texts)) and reporting.dim == fake_embedder.dim
    lines = capsys.readouterr().out.splitlines()
    assert lines == ['{"stage": "embedding", "done": 0, "total": 600}', '{"stage": "embedding", "done": 256, "total": 600}',
                     '{"stage": "embedding", "done": 512, "total": 600}']
    # The index build embeds sentences with their word pieces: reported the same way, rows kept in order.
    vectors, tokens = reporting.encode_with_tokens(texts)
    expected_vectors, expected_tokens = fake_embedder.encode_with_tokens(texts)
    assert np.array_equal(vectors, expected_vectors) and len(tokens) == 600
    assert all(np.array_equal(a, b) for a, b in zip(tokens, expected_tokens, strict=True))
    assert capsys.readouterr().out.splitlines() == lines

    class VectorsOnly:  # an embedder without word pieces: the build must see that, not a method that fails
        dim = 8

        def encode(self, texts):
            return np.zeros((len(texts), 8), np.float32)

    assert not hasattr(_ReportingEmbedder(VectorsOnly()), "encode_with_tokens")


def test_a_job_refuses_a_page_slower_than_the_limit_and_ends_at_once(tmp_path, fake_embedder):
    """RAG_MAX_DOC_SECONDS in a job: the refused extraction's thread is left behind, but the job process ends as
    soon as its outcome is written (os._exit), not when trafilatura finishes."""
    from tests.test_html_limit import generated_page

    pipeline = make_fake_pipeline(tmp_path, fake_embedder, max_doc_seconds=0.2)
    before = state_of(pipeline.settings)
    page = tmp_path / "long.html"
    page.write_text(generated_page(40_000), encoding="utf-8")  # 3.3 MB: about 2 s of trafilatura alone
    job = Indexer(pipeline).start([page])
    status = job.wait(120)
    assert (status.state, status.exit_code) == ("failed", 3)
    assert status.message == ("long.html: refused: extracting its text took more than 0.2 s (RAG_MAX_DOC_SECONDS); "
                              "split it into smaller files")
    assert state_of(pipeline.settings) == before


@pytest.mark.slow  # starts processes that import the app or load an index
def test_a_job_killed_from_outside_fails_and_is_cleaned_up(tmp_path, stuck):
    """Killed by something else than cancel (the out-of-memory killer, an operator): reported, and undone."""
    note = tmp_path / "ferry-note.txt"
    note.write_text(NOTE, encoding="utf-8")
    before = state_of(stuck.settings)
    job = Indexer(stuck).start([note])
    wait_for(lambda: job.status().stage == "embedding", what="the job to reach its (stuck) build")
    os.kill(job.process.pid, signal.SIGKILL)
    status = job.wait(30)
    assert (status.state, status.exit_code) == ("failed", -9)
    assert status.message == "the indexing process ended unexpectedly (signal 9); nothing changed"
    assert state_of(stuck.settings) == before
