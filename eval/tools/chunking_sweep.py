"""Retrieval and answer containment for several chunking settings, each indexed afresh in a temporary folder.

Gold files with their own documents (SQuAD JSON, eval/dev/*.jsonl) are indexed from a temporary corpus of
those documents. Metrics are rag.eval's (Hit@1, Recall@3, MRR@10 over the top 10, alias containment), on the
answerable questions.
Usage: .venv/bin/python eval/tools/chunking_sweep.py [eval/gold.jsonl eval/heldout.jsonl ...]
"""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
logging.disable(logging.WARNING)

from rag.eval import (  # noqa: E402
    contains_alias,
    corpus_pipeline,
    load_dataset,
    locate_evidence,
    retrieval_scores,
)
from rag.pipeline import Pipeline  # noqa: E402

SETTINGS = [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (4, 1), (5, 2), (8, 2)]


def main() -> None:
    files = sys.argv[1:] or ["eval/gold.jsonl", "eval/heldout.jsonl"]
    datasets = [(name, *load_dataset(name)) for name in files]
    base = Pipeline.load()
    for sentences, overlap in SETTINGS:
        totals = {"hit_at_1": 0.0, "recall_at_3": 0.0, "mrr_at_10": 0.0, "contains": 0.0}
        n = chunks = 0
        for name, documents, questions in datasets:
            answerable = [q for q in questions if q.answerable]
            with corpus_pipeline(base, documents, chunk_sentences=sentences, chunk_overlap=overlap) as pipeline:
                evidence = locate_evidence(answerable, pipeline.index.documents, name)
                chunks += len(pipeline.index.chunks)
                for q in answerable:
                    ranking = [(h.chunk.source, h.chunk.start, h.chunk.end)
                               for h in pipeline.retriever.search(q.question, 10)]
                    scores = retrieval_scores(ranking, evidence[q.id])
                    for key in ("hit_at_1", "recall_at_3", "mrr_at_10"):
                        totals[key] += scores[key]
                    answer = pipeline.ask(q.question)
                    totals["contains"] += not answer.abstained and contains_alias(answer.answer, q.answers)
                    n += 1
        print(f"chunk_sentences={sentences} overlap={overlap} chunks={chunks} "
              f"Hit@1={totals['hit_at_1'] / n:.3f} Recall@3={totals['recall_at_3'] / n:.3f} "
              f"MRR@10={totals['mrr_at_10'] / n:.3f} answer-contains={totals['contains'] / n:.3f}", flush=True)


if __name__ == "__main__":
    main()
