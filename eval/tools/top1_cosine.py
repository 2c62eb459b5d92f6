"""How often the single sentence most similar to the question (cosine, whole corpus) contains a gold alias.

The naive extractive answerer, for comparison with ours (docs/answerer.md); ``rag eval`` runs it as the
"top-1 sentence" baseline (rag.eval.baselines.Top1SentenceBaseline), which this reuses. Gold files with their
own documents (SQuAD JSON, eval/dev/*.jsonl) are run over a temporary corpus of those documents.
Usage: .venv/bin/python eval/tools/top1_cosine.py [eval/gold.jsonl ...]
"""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
logging.disable(logging.WARNING)

from rag.eval import Top1SentenceBaseline, contains_alias, corpus_pipeline, load_dataset  # noqa: E402
from rag.pipeline import Pipeline  # noqa: E402


def main() -> None:
    base = Pipeline.load()
    for name in sys.argv[1:] or ["eval/gold.jsonl", "eval/heldout.jsonl"]:
        documents, questions = load_dataset(name)
        answerable = [q for q in questions if q.answerable]
        with corpus_pipeline(base, documents) as pipeline:
            baseline = Top1SentenceBaseline.from_pipeline(pipeline)
            hits = sum(contains_alias(baseline.predict(q.question).answer, q.answers) for q in answerable)
        print(f"{name}: top-1 cosine sentence contains a gold alias for {hits}/{len(answerable)} "
              f"= {hits / len(answerable):.1%} of answerable questions")


if __name__ == "__main__":
    main()
