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
  killed build resumes without embedding again what it had done;
- ``sentence_tokens`` (schema 3): each sentence text's word-piece vectors for the answerer's token matches
  (float16 bytes, about 18 KB a sentence, with their row count and sha256), by model and text digest like the
  cache, and written the same way, batch by batch as a build encodes (one run of the model gives a sentence's
  vector and its pieces); a build drops the rows its corpus no longer uses. The manifest's checksum covers
  every sentence's row count and sha256; the vectors are checked against that sha256 when they are read;
- ``words``: the corpus vocabulary (``rag.index.vocabulary``, as a local build's ``words.json``) and each word's
  vector (``vector(dim)``, bit for bit a local build's), by row, for the answerer's soft word matches; embedded
  through the embedding cache (resumable), loaded whole by every process (824 words, 1.3 MB for the bundled
  article). An add appends the new documents' words the vocabulary lacks. Its checksum is the manifest's
  ``words`` entry (count and sha256 of the rows), a key of its own rather than under ``files``: code written
  before reads a store holding them, and its adds leave the entry valid, so the schema version is unchanged.

A build rewrites the row tables in one transaction (under an advisory lock, so two writers queue); an add of
new documents inserts only their rows and extends the manifest's checksums, in one transaction too: readers
keep answering from the previous corpus until it commits, and never see part of one. Every process holds the
corpus rows (sentences, their vectors, chunks, the vocabulary) in memory, as with the local store, and asks
PostgreSQL for the two rankings of a query; the word pieces stay in the table, and the answerer reads those of
a question's candidates it has not seen yet in one statement (``PgIndex.sentence_tokens_many``: found by the
digest of each sentence's text, so an index held across a rebuild that renumbered the sentences never gets
another sentence's pieces). ``follow`` wakes on the NOTIFY every commit sends, and polls the version row as well, so several
servers follow one store. A store of schema 2 (before the word pieces) is read and answered from without them,
and one written before the vocabulary was stored without it (the answerer embeds the words it needs on first
use); `rag index build` stores both.

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

from rag.documents import DocumentLimits, Skipped, no_documents, read_corpus
from rag.errors import IndexCorruptError, IndexLockedError, UsageError
from rag.index import (
    FORMAT_VERSION,
    MAX_INDEXED_WORDS,
    SEGMENTER,
    Index,
    _is_int,
    left_out,
    segment_corpus,
    vocabulary,
)
from rag.text import content_terms
from rag.types import Chunk, Document, Hit, Sentence

if TYPE_CHECKING:
    import numpy as np

    from rag.corpus import Staged
    from rag.embeddings import Embedder
    from rag.settings import Settings

SCHEMA_VERSION = 3  # 2: the chunks' tsvectors in their own narrow table, keywords; 3: sentence_tokens
# Schemas this code reads: a schema-2 store has no word pieces (the answerer encodes the candidates it needs);
# `rag index build` rewrites it as the current one.
READABLE_SCHEMAS = (2, SCHEMA_VERSION)
TOKENS = "sentence_tokens"  # the word pieces' entry in the manifest's checksums, and their table
# The corpus vocabulary's word vectors: their table, and the manifest's entry {"count", "sha256"} (a key of its
# own, not under "files": code that predates it reads and adds to a store holding them, ignoring them).
WORDS = "words"
log = logging.getLogger("rag")
BATCH = 512  # rows per COPY batch and texts per embedding batch
POLL_SECONDS = 1.0  # how often a following process reads the version row
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 16, 64, 100
HNSW_BUILD_MEMORY = "512MB"  # maintenance_work_mem of a first build's HNSW (raised to it, never lowered)
KEYWORD_MAX_DF, KEYWORD_MIN_DF = 0.01, 1000  # keyword_query: when a question's term is too common to select rows
_MAX_POSITION = 16383  # PostgreSQL's largest tsvector position
_MAX_POSITIONS = 256  # positions PostgreSQL keeps per lexeme (it drops the others)
MAX_LEXEME_BYTES = 2046  # PostgreSQL's longest lexeme
_MAX_TSVECTOR_BYTES = 1_000_000  # under PostgreSQL's 1 MB limit of a tsvector


def is_postgres(store: str) -> bool:
    return store.startswith(("postgresql://", "postgres://"))


_SECRET_PARAMETER = re.compile(r"((?:^|[?&;])(?:ssl)?password=)[^&;#]*", re.IGNORECASE)
_HOST = re.compile(r"[\w.\-\[\]:,%]+")


def redact(url: str) -> str:
    """The URL without its password, in the user part or the query string (for messages). One that does not
    parse shows its scheme and host only (when found), never the rest, which may hold a password."""
    import urllib.parse

    scheme, sep, rest = url.partition("://")
    if not sep:
        return "***"
    try:
        parts = urllib.parse.urlsplit(url)  # ValueError: an unclosed IPv6 address
    except ValueError:
        authority = re.split(r"[/?#]", rest, maxsplit=1)[0].rpartition("@")[2]
        return f"{scheme}://***@{authority}/***" if _HOST.fullmatch(authority) else f"{scheme}://***"
    # As urlsplit reads it: the user part ends at the authority's last '@' (a password may hold more).
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        hosts = f"{user}{':***' if colon else ''}@{hosts}"
    query = _SECRET_PARAMETER.sub(r"\1***", parts.query)
    return f"{scheme}://{hosts}{parts.path}{'?' if query else ''}{query}"


def _password(url: str) -> str | None:
    """The URL's password (as written, may be percent-encoded), for scrubbing it out of a driver's message."""
    authority = re.split(r"[/?#]", url.partition("://")[2], maxsplit=1)[0]
    userinfo, at, _ = authority.rpartition("@")
    password = userinfo.partition(":")[2] if at else ""
    found = re.search(r"(?:^|[?&])password=([^&#]*)", url.partition("?")[2], re.IGNORECASE)
    return password or (found.group(1) if found else None)


def _scrub(message: str, url: str) -> str:
    """A driver's message on one line, with the URL and its password hidden."""
    import urllib.parse

    line = (str(message).strip().splitlines() or [""])[0]
    line = line.replace(url, redact(url))
    secret = _password(url)
    for form in {secret, urllib.parse.unquote(secret)} if secret else ():
        if len(form) >= 3:
            line = line.replace(form, "***")
    return line


def check_store_url(url: str) -> str:
    """``url`` when the driver can read it as a PostgreSQL URL, else a one-line UsageError naming it redacted
    (libpq's own message would echo it whole, password included)."""
    import urllib.parse

    where = f"RAG_STORE {redact(url)!r}"
    try:
        parts = urllib.parse.urlsplit(url)  # ValueError: an unclosed IPv6 address
    except ValueError as exc:
        raise UsageError(f"{where} is not a valid PostgreSQL URL ({exc})") from None
    if parts.netloc.count("@") > 1:  # libpq would take the first '@' as the end of the password
        raise UsageError(f"{where}: write an '@' in the user name or password as %40")
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        return url  # connect() says the driver is missing
    try:
        conninfo_to_dict(url)
    except Exception as exc:  # noqa: BLE001 - psycopg.ProgrammingError, or any parse failure
        reason = re.sub(r'"[^"]{2,}"', '"…"', _scrub(str(exc), url))  # libpq quotes the URL or a piece of it
        raise UsageError(f"{where} is not a valid PostgreSQL URL ({reason})") from None
    return url


MAX_IDENTIFIER_BYTES = 63  # PostgreSQL's: a longer schema name is cut, a longer NOTIFY channel refused


def schema_name(index_name: str) -> str:
    """The index's schema (and NOTIFY channel). Several names can map to one (``Coll-A``, ``coll.a``): the
    schema's ``meta`` records the name it holds (``_check_index_name``)."""
    schema = "rag_" + re.sub(r"[^a-z0-9_]", "_", index_name.lower())
    if len(schema.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
        raise UsageError(f"index name {index_name!r} is too long for a PostgreSQL store: its schema {schema[:20]}… "
                         f"would be {len(schema)} bytes, over PostgreSQL's {MAX_IDENTIFIER_BYTES} (RAG_INDEX_NAME: at "
                         f"most {MAX_IDENTIFIER_BYTES - 4} characters there)")
    return schema


def _check_index_name(held, index_name: str, url: str, schema: str) -> None:
    """Refuse to read or write a schema holding another index whose name maps to the same schema."""
    if held is not None and held != index_name:
        raise UsageError(f"index name {index_name!r} maps to schema {schema} in {redact(url)}, which holds index "
                         f"{held!r}: use that name, or another RAG_INDEX_NAME")


# ---------------------------------------------------------------- keyword index


def _quote_lexeme(term: str) -> str:
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


def _terms(text: str) -> list[str]:
    """The text's BM25 tokens that PostgreSQL can hold as lexemes: a longer one fails the whole statement
    ("word is too long"), so it is left out of the keyword index and of queries (local BM25 keeps it)."""
    return [t for t in content_terms(text) if len(t.encode("utf-8")) <= MAX_LEXEME_BYTES]


def tsvector_literal(text: str) -> str:
    """The chunk's BM25 tokens as a tsvector (with positions, so ts_rank counts repeated terms)."""
    positions: dict[str, list[int]] = {}
    for i, term in enumerate(_terms(text), start=1):
        positions.setdefault(term, []).append(min(i, _MAX_POSITION))
    parts, size = [], 0
    for term, found in positions.items():
        found = list(dict.fromkeys(found))[:_MAX_POSITIONS]
        size += len(term.encode("utf-8")) + 8 + 2 * len(found)  # its bytes in PostgreSQL's tsvector, or more
        if size > _MAX_TSVECTOR_BYTES:  # "string is too long for tsvector": keep the chunk's first terms
            break
        parts.append(f"{_quote_lexeme(term)}:{','.join(map(str, found))}")
    return " ".join(parts)


def tsquery_literal(query: str) -> str | None:
    """The query's BM25 tokens OR-ed together (BM25 scores any term; PostgreSQL's plainto_tsquery ANDs)."""
    terms = list(dict.fromkeys(_terms(query)))
    return " | ".join(_quote_lexeme(t) for t in terms) if terms else None


def keyword_query(query: str, df: dict[str, int] | None, rows: int) -> tuple[str, str] | None:
    """(match, rank) tsqueries of a question: the rows ranked are those holding one of its *selective* terms,
    ranked by ts_rank over all its terms. A term in more than KEYWORD_MAX_DF of the chunks (and more than
    KEYWORD_MIN_DF chunks) selects no rows by itself: BM25 gives such a term almost no weight (its IDF), while
    ranking every chunk that holds it is what makes an OR query slow at scale (a question's terms match 13k of
    100k sentences at the median). The two rarest terms always select. ``df``: chunks per term."""
    terms = list(dict.fromkeys(_terms(query)))
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


def _digests(docs, sentences, chunks, chunk_vectors, tsvectors, tokens=None, start: dict | None = None) -> dict:
    """sha256 objects of the appendable tables (as the local index serialises them), fed these rows: new
    ones, or copies of ``start``'s (the rows before these) extended. ``tokens``: each sentence's word-piece
    entry, ``(rows, sha256 of the rows)`` or None where the store has none (``_tokens_digest``)."""
    import numpy as np

    digests = {name: start[name].copy() if start else hashlib.sha256() for name in APPENDABLE}
    for name, rows in (("documents.jsonl", docs), ("sentences.jsonl", sentences), ("chunks.jsonl", chunks)):
        update = digests[name].update
        for row in rows:
            update((json.dumps(asdict(row), ensure_ascii=False) + "\n").encode("utf-8"))
    digests["chunk_vectors.f32"].update(np.ascontiguousarray(chunk_vectors, np.float32).tobytes())
    for tsv in tsvectors:
        digests["keywords.tsvector"].update((tsv + "\n").encode("utf-8"))
    digests[TOKENS] = _tokens_digest(tokens, start.get(TOKENS) if start else hashlib.sha256())
    return digests


def _tokens_digest(entries, start):
    """The sha256 object of the word pieces of these sentences (in id order) extending ``start``: per sentence
    its row count (4 bytes, little-endian) and the sha256 of its rows (float16, little-endian, row by row), as
    the ``sentence_tokens`` table holds them. The rows themselves are checked against that sha256 when they
    are read (``PgIndex.sentence_tokens_many``), so a process never reads them all. None when ``entries`` is
    None, when a sentence has no entry, or when ``start`` is None (a corpus without word pieces)."""
    if entries is None or start is None:
        return None
    digest = start.copy()
    for entry in entries:
        if entry is None:
            return None
        rows, sha = entry
        digest.update(int(rows).to_bytes(4, "little") + bytes(sha))
    return digest


def _words_digest(words, vectors, start):
    """The sha256 object of these vocabulary rows (in row order) extending ``start``: per word its JSON string and
    a newline (UTF-8), then its vector (float32, little-endian), as the ``words`` table holds them. None when
    ``words`` or ``start`` is None (a corpus stored without them)."""
    import numpy as np

    if words is None or start is None:
        return None
    digest = start.copy()
    for word, row in zip(words, np.ascontiguousarray(vectors, dtype="<f4"), strict=True):
        digest.update((json.dumps(word, ensure_ascii=False) + "\n").encode("utf-8") + row.tobytes())
    return digest


def _npy_sha(array: np.ndarray) -> str:
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def _checksums(docs, sentences, chunks, sentence_vectors, chunk_vectors) -> dict[str, str]:
    """The checksums of the tables known before writing (the keywords' and the word pieces' are taken from the
    table once written, ``write_corpus``)."""
    found = {name: d.hexdigest() for name, d in _digests(docs, sentences, chunks, chunk_vectors, ()).items()
             if d is not None}
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

    check_store_url(url)
    try:
        conn = psycopg.connect(url, autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise IndexCorruptError(f"PostgreSQL store {redact(url)} unreachable: {_scrub(str(exc), url)}") from None
    except psycopg.Error as exc:
        raise UsageError(f"RAG_STORE {redact(url)!r}: {_scrub(str(exc), url)}") from None
    with contextlib.suppress(psycopg.ProgrammingError):  # no extension yet: the first build creates it
        register_vector(conn)
    return conn


class PgStore:
    """One index's schema in one PostgreSQL database. Statements borrow a connection from a small pool: a process
    holds about as many connections as it runs statements at once (the app's RAG_MAX_CONCURRENCY and Gradio's
    queue bound that), not one per thread of a web server's thread pool."""

    MAX_IDLE = 8  # idle connections kept for reuse; more are closed when returned

    def __init__(self, url: str, index_name: str):
        self.url, self.schema, self.index_name = url, schema_name(index_name), index_name
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

    def _run(self, sql: str, params=None, binary: bool = False) -> list[tuple]:
        """One read statement; a broken connection (server restarted, fail-over) is replaced once. ``binary``:
        results in PostgreSQL's binary format (bytea as is, not as hex text to decode)."""
        import psycopg

        for attempt in (0, 1):
            try:
                with self.connection() as conn, conn.cursor(binary=binary) as cur:
                    cur.execute(sql, params)
                    return cur.fetchall()
            except psycopg.OperationalError:
                if attempt:
                    raise
        return []

    def version(self) -> int | None:
        import psycopg

        try:
            rows = self._run("SELECT value FROM meta WHERE key = 'version'")
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
            return None
        return _version_number(rows[0][0]) if rows else None

    # ------------------------------------------------------------ reading

    def read(self, after: dict | None = None, words_from: int = 0,
             ) -> tuple[dict, int, list[Document], list[Sentence], list[Chunk], np.ndarray, np.ndarray, list[str],
                        list | None, tuple[list[str], np.ndarray] | None] | None:
        """A consistent copy of the corpus (one REPEATABLE READ transaction), or IndexCorruptError.

        With ``after`` (the version and row counts the caller holds, as ``appended_to`` gives them): only the
        rows appended since, when the store's version is an add to exactly that one; else None (``words_from``:
        the vocabulary words the caller holds). The ninth item: per sentence, the row count and sha256 of its word
        pieces (None where the table has none), or None for a corpus stored without them; the word pieces
        themselves are read when the answerer needs them. The last: the vocabulary's words and their vectors, or
        None for a corpus stored without them."""
        import numpy as np
        import psycopg

        conn = connect(self.url, autocommit=False)
        try:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            with conn.cursor(binary=True) as cur:  # vectors as float32 bytes, not text to parse
                cur.execute(f"SET search_path TO {self.schema}, public")
                cur.execute("SELECT to_regclass(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL",
                            (f"{self.schema}.meta", f"{self.schema}.documents"))
                has_meta, has_documents = cur.fetchone()
                if not has_meta:  # no store yet; a corpus without its meta table is a damaged one
                    if has_documents:
                        raise self._table_missing("meta")
                    raise FileNotFoundError(self.schema)
                cur.execute("SELECT key, value FROM meta")
                meta = dict(cur.fetchall())
                _check_index_name(meta.get("index_name"), self.index_name, self.url, self.schema)
                if "manifest" not in meta:  # only the embedding cache of a first build so far
                    if has_documents:
                        raise self._damaged("it holds no manifest")
                    raise FileNotFoundError(self.schema)
                _check_schema_version(meta.get("schema_version"), self.url, self.schema)
                problem = _manifest_problem(meta["manifest"])
                if problem is None and _version_number(meta.get("version")) is None:
                    problem = f"its version {meta.get('version')!r} is not a number"
                if problem is not None:
                    raise self._damaged(problem)
                if after is not None and meta["manifest"].get("appended_to") != after:
                    return None  # a build, or an add to another version than the caller's: read it all
                skip = after or {"documents": 0, "sentences": 0, "chunks": 0}
                cur.execute("SELECT id, text, title, date, sha256, fmt FROM documents WHERE ord >= %s ORDER BY ord",
                            (skip["documents"],))
                docs = [Document(*row) for row in cur]
                with_tokens = TOKENS in meta["manifest"]["files"]
                columns = 's.id, s.source, s.start, s."end", s.text, s.paragraph, s.section, s.embedding'
                if with_tokens:  # the word pieces' counts and checksums, not the vectors: joined by text digest
                    cur.execute(f"SELECT {columns}, t.pieces, t.sha256 FROM sentences s LEFT JOIN sentence_tokens "
                                "t ON t.model = %s AND t.digest = encode(sha256(convert_to(s.text, 'UTF8')), "
                                "'hex') WHERE s.id >= %s ORDER BY s.id",
                                (meta["manifest"]["embedding"]["sha256"], skip["sentences"]))
                else:
                    cur.execute(f"SELECT {columns}, NULL::int, NULL::bytea FROM sentences s WHERE s.id >= %s "
                                "ORDER BY s.id", (skip["sentences"],))
                sentences, svecs, tokens = [], [], [] if with_tokens else None
                for *row, vec, pieces, sha in cur:
                    sentences.append(Sentence(*row))
                    svecs.append(_array(vec))
                    if tokens is not None:
                        tokens.append(None if sha is None else (pieces, sha))
                cur.execute('SELECT id, source, start, "end", text, sentence_ids, section, embedding, tsv::text '
                            "FROM chunks JOIN keywords USING (row) WHERE row >= %s ORDER BY row", (skip["chunks"],))
                chunks, cvecs, tsvs = [], [], []
                for cid, source, start, end, text, sids, section, vec, tsv in cur:
                    chunks.append(Chunk(cid, source, start, end, text, tuple(sids), section))
                    cvecs.append(_array(vec))
                    tsvs.append(tsv)
                words = None
                if WORDS in meta["manifest"]:  # the corpus vocabulary's word vectors (a store written before: none)
                    cur.execute("SELECT word, embedding FROM words WHERE row >= %s ORDER BY row", (words_from,))
                    rows = cur.fetchall()
                    words = ([w for w, _ in rows], [_array(v) for _, v in rows])
        except psycopg.errors.UndefinedTable as exc:
            raise self._table_missing(_missing_table(exc)) from None
        finally:
            conn.close()  # read only: nothing to commit
        manifest = meta["manifest"]
        dim = manifest["embedding"]["dim"]
        sentence_vectors = np.array(svecs, dtype=np.float32).reshape(len(svecs), dim)
        chunk_vectors = np.array(cvecs, dtype=np.float32).reshape(len(cvecs), dim)
        if words is not None:
            words = (words[0], np.array(words[1], dtype=np.float32).reshape(len(words[1]), dim))
        return (manifest, _version_number(meta.get("version", 0)), docs, sentences, chunks, sentence_vectors, chunk_vectors, tsvs,
                tokens, words)

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
        rows = self._searched(sql, {"q": query_vector, "t": tsquery, "m": match or tsquery, "n": depth})
        dense = [(cid, text, float(score)) for leg, cid, text, score in rows if leg == 0]
        keyword = [(cid, text, float(score)) for leg, cid, text, score in rows if leg == 1]
        return dense, keyword

    def keyword_ranking(self, tsquery: str, depth: int, match: str | None = None) -> list:
        rows = self._searched("SELECT c.id, c.text, k.score FROM (SELECT row, ts_rank(tsv, %(t)s::tsquery, 1) AS score "
                              "FROM keywords WHERE tsv @@ %(m)s::tsquery ORDER BY 2 DESC, row LIMIT %(n)s) k "
                              "JOIN chunks c USING (row) ORDER BY k.score DESC, row",
                              {"t": tsquery, "m": match or tsquery, "n": depth})
        return [(cid, text, float(score)) for cid, text, score in rows]

    def _searched(self, sql: str, params: dict) -> list[tuple]:
        """A search statement; a table or schema dropped under a running server is the one-line IndexCorruptError
        that loading gives (it was the driver's error with the SQL, as an HTTP 500)."""
        import psycopg

        try:
            return self._run(sql, params)
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName) as exc:
            raise self._table_missing(_missing_table(exc)) from None

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

    def cached_tokens(self, model_sha: str, texts: list[str], dim: int) -> set[str]:
        """Those of the texts whose word pieces the ``sentence_tokens`` table holds, intact: the server checks
        each row against its sha256 (a damaged row counts as missing, so a build encodes it again and repairs
        it; the server hashes the rows instead of sending them: 7 s for 100k sentences, whose encoding takes about
        8 minutes)."""
        import psycopg

        digests = {_digest(t): t for t in texts}
        try:
            rows = self._run("SELECT digest FROM sentence_tokens WHERE model = %s AND digest = ANY(%s) AND "
                             "octet_length(vectors) = pieces * %s * 2 AND sha256(vectors) = sha256",
                             (model_sha, list(digests), dim))
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
            return set()
        return {digests[d] for (d,) in rows}

    def cache_vectors(self, model_sha: str, vectors: dict[str, np.ndarray],
                      tokens: dict[str, np.ndarray] | None = None) -> None:
        """Commit texts' vectors to the embedding cache (a vector already there is kept: under one model a text's
        vector does not change) and sentence texts' word pieces (float16 rows) to ``sentence_tokens``, in one
        transaction."""
        with self.connection() as conn, conn.transaction(), conn.cursor() as cur:
            if vectors:
                cur.executemany("INSERT INTO embed_cache VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                                [(model_sha, _digest(t), v) for t, v in vectors.items()])
            if tokens:  # a row there is replaced: callers write only those missing or damaged (cached_tokens)
                cur.executemany("INSERT INTO sentence_tokens VALUES (%s, %s, %s, %s, %s) ON CONFLICT (model, digest) "
                                "DO UPDATE SET pieces = excluded.pieces, sha256 = excluded.sha256, "
                                "vectors = excluded.vectors",
                                [(model_sha, _digest(t), *_token_row(rows)) for t, rows in tokens.items()])

    def token_vectors(self, model_sha: str, digests: list[str]) -> list[tuple[str, int, bytes, bytes]]:
        """(digest, pieces, sha256, vectors) of the texts with these digests that the table holds."""
        import psycopg

        try:
            return self._run("SELECT digest, pieces, sha256, vectors FROM sentence_tokens WHERE model = %s AND "
                             "digest = ANY(%s)", (model_sha, digests), binary=True)
        except psycopg.errors.UndefinedTable:
            raise self._table_missing(TOKENS) from None

    def _table_missing(self, table: str) -> IndexCorruptError:
        return _table_missing(self.url, self.schema, table)

    def _damaged(self, problem: str) -> IndexCorruptError:
        return IndexCorruptError(f"{redact(self.url)} schema {self.schema}: table meta is damaged ({problem}); "
                                 "rebuild with `rag index build`")


def _table_missing(url: str, schema: str, table: str) -> IndexCorruptError:
    return IndexCorruptError(f"{redact(url)} schema {schema}: table {table} is missing; rebuild with `rag index build`")


def _missing_table(exc) -> str:
    """The table an UndefinedTable error names (``relation "x" does not exist``)."""
    found = re.search(r'relation "([^"]+)"', exc.diag.message_primary or str(exc))
    return found.group(1) if found else "of the store"


def _version_number(value) -> int | None:
    """The meta table's version, or None when it is not a whole number (a damaged row)."""
    return value if _is_int(value) else None


def _check_schema_version(found, url: str, schema: str) -> None:
    if _is_int(found) and found > SCHEMA_VERSION:
        raise IndexCorruptError(f"{redact(url)} schema {schema}: written by a newer version of rag (schema version "
                                f"{found}; this one reads up to {SCHEMA_VERSION}): upgrade rag to use it")
    if found not in READABLE_SCHEMAS:
        raise IndexCorruptError(f"{redact(url)} schema {schema}: schema version {found} is not {SCHEMA_VERSION}; "
                                "rebuild with `rag index build`")


# What the manifest must hold (`rag index info` and loading read these): key -> type, and the keys of its dicts.
_MANIFEST_FIELDS = {"format_version": int, "chunking": dict, "index_type": str, "created": str,
                    "build_seconds": (int, float), "embedding": dict, "documents": list, "counts": dict, "files": dict}
_MANIFEST_KEYS = {"embedding": ("model_id", "sha256", "dim"), "chunking": ("chunk_sentences", "chunk_overlap"),
                  "counts": ("documents", "sentences", "chunks")}


def _manifest_problem(manifest) -> str | None:
    """What is wrong with a stored manifest, or None."""
    if not isinstance(manifest, dict):
        return "its manifest is not an object"
    for key, kind in _MANIFEST_FIELDS.items():
        if not isinstance(manifest.get(key), kind):
            return f"its manifest has no valid {key!r}"
    for key, fields in _MANIFEST_KEYS.items():
        missing = [f for f in fields if f not in manifest[key]]
        if missing:
            return f"its manifest's {key!r} has no {missing[0]!r}"
    if not isinstance(manifest["embedding"]["dim"], int) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in manifest["files"].items()):
        return "its manifest has an invalid 'embedding' dim or 'files' entry"
    return None


def _array(vector) -> np.ndarray:
    """A pgvector value as float32 numpy (pgvector's loader returns its Vector class)."""
    import numpy as np

    return np.asarray(vector.to_numpy() if hasattr(vector, "to_numpy") else vector, dtype=np.float32)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _token_row(rows: np.ndarray) -> tuple[int, bytes, bytes]:
    """A sentence's word pieces as ``sentence_tokens`` stores them: (row count, sha256, float16 bytes)."""
    import numpy as np

    data = np.ascontiguousarray(rows, dtype="<f2").tobytes()
    return len(rows), hashlib.sha256(data).digest(), data


def _cache_ddl(schema: str) -> list[str]:
    """The schema with the tables a build writes to while it embeds: ``meta``, the embedding cache, and the
    word pieces of each sentence text (by model and text digest, as the cache: a text's pieces are encoded and
    stored once, committed batch by batch, and serve every corpus holding the text until a build drops them)."""
    return [
        "CREATE EXTENSION IF NOT EXISTS vector",
        f"CREATE SCHEMA IF NOT EXISTS {schema}",
        f"SET LOCAL search_path TO {schema}, public",
        "CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY, value jsonb NOT NULL)",
        "CREATE TABLE IF NOT EXISTS embed_cache (model text NOT NULL, digest text NOT NULL, "
        "embedding vector NOT NULL, PRIMARY KEY (model, digest))",
        "CREATE TABLE IF NOT EXISTS sentence_tokens (model text NOT NULL, digest text NOT NULL, pieces int NOT NULL, "
        "sha256 bytea NOT NULL, vectors bytea NOT NULL, PRIMARY KEY (model, digest))",
    ]


def _ddl(schema: str, dim: int) -> list[str]:
    return [
        *_cache_ddl(schema),
        "CREATE TABLE IF NOT EXISTS documents (ord int PRIMARY KEY, id text NOT NULL UNIQUE, text text NOT NULL, "
        "title text NOT NULL, date text, sha256 text NOT NULL, fmt text NOT NULL)",
        *_row_tables(dim),
        *_row_indexes(),
    ]


# A build rewrites these whole; meta, documents, embed_cache and sentence_tokens stay.
ROW_TABLES = ("sentences", "chunks", "keywords", WORDS)


def _row_tables(dim: int) -> list[str]:
    return [
        f"CREATE TABLE IF NOT EXISTS sentences (id int PRIMARY KEY, source text NOT NULL, start int NOT NULL, "
        f'"end" int NOT NULL, text text NOT NULL, paragraph int NOT NULL, section text, '
        f"embedding vector({dim}) NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS chunks (row int PRIMARY KEY, id text NOT NULL UNIQUE, source text NOT NULL, "
        f'start int NOT NULL, "end" int NOT NULL, text text NOT NULL, sentence_ids int[] NOT NULL, section text, '
        f"embedding vector({dim}) NOT NULL)",
        "CREATE TABLE IF NOT EXISTS keywords (row int PRIMARY KEY, tsv tsvector NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS words (row int PRIMARY KEY, word text NOT NULL, embedding vector({dim}) NOT NULL)",
    ]


def _row_indexes() -> list[str]:
    return [
        f"CREATE INDEX IF NOT EXISTS chunks_embedding ON chunks USING hnsw (embedding vector_ip_ops) "
        f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})",
        "CREATE INDEX IF NOT EXISTS keywords_tsv ON keywords USING gin (tsv)",
    ]


def write_corpus(url: str, index_name: str, manifest: dict, docs: list[Document], sentences: list[Sentence],
                 chunks: list[Chunk], sentence_vectors: np.ndarray, chunk_vectors: np.ndarray,
                 progress: bool = False, with_tokens: bool = False, words: tuple[str, ...] | None = None,
                 word_vectors: np.ndarray | None = None) -> int:
    """Replace the store's corpus with this one in ONE transaction (batched COPY inside it); returns the new
    version. Readers see the previous corpus until the commit, then all of this one. ``with_tokens``: the
    sentences' word pieces are in ``sentence_tokens`` (``_embed_resumably`` or ``push`` wrote them, under the
    build lock), and the manifest gets their checksum; without, the corpus is stored without word pieces.
    ``words``/``word_vectors``: the corpus vocabulary and its vectors (``rag.index.vocabulary``), written to the
    ``words`` table with their checksum in the manifest; None: the corpus is stored without them."""
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
            cur.execute("SELECT key, value FROM meta WHERE key IN ('manifest', 'schema_version', 'index_name')")
            meta = dict(cur.fetchall())
            _check_index_name(meta.get("index_name"), index_name, url, schema)
            # The rows go into new tables, and the HNSW and GIN indexes are built in bulk once the rows are in:
            # several times faster than maintaining them row by row (100k chunks: 30 s against 252 s,
            # bench/pg_bench.py). A first build (or one replacing tables of another model's dimension or of an
            # older schema, which no reader can use) makes them in place. A rebuild makes them in a staging
            # schema and swaps them in at the end, so readers keep reading the live tables throughout and wait
            # only for the swap (dropping the old tables, moving the new ones: milliseconds) and the commit.
            old = meta.get("manifest")  # damaged (``_manifest_problem``): rewritten whole, as a first build
            damaged = _manifest_problem(old) is not None
            first = (damaged or old["embedding"]["dim"] != dim
                     or meta.get("schema_version") != SCHEMA_VERSION)
            if not damaged:
                # Documents added with `rag index add` live only in the store: a build from the corpus folder (or
                # a push) that lacks them drops them, which a tester found happening without a word.
                dropped = sorted({d["id"] for d in old["documents"]} - {d.id for d in docs})
                if dropped:
                    log.warning("index %s: %d document(s) of the store are not in what replaces them and are "
                                "dropped: %s", index_name, len(dropped), ", ".join(dropped[:10])
                                + (", ..." if len(dropped) > 10 else ""))
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
            manifest = {k: v for k, v in manifest.items() if k != WORDS}
            if words is not None:
                _copy_words(cur, words, word_vectors)
                manifest[WORDS] = {"count": len(words),
                                   "sha256": _words_digest(words, word_vectors, hashlib.sha256()).hexdigest()}
            cur.execute("SELECT set_config('maintenance_work_mem', %s, true) WHERE "
                        "pg_size_bytes(current_setting('maintenance_work_mem')) < pg_size_bytes(%s)",
                        (HNSW_BUILD_MEMORY, HNSW_BUILD_MEMORY))
            for statement in _row_indexes():
                cur.execute(statement)
            cur.execute("SELECT tsv::text FROM keywords ORDER BY row")
            files = dict(manifest["files"], **{"keywords.tsvector": _keywords_sha(r[0] for r in cur)})
            manifest = dict(manifest, files=files)
            model = manifest["embedding"]["sha256"]
            if with_tokens:
                found = _tokens_digest(_token_entries(cur, model, sentences), hashlib.sha256())
                if found is None:
                    raise RuntimeError("word pieces of some sentences are missing from sentence_tokens "
                                       "(removed by another writer?); run `rag index build` again")
                files[TOKENS] = found.hexdigest()
            # Keep the embedding cache (texts and vocabulary words) and the word pieces to what this corpus uses.
            texts = {s.text for s in sentences}
            cur.execute("DELETE FROM embed_cache WHERE model <> %s OR NOT (digest = ANY(%s))",
                        (model, [_digest(t) for t in texts | {c.text for c in chunks} | set(words or ())]))
            cur.execute("DELETE FROM sentence_tokens WHERE model <> %s OR NOT (digest = ANY(%s))",
                        (model, [_digest(t) for t in texts]))
            if not first:  # the swap: from here to the commit, readers of the row tables wait
                cur.execute(f"DROP TABLE IF EXISTS {', '.join(f'{schema}.{table}' for table in ROW_TABLES)}")
                for table in ROW_TABLES:
                    cur.execute(f"ALTER TABLE {staging}.{table} SET SCHEMA {schema}")
                cur.execute(f"DROP SCHEMA {staging}")
                cur.execute(f"SET LOCAL search_path TO {schema}, public")
            version = _commit_meta(cur, schema, manifest, index_name)
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


def _copy_words(cur, words, vectors: np.ndarray, first_row: int = 0) -> None:
    """COPY vocabulary words and their vectors into ``words``, rows numbered from ``first_row``."""
    for start in range(0, len(words), BATCH):
        with cur.copy("COPY words (row, word, embedding) FROM STDIN") as copy:
            for row, (word, vec) in enumerate(zip(words[start:start + BATCH], vectors[start:start + BATCH],
                                                  strict=True), first_row + start):
                copy.write_row((row, word, vec))


def _token_entries(cur, model_sha: str, sentences: list[Sentence]) -> list[tuple[int, bytes] | None]:
    """Per sentence, in order: its word pieces' row count and sha256 as ``sentence_tokens`` holds them (None where
    it holds none), read in the caller's transaction."""
    cur.execute("SELECT t.pieces, t.sha256 FROM unnest(%s::text[]) WITH ORDINALITY AS d(digest, i) "
                "LEFT JOIN sentence_tokens t ON t.model = %s AND t.digest = d.digest ORDER BY d.i",
                ([_digest(s.text) for s in sentences], model_sha))
    return [None if sha is None else (pieces, sha) for pieces, sha in cur]


def _commit_meta(cur, schema: str, manifest: dict, index_name: str) -> int:
    """Write the schema version, the manifest, the index name and the next version number, and notify the
    followers (delivered at commit); returns the new version."""
    from psycopg.types.json import Jsonb

    cur.execute("SELECT value FROM meta WHERE key = 'version'")
    row = cur.fetchone()
    version = (_version_number(row[0]) or 0 if row else 0) + 1  # a damaged version starts again
    # An add to a store of an older schema keeps its version (older code reading the store still can).
    schema_version = manifest.get("schema_version", SCHEMA_VERSION)
    for key, value in (("schema_version", schema_version), ("manifest", manifest), ("version", version),
                       ("index_name", index_name)):
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

    @property
    def has_tokens(self) -> bool:
        """Whether the store holds this corpus's word pieces (a store of schema 2, or a push of a local index
        without them and no model to encode them, does not)."""
        return TOKENS in self.manifest["files"]

    @property
    def has_words(self) -> bool:
        """Whether the store holds this corpus's vocabulary word vectors (``words``, held in memory as
        ``words``/``word_vectors``); a store written before they were stored does not."""
        return WORDS in self.manifest

    def sentence_tokens(self, sentence_id: int) -> np.ndarray | None:
        """The word-piece vectors of one sentence (float16 rows), read from the store, or None."""
        return self.sentence_tokens_many([sentence_id]).get(sentence_id)

    def sentence_tokens_many(self, sentence_ids) -> dict[int, np.ndarray]:
        """The word-piece vectors (float16 rows) of these sentences, read in one statement; nothing is kept here
        (the answerer's Featurizer keeps what it uses). Rows are found by the digest of the sentence's own text
        under this corpus's model, so a sentence id that a later build gave to another sentence never gets that
        one's pieces; a sentence the store no longer holds (a later build dropped it) is left out, and the
        answerer encodes it. Each row is checked against its sha256, which the manifest's checksum covers."""
        import numpy as np

        if not self.has_tokens:
            return {}
        by_digest: dict[str, list[int]] = {}
        for sid in dict.fromkeys(sentence_ids):
            by_digest.setdefault(_digest(self.sentences[sid].text), []).append(sid)
        if not by_digest:
            return {}
        dim = self.manifest["embedding"]["dim"]
        found = {}
        for digest, pieces, sha, data in self.store.token_vectors(self.manifest["embedding"]["sha256"],
                                                                  list(by_digest)):
            data = bytes(data)
            if len(data) != pieces * dim * 2 or hashlib.sha256(data).digest() != bytes(sha):
                raise IndexCorruptError(
                    f"{redact(self.store.url)} schema {self.store.schema}: table contents for {TOKENS} do not match "
                    f"the manifest's checksum (sentence {by_digest[digest][0]}); rebuild with `rag index build`")
            rows = np.frombuffer(data, dtype="<f2").reshape(pieces, dim)
            for sid in by_digest[digest]:
                found[sid] = rows
        return found

    def token_summary(self) -> dict | None:
        """What the store holds of this corpus's word pieces: sentences, vectors, their bytes, and the table's
        size on disk (with its other rows: a build in progress, another model's); None without them."""
        if not self.has_tokens:
            return None
        digests = list({_digest(s.text) for s in self.sentences})
        texts, pieces, size = self.store._run(
            "SELECT count(*), coalesce(sum(pieces), 0), coalesce(sum(octet_length(vectors)), 0) FROM sentence_tokens "
            "WHERE model = %s AND digest = ANY(%s)", (self.manifest["embedding"]["sha256"], digests))[0]
        table = self.store._run("SELECT pg_total_relation_size('sentence_tokens')")[0][0]
        return {"texts": int(texts), "vectors": int(pieces), "bytes": int(size), "table_bytes": int(table)}


def _verify(manifest: dict, docs, sentences, chunks, sentence_vectors, chunk_vectors, tsvs, tokens, words,
            where: str, base: PgIndex | None = None) -> dict:
    """Check the rows against the manifest's checksums and their documents; returns the APPENDABLE digests
    (and the vocabulary's, under WORDS). With ``base``, the rows are those appended to it (its digests are
    extended, its vectors stacked on). ``tokens``: the sentences' word-piece entries, ``words``: the vocabulary
    rows (``PgStore.read``)."""
    import numpy as np

    digests = _digests(docs, sentences, chunks, chunk_vectors, tsvs, tokens, start=base.digests if base else None)
    found = {name: d.hexdigest() for name, d in digests.items() if d is not None}
    found["sentence_vectors.npy"] = _npy_sha(sentence_vectors if base is None else
                                             np.concatenate([base.sentence_vectors, sentence_vectors]))
    # The word pieces last: they are found by the sentences' text, so an edited sentence is named as that.
    for name, sha in sorted(manifest["files"].items(), key=lambda item: item[0] == TOKENS):
        if found.get(name) != sha:
            raise IndexCorruptError(f"{where}: table contents for {name} do not match the manifest's checksum; "
                                    "rebuild with `rag index build`")
    if WORDS in manifest:
        entry = manifest[WORDS]
        digest = _words_digest(words and words[0], words and words[1],
                               base.digests.get(WORDS) if base else hashlib.sha256())
        held = len(base.words) if base else 0
        if (digest is None or not isinstance(entry, dict) or digest.hexdigest() != entry.get("sha256")
                or held + len(words[0]) != entry.get("count")):
            raise IndexCorruptError(f"{where}: table contents for {WORDS} do not match the manifest's checksum; "
                                    "rebuild with `rag index build`")
        if not np.isfinite(words[1]).all():
            raise IndexCorruptError(f"{where}: vectors that are not finite; rebuild with `rag index build`")
        digests[WORDS] = digest
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
    manifest, version, docs, sentences, chunks, svecs, cvecs, tsvs, tokens, words = store.read()
    digests = _verify(manifest, docs, sentences, chunks, svecs, cvecs, tsvs, tokens, words,
                      f"{redact(settings.store)} schema {store.schema}")
    return PgIndex(settings.index_path, manifest, {d.id: d for d in docs}, sentences, chunks, store, svecs, None,
                   words=tuple(words[0]) if words else (), word_vectors=words[1] if words else None,
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
    read = base.store.read(after=appended_to(base), words_from=len(base.words))
    if read is None:
        return None
    manifest, version, docs, sentences, chunks, svecs, cvecs, tsvs, tokens, words = read
    digests = _verify(manifest, docs, sentences, chunks, svecs, cvecs, tsvs, tokens, words,
                      f"{redact(settings.store)} schema {base.store.schema}", base=base)
    chunk_rows = dict(base.chunk_rows)
    chunk_rows.update((c.id, len(base.chunks) + i) for i, c in enumerate(chunks))
    all_words, word_vectors = _extend_words(base, words)
    return PgIndex(settings.index_path, manifest, {**base.documents, **{d.id: d for d in docs}},
                   [*base.sentences, *sentences], [*base.chunks, *chunks], base.store,
                   np.concatenate([base.sentence_vectors, svecs]), None, words=all_words, word_vectors=word_vectors,
                   version=version, chunk_rows=chunk_rows, digests=digests,
                   keyword_df=term_frequencies(tsvs, dict(base.keyword_df)))


def _extend_words(base: PgIndex, words) -> tuple[tuple[str, ...], np.ndarray | None]:
    """``base``'s vocabulary and vectors followed by ``words`` (rows appended to it), or none without them."""
    import numpy as np

    if words is None:
        return (), None
    if not words[0]:
        return base.words, base.word_vectors
    return (*base.words, *words[0]), np.concatenate([base.word_vectors, words[1]])


def stale_reason(settings: Settings, manifest: dict, model_sha: str, model_id: str | None = None) -> str | None:
    """How the store's build differs from these settings (model, chunking, format), or None."""
    if manifest.get("format_version") != FORMAT_VERSION:
        return f"index format {manifest.get('format_version')} != {FORMAT_VERSION}"
    embedding = manifest.get("embedding") or {}
    if embedding.get("sha256") != model_sha:
        ours = f"{model_id} " if model_id else ""
        return (f"embedding model {embedding.get('model_id')} (sha256 {str(embedding.get('sha256'))[:12]}…) in the "
                f"store, {ours}(sha256 {model_sha[:12]}…) here")
    stored, wanted = manifest.get("chunking") or {}, _chunking(settings)
    if stored != wanted:
        if stored.get("segmenter") != wanted["segmenter"]:
            return f"segmenter {stored.get('segmenter')} in the store, {wanted['segmenter']} here"
        return (f"chunking {stored.get('chunk_sentences')} sentences, overlap {stored.get('chunk_overlap')} in the "
                f"store; RAG_CHUNK_SENTENCES={wanted['chunk_sentences']}, RAG_CHUNK_OVERLAP={wanted['chunk_overlap']} "
                "here")
    return None


def _refuse_other_settings(settings: Settings, index: PgIndex | None, embedder: Embedder) -> None:
    """The store's corpus, when there is one, must have been built with these settings (``_built_otherwise``)."""
    reason = index is not None and stale_reason(settings, index.manifest, embedder.info.sha256, embedder.info.model_id)
    if reason:
        raise _built_otherwise(settings, reason)


def _built_otherwise(settings: Settings, reason: str) -> IndexCorruptError:
    """A store built with other settings is shared: only an explicit `rag index build` rewrites it."""
    return IndexCorruptError(f"{redact(settings.store)} schema {schema_name(settings.index_name)}: index "
                             f"'{settings.index_name}' was built with other settings ({reason}); `rag index build` "
                             "rebuilds it with the current settings")


def _chunking(settings: Settings) -> dict:
    return {"chunk_sentences": settings.chunk_sentences, "chunk_overlap": settings.chunk_overlap,
            "segmenter": SEGMENTER}


def open_index(settings: Settings, embedder: Embedder, rebuild_if_stale: bool = True,
               current: Index | None = None) -> PgIndex:
    """Load the store's corpus; build it from the corpus folder when the store has none. A store built with
    another model or chunking is refused, whatever ``rebuild_if_stale`` says: servers and commands share it, and
    one whose settings differ would rewrite it for all (only `rag index build` does). ``current``: the caller's
    index of this store (a following process), extended by the rows of an add instead of reading it all again."""
    try:
        index = (load_appended(settings, current) if isinstance(current, PgIndex) else None) or load(settings)
    except FileNotFoundError:
        log.warning("index '%s' not found in %s: building it from %s", settings.index_name, redact(settings.store),
                    settings.corpus_dir)
        return build_index(settings, embedder, only_if_stale=True)
    _refuse_other_settings(settings, index, embedder)
    return index


def build_index(settings: Settings, embedder: Embedder, documents: list[Document] | None = None,
                staged: Staged | None = None, only_if_stale: bool = False, current: Index | None = None) -> PgIndex:
    """Segment, embed (reusing vectors the store already has, batch by batch) and write in one transaction.

    Without documents: the corpus folder. With ``staged`` files (``rag index add``): the store's documents plus
    those files (the store is the corpus: the files are not moved into the corpus folder). An add of new
    documents only appends their rows (``_append``); ``current``, the caller's index of this store, spares
    reading the store's rows when it is still the store's version."""

    with _write_errors(settings.store, settings.index_name), \
            build_lock(settings.store, settings.index_name, settings.lock_timeout):
        if only_if_stale and documents is None and staged is None:
            # Two servers started on an empty store: the second waited here for the first's build, and then built
            # it all again. What is there now is taken when it fits these settings.
            try:
                index = load(settings)
            except FileNotFoundError:
                pass
            else:
                if stale_reason(settings, index.manifest, embedder.info.sha256, embedder.info.model_id) is None:
                    return index
        return _build_locked(settings, embedder, documents, staged, current)


@contextlib.contextmanager
def _write_errors(url: str, index_name: str):
    """What the server refuses a writer, as one line saying what to do (not a driver's traceback)."""
    import psycopg

    schema = schema_name(index_name)
    try:
        yield
    except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction,
            psycopg.errors.UndefinedFile) as exc:
        line = _scrub(exc.diag.message_primary or str(exc), url)
        if "extension" in line:
            raise UsageError(f"{redact(url)}: the pgvector extension is missing from this database and this role "
                             f"cannot create it ({line}): an administrator must run `CREATE EXTENSION vector` in "
                             "that database (pgvector installed on the server)") from None
        raise UsageError(f"{redact(url)} schema {schema}: the store is read-only for this role ({line}; a "
                         "standby, a read-only role or transaction): write to the primary with a role that may "
                         "create and write the schema's tables") from None
    except psycopg.errors.UndefinedTable as exc:
        raise _table_missing(url, schema, _missing_table(exc)) from None


@contextlib.contextmanager
def build_lock(url: str, index_name: str, timeout: float | None = None):
    """One writer of this index at a time (build, add, push), across processes and machines: a second `rag
    index add` waits here, then reads the store with the first one's documents in it (no lost update); and no
    writer drops the cached vectors or word pieces another one has written but not yet committed. Waits at most
    ``timeout`` seconds (RAG_LOCK_TIMEOUT; None: as long as it takes), then IndexLockedError, as locally."""
    key = schema_name(index_name) + ":build"
    lock = connect(url)
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        # Polled, not pg_advisory_lock: a blocked statement would wait past the timeout.
        while not lock.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (key,)).fetchone()[0]:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise IndexLockedError(
                    f"another build of index '{index_name}' is running (advisory lock {key} in {redact(url)}); "
                    f"waited {timeout:.0f}s")
            time.sleep(0.2 if left is None else min(0.2, left))
        held = _held_meta(lock, schema_name(index_name))
        _check_index_name(held.get("index_name"), index_name, url, schema_name(index_name))
        found = held.get("schema_version")
        if _is_int(found) and found > SCHEMA_VERSION:
            _check_schema_version(found, url, schema_name(index_name))  # never rewritten by older code
        yield
    finally:
        lock.close()  # releases the session's advisory lock


