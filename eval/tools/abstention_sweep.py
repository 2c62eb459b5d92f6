"""Sweep the extractive backend's abstention thresholds over a question set and print the trade-off.

Gold files with their own documents (SQuAD JSON, eval/dev/*.jsonl) are run over a temporary corpus of those
documents; answers are scored with rag.eval's alias containment.
Usage: .venv/bin/python eval/tools/abstention_sweep.py [eval/gold.jsonl ...]
"""

import logging
import sys
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
logging.disable(logging.WARNING)

import rag.answer.extractive as extractive  # noqa: E402
from rag.eval import contains_alias, corpus_pipeline, load_dataset  # noqa: E402
from rag.pipeline import Pipeline  # noqa: E402


def main() -> None:
    base = Pipeline.load()
    with ExitStack() as stack:
        runs = []  # (pipeline, questions) per gold file, indexed once for the whole sweep
        for name in sys.argv[1:] or ["eval/gold.jsonl"]:
            documents, questions = load_dataset(name)
            runs.append((stack.enter_context(corpus_pipeline(base, documents)), questions))
        print("min_score  min_predicate  answer-contains  abstained(unanswerable)  false-abstention")
        for min_score in (0.30, 0.36, 0.42):
            for min_predicate in (0.0, 0.10, 0.15, 0.25):
                extractive.MIN_SCORE, extractive.MIN_PREDICATE_COVERAGE = min_score, min_predicate
                hit = answerable = abstained = unanswerable = false_abstained = 0
                for pipeline, questions in runs:
                    pipeline.forget_backend("extractive")
                    for q in questions:
                        answer = pipeline.ask(q.question)
                        if q.answerable:
                            answerable += 1
                            hit += not answer.abstained and contains_alias(answer.answer, q.answers)
                            false_abstained += answer.abstained
                        else:
                            unanswerable += 1
                            abstained += answer.abstained
                print(f"{min_score:9.2f}  {min_predicate:13.2f}  {hit / max(answerable, 1):15.3f}  "
                      f"{abstained / max(unanswerable, 1):23.3f}  {false_abstained / max(answerable, 1):16.3f}",
                      flush=True)


if __name__ == "__main__":
    main()
