"""What the span reader (RAG_READER) costs: the warm ask on the bundled article with and without it, in one
process, the two settings alternating question by question so that both see the same machine.

    .venv/bin/python bench/reader.py [--rounds 3] [--out bench/reader.json]

Questions: eval/gold.jsonl (the bundled article's gold set), each asked ``rounds`` times per setting after one
warm-up pass of both (the first use of the reader exports it to ONNX; that is not timed). Writes p50 / p95 /
mean in milliseconds per setting, how often the two short answers differ, and the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    from bench.claims_check import stats
    from rag.embeddings import Embedder
    from rag.eval.gold import load_gold
    from rag.index import open_index
    from rag.pipeline import Pipeline, limit_blas_threads
    from rag.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "reader.json")
    args = parser.parse_args(argv)

    settings = Settings()
    limit_blas_threads(settings.blas_threads)
    embedder = Embedder.from_settings(settings)
    index = open_index(settings, embedder)
    pipelines = {"span model (default)": Pipeline(settings, embedder, index),
                 "reader": Pipeline(settings.model_copy(update={"reader": True}), embedder, index)}
    questions = [q.question for q in load_gold(ROOT / "eval" / "gold.jsonl")]
    short = {name: [p.ask(q).short_answer for q in questions] for name, p in pipelines.items()}  # warm-up
    timings: dict[str, list[float]] = {name: [] for name in pipelines}
    for _ in range(args.rounds):
        for question in questions:
            for name, pipeline in pipelines.items():
                started = time.perf_counter()
                pipeline.ask(question)
                timings[name].append((time.perf_counter() - started) * 1000)
    answered = [(a, b) for a, b in zip(*short.values(), strict=True) if a or b]
    result = {"questions": len(questions), "rounds": args.rounds, "ms": {n: stats(v) for n, v in timings.items()},
              "short_answers_differing": sum(a != b for a, b in answered), "answered": len(answered),
              "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine()},
              "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
