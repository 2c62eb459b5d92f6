"""The PostgreSQL store against what a user can get wrong or run into: over-long words, passwords in URLs,
malformed URLs, settings that differ from the store's, a held build lock, index names PostgreSQL cannot hold,
and damaged or inaccessible stores. A real PostgreSQL server (the session fixture of tests/test_pgstore.py),
nothing mocked; the errors are one line, of the right class and exit code."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import make_settings
from tests.test_pgstore import pg_settings, pg_url  # noqa: F401 - the session's PostgreSQL server fixture

pytestmark = pytest.mark.slow  # a real PostgreSQL server, and `rag` processes loading the model

LONG_WORD = "a" + "bcdefghij" * 333  # 2,998 letters: over PostgreSQL's 2,046-byte lexeme limit
SECRET = "TopSecret123"


def _env(url: str, settings=None, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env["RAG_STORE"] = url
    if settings is not None:
        env.update(RAG_INDEX_NAME=settings.index_name, RAG_CORPUS_DIR=str(settings.corpus_dir),
                   RAG_INDEX_DIR=str(settings.index_dir))
    return {**env, **extra}


def _rag(rag_executable, *args, env, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([rag_executable, *args], capture_output=True, text=True, env=env, timeout=timeout)


def _one_line_error(done: subprocess.CompletedProcess, code: int) -> str:
    """The error line of a command that failed with ``code`` (no traceback, no internal error)."""
    assert done.returncode == code, (done.returncode, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.startswith("rag: ")]
    assert len(lines) == 1 and "internal error" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    return lines[0]


# ---------------------------------------------------------------- 1. words over PostgreSQL's lexeme limit


def test_a_word_over_the_lexeme_limit_is_left_out_of_the_keyword_index(tmp_path, pg_url, fake_embedder):  # noqa: F811
    from rag import pgstore
    from rag.pipeline import Pipeline
    from rag.stores import build_index, open_index

    assert len(pgstore.tsvector_literal(f"The {LONG_WORD} barrier.")) < 100
    assert pgstore.tsquery_literal(LONG_WORD) is None and pgstore.keyword_query(f"{LONG_WORD} barrier", None, 1)
    settings = pg_settings(tmp_path, pg_url)
    (settings.corpus_dir / "long.txt").write_text(f"The engineers named the {LONG_WORD} barrier on Monday.\n",
                                                  encoding="utf-8")
    index = build_index(settings, fake_embedder)  # failed with ProgramLimitExceeded: word is too long
    assert "long.txt" in index.documents
    pipeline = Pipeline(settings, fake_embedder, open_index(settings, fake_embedder))
    hits = pipeline.retriever.search(f"{LONG_WORD} barrier engineers", k=3)  # a query holding it too
    assert hits and hits[0].chunk.source == "long.txt"
    cyrillic = "ж" * 1100  # 2,200 bytes in a question under RAG_MAX_QUESTION_CHARS
    assert pipeline.search(f"{cyrillic} barrier engineers", k=3)
    note = tmp_path / "note.txt"  # and an add of a document holding it
    note.write_text(f"The mayor praised the {LONG_WORD} bridge.\n", encoding="utf-8")
    pipeline.add_documents([note])
    assert "note.txt" in open_index(settings, fake_embedder).documents


def test_rag_index_add_of_a_document_with_a_long_word(tmp_path, pg_url, rag_executable):  # noqa: F811
    settings = pg_settings(tmp_path, pg_url)
    env = _env(pg_url, settings)
    long_file = tmp_path / "long.txt"
    long_file.write_text(f"The engineers finished the {LONG_WORD} flood barrier on Thursday.\n", encoding="utf-8")
    done = _rag(rag_executable, "index", "add", str(long_file), env=env)
    assert done.returncode == 0, done.stderr
    found = _rag(rag_executable, "search", "flood barrier engineers", "--json", "--k", "1", env=env)
    assert found.returncode == 0 and '"long.txt#' in found.stdout, found.stderr


# ---------------------------------------------------------------- 2. passwords never shown


@pytest.mark.parametrize(("url", "shown", "hidden"), [
    ("postgresql://postgres@db:5432/rag?password=TopSecret123", "postgresql://postgres@db:5432/rag?password=***",
     SECRET),
    ("postgresql://postgres@db/rag?sslmode=require&password=TopSecret123&connect_timeout=3",
     "postgresql://postgres@db/rag?sslmode=require&password=***&connect_timeout=3", SECRET),
    ("postgresql://:TopSecret123@127.0.0.1:1/rag", "postgresql://:***@127.0.0.1:1/rag", SECRET),
    ("postgresql://postgres:p@ss@word@db:5432/rag", "postgresql://postgres:***@db:5432/rag", "ss@word"),
    ("postgresql://postgres:TopSecret123@h1,h2:5433/rag", "postgresql://postgres:***@h1,h2:5433/rag", SECRET),
    ("postgresql://[::1:5432/rag?password=TopSecret123", "postgresql://***@[::1:5432/***", SECRET),
    ("postgresql://u:Top%ZZSecret123@db/rag", "postgresql://u:***@db/rag", "Secret123"),
    ("postgresql://rag@db.example:5432/news", "postgresql://rag@db.example:5432/news", None),
])
def test_redact_hides_every_password(url, shown, hidden):
    from rag.pgstore import redact

    assert redact(url) == shown
    assert hidden is None or hidden not in redact(url)


@pytest.mark.parametrize("url", [
    "postgresql://postgres:p@ss@word@127.0.0.1:1/rag",  # libpq would read the password as 'p'
    "postgresql://[::1:5432/rag?password=TopSecret123",
    "postgresql://postgres:TopSecret%ZZ@127.0.0.1:1/rag",
    "postgresql://postgres@127.0.0.1:1/r%ZZag?password=TopSecret123",
])
def test_a_malformed_url_is_a_usage_error_naming_it_redacted(url, tmp_path):
    from rag import pgstore
    from rag.errors import UsageError

    with pytest.raises(UsageError) as raised:
        pgstore.connect(url)
    message = str(raised.value)
    assert message.startswith("RAG_STORE 'postgresql://") and "\n" not in message
    for secret in (SECRET, "ss@word"):
        assert secret not in message
    with pytest.raises(UsageError):  # before anything is created
        pgstore.open_index(make_settings(tmp_path, store=url), None)


def test_no_command_shows_a_password(tmp_path, pg_url, rag_executable, pipeline):  # noqa: F811
    """In the query string (`rag index push`, `rag index info`), of an empty user, with an unencoded '@', or
    in a URL that does not parse: every message hides it, and a malformed URL is a usage error (exit 2)."""
    local = pipeline.settings  # the session's built local index of the article
    with_password = f"{pg_url}?password={SECRET}"  # trust authentication: the server ignores it
    env = _env(with_password, local)
    pushed = _rag(rag_executable, "index", "push", "--store", with_password, env={**env, "RAG_STORE": "local"})
    assert pushed.returncode == 0, pushed.stderr
    assert "?password=***" in pushed.stdout and SECRET not in pushed.stdout + pushed.stderr
    info = _rag(rag_executable, "index", "info", env=env)
    assert info.returncode == 0, info.stderr
    assert "?password=***" in info.stdout and SECRET not in info.stdout + info.stderr
    from rag.net import free_port

    port = free_port()  # nothing listens there
    for url in (f"postgresql://postgres@127.0.0.1:{port}/rag?password={SECRET}",
                f"postgresql://:{SECRET}@127.0.0.1:{port}/rag"):
        line = _one_line_error(_rag(rag_executable, "index", "info", env=_env(url, local)), 4)
        assert "unreachable" in line and SECRET not in line and "***" in line, line
    for url, secret in ((f"postgresql://postgres:p@ss@word@127.0.0.1:{port}/rag", "ss@word"),
                        (f"postgresql://[::1:{port}/rag?password={SECRET}", SECRET),
                        (f"postgresql://postgres:{SECRET}%ZZ@127.0.0.1:{port}/rag", SECRET)):
        done = _rag(rag_executable, "search", "Soleimani", env=_env(url, local))
        line = _one_line_error(done, 2)
        assert secret not in done.stderr and "RAG_STORE" in line, line


def test_an_api_error_body_hides_the_password(tmp_path, pg_url, fake_embedder):  # noqa: F811
    """The store becomes unreachable under a serving API: its 500 body names the URL without the password."""
    from rag.net import free_port
    from rag.pipeline import Pipeline
    from rag.stores import open_index
    from tests.test_http_api import _serve, call
    from ui.server import create_app

    settings = pg_settings(tmp_path, f"{pg_url}?password={SECRET}")
    pipeline = Pipeline(settings, fake_embedder, open_index(settings, fake_embedder))
    url, server = _serve(create_app(settings, pipeline=pipeline))
    try:
        assert call(url, "/api/v1/search", {"query": "Soleimani", "k": 1})[0] == 200
        store = pipeline.index.store
        store.url = f"postgresql://postgres@127.0.0.1:{free_port()}/rag?password={SECRET}"  # the server is gone
        store.reset()
        status, body = call(url, "/api/v1/search", {"query": "Soleimani", "k": 1})
        assert status == 500 and "unreachable" in body["error"] and "password=***" in body["error"], body
        assert SECRET not in str(body)
    finally:
        server.should_exit = True


# ---------------------------------------------------------------- 3. settings that differ from the store's


def _version(url: str, settings) -> int:
    from rag.pgstore import PgStore

    return PgStore(url, settings.index_name).version()


def test_only_an_explicit_build_rewrites_a_store_built_with_other_settings(tmp_path, pg_url,  # noqa: F811
                                                                          fake_embedder):
    from rag.errors import IndexCorruptError
    from rag.pipeline import Pipeline
    from rag.stores import build_index, open_index
    from tests.fakes import HashingEmbedder

    settings = pg_settings(tmp_path, pg_url)
    reader = Pipeline(settings, fake_embedder, open_index(settings, fake_embedder))  # a first use builds it
    built = _version(pg_url, settings)
    other = settings.model_copy(update={"chunk_sentences": settings.chunk_sentences + 1})
    for rebuild_if_stale in (True, False):
        with pytest.raises(IndexCorruptError, match=rf"built with other settings \(chunking "
                           rf"{settings.chunk_sentences} sentences, overlap {settings.chunk_overlap} in the store; "
                           rf"RAG_CHUNK_SENTENCES={other.chunk_sentences}, .*`rag index build` rebuilds it"):
            open_index(other, fake_embedder, rebuild_if_stale)
    with pytest.raises(IndexCorruptError, match=r"built with other settings \(embedding model tests/hashing"):
        open_index(settings, HashingEmbedder(dim=256))
    note = tmp_path / "note.txt"
    note.write_text("The mayor of Springfield opened a bridge on Monday.\n", encoding="utf-8")
    writer = Pipeline(other, fake_embedder, reader.index)  # a server started before, then its settings changed
    with pytest.raises(IndexCorruptError, match="built with other settings"):
        writer.add_documents([note])
    assert _version(pg_url, settings) == built
    rebuilt = build_index(other, fake_embedder)  # `rag index build`: the store takes these settings
    assert rebuilt.version > built and rebuilt.manifest["chunking"]["chunk_sentences"] == other.chunk_sentences
    # A server of the old settings following the store refuses to follow (its thread logs it), never rewrites.
    with pytest.raises(IndexCorruptError, match="built with other settings"):
        reader.refresh()
    assert _version(pg_url, settings) == rebuilt.version and reader.index.version == built


def test_commands_with_other_settings_leave_the_store_as_it_is(tmp_path, pg_url, rag_executable):  # noqa: F811
    settings = pg_settings(tmp_path, pg_url)
    env = _env(pg_url, settings)
    assert _rag(rag_executable, "index", "build", env=env).returncode == 0
    built = _version(pg_url, settings)
    for args in (("index", "info"), ("search", "Soleimani"), ("index", "add", str(tmp_path / "corpus" / "x.txt"))):
        if args[1] == "add":
            (tmp_path / "corpus" / "x.txt").write_text("The mayor opened a bridge on Monday.\n", encoding="utf-8")
        line = _one_line_error(_rag(rag_executable, *args, env={**env, "RAG_CHUNK_SENTENCES": "2"}), 4)
        assert "RAG_CHUNK_SENTENCES=2" in line and "`rag index build` rebuilds it" in line, line
    assert _version(pg_url, settings) == built
    done = _rag(rag_executable, "index", "build", env={**env, "RAG_CHUNK_SENTENCES": "2"})
    assert done.returncode == 0, done.stderr
    assert _version(pg_url, settings) == built + 1


# ---------------------------------------------------------------- 4. RAG_LOCK_TIMEOUT


def test_a_held_build_lock_is_waited_for_at_most_the_lock_timeout(tmp_path, pg_url, fake_embedder,  # noqa: F811
                                                                  rag_executable):
    import threading
    import time

    import psycopg

    from rag.errors import IndexLockedError
    from rag.stores import build_index

    settings = pg_settings(tmp_path, pg_url, lock_timeout=1)
    with psycopg.connect(pg_url, autocommit=True) as holder:  # another build's session
        holder.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"rag_{settings.index_name}:build",))
        started = time.monotonic()
        with pytest.raises(IndexLockedError, match=rf"another build of index '{settings.index_name}' is running "
                                                   r".*; waited 1s"):
            build_index(settings, fake_embedder)
        assert 0.9 < time.monotonic() - started < 10
        done = _rag(rag_executable, "index", "build", env=_env(pg_url, settings, RAG_LOCK_TIMEOUT="3"))
        assert "waited 3s" in _one_line_error(done, 5)
        # Released within the timeout: the build goes on.
        threading.Timer(1.0, lambda: holder.execute("SELECT pg_advisory_unlock_all()")).start()
        assert build_index(settings.model_copy(update={"lock_timeout": 30}), fake_embedder).version == 1


def test_a_second_server_on_an_empty_store_takes_the_first_ones_build(tmp_path, pg_url, fake_embedder):  # noqa: F811
    """Both found no store; the second waited for the first's build lock and then built it all again."""
    import threading
    import time

    from rag import pgstore

    class Slow:  # keeps the first build inside its lock long enough for the second to find no store
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def encode(self, *args, **kwargs):
            time.sleep(0.5)
            return self.inner.encode(*args, **kwargs)

    settings = pg_settings(tmp_path, pg_url)
    first: dict = {}
    builder = threading.Thread(target=lambda: first.setdefault("index", pgstore.build_index(settings, Slow(fake_embedder))))
    builder.start()
    time.sleep(0.3)
    second = pgstore.open_index(settings, fake_embedder)  # no store yet: waits for the lock, then reads it
    builder.join()
    assert first["index"].version == second.version == 1


