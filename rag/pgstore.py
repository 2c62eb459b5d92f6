"""The PostgreSQL store (``RAG_STORE=postgresql://...``): the corpus, its vectors and its keyword index in tables.

One schema per index name (``rag_<name>``) holds:

- ``meta``: the schema version, the manifest (the same fields as a local index's ``manifest.json``, with the
  sha256 of each table's contents under ``files``) and a ``version`` number bumped by every commit;
- ``documents``, ``sentences``, ``chunks``: the same rows as the local index's JSON lines (offsets included);
  sentences and chunks carry their vectors (pgvector ``vector(dim)``); chunks carry an HNSW index for inner
  product; ``keywords`` holds each chunk's ``tsvector`` of its BM25 tokens (``rag.text.content_terms``) by
  row, with a GIN index (a table of its own: the keyword leg reads every row a question's terms select, and
  rows of 40-byte tsvectors are read 10 times faster than chunk rows carrying 1.5 kB vectors);
- ``embed_cache``: vectors by model and text digest, committed batch by batch while a build embeds, so a
  killed build resumes without embedding again what it had done.

A build rewrites the three tables in one transaction (under an advisory lock, so two writers queue); an add
of new documents inserts only their rows and extends the manifest's checksums, in one transaction too: readers
keep answering from the previous corpus until it commits, and never see part of one. Every process holds the
corpus rows (sentences, their vectors, chunks) in memory, as with the local store, and asks PostgreSQL for the
two rankings of a query; ``follow`` wakes on the NOTIFY every commit sends, and polls the version row as
well, so several servers follow one store.

Why one module of this size: the schema, the transactional build, the push from a local index and the
queries share one set of table definitions and SQL; split, each part would restate them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import re
import threading
import time
import weakref
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from rag.documents import DocumentLimits, load_corpus
from rag.errors import IndexCorruptError, UsageError
from rag.index import FORMAT_VERSION, SEGMENTER, Index, segment_corpus
from rag.text import content_terms
from rag.types import Chunk, Document, Hit, Sentence

if TYPE_CHECKING:
    import numpy as np

    from rag.corpus import Staged
    from rag.embeddings import Embedder
    from rag.settings import Settings

SCHEMA_VERSION = 2  # 2: the chunks' tsvectors in their own narrow table, keywords
log = logging.getLogger("rag")
BATCH = 512  # rows per COPY batch and texts per embedding batch
POLL_SECONDS = 1.0  # how often a following process reads the version row
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 16, 64, 100
HNSW_BUILD_MEMORY = "512MB"  # maintenance_work_mem of a first build's HNSW (raised to it, never lowered)
KEYWORD_MAX_DF, KEYWORD_MIN_DF = 0.01, 1000  # keyword_query: when a question's term is too common to select rows
_MAX_POSITION = 16383  # PostgreSQL's largest tsvector position


def is_postgres(store: str) -> bool:
    return store.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """The URL without its password (for messages)."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def schema_name(index_name: str) -> str:
    return "rag_" + re.sub(r"[^a-z0-9_]", "_", index_name.lower())


# ---------------------------------------------------------------- keyword index


def _quote_lexeme(term: str) -> str:
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


def tsvector_literal(text: str) -> str:
    """The chunk's BM25 tokens as a tsvector (with positions, so ts_rank counts repeated terms)."""
    positions: dict[str, list[int]] = {}
    for i, term in enumerate(content_terms(text), start=1):
        positions.setdefault(term, []).append(min(i, _MAX_POSITION))
    return " ".join(f"{_quote_lexeme(t)}:{','.join(map(str, dict.fromkeys(p)))}" for t, p in positions.items())


def tsquery_literal(query: str) -> str | None:
    """The query's BM25 tokens OR-ed together (BM25 scores any term; PostgreSQL's plainto_tsquery ANDs)."""
    terms = list(dict.fromkeys(content_terms(query)))
    return " | ".join(_quote_lexeme(t) for t in terms) if terms else None


def keyword_query(query: str, df: dict[str, int] | None, rows: int) -> tuple[str, str] | None:
    """(match, rank) tsqueries of a question: the rows ranked are those holding one of its *selective* terms,
    ranked by ts_rank over all its terms. A term in more than KEYWORD_MAX_DF of the chunks (and more than
    KEYWORD_MIN_DF chunks) selects no rows by itself: BM25 gives such a term almost no weight (its IDF), while
    ranking every chunk that holds it is what makes an OR query slow at scale (a question's terms match 13k of
    100k sentences at the median). The two rarest terms always select. ``df``: chunks per term."""
    terms = list(dict.fromkeys(content_terms(query)))
    if not terms:
        return None
    rank = " | ".join(_quote_lexeme(t) for t in terms)
    if df is None:
        return rank, rank
    cutoff = max(KEYWORD_MIN_DF, KEYWORD_MAX_DF * rows)
    selective = [t for t in terms if df.get(t, 0) <= cutoff]
    if len(selective) < 2:
        rarest = sorted(terms, key=lambda t: df.get(t, 0))[:2]
        selective = [t for t in terms if t in rarest]
    return " | ".join(_quote_lexeme(t) for t in selective), rank


_LEXEME = re.compile(r"'((?:[^']|'')*)'")


def term_frequencies(tsvectors, into: dict[str, int] | None = None) -> dict[str, int]:
    """Chunks per term (document frequency), from the chunks' tsvectors as PostgreSQL prints them."""
    df = {} if into is None else into
    for tsv in tsvectors:
        for lexeme in _LEXEME.findall(tsv):
            term = lexeme.replace("''", "'").replace("\\\\", "\\")
            df[term] = df.get(term, 0) + 1
    return df


# ---------------------------------------------------------------- checksums (the local index's serialisation)


# Tables whose serialisation only grows at its end when documents are appended: their sha256 objects are kept
# with a loaded index and extended by an incremental add instead of hashing every row again.
APPENDABLE = ("documents.jsonl", "sentences.jsonl", "chunks.jsonl", "chunk_vectors.f32", "keywords.tsvector")


