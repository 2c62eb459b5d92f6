"""How often the single sentence most similar to the question (cosine, whole corpus) contains a gold alias.

The naive extractive answerer, for comparison with ours (docs/extractive.md).
Usage: .venv/bin/python eval/tools/top1_cosine.py [eval/gold.jsonl ...]
"""

import json
import logging
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
logging.disable(logging.WARNING)

from rag.pipeline import Pipeline  # noqa: E402


def norm(text: str) -> str:
    return " " + " ".join(re.sub(r"[^\w ]", " ", text.lower().replace("’", "'").replace("-", " ")).split()) + " "


def main() -> None:
    pipeline = Pipeline.load()
    vectors, sentences = pipeline.index.sentence_vectors, pipeline.index.sentences
    for name in sys.argv[1:] or ["eval/gold.jsonl", "eval/heldout.jsonl"]:
        with open(name, encoding="utf-8") as fh:
            questions = [json.loads(line) for line in fh if line.strip()]
        answerable = [q for q in questions if q["answers"]]
        hits = 0
        for q in answerable:
            best = sentences[int((vectors @ pipeline.embedder.encode_query(q["question"])).argmax())]
            hits += any(norm(a) in norm(best.text) for a in q["answers"])
        print(f"{name}: top-1 cosine sentence contains a gold alias for {hits}/{len(answerable)} "
              f"= {hits / len(answerable):.1%} of answerable questions")


if __name__ == "__main__":
    main()
