"""Sweep the extractive backend's abstention thresholds over a question set and print the trade-off.

Usage: .venv/bin/python eval/tools/abstention_sweep.py [eval/gold.jsonl ...]
"""

import json
import logging
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
logging.disable(logging.WARNING)

import rag.answer.extractive as extractive  # noqa: E402
from rag.pipeline import Pipeline  # noqa: E402


def norm(text: str) -> str:
    return re.sub(r"[^\w ]", "", text.lower().replace("’", "'").replace("-", " "))


def main() -> None:
    files = sys.argv[1:] or ["eval/gold.jsonl"]
    questions = []
    for name in files:
        with open(name, encoding="utf-8") as fh:
            questions += [json.loads(line) for line in fh if line.strip()]
    pipeline = Pipeline.load()
    print("min_score  min_predicate  answer-contains  abstained(unanswerable)  false-abstention")
    for min_score in (0.30, 0.36, 0.42):
        for min_predicate in (0.0, 0.10, 0.15, 0.25):
            extractive.MIN_SCORE, extractive.MIN_PREDICATE_COVERAGE = min_score, min_predicate
            pipeline.forget_backend("extractive")
            hit = answerable = abstained = unanswerable = false_abstained = 0
            for q in questions:
                answer = pipeline.ask(q["question"])
                if q["answers"]:
                    answerable += 1
                    hit += any(norm(a) in norm(answer.answer) for a in q["answers"])
                    false_abstained += answer.abstained
                else:
                    unanswerable += 1
                    abstained += answer.abstained
            print(f"{min_score:9.2f}  {min_predicate:13.2f}  {hit / answerable:15.3f}  "
                  f"{abstained / unanswerable:23.3f}  {false_abstained / answerable:16.3f}", flush=True)


if __name__ == "__main__":
    main()
