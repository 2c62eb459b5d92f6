"""Measure chunking parameters: retrieval against evidence spans and extractive answer accuracy.

Builds a throw-away index per setting (the model is loaded once).
Usage: .venv/bin/python eval/tools/chunking_sweep.py [eval/gold.jsonl eval/heldout.jsonl]
"""

import json
import logging
import re
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
logging.disable(logging.WARNING)

from rag.embeddings import Embedder, resolve_model  # noqa: E402
from rag.index import build_index  # noqa: E402
from rag.pipeline import Pipeline  # noqa: E402
from rag.settings import Settings  # noqa: E402

SETTINGS = [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (4, 1), (5, 2), (8, 2)]


def norm(text: str) -> str:
    return re.sub(r"[^\w ]", "", text.lower().replace("’", "'").replace("-", " "))


def load(files: list[str]) -> list[dict]:
    questions = []
    for name in files:
        with open(name, encoding="utf-8") as fh:
            questions += [json.loads(line) for line in fh if line.strip()]
    return [q for q in questions if q["answers"]]


def main() -> None:
    questions = load(sys.argv[1:] or ["eval/gold.jsonl", "eval/heldout.jsonl"])
    base = Settings()
    embedder = Embedder(resolve_model(base.embed_model, base.model_cache_dir))
    for sentences, overlap in SETTINGS:
        folder = Path(tempfile.mkdtemp())
        settings = base.model_copy(update={"index_dir": folder, "chunk_sentences": sentences, "chunk_overlap": overlap})
        pipeline = Pipeline(settings, embedder, build_index(settings, embedder))
        hit1 = recall3 = mrr = contains = 0.0
        for q in questions:
            doc = next(iter(pipeline.index.documents.values())).text
            spans = [(doc.find(e), doc.find(e) + len(e)) for e in q["evidence"]]
            hits = pipeline.retriever.search(q["question"], 10)
            relevant = [any(h.chunk.start < end and start < h.chunk.end for start, end in spans) for h in hits]
            hit1 += relevant[0]
            recall3 += any(relevant[:3])
            mrr += next((1 / (i + 1) for i, r in enumerate(relevant) if r), 0.0)
            answer = pipeline.ask(q["question"]).answer
            contains += any(norm(a) in norm(answer) for a in q["answers"])
        n = len(questions)
        print(f"chunk_sentences={sentences} overlap={overlap} chunks={len(pipeline.index.chunks)} "
              f"Hit@1={hit1 / n:.3f} Recall@3={recall3 / n:.3f} MRR@10={mrr / n:.3f} "
              f"answer-contains={contains / n:.3f}", flush=True)
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