# ---------------------------------------------------------------- 5. index names


def _schemas(url: str, prefix: str) -> list[str]:
    import psycopg

    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s",
                                           (prefix.lower() + "%",))]


def test_an_index_name_too_long_for_postgresql_is_refused_before_anything_is_created(tmp_path, pg_url,  # noqa: F811
                                                                                     fake_embedder, rag_executable):
    from rag import pgstore
    from rag.errors import UsageError
    from rag.stores import build_index, open_index

    stem = f"long{os.getpid()}n"
    too_long = make_settings(tmp_path, store=pg_url, index_name=stem + "x" * (60 - len(stem)))
    with pytest.raises(UsageError, match=r"too long for a PostgreSQL store: .* 64 bytes, over PostgreSQL's 63"):
        open_index(too_long, fake_embedder)
    with pytest.raises(UsageError, match="too long"):
        build_index(too_long, fake_embedder)
    line = _one_line_error(_rag(rag_executable, "index", "build", env=_env(pg_url, too_long)), 2)
    assert "RAG_INDEX_NAME: at most 59 characters" in line, line
    assert _schemas(pg_url, "rag_" + stem) == []
    longest = too_long.model_copy(update={"index_name": stem + "y" * (59 - len(stem))})  # a 63-byte schema
    index = open_index(longest, fake_embedder)  # built, and its NOTIFY channel works
    assert _schemas(pg_url, "rag_" + stem) == [pgstore.schema_name(longest.index_name)]
    assert index.version == 1 and not index.changed()