def _digests(docs, sentences, chunks, chunk_vectors, tsvectors, start: dict | None = None) -> dict:
    """sha256 objects of the appendable tables (as the local index serialises them), fed these rows: new
    ones, or copies of ``start``'s (the rows before these) extended."""
    import numpy as np

    digests = {name: start[name].copy() if start else hashlib.sha256() for name in APPENDABLE}
    for name, rows in (("documents.jsonl", docs), ("sentences.jsonl", sentences), ("chunks.jsonl", chunks)):
        update = digests[name].update
        for row in rows:
            update((json.dumps(asdict(row), ensure_ascii=False) + "\n").encode("utf-8"))
    digests["chunk_vectors.f32"].update(np.ascontiguousarray(chunk_vectors, np.float32).tobytes())
    for tsv in tsvectors:
        digests["keywords.tsvector"].update((tsv + "\n").encode("utf-8"))
    return digests


def _npy_sha(array: np.ndarray) -> str:
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def _checksums(docs, sentences, chunks, sentence_vectors, chunk_vectors) -> dict[str, str]:
    found = {name: d.hexdigest() for name, d in _digests(docs, sentences, chunks, chunk_vectors, ()).items()}
    return {"documents.jsonl": found["documents.jsonl"], "sentences.jsonl": found["sentences.jsonl"],
            "chunks.jsonl": found["chunks.jsonl"], "sentence_vectors.npy": _npy_sha(sentence_vectors),
            "chunk_vectors.f32": found["chunk_vectors.f32"]}


def _keywords_sha(tsvectors) -> str:
    digest = hashlib.sha256()
    for tsv in tsvectors:
        digest.update((tsv + "\n").encode("utf-8"))
    return digest.hexdigest()


# ---------------------------------------------------------------- connections