def _held_meta(conn, schema: str) -> dict:
    """The index name and schema version a schema's ``meta`` records (none: no such schema yet)."""
    import psycopg

    try:
        return dict(conn.execute(f"SELECT key, value FROM {schema}.meta WHERE key IN ('index_name', "
                                 "'schema_version')").fetchall())
    except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
        return {}


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
        _refuse_other_settings(settings, base, embedder)  # an add would rewrite the shared store with them
        if base is not None and not present:
            appended = _append(settings, embedder, base, new, limits, started)
            if appended is not None:
                return appended
            base = _current(settings, None)  # another writer (a push) committed meanwhile: rewrite from its corpus
            _refuse_other_settings(settings, base, embedder)
        stored = list(base.documents.values()) if base is not None else []
        docs = sorted([d for d in stored if d.id not in staged.names] + new, key=lambda d: d.id)
        # The files the store's last build from a corpus folder left out, as long as they are not added now.
        kept = (base.manifest.get("skipped") or []) if base is not None else []
        skipped = [Skipped(**s) for s in kept if s["id"] not in staged.names]
    elif documents is not None:
        docs, skipped = documents, []
    else:
        docs, skipped = read_corpus(settings.corpus_dir, max_bytes=max_bytes, max_chars=max_chars, limits=limits)
        # A file of the corpus folder without a sentence, or too slow to split, is left out with a warning, as a
        # local build leaves it out (it stopped every build of the store).
        sentences, chunks, per_doc, dropped = segment_corpus(settings, docs, limits, found={d.id for d in docs})
        docs, without_sentences = left_out(docs, dropped)
        skipped = sorted([*skipped, *without_sentences], key=lambda s: s.id)
        if not docs:
            raise no_documents(settings.corpus_dir, skipped)
    if documents is not None or staged is not None:
        sentences, chunks, per_doc, _ = segment(settings, docs)
    store = PgStore(settings.store, settings.index_name)
    sentence_vectors, chunk_vectors = _embed_resumably(store, embedder, [s.text for s in sentences],
                                                       [c.text for c in chunks])
    words = vocabulary(sentences)
    word_vectors = _embed_words(store, embedder, words)
    if not (np.isfinite(sentence_vectors).all() and np.isfinite(chunk_vectors).all()
            and np.isfinite(word_vectors).all()):
        raise RuntimeError("the embedding model produced non-finite vectors")
    manifest = make_manifest(settings, embedder.info.model_id, embedder.info.sha256, embedder.dim, per_doc,
                             docs, sentences, chunks, sentence_vectors, chunk_vectors, time.perf_counter() - started,
                             skipped)
    write_corpus(settings.store, settings.index_name, manifest, docs, sentences, chunks, sentence_vectors,
                 chunk_vectors, progress=len(chunks) > 5000, with_tokens=True, words=words, word_vectors=word_vectors)
    # The model's vocabulary vectors (rag.word_table), made once per model and cache folder, as a local build
    # makes them: the first build waits for them (about 5 s) instead of the first question. Never raises.
    if hasattr(embedder, "word_table"):
        embedder.word_table()
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
    sentences, chunks, per_doc, _ = segment_corpus(settings, new_docs, limits, seen=seen,
                                                first_sentence_id=len(base.sentences))
    store = base.store
    sentence_vectors, chunk_vectors = _embed_resumably(store, embedder, [s.text for s in sentences],
                                                       [c.text for c in chunks])
    words, word_vectors = None, None
    if base.has_words:  # the new sentences' words the vocabulary lacks, up to MAX_INDEXED_WORDS in all
        known = set(base.words)
        room = max(0, MAX_INDEXED_WORDS - len(base.words))
        words = tuple(w for w in vocabulary(sentences, limit=room + len(known)) if w not in known)[:room]
        word_vectors = _embed_words(store, embedder, words)
    if not (np.isfinite(sentence_vectors).all() and np.isfinite(chunk_vectors).all()
            and (word_vectors is None or np.isfinite(word_vectors).all())):
        raise RuntimeError("the embedding model produced non-finite vectors")
    all_sentence_vectors = np.concatenate([base.sentence_vectors, sentence_vectors])
    conn = connect(settings.store, autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (store.schema,))  # as write_corpus
            cur.execute(f"SET LOCAL search_path TO {store.schema}, public")
            cur.execute("SELECT value FROM meta WHERE key = 'version'")
            row = cur.fetchone()
            if row is None or _version_number(row[0]) != base.version:
                conn.rollback()
                return None
            _copy_rows(cur, new_docs, sentences, chunks, sentence_vectors, chunk_vectors, len(chunks) > 5000,
                       first_ord=len(base.documents), first_row=len(base.chunks))
            cur.execute("SELECT tsv::text FROM keywords WHERE row >= %s ORDER BY row", (len(base.chunks),))
            tsvs = [r[0] for r in cur]
            tokens = None
            if base.has_tokens:  # the new sentences' word pieces, which _embed_resumably put in sentence_tokens
                tokens = _token_entries(cur, base.manifest["embedding"]["sha256"], sentences)
                if None in tokens:
                    raise RuntimeError("word pieces of some sentences are missing from sentence_tokens "
                                       "(removed by another writer?); run `rag index add` again")
            digests = _digests(new_docs, sentences, chunks, chunk_vectors, tsvs, tokens, start=base.digests)
            found = {name: d.hexdigest() for name, d in digests.items() if d is not None}
            extra = {}
            if words is not None:
                _copy_words(cur, words, word_vectors, first_row=len(base.words))
                digests[WORDS] = _words_digest(words, word_vectors, base.digests[WORDS])
                extra[WORDS] = {"count": len(base.words) + len(words), "sha256": digests[WORDS].hexdigest()}
            found["sentence_vectors.npy"] = _npy_sha(all_sentence_vectors)
            counts = base.manifest["counts"]
            manifest = dict(base.manifest, appended_to=appended_to(base),
                            created=datetime.now(UTC).isoformat(timespec="seconds"),
                            build_seconds=round(time.perf_counter() - started, 3),
                            documents=[*base.manifest["documents"], *per_doc],
                            counts={"documents": counts["documents"] + len(new_docs),
                                    "sentences": counts["sentences"] + len(sentences),
                                    "chunks": counts["chunks"] + len(chunks)},
                            files={name: found[name] for name in base.manifest["files"]}, **extra)
            version = _commit_meta(cur, store.schema, manifest, settings.index_name)
        conn.commit()
    finally:
        conn.close()
    chunk_rows = dict(base.chunk_rows)
    chunk_rows.update((c.id, len(base.chunks) + i) for i, c in enumerate(chunks))
    all_words, all_word_vectors = _extend_words(base, None if words is None else (words, word_vectors))
    return PgIndex(settings.index_path, manifest, {**base.documents, **{d.id: d for d in new_docs}},
                   [*base.sentences, *sentences], [*base.chunks, *chunks], store, all_sentence_vectors, None,
                   words=all_words, word_vectors=all_word_vectors, version=version, chunk_rows=chunk_rows,
                   digests=digests, keyword_df=term_frequencies(tsvs, dict(base.keyword_df)))