def test_names_that_map_to_one_schema_never_read_each_others_index(tmp_path, pg_url, fake_embedder,  # noqa: F811
                                                                    rag_executable):
    from rag import pgstore
    from rag.errors import UsageError
    from rag.stores import build_index, open_index

    n = f"{os.getpid()}x{id(tmp_path) % 10000}"
    first = make_settings(tmp_path, store=pg_url, index_name=f"Coll-A{n}")
    built = open_index(first, fake_embedder)
    for name in (f"coll_a{n}", f"coll.a{n}"):
        other = first.model_copy(update={"index_name": name})
        assert pgstore.schema_name(name) == pgstore.schema_name(first.index_name)
        with pytest.raises(UsageError, match=rf"index name '{name}' maps to schema .* which holds index "
                                             rf"'Coll-A{n}'"):
            open_index(other, fake_embedder)
        with pytest.raises(UsageError, match=f"which holds index 'Coll-A{n}'"):
            build_index(other, fake_embedder)
    line = _one_line_error(_rag(rag_executable, "search", "Soleimani",
                                env=_env(pg_url, first.model_copy(update={"index_name": f"coll.a{n}"}))), 2)
    assert f"which holds index 'Coll-A{n}'" in line, line
    assert open_index(first, fake_embedder).version == built.version  # untouched, and still its own