def connect(url: str, autocommit: bool = True):
    try:
        import psycopg
        from pgvector.psycopg import register_vector
    except ImportError:
        raise UsageError("RAG_STORE is a PostgreSQL URL but its driver is not installed: "
                         "pip install 'rag-news[postgres]' (psycopg and pgvector)") from None

    try:
        conn = psycopg.connect(url, autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise IndexCorruptError(f"PostgreSQL store {redact(url)} unreachable: {str(exc).strip().splitlines()[0]}") from None
    with contextlib.suppress(psycopg.ProgrammingError):  # no extension yet: the first build creates it
        register_vector(conn)
    return conn


class PgStore:
    """One index's schema in one PostgreSQL database. Statements borrow a connection from a small pool: a process
    holds about as many connections as it runs statements at once (the app's RAG_MAX_CONCURRENCY and Gradio's
    queue bound that), not one per thread of a web server's thread pool."""

    MAX_IDLE = 8  # idle connections kept for reuse; more are closed when returned

    def __init__(self, url: str, index_name: str):
        self.url, self.schema = url, schema_name(index_name)
        self._idle: list = []
        self._lock = threading.Lock()

    def _new_connection(self):
        conn = connect(self.url)
        with conn.cursor() as cur:
            cur.execute(f"SET search_path TO {self.schema}, public")
            cur.execute(f"SET hnsw.ef_search = {HNSW_EF_SEARCH}")
        return conn

    @contextlib.contextmanager
    def connection(self):
        """A connection for one statement or transaction; a broken one is dropped, not returned."""
        import psycopg

        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None or conn.closed:
            conn = self._new_connection()
        try:
            yield conn
        except psycopg.OperationalError:
            conn.close()
            raise
        finally:
            if not conn.closed:
                with self._lock:
                    keep = len(self._idle) < self.MAX_IDLE
                    if keep:
                        self._idle.append(conn)
                if not keep:
                    conn.close()

    def reset(self) -> None:
        """Close the idle connections (the next statements connect again, e.g. to see a new type)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _run(self, sql: str, params=None) -> list[tuple]:
        """One read statement; a broken connection (server restarted, fail-over) is replaced once."""
        import psycopg

        for attempt in (0, 1):
            try:
                with self.connection() as conn, conn.cursor() as cur:
                    cur.execute(sql, params)
                    return cur.fetchall()
            except psycopg.OperationalError:
                if attempt:
                    raise
        return []

    def version(self) -> int | None:
        import psycopg

        try:
            rows = self._run("SELECT (value #>> '{}')::bigint FROM meta WHERE key = 'version'")
        except psycopg.errors.UndefinedTable:
            return None
        return int(rows[0][0]) if rows else None

    # ------------------------------------------------------------ reading

    def read(self, after: dict | None = None,
             ) -> tuple[dict, int, list[Document], list[Sentence], list[Chunk], np.ndarray, np.ndarray, list[str]] | None:
        """A consistent copy of the corpus (one REPEATABLE READ transaction), or IndexCorruptError.

        With ``after`` (the version and row counts the caller holds, as ``appended_to`` gives them): only the
        rows appended since, when the store's version is an add to exactly that one; else None."""
        import numpy as np
        import psycopg

        conn = connect(self.url, autocommit=False)
        try:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            with conn.cursor(binary=True) as cur:  # vectors as float32 bytes, not text to parse
                cur.execute(f"SET search_path TO {self.schema}, public")
                try:
                    cur.execute("SELECT key, value FROM meta")
                except psycopg.errors.UndefinedTable:
                    raise FileNotFoundError(self.schema) from None
                meta = dict(cur.fetchall())
                if "manifest" not in meta:  # only the embedding cache of a first build so far
                    raise FileNotFoundError(self.schema)
                if meta.get("schema_version") != SCHEMA_VERSION:
                    raise IndexCorruptError(
                        f"{redact(self.url)} schema {self.schema}: schema version {meta.get('schema_version')} is not "
                        f"{SCHEMA_VERSION}; rebuild with `rag index build`")
                if after is not None and meta["manifest"].get("appended_to") != after:
                    return None  # a build, or an add to another version than the caller's: read it all
                skip = after or {"documents": 0, "sentences": 0, "chunks": 0}
                cur.execute("SELECT id, text, title, date, sha256, fmt FROM documents WHERE ord >= %s ORDER BY ord",
                            (skip["documents"],))
                docs = [Document(*row) for row in cur]
                cur.execute('SELECT id, source, start, "end", text, paragraph, section, embedding FROM sentences '
                            "WHERE id >= %s ORDER BY id", (skip["sentences"],))
                sentences, svecs = [], []
                for *row, vec in cur:
                    sentences.append(Sentence(*row))
                    svecs.append(_array(vec))
                cur.execute('SELECT id, source, start, "end", text, sentence_ids, section, embedding, tsv::text '
                            "FROM chunks JOIN keywords USING (row) WHERE row >= %s ORDER BY row", (skip["chunks"],))
                chunks, cvecs, tsvs = [], [], []
                for cid, source, start, end, text, sids, section, vec, tsv in cur:
                    chunks.append(Chunk(cid, source, start, end, text, tuple(sids), section))
                    cvecs.append(_array(vec))
                    tsvs.append(tsv)
        finally:
            conn.close()  # read only: nothing to commit
        manifest = meta["manifest"]
        dim = manifest["embedding"]["dim"]
        sentence_vectors = np.array(svecs, dtype=np.float32).reshape(len(svecs), dim)
        chunk_vectors = np.array(cvecs, dtype=np.float32).reshape(len(cvecs), dim)
        return manifest, int(meta.get("version", 0)), docs, sentences, chunks, sentence_vectors, chunk_vectors, tsvs

    # ------------------------------------------------------------ searching

    def rankings(self, query_vector: np.ndarray, tsquery: str | None, depth: int,
                 match: str | None = None) -> tuple[list, list]:
        """(dense, keyword): lists of (chunk id, text, score), best first; one statement, one round trip. The
        keyword leg ranks by ``tsquery`` the rows that ``match`` (keyword_query; default: ``tsquery``) selects."""
        sql = ("(SELECT 0, id, text, -(embedding <#> %(q)s) FROM chunks ORDER BY embedding <#> %(q)s LIMIT %(n)s)")
        if tsquery is not None:
            sql += (" UNION ALL (SELECT 1, c.id, c.text, k.score FROM (SELECT row, ts_rank(tsv, %(t)s::tsquery, 1) "
                    "AS score FROM keywords WHERE tsv @@ %(m)s::tsquery ORDER BY 2 DESC, row LIMIT %(n)s) k "
                    "JOIN chunks c USING (row) ORDER BY k.score DESC, row)")
        rows = self._run(sql, {"q": query_vector, "t": tsquery, "m": match or tsquery, "n": depth})
        dense = [(cid, text, float(score)) for leg, cid, text, score in rows if leg == 0]
        keyword = [(cid, text, float(score)) for leg, cid, text, score in rows if leg == 1]
        return dense, keyword

    def keyword_ranking(self, tsquery: str, depth: int, match: str | None = None) -> list:
        rows = self._run("SELECT c.id, c.text, k.score FROM (SELECT row, ts_rank(tsv, %(t)s::tsquery, 1) AS score "
                         "FROM keywords WHERE tsv @@ %(m)s::tsquery ORDER BY 2 DESC, row LIMIT %(n)s) k "
                         "JOIN chunks c USING (row) ORDER BY k.score DESC, row",
                         {"t": tsquery, "m": match or tsquery, "n": depth})
        return [(cid, text, float(score)) for cid, text, score in rows]

    # ------------------------------------------------------------ writing

    def cached_vectors(self, model_sha: str, texts: list[str]) -> dict[str, np.ndarray]:
        import psycopg

        digests = {_digest(t): t for t in texts}
        try:
            rows = self._run("SELECT digest, embedding FROM embed_cache WHERE model = %s AND digest = ANY(%s)",
                             (model_sha, list(digests)))
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
            return {}
        return {digests[d]: _array(v) for d, v in rows}

    def cache_vectors(self, model_sha: str, texts: list[str], vectors: np.ndarray) -> None:
        with self.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany("INSERT INTO embed_cache VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                            [(model_sha, _digest(t), v) for t, v in zip(texts, vectors, strict=True)])


def _array(vector) -> np.ndarray:
    """A pgvector value as float32 numpy (pgvector's loader returns its Vector class)."""
    import numpy as np

    return np.asarray(vector.to_numpy() if hasattr(vector, "to_numpy") else vector, dtype=np.float32)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _ddl(schema: str, dim: int) -> list[str]:
    return [
        "CREATE EXTENSION IF NOT EXISTS vector",
        f"CREATE SCHEMA IF NOT EXISTS {schema}",
        f"SET LOCAL search_path TO {schema}, public",
        "CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY, value jsonb NOT NULL)",
        "CREATE TABLE IF NOT EXISTS embed_cache (model text NOT NULL, digest text NOT NULL, "
        "embedding vector NOT NULL, PRIMARY KEY (model, digest))",
        "CREATE TABLE IF NOT EXISTS documents (ord int PRIMARY KEY, id text NOT NULL UNIQUE, text text NOT NULL, "
        "title text NOT NULL, date text, sha256 text NOT NULL, fmt text NOT NULL)",
        *_row_tables(dim),
        *_row_indexes(),
    ]


ROW_TABLES = ("sentences", "chunks", "keywords")  # a build rewrites these whole; meta, documents, embed_cache stay


def _row_tables(dim: int) -> list[str]:
    return [
        f"CREATE TABLE IF NOT EXISTS sentences (id int PRIMARY KEY, source text NOT NULL, start int NOT NULL, "
        f'"end" int NOT NULL, text text NOT NULL, paragraph int NOT NULL, section text, '
        f"embedding vector({dim}) NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS chunks (row int PRIMARY KEY, id text NOT NULL UNIQUE, source text NOT NULL, "
        f'start int NOT NULL, "end" int NOT NULL, text text NOT NULL, sentence_ids int[] NOT NULL, section text, '
        f"embedding vector({dim}) NOT NULL)",
        "CREATE TABLE IF NOT EXISTS keywords (row int PRIMARY KEY, tsv tsvector NOT NULL)",
    ]


def _row_indexes() -> list[str]:
    return [
        f"CREATE INDEX IF NOT EXISTS chunks_embedding ON chunks USING hnsw (embedding vector_ip_ops) "
        f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})",
        "CREATE INDEX IF NOT EXISTS keywords_tsv ON keywords USING gin (tsv)",
    ]


