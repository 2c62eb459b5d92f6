"""Reproduce docs/llm-check.md: how the LLM answer check's P(yes) separates right answers, wrong answers and
answers to unanswerable questions, on development questions of four documents (not the reported gold set).

    .venv/bin/python bench/llm_check.py --llm "http://127.0.0.1:8011/v1#qwen2.5-coder-1.5b-instruct"

Each question is answered by the LLM backend with the check switched off; then the check is sent for every
answer that cites something. An answer is right when it contains a gold alias. Prints one line per question
and the table of answers withdrawn per threshold. About 20-40 s a question on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DOCUMENTS = [  # (document, question files, questions taken: answerable spread over the file + unanswerable)
    ("data/corpus/2026-03-06-iran-proxies-iraq.txt", ["eval/heldout.jsonl", "eval/unseen.jsonl"], 16),
    ("eval/dev/2026-02-03-drug-trial.txt", ["eval/dev/2026-02-03-drug-trial.jsonl"], 10),
    ("eval/dev/enc-glaciers.txt", ["eval/dev/enc-glaciers.jsonl"], 10),
    ("eval/dev/2025-09-14-transit-budget.txt", ["eval/dev/2025-09-14-transit-budget.jsonl"], 10),
]
THRESHOLDS = (0.5, 0.6, 0.7, 0.75, 0.8)


def pick(questions: list[dict], n: int) -> list[dict]:
    answerable = [q for q in questions if q["answers"]]
    unanswerable = [q for q in questions if not q["answers"]]
    k = max(3, n // 3)
    return answerable[:: max(1, len(answerable) // (n - k))][: n - k] + unanswerable[:k]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llm", required=True, help="BASE_URL#MODEL of an OpenAI-compatible server")
    args = parser.parse_args(argv)
    from rag.answer.llm import cited_passages
    from rag.answer.registry import create_backend
    from rag.embeddings import Embedder
    from rag.eval.metrics import contains_alias
    from rag.index import open_index
    from rag.pipeline import Pipeline
    from rag.settings import Settings

    scores: dict[str, list[float]] = {"right": [], "wrong": [], "unanswerable": []}
    for document, files, n in DOCUMENTS:
        with tempfile.TemporaryDirectory(prefix="rag-llm-check-") as tmp:
            corpus = Path(tmp) / "corpus"
            corpus.mkdir()
            shutil.copy(ROOT / document, corpus)
            settings = Settings(corpus_dir=corpus, index_dir=Path(tmp) / "index", llm_answer_check=False,
                                _env_file=None)
            embedder = Embedder.from_settings(settings)
            pipeline = Pipeline(settings, embedder, open_index(settings, embedder))
            backend = create_backend(f"openai-compatible:{args.llm}", settings, pipeline.index, embedder)
            pipeline.use_backend(backend, spec="measured")
            questions = [json.loads(line) for f in files for line in (ROOT / f).read_text().splitlines() if line]
            for q in pick(questions, n):
                request = pipeline.prepare(q["question"], backend)
                raw = "".join(p for p in backend.execute(request) if isinstance(p, str))
                cited = cited_passages(raw, request)
                p_yes = backend.check_answer(q["question"], cited) if cited else None
                kind = ("unanswerable" if not q["answers"] else
                        "right" if contains_alias(raw, q["answers"]) else "wrong")
                if p_yes is not None:
                    scores[kind].append(p_yes)
                print(f"{q['id']:14s} {kind:13s} P(yes)={p_yes if p_yes is None else round(p_yes, 2)}  {raw[:90]!r}",
                      flush=True)
    print("\n| threshold | " + " | ".join(f"{k} withdrawn" for k in scores) + " |")
    print("|---|" + "---|" * len(scores))
    for t in THRESHOLDS:
        print(f"| {t} | " + " | ".join(f"{sum(v < t for v in vs)} / {len(vs)}" for vs in scores.values()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