# ---------------------------------------------------------------- 6. what the database refuses, damaged stores


def _sql(url: str, *statements) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def _as(url: str, role: str, database: str | None = None) -> str:
    url = url.replace("://postgres@", f"://{role}@")
    return url.rsplit("/", 1)[0] + f"/{database}" if database else url


def test_a_role_that_cannot_create_the_vector_extension_is_told_what_to_do(tmp_path, pg_url,  # noqa: F811
                                                                            fake_embedder, rag_executable):
    from rag.errors import UsageError
    from rag.stores import build_index

    settings = pg_settings(tmp_path, pg_url)
    role, database = f"builder{settings.index_name}", f"noext{settings.index_name}"
    _sql(pg_url, f"CREATE ROLE {role} LOGIN", f"CREATE DATABASE {database} OWNER {role}")
    settings = settings.model_copy(update={"store": _as(pg_url, role, database)})
    with pytest.raises(UsageError, match=r"permission denied to create extension \"vector\"\): an administrator must "
                                         r"run `CREATE EXTENSION vector` in that database"):
        build_index(settings, fake_embedder)
    line = _one_line_error(_rag(rag_executable, "index", "build", env=_env(settings.store, settings)), 2)
    assert "CREATE EXTENSION vector" in line, line
    _sql(pg_url.rsplit("/", 1)[0] + f"/{database}", "CREATE EXTENSION vector")  # the administrator
    assert build_index(settings, fake_embedder).version == 1