def write_corpus(url: str, index_name: str, manifest: dict, docs: list[Document], sentences: list[Sentence],
                 chunks: list[Chunk], sentence_vectors: np.ndarray, chunk_vectors: np.ndarray,
                 progress: bool = False) -> int:
    """Replace the store's corpus with this one in ONE transaction (batched COPY inside it); returns the new
    version. Readers see the previous corpus until the commit, then all of this one."""
    schema = schema_name(index_name)
    dim = manifest["embedding"]["dim"]
    conn = connect(url, autocommit=False)
    try:
        with conn.cursor() as cur:
            # Serialise writers of this schema (two `rag index add` at once: the second waits, then adds to
            # what the first committed, since it reads the store again below in its own transaction).
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (schema,))
            for statement in _ddl(schema, dim):
                cur.execute(statement)
            from pgvector.psycopg import register_vector

            register_vector(conn)  # the extension may have just been created by this transaction
            cur = conn.cursor()  # a cursor takes the connection's adapters when it is made: a new one has vector's
            cur.execute("SELECT key, value FROM meta WHERE key IN ('manifest', 'schema_version')")
            meta = dict(cur.fetchall())
            # The rows go into new tables, and the HNSW and GIN indexes are built in bulk once the rows are in:
            # several times faster than maintaining them row by row (100k chunks: 30 s against 252 s,
            # bench/pg_bench.py). A first build (or one replacing tables of another model's dimension or of an
            # older schema, which no reader can use) makes them in place. A rebuild makes them in a staging
            # schema and swaps them in at the end, so readers keep reading the live tables throughout and wait
            # only for the swap (dropping the old tables, moving the new ones: milliseconds) and the commit.
            first = ("manifest" not in meta or meta["manifest"]["embedding"]["dim"] != dim
                     or meta.get("schema_version") != SCHEMA_VERSION)
            # Quoted, with a hyphen no schema_name() has: it can never be (or, cut to 63 bytes, become) a live schema.
            staging = f'"rag-next-{hashlib.sha256(schema.encode()).hexdigest()[:16]}"'
            if first:
                cur.execute(f"DROP TABLE {', '.join(ROW_TABLES)}")
            else:
                cur.execute(f"DROP SCHEMA IF EXISTS {staging} CASCADE")
                cur.execute(f"CREATE SCHEMA {staging}")
                cur.execute(f"SET LOCAL search_path TO {staging}, {schema}, public")  # documents: still the live one
            for statement in _row_tables(dim):
                cur.execute(statement)
            cur.execute("DELETE FROM documents")
            _copy_rows(cur, docs, sentences, chunks, sentence_vectors, chunk_vectors, progress)
            cur.execute("SELECT set_config('maintenance_work_mem', %s, true) WHERE "
                        "pg_size_bytes(current_setting('maintenance_work_mem')) < pg_size_bytes(%s)",
                        (HNSW_BUILD_MEMORY, HNSW_BUILD_MEMORY))
            for statement in _row_indexes():
                cur.execute(statement)
            cur.execute("SELECT tsv::text FROM keywords ORDER BY row")
            files = dict(manifest["files"], **{"keywords.tsvector": _keywords_sha(r[0] for r in cur)})
            manifest = dict(manifest, files=files)
            # Keep the embedding cache to what this corpus uses.
            cur.execute("DELETE FROM embed_cache WHERE model <> %s OR NOT (digest = ANY(%s))",
                        (manifest["embedding"]["sha256"], [_digest(t) for t in
                                                           {*(s.text for s in sentences), *(c.text for c in chunks)}]))
            if not first:  # the swap: from here to the commit, readers of the row tables wait
                cur.execute(f"DROP TABLE {', '.join(f'{schema}.{table}' for table in ROW_TABLES)}")
                for table in ROW_TABLES:
                    cur.execute(f"ALTER TABLE {staging}.{table} SET SCHEMA {schema}")
                cur.execute(f"DROP SCHEMA {staging}")
                cur.execute(f"SET LOCAL search_path TO {schema}, public")
            version = _commit_meta(cur, schema, manifest)
        conn.commit()
        return version
    finally:
        conn.close()


def _copy_rows(cur, docs: list[Document], sentences: list[Sentence], chunks: list[Chunk],
               sentence_vectors: np.ndarray, chunk_vectors: np.ndarray, progress: bool = False,
               first_ord: int = 0, first_row: int = 0) -> None:
    """COPY the rows in batches of BATCH; documents numbered from ``first_ord``, chunk rows from ``first_row``
    (sentences carry their own ids)."""
    from tqdm import tqdm

    bar = tqdm(total=len(docs) + len(sentences) + len(chunks), unit="row", desc="writing to PostgreSQL",
               disable=not progress, leave=False)
    with cur.copy("COPY documents (ord, id, text, title, date, sha256, fmt) FROM STDIN") as copy:
        for i, d in enumerate(docs, first_ord):
            copy.write_row((i, d.id, d.text, d.title, d.date, d.sha256, d.fmt))
    bar.update(len(docs))
    for start in range(0, len(sentences), BATCH):
        with cur.copy('COPY sentences (id, source, start, "end", text, paragraph, section, embedding) '
                      "FROM STDIN") as copy:
            for s, vec in zip(sentences[start:start + BATCH], sentence_vectors[start:start + BATCH], strict=True):
                copy.write_row((s.id, s.source, s.start, s.end, s.text, s.paragraph, s.section, vec))
        bar.update(min(BATCH, len(sentences) - start))
    for start in range(0, len(chunks), BATCH):
        batch = list(enumerate(zip(chunks[start:start + BATCH], chunk_vectors[start:start + BATCH], strict=True),
                               first_row + start))
        with cur.copy('COPY chunks (row, id, source, start, "end", text, sentence_ids, section, embedding) '
                      "FROM STDIN") as copy:
            for row_id, (c, vec) in batch:
                copy.write_row((row_id, c.id, c.source, c.start, c.end, c.text, list(c.sentence_ids), c.section,
                                vec))
        with cur.copy("COPY keywords (row, tsv) FROM STDIN") as copy:
            for row_id, (c, _) in batch:
                copy.write_row((row_id, tsvector_literal(c.text)))
        bar.update(min(BATCH, len(chunks) - start))
    bar.close()