def segment(settings: Settings, docs: list[Document]) -> tuple[list[Sentence], list[Chunk], list[dict], dict[str, str]]:
    """As a local build segments (rag.index.segment_corpus), with the same limits."""
    return segment_corpus(settings, docs, DocumentLimits.from_settings(settings))


def make_manifest(settings, model_id, model_sha, dim, per_doc, docs, sentences, chunks, sentence_vectors,
                  chunk_vectors, seconds: float, skipped: list[Skipped] = ()) -> dict:
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
        # Files of the corpus folder the build left out (unreadable, no sentence, too slow to split), with the
        # reason, for `rag index info`; the store is its own corpus, so they never make it stale.
        "skipped": [asdict(s) for s in skipped],
        "counts": {"documents": len(docs), "sentences": len(sentences), "chunks": len(chunks)},
        "files": _checksums(docs, sentences, chunks, sentence_vectors, chunk_vectors),
    }


def _embed_resumably(store: PgStore, embedder: Embedder, sentence_texts: list[str],
                     chunk_texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Vectors for the texts, and the sentences' word pieces in ``sentence_tokens``: from the store's embedding
    cache and that table, else encoded BATCH texts at a time, each batch committed to both at once (so a killed
    build resumes where it stopped, word pieces included). One run of the model gives a text's vector and its
    pieces; the texts are batched as they are without pieces (a vector depends on its batch's padding in the
    last bits: the same batches give the same bits as before). An embedder without ``encode_with_tokens`` (a
    test double) gives no pieces, stored as none, as a local build stores them. The pieces are not returned:
    the build's commit reads their checksums from the table (``write_corpus``, ``_append``)."""
    import numpy as np
    from tqdm import tqdm

    sentences = set(sentence_texts)
    wanted = sorted(sentences | set(chunk_texts))
    model = embedder.info.sha256
    cache = store.cached_vectors(model, wanted)
    have_tokens = store.cached_tokens(model, sorted(sentences), embedder.dim)
    missing = [t for t in wanted if t not in cache or (t in sentences and t not in have_tokens)]
    if missing:
        _ensure_cache_tables(store)
        for start in tqdm(range(0, len(missing), BATCH), desc="embedding", unit="batch",
                          disable=len(missing) <= BATCH, leave=False):
            batch = missing[start:start + BATCH]
            if hasattr(embedder, "encode_with_tokens"):
                vectors, tokens = embedder.encode_with_tokens(batch)
            else:
                vectors, tokens = embedder.encode(batch), [np.zeros((0, embedder.dim), np.float32)] * len(batch)
            fresh = {t: v for t, v in zip(batch, np.asarray(vectors, dtype=np.float32), strict=True)
                     if t not in cache}  # a cached vector stays as it is
            store.cache_vectors(model, fresh, {t: rows for t, rows in zip(batch, tokens, strict=True)
                                               if t in sentences and t not in have_tokens})
            cache.update(fresh)

    def stack(texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, embedder.dim), dtype=np.float32)
        return np.stack([cache[t] for t in texts]).astype(np.float32)

    return stack(sentence_texts), stack(chunk_texts)