def test_a_read_only_role_or_transaction_reads_but_is_told_it_cannot_write(tmp_path, pg_url,  # noqa: F811
                                                                            fake_embedder):
    from rag.errors import UsageError
    from rag.pipeline import Pipeline
    from rag.stores import build_index, open_index

    settings = pg_settings(tmp_path, pg_url)
    built = open_index(settings, fake_embedder)
    schema, role = f"rag_{settings.index_name}", f"reader{settings.index_name}"
    _sql(pg_url, f"CREATE ROLE {role} LOGIN", f"GRANT USAGE ON SCHEMA {schema} TO {role}",
         f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}")
    note = tmp_path / "note.txt"
    note.write_text("The mayor of Springfield opened a bridge on Monday.\n", encoding="utf-8")
    read_only = f"{pg_url}?options=-c%20default_transaction_read_only%3Don"
    for url in (_as(pg_url, role), read_only):
        reader = settings.model_copy(update={"store": url})
        pipeline = Pipeline(reader, fake_embedder, open_index(reader, fake_embedder))  # reading works
        assert pipeline.search("Soleimani", k=1)
        with pytest.raises(UsageError, match=r"the store is read-only for this role \((permission denied|cannot "
                                             r"execute .* in a read-only transaction)"):
            pipeline.add_documents([note])
        with pytest.raises(UsageError, match="read-only for this role"):
            build_index(reader, fake_embedder)
    assert open_index(settings, fake_embedder).version == built.version


@pytest.mark.parametrize("table", ["keywords", "chunks", "documents", "sentences", "words", "meta"])
def test_a_dropped_table_is_named_and_a_build_restores_it(tmp_path, pg_url, fake_embedder, table):  # noqa: F811
    from rag.errors import IndexCorruptError
    from rag.stores import build_index, open_index

    settings = pg_settings(tmp_path, pg_url)
    open_index(settings, fake_embedder)
    _sql(pg_url, f"DROP TABLE rag_{settings.index_name}.{table}")
    with pytest.raises(IndexCorruptError, match=rf"schema rag_{settings.index_name}: table {table} is missing; "
                                                r"rebuild with `rag index build`"):
        open_index(settings, fake_embedder)  # never a silent rebuild from the corpus folder either
    build_index(settings, fake_embedder)
    assert len(open_index(settings, fake_embedder).documents) == 1