def _commit_meta(cur, schema: str, manifest: dict) -> int:
    """Write the schema version, the manifest and the next version number, and notify the followers (delivered
    at commit); returns the new version."""
    from psycopg.types.json import Jsonb

    cur.execute("SELECT COALESCE((SELECT (value #>> '{}')::bigint FROM meta WHERE key = 'version'), 0) + 1")
    version = cur.fetchone()[0]
    for key, value in (("schema_version", SCHEMA_VERSION), ("manifest", manifest), ("version", version)):
        cur.execute("INSERT INTO meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, Jsonb(value)))
    cur.execute("SELECT pg_notify(%s, %s)", (schema, str(version)))
    return version


# ---------------------------------------------------------------- the index object


@dataclass
class PgIndex(Index):
    """An ``Index`` whose rankings come from PostgreSQL; ``sentences``/``sentence_vectors``/``chunks`` are held in
    memory as with the local store (the answerer reads them), ``store`` is the PgStore, ``bm25`` is None."""

    version: int = 0
    chunk_rows: dict[str, int] = field(default_factory=dict)
    digests: dict = field(default_factory=dict, repr=False)  # APPENDABLE tables' sha256 objects, as verified
    keyword_df: dict[str, int] = field(default_factory=dict, repr=False)  # chunks per term (keyword_query)


    def changed(self) -> bool:
        return self.store.version() != self.version


def _verify(manifest: dict, docs, sentences, chunks, sentence_vectors, chunk_vectors, tsvs, where: str,
            base: PgIndex | None = None) -> dict:
    """Check the rows against the manifest's checksums and their documents; returns the APPENDABLE digests.
    With ``base``, the rows are those appended to it (its digests are extended, its vectors stacked on)."""
    import numpy as np

    digests = _digests(docs, sentences, chunks, chunk_vectors, tsvs, start=base.digests if base else None)
    found = {name: d.hexdigest() for name, d in digests.items()}
    found["sentence_vectors.npy"] = _npy_sha(sentence_vectors if base is None else
                                             np.concatenate([base.sentence_vectors, sentence_vectors]))
    for name, sha in manifest["files"].items():
        if found.get(name) != sha:
            raise IndexCorruptError(f"{where}: table contents for {name} do not match the manifest's checksum; "
                                    "rebuild with `rag index build`")
    documents = {**(base.documents if base else {}), **{d.id: d for d in docs}}
    for span in (*sentences, *chunks):
        doc = documents.get(span.source)
        if doc is None or doc.text[span.start : span.end] != span.text:
            raise IndexCorruptError(f"{where}: span {span.source}:{span.start}-{span.end} does not match its document; "
                                    "rebuild with `rag index build`")
    if not (np.isfinite(sentence_vectors).all() and np.isfinite(chunk_vectors).all()):
        raise IndexCorruptError(f"{where}: vectors that are not finite; rebuild with `rag index build`")
    return digests


def load(settings: Settings) -> PgIndex:
    store = PgStore(settings.store, settings.index_name)
    manifest, version, docs, sentences, chunks, svecs, cvecs, tsvs = store.read()
    digests = _verify(manifest, docs, sentences, chunks, svecs, cvecs, tsvs,
                      f"{redact(settings.store)} schema {store.schema}")
    return PgIndex(settings.index_path, manifest, {d.id: d for d in docs}, sentences, chunks, store, svecs, None,
                   version=version, chunk_rows={c.id: i for i, c in enumerate(chunks)}, digests=digests,
                   keyword_df=term_frequencies(tsvs))


def appended_to(index: PgIndex) -> dict:
    """What an add to ``index`` records in its manifest, and what a follower holding ``index`` reads after."""
    return {"version": index.version, "documents": len(index.documents), "sentences": len(index.sentences),
            "chunks": len(index.chunks)}


def load_appended(settings: Settings, base: PgIndex) -> PgIndex | None:
    """The store's new version read as ``base`` plus the rows an add appended to it (verified against the
    manifest's checksums, extended from ``base``'s), or None when the new version is not such an add."""
    import numpy as np

    if not base.digests or base.store.url != settings.store or base.store.schema != schema_name(settings.index_name):
        return None
    read = base.store.read(after=appended_to(base))
    if read is None:
        return None
    manifest, version, docs, sentences, chunks, svecs, cvecs, tsvs = read
    digests = _verify(manifest, docs, sentences, chunks, svecs, cvecs, tsvs,
                      f"{redact(settings.store)} schema {base.store.schema}", base=base)
    chunk_rows = dict(base.chunk_rows)
    chunk_rows.update((c.id, len(base.chunks) + i) for i, c in enumerate(chunks))
    return PgIndex(settings.index_path, manifest, {**base.documents, **{d.id: d for d in docs}},
                   [*base.sentences, *sentences], [*base.chunks, *chunks], base.store,
                   np.concatenate([base.sentence_vectors, svecs]), None, version=version, chunk_rows=chunk_rows,
                   digests=digests, keyword_df=term_frequencies(tsvs, dict(base.keyword_df)))


def stale_reason(settings: Settings, manifest: dict, model_sha: str) -> str | None:
    if manifest.get("format_version") != FORMAT_VERSION:
        return f"index format {manifest.get('format_version')} != {FORMAT_VERSION}"
    if manifest.get("embedding", {}).get("sha256") != model_sha:
        return "built with a different embedding model"
    if manifest.get("chunking") != _chunking(settings):
        return "chunking parameters changed"
    return None


def _chunking(settings: Settings) -> dict:
    return {"chunk_sentences": settings.chunk_sentences, "chunk_overlap": settings.chunk_overlap,
            "segmenter": SEGMENTER}


def open_index(settings: Settings, embedder: Embedder, rebuild_if_stale: bool = True,
               current: Index | None = None) -> PgIndex:
    """Load the store's corpus; build it from the corpus folder when the store has none, and rebuild it from
    its own documents when the model or chunking changed. ``current``: the caller's index of this store (a
    following process), extended by the rows of an add instead of reading the whole store again."""
    try:
        index = (load_appended(settings, current) if isinstance(current, PgIndex) else None) or load(settings)
    except FileNotFoundError:
        log.warning("index '%s' not found in %s: building it from %s", settings.index_name, redact(settings.store),
                    settings.corpus_dir)
        return build_index(settings, embedder)
    reason = stale_reason(settings, index.manifest, embedder.info.sha256)
    if reason is not None:
        if not rebuild_if_stale:
            raise IndexCorruptError(f"{redact(settings.store)}: index is stale ({reason}); rebuild with `rag index build`")
        log.warning("index '%s' is stale (%s): rebuilding from the store's documents", settings.index_name, reason)
        return build_index(settings, embedder, documents=list(index.documents.values()))
    return index


def build_index(settings: Settings, embedder: Embedder, documents: list[Document] | None = None,
                staged: Staged | None = None, only_if_stale: bool = False, current: Index | None = None) -> PgIndex:
    """Segment, embed (reusing vectors the store already has, batch by batch) and write in one transaction.

    Without documents: the corpus folder. With ``staged`` files (``rag index add``): the store's documents plus
    those files (the store is the corpus: the files are not moved into the corpus folder). An add of new
    documents only appends their rows (``_append``); ``current``, the caller's index of this store, spares
    reading the store's rows when it is still the store's version."""

    # One build of this index at a time, across processes and machines: a second `rag index add` waits here,
    # then reads the store with the first one's documents in it (no lost update).
    lock = connect(settings.store)
    try:
        lock.execute("SELECT pg_advisory_lock(hashtext(%s))", (schema_name(settings.index_name) + ":build",))
        return _build_locked(settings, embedder, documents, staged, current)
    finally:
        lock.close()  # releases the session's advisory lock


def _current(settings: Settings, current: Index | None) -> PgIndex | None:
    """The store's corpus as it is now: ``current`` when it is this store's latest version, else read (None when
    the store has no corpus yet)."""
    if (isinstance(current, PgIndex) and current.digests and current.store.url == settings.store
            and current.store.schema == schema_name(settings.index_name)
            and current.version == current.store.version()):
        return current
    try:
        return load(settings)
    except FileNotFoundError:
        return None


def _build_locked(settings: Settings, embedder: Embedder, documents: list[Document] | None,
                  staged: Staged | None, current: Index | None = None) -> PgIndex:
    import numpy as np

    started = time.perf_counter()
    max_bytes, max_chars = int(settings.max_file_mb * 1e6), settings.max_text_chars
    limits = DocumentLimits.from_settings(settings)
    if staged is not None:
        from rag.corpus import _already_there
        from rag.documents import read_document

        base = _current(settings, current)
        present = [name for name in staged.names if base is not None and name in base.documents]
        if present and not staged.replace:
            raise _already_there(present[0])
        new = [read_document(staged.folder / name, max_bytes=max_bytes, max_chars=max_chars, limits=limits)
               for name in staged.names]
        if base is not None and not present and stale_reason(settings, base.manifest, embedder.info.sha256) is None:
            appended = _append(settings, embedder, base, new, limits, started)
            if appended is not None:
                return appended
            base = _current(settings, None)  # another writer (a push) committed meanwhile: rewrite from its corpus
        stored = list(base.documents.values()) if base is not None else []
        docs = sorted([d for d in stored if d.id not in staged.names] + new, key=lambda d: d.id)
    elif documents is not None:
        docs = documents
    else:
        docs = load_corpus(settings.corpus_dir, max_bytes=max_bytes, max_chars=max_chars, limits=limits)
    sentences, chunks, per_doc = segment(settings, docs)
    store = PgStore(settings.store, settings.index_name)
    sentence_vectors, chunk_vectors = _embed_resumably(store, embedder, [s.text for s in sentences],
                                                       [c.text for c in chunks])
    if not (np.isfinite(sentence_vectors).all() and np.isfinite(chunk_vectors).all()):
        raise RuntimeError("the embedding model produced non-finite vectors")
    manifest = make_manifest(settings, embedder.info.model_id, embedder.info.sha256, embedder.dim, per_doc,
                             docs, sentences, chunks, sentence_vectors, chunk_vectors, time.perf_counter() - started)
    write_corpus(settings.store, settings.index_name, manifest, docs, sentences, chunks, sentence_vectors,
                 chunk_vectors, progress=len(chunks) > 5000)
    return load(settings)


def _append(settings: Settings, embedder: Embedder, base: PgIndex, new_docs: list[Document],
            limits: DocumentLimits, started: float) -> PgIndex | None:
    """Add documents to the store's corpus ``base`` by inserting only their rows, in one transaction.

    The new documents are segmented as a build of the whole would segment them after ``base``'s (sentence ids
    and chunk rows continue; paragraphs and chunks already indexed are not indexed again). The manifest's
    checksums are extended from ``base.digests`` (every table serialises in id/row order, so appended rows
    extend it at its end), the version row is bumped and followers notified in the same transaction, and the
    manifest records what the add appended to (``load_appended``). Rows of existing documents are not touched:
    ts_rank scores a row from its own tsvector, and the only corpus statistic, the chunks per term that
    ``keyword_query`` reads, is held in memory and extended here. None when another writer committed since
    ``base`` was read (the caller rewrites from the store)."""
    import numpy as np

    from rag.segment import Seen, paragraphs

    seen = Seen()
    for doc in base.documents.values():
        seen.paragraphs.update(Seen.digest(doc.text[a:b]) for a, b, heading in paragraphs(doc) if not heading)
    seen.chunks.update(Seen.digest(c.text) for c in base.chunks)
    new_docs = sorted(new_docs, key=lambda d: d.id)
    sentences, chunks, per_doc = segment_corpus(settings, new_docs, limits, seen=seen,
                                                first_sentence_id=len(base.sentences))
    store = base.store
    sentence_vectors, chunk_vectors = _embed_resumably(store, embedder, [s.text for s in sentences],
                                                       [c.text for c in chunks])
    if not (np.isfinite(sentence_vectors).all() and np.isfinite(chunk_vectors).all()):
        raise RuntimeError("the embedding model produced non-finite vectors")
    all_sentence_vectors = np.concatenate([base.sentence_vectors, sentence_vectors])
    conn = connect(settings.store, autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (store.schema,))  # as write_corpus
            cur.execute(f"SET LOCAL search_path TO {store.schema}, public")
            cur.execute("SELECT (value #>> '{}')::bigint FROM meta WHERE key = 'version'")
            row = cur.fetchone()
            if row is None or row[0] != base.version:
                conn.rollback()
                return None
            _copy_rows(cur, new_docs, sentences, chunks, sentence_vectors, chunk_vectors, len(chunks) > 5000,
                       first_ord=len(base.documents), first_row=len(base.chunks))
            cur.execute("SELECT tsv::text FROM keywords WHERE row >= %s ORDER BY row", (len(base.chunks),))
            tsvs = [r[0] for r in cur]
            digests = _digests(new_docs, sentences, chunks, chunk_vectors, tsvs, start=base.digests)
            found = {name: d.hexdigest() for name, d in digests.items()}
            found["sentence_vectors.npy"] = _npy_sha(all_sentence_vectors)
            counts = base.manifest["counts"]
            manifest = dict(base.manifest, appended_to=appended_to(base),
                            created=datetime.now(UTC).isoformat(timespec="seconds"),
                            build_seconds=round(time.perf_counter() - started, 3),
                            documents=[*base.manifest["documents"], *per_doc],
                            counts={"documents": counts["documents"] + len(new_docs),
                                    "sentences": counts["sentences"] + len(sentences),
                                    "chunks": counts["chunks"] + len(chunks)},
                            files={name: found[name] for name in base.manifest["files"]})
            version = _commit_meta(cur, store.schema, manifest)
        conn.commit()
    finally:
        conn.close()
    chunk_rows = dict(base.chunk_rows)
    chunk_rows.update((c.id, len(base.chunks) + i) for i, c in enumerate(chunks))
    return PgIndex(settings.index_path, manifest, {**base.documents, **{d.id: d for d in new_docs}},
                   [*base.sentences, *sentences], [*base.chunks, *chunks], store, all_sentence_vectors, None,
                   version=version, chunk_rows=chunk_rows, digests=digests,
                   keyword_df=term_frequencies(tsvs, dict(base.keyword_df)))


def segment(settings: Settings, docs: list[Document]) -> tuple[list[Sentence], list[Chunk], list[dict]]:
    """As a local build segments (rag.index.segment_corpus), with the same limits."""
    return segment_corpus(settings, docs, DocumentLimits.from_settings(settings))


def make_manifest(settings, model_id, model_sha, dim, per_doc, docs, sentences, chunks, sentence_vectors,
                  chunk_vectors, seconds: float) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "store": "postgresql",
        "schema_version": SCHEMA_VERSION,
        "chunking": _chunking(settings),
        "index_type": f"pgvector-hnsw (m={HNSW_M}, ef_construction={HNSW_EF_CONSTRUCTION})",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "build_seconds": round(seconds, 3),
        "embedding": {"model_id": model_id, "sha256": model_sha, "dim": dim},
        "documents": per_doc,
        "counts": {"documents": len(docs), "sentences": len(sentences), "chunks": len(chunks)},
        "files": _checksums(docs, sentences, chunks, sentence_vectors, chunk_vectors),
    }