def _embed_words(store: PgStore, embedder: Embedder, words: tuple[str, ...]) -> np.ndarray:
    """Vectors of vocabulary words, from the store's embedding cache, else embedded and committed to it BATCH
    words at a time (a killed build resumes). Embedded as a local build embeds them (``rag.index._embed``: the
    missing words sorted, in one call of ``encode``, which runs them longest first in batches of 64): here
    longest first in that order, BATCH (a multiple of 64) at a time, so the batches, hence the vectors bit for
    bit, are a local build's (a vector depends on its batch's padding in the last bits)."""
    import numpy as np

    model = embedder.info.sha256
    cache = store.cached_vectors(model, list(words)) if words else {}
    missing = sorted(sorted({w for w in words if w not in cache}), key=lambda w: -len(w))
    if missing:
        _ensure_cache_tables(store)
    for start in range(0, len(missing), BATCH):
        batch = missing[start:start + BATCH]
        fresh = dict(zip(batch, np.asarray(embedder.encode(batch), dtype=np.float32), strict=True))
        store.cache_vectors(model, fresh)
        cache.update(fresh)
    if not words:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    return np.stack([cache[w] for w in words]).astype(np.float32)


def _ensure_cache_tables(store: PgStore) -> None:
    conn = connect(store.url, autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (store.schema + ":cache",))
            for statement in _cache_ddl(store.schema):
                cur.execute(statement)
            # The name, from the schema's first rows on (``_check_index_name``; writers hold the build lock).
            cur.execute("INSERT INTO meta VALUES ('index_name', to_jsonb(%s::text)) ON CONFLICT DO NOTHING",
                        (store.index_name,))
        conn.commit()
    finally:
        conn.close()
    store.reset()  # reconnect: the vector type may have just been created