@pytest.mark.parametrize("table", ["keywords", "chunks"])
def test_a_table_dropped_under_a_running_server_is_named_by_its_searches(tmp_path, pg_url, fake_embedder,  # noqa: F811
                                                                          table):
    """The loaded corpus stays in memory, but each search asks the store: it was the driver's error with its SQL."""
    from rag.errors import IndexCorruptError
    from rag.pipeline import Pipeline
    from rag.stores import open_index

    settings = pg_settings(tmp_path, pg_url)
    pipeline = Pipeline(settings, fake_embedder, open_index(settings, fake_embedder))
    assert pipeline.search("Soleimani", k=1)
    _sql(pg_url, f"DROP TABLE rag_{settings.index_name}.{table} CASCADE")
    with pytest.raises(IndexCorruptError, match=rf"schema rag_{settings.index_name}: table {table} is missing; "
                                                r"rebuild with `rag index build`"):
        pipeline.search("Soleimani", k=1)


def test_a_damaged_meta_table_is_reported_and_a_build_repairs_it(tmp_path, pg_url, fake_embedder,  # noqa: F811
                                                                  rag_executable):
    from rag.errors import IndexCorruptError
    from rag.pgstore import PgStore
    from rag.stores import build_index, open_index

    settings = pg_settings(tmp_path, pg_url)
    built = open_index(settings, fake_embedder)
    meta = f"rag_{settings.index_name}.meta"
    damages = [
        (f"UPDATE {meta} SET value = '{{}}' WHERE key = 'manifest'", "its manifest has no valid 'format_version'"),
        (f"UPDATE {meta} SET value = value - 'files' WHERE key = 'manifest'", "its manifest has no valid 'files'"),
        (f"UPDATE {meta} SET value = value #- '{{embedding,dim}}' WHERE key = 'manifest'",
         "its manifest's 'embedding' has no 'dim'"),
        (f"UPDATE {meta} SET value = '\"abc\"' WHERE key = 'version'", "its version 'abc' is not a number"),
        (f"DELETE FROM {meta} WHERE key = 'manifest'", "it holds no manifest"),
    ]
    for statement, problem in damages:
        _sql(pg_url, statement)
        with pytest.raises(IndexCorruptError, match=rf"table meta is damaged \({problem}\); rebuild with "):
            open_index(settings, fake_embedder)
        PgStore(pg_url, settings.index_name).version()  # a follower polling it does not crash either
        repaired = build_index(settings, fake_embedder)
        assert open_index(settings, fake_embedder).chunks == built.chunks and repaired.version >= 1
    _sql(pg_url, damages[0][0])
    env = _env(pg_url, settings)
    assert "table meta is damaged" in _one_line_error(_rag(rag_executable, "index", "info", env=env), 4)
    done = _rag(rag_executable, "index", "build", env=env)
    assert done.returncode == 0, done.stderr


def test_a_store_of_a_newer_schema_asks_for_an_upgrade_and_is_not_rewritten(tmp_path, pg_url,  # noqa: F811
                                                                             fake_embedder):
    from rag.errors import IndexCorruptError
    from rag.stores import build_index, open_index

    settings = pg_settings(tmp_path, pg_url)
    built = open_index(settings, fake_embedder)
    _sql(pg_url, f"UPDATE rag_{settings.index_name}.meta SET value = '99' WHERE key = 'schema_version'")
    for attempt in (lambda: open_index(settings, fake_embedder), lambda: build_index(settings, fake_embedder)):
        with pytest.raises(IndexCorruptError, match=r"written by a newer version of rag \(schema version 99; this "
                                                    r"one reads up to 3\): upgrade rag"):
            attempt()
    _sql(pg_url, f"UPDATE rag_{settings.index_name}.meta SET value = '3' WHERE key = 'schema_version'")
    assert open_index(settings, fake_embedder).version == built.version
