"""Measure chunking parameters on the gold set: retrieval (evidence overlap) and extractive accuracy."""
import json, re, sys, tempfile, shutil
from pathlib import Path
sys.path.insert(0, '/work/main')
import logging; logging.disable(logging.WARNING)
from rag.settings import Settings
from rag.embeddings import Embedder, resolve_model
from rag.index import build_index
from rag.pipeline import Pipeline
base = Settings(); emb = Embedder(resolve_model(base.embed_model, base.model_cache_dir))
gold = [json.loads(l) for l in open('eval/gold.jsonl')] + [json.loads(l) for l in open('eval/heldout.jsonl')]
doc = open('data/corpus/2026-03-06-iran-proxies-iraq.txt').read()
def norm(s): return re.sub(r"[^\w ]", "", s.lower().replace("’","'").replace("-", " "))
for cs, ov in [(1,0),(2,0),(2,1),(3,0),(3,1),(4,1),(5,2),(8,2)]:
    tmp = Path(tempfile.mkdtemp())
    s = base.model_copy(update={"index_dir": tmp, "chunk_sentences": cs, "chunk_overlap": ov})
    p = Pipeline(s, emb, build_index(s, emb))
    h1=r3=mrr=n=ok=na=0; chars=0
    for g in gold:
        if not g['answers']: continue
        spans = [(doc.find(e), doc.find(e)+len(e)) for e in g['evidence']]
        hits = p.retriever.search(g['question'], 10)
        rel = [any(h.chunk.start < e and s_ < h.chunk.end for s_, e in spans) for h in hits]
        n+=1; h1 += rel[0]; r3 += any(rel[:3]); mrr += next((1/(i+1) for i,r in enumerate(rel) if r), 0)
        chars += sum(len(h.chunk.text) for h in hits[:3])/3
        a = p.ask(g['question']); na+=1
        ok += any(norm(x) in norm(a.answer) for x in g['answers'])
    print(f"chunk_sentences={cs} overlap={ov} chunks={len(p.index.chunks)} avg_chunk_chars={chars/n:.0f} Hit@1={h1/n:.3f} Recall@3={r3/n:.3f} MRR@10={mrr/n:.3f} answer-contains={ok/na:.3f}", flush=True)
    shutil.rmtree(tmp)