def push(settings: Settings, url: str, embedder: Embedder | None = None) -> PgIndex:
    """Copy the built local index (``settings.index_path``) into the store at ``url``, vectors, word pieces and
    vocabulary word vectors included: nothing is embedded again, except what a local index built before they
    were stored lacks (its word pieces, its vocabulary's vectors: encoded then as a build encodes them, with
    ``embedder``, default the settings' model, when it is the index's model; else the store gets none and the
    answerer encodes what it needs). The copy is verified against the local manifest's checksums."""
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
    manifest["skipped"] = local.manifest.get("skipped", [])
    # The rows the store serialises as the local files do must give the local checksums (words.json and
    # word_vectors.npy were verified by load_index; the store checksums the vocabulary in its own format).
    for name in ("documents.jsonl", "sentences.jsonl", "chunks.jsonl", "sentence_vectors.npy"):
        if manifest["files"][name] != local.manifest["files"][name]:
            raise IndexCorruptError(f"{settings.index_path}: {name} does not serialise to its checksum; "
                                    "rebuild with `rag index build`")
    model = _ModelEmbedder(settings, embedder, local.manifest["embedding"]["sha256"])
    with _write_errors(url, settings.index_name), build_lock(url, settings.index_name, settings.lock_timeout):
        store = PgStore(url, settings.index_name)
        with_tokens = _push_tokens(store, local, model)
        words, word_vectors = _push_words(store, local, model)
        write_corpus(url, settings.index_name, manifest, docs, local.sentences, local.chunks,
                     local.sentence_vectors, chunk_vectors, progress=len(local.chunks) > 5000,
                     with_tokens=with_tokens, words=words, word_vectors=word_vectors)
    return load(settings.model_copy(update={"store": url}))