def _embed_resumably(store: PgStore, embedder: Embedder, sentence_texts: list[str],
                     chunk_texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Vectors for the texts: from the store's embedding cache, else embedded BATCH texts at a time, each batch
    committed to the cache at once (so a killed build resumes where it stopped)."""
    import numpy as np
    from tqdm import tqdm

    wanted = sorted(set(sentence_texts) | set(chunk_texts))
    model = embedder.info.sha256
    cache = store.cached_vectors(model, wanted)
    missing = [t for t in wanted if t not in cache]
    if missing:
        _ensure_cache_tables(store)
        for start in tqdm(range(0, len(missing), BATCH), desc="embedding", unit="batch",
                          disable=len(missing) <= BATCH, leave=False):
            batch = missing[start:start + BATCH]
            vectors = np.asarray(embedder.encode(batch), dtype=np.float32)
            cache.update(zip(batch, vectors, strict=True))
            store.cache_vectors(model, batch, vectors)

    def stack(texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, embedder.dim), dtype=np.float32)
        return np.stack([cache[t] for t in texts]).astype(np.float32)

    return stack(sentence_texts), stack(chunk_texts)


def _ensure_cache_tables(store: PgStore) -> None:
    conn = connect(store.url, autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (store.schema + ":cache",))
            for statement in _ddl(store.schema, 1)[:5]:
                cur.execute(statement)
        conn.commit()
    finally:
        conn.close()
    store.reset()  # reconnect: the vector type may have just been created


def push(settings: Settings, url: str) -> PgIndex:
    """Copy the built local index (``settings.index_path``) into the store at ``url``, vectors included:
    nothing is embedded again. The copy is verified against the local manifest's checksums."""
    import numpy as np

    from rag.index import load_index, read_manifest

    local = load_index(settings.index_path, read_manifest(settings.index_path))
    faiss_index = local.store.index
    chunk_vectors = np.asarray(faiss_index.reconstruct_n(0, faiss_index.ntotal), dtype=np.float32)
    docs = list(local.documents.values())
    manifest = make_manifest(settings, local.manifest["embedding"]["model_id"], local.manifest["embedding"]["sha256"],
                             local.manifest["embedding"]["dim"], local.manifest["documents"], docs, local.sentences,
                             local.chunks, local.sentence_vectors, chunk_vectors, local.manifest["build_seconds"])
    manifest["chunking"] = local.manifest["chunking"]
    for name in ("documents.jsonl", "sentences.jsonl", "chunks.jsonl", "sentence_vectors.npy"):
        if manifest["files"][name] != local.manifest["files"][name]:
            raise IndexCorruptError(f"{settings.index_path}: {name} does not serialise to its checksum; "
                                    "rebuild with `rag index build`")
    write_corpus(url, settings.index_name, manifest, docs, local.sentences, local.chunks, local.sentence_vectors,
                 chunk_vectors, progress=len(local.chunks) > 5000)
    return load(settings.model_copy(update={"store": url}))


def check_url(url: str) -> str:
    if not is_postgres(url):
        raise UsageError(f"not a PostgreSQL URL: {redact(url)!r} (postgresql://user@host:5432/db)")
    return url


# ---------------------------------------------------------------- retrieval and following


def fuse(dense: list[tuple[int, float]], keyword: list[tuple[int, float]], rrf_k: int,
         k: int) -> tuple[list[int], dict[int, float]]:
    """Reciprocal rank fusion of two rankings of rows, ties broken by dense score (as HybridRetriever does)."""
    fused: dict[int, float] = {}
    for ranking in ([r for r, _ in dense], [r for r, _ in keyword]):
        for rank, row in enumerate(ranking):
            fused[row] = fused.get(row, 0.0) + 1.0 / (rrf_k + rank + 1)
    dense_score = dict(dense)
    return sorted(fused, key=lambda row: (-fused[row], -dense_score.get(row, -1.0)))[:k], fused


class PgRetriever:
    """HybridRetriever's interface and fusion over PostgreSQL's two rankings (pgvector HNSW, full-text)."""

    def __init__(self, index: PgIndex, embedder: Embedder, rrf_k: int = 60, candidates: int = 50):
        self.index, self.embedder, self.rrf_k, self.candidates = index, embedder, rrf_k, candidates

    def _rows(self, ranking: list) -> list[tuple[int, float]]:
        """Rows of this index's chunks; a chunk another process has since replaced (its id gone or its text
        changed) is left out until this process follows the new version."""
        out = []
        for cid, text, score in ranking:
            row = self.index.chunk_rows.get(cid)
            if row is not None and self.index.chunks[row].text == text:
                out.append((row, score))
        return out

    def search(self, query: str, k: int = 5) -> list[Hit]:
        n_chunks = len(self.index.chunks)
        if n_chunks == 0 or k <= 0:
            return []
        depth = min(n_chunks, max(self.candidates, 4 * k))
        match, rank = keyword_query(query, self.index.keyword_df, n_chunks) or (None, None)
        dense_raw, keyword_raw = self.index.store.rankings(self.embedder.encode_query(query), rank, depth, match)
        dense = sorted(self._rows(dense_raw), key=lambda rs: (-rs[1], rs[0]))
        keyword = sorted(self._rows(keyword_raw), key=lambda rs: (-rs[1], rs[0]))
        order, fused = fuse(dense, keyword, self.rrf_k, k)
        dense_score, keyword_score = dict(dense), dict(keyword)
        return [Hit(rank=rank + 1, score=fused[row], chunk=self.index.chunks[row], dense_score=dense_score.get(row),
                    bm25_score=keyword_score.get(row, 0.0)) for rank, row in enumerate(order)]

    def lexical_search(self, query: str, k: int) -> list[Hit]:
        queries = keyword_query(query, self.index.keyword_df, len(self.index.chunks))
        if queries is None or k <= 0:
            return []
        match, rank = queries
        rows = sorted(self._rows(self.index.store.keyword_ranking(rank, k, match)), key=lambda rs: (-rs[1], rs[0]))
        return [Hit(rank=r + 1, score=s, chunk=self.index.chunks[row], bm25_score=s)
                for r, (row, s) in enumerate(rows) if s > 0]


def _listener(url: str, channel: str):
    """A connection LISTENing on the store's channel (every commit notifies it), or None where notifications
    cannot arrive: a standby refuses LISTEN, and an unreachable server is polled until it is back."""
    conn = None
    try:
        conn = connect(url)
        conn.execute(f'LISTEN "{channel}"')
        return conn
    except Exception as exc:  # noqa: BLE001 - polling goes on without notifications
        log.debug("no LISTEN on %s (%s): polling only", redact(url), exc)
        if conn is not None:
            conn.close()
        return None


def follow(pipeline, interval: float | None = None) -> threading.Thread:
    """Follow the store in a daemon thread: have the pipeline swap in a new snapshot when another process
    committed a change (the thread ends with the pipeline). A commit's NOTIFY (LISTEN on the schema's channel)
    wakes it at once; the version row is polled every ``interval`` (POLL_SECONDS) as well, which is what works
    through read replicas and transaction-mode poolers, where notifications do not arrive."""
    import psycopg

    interval = POLL_SECONDS if interval is None else interval
    ref = weakref.ref(pipeline)
    store = pipeline.index.store
    url, channel = store.url, store.schema

    def wait(listener):
        """Until a notification or ``interval``; the listener, or None once its connection broke."""
        if listener is None:
            time.sleep(interval)
            return None
        try:
            for _ in listener.notifies(timeout=interval, stop_after=1):
                pass
            return listener
        except psycopg.Error:
            listener.close()
            time.sleep(interval)
            return None

    def run() -> None:
        failing, listener, listen_tried = None, None, -1e9
        try:
            while True:
                if listener is None and time.monotonic() - listen_tried > 30 * interval:
                    listen_tried = time.monotonic()
                    listener = _listener(url, channel)
                listener = wait(listener)
                target = ref()
                if target is None:
                    return
                try:
                    target.refresh()
                    failing = None
                except Exception as exc:  # a restart or fail-over of the server: try again next time
                    message = f"{type(exc).__name__}: {exc}"
                    if message != failing:  # once per streak of the same failure, not every second
                        log.warning("following the PostgreSQL store: %s", message)
                    failing = message
                del target
        finally:
            if listener is not None:
                listener.close()

    thread = threading.Thread(target=run, name="rag-store-follow", daemon=True)
    thread.start()
    return thread