class _ModelEmbedder:
    """For a push: the embedder of the local index's model, made when first needed (an older local build
    lacking something), or None with a warning when the settings' model is another one."""

    def __init__(self, settings: Settings, embedder: Embedder | None, model_sha: str):
        self.settings, self.embedder, self.model_sha = settings, embedder, model_sha

    def get(self, lacking: str) -> Embedder | None:
        if self.embedder is None:
            from rag.embeddings import Embedder

            self.embedder = Embedder.from_settings(self.settings)
        if self.embedder.info.sha256 == self.model_sha:
            return self.embedder
        log.warning("the local index holds no %s and was built with another model than %s: pushed without them "
                    "(the answerer encodes what it needs; `rag index build` on the store stores them)", lacking,
                    self.embedder.info.model_id)
        return None


def _push_tokens(store: PgStore, local: Index, model: _ModelEmbedder) -> bool:
    """Put the local index's word pieces into ``sentence_tokens`` (those the table lacks), BATCH sentences per
    committed transaction; True when every sentence has them there."""
    model_sha = local.manifest["embedding"]["sha256"]
    first = {}  # text -> the id of its first sentence
    for sentence in local.sentences:
        first.setdefault(sentence.text, sentence.id)
    have = store.cached_tokens(model_sha, list(first), local.manifest["embedding"]["dim"])
    missing = [t for t in first if t not in have]
    if not missing:
        return True
    if local.token_vectors is None:  # a local build made before word pieces were stored: encode them
        embedder = model.get("word pieces")
        if embedder is None:
            return False
        _embed_resumably(store, embedder, missing, [])
        return True
    _ensure_cache_tables(store)
    for start in range(0, len(missing), BATCH):
        batch = missing[start:start + BATCH]
        store.cache_vectors(model_sha, {}, {t: local.sentence_tokens(first[t]) for t in batch})
    return True


def _push_words(store: PgStore, local: Index, model: _ModelEmbedder) -> tuple[tuple[str, ...] | None,
                                                                               np.ndarray | None]:
    """The local index's vocabulary and its vectors (``words.json``, ``word_vectors.npy``); for a local build
    made before they were stored, its vocabulary embedded as a build embeds it (``_embed_words``); (None, None)
    when that needs another model than the settings' one."""
    if local.word_vectors is not None:
        return tuple(local.words), local.word_vectors
    embedder = model.get("vocabulary word vectors")
    if embedder is None:
        return None, None
    words = vocabulary(local.sentences)
    return words, _embed_words(store, embedder, words)


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
