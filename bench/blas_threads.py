"""Warm ask latency with numpy's BLAS capped at one thread (RAG_BLAS_THREADS=1, the default) against numpy's own
default (one thread per core), in one process, so both see the same machine load.

    .venv/bin/python bench/blas_threads.py [--questions 300] [--block 30] [--busy 1] [--out bench/blas_threads.json]

The two settings alternate in blocks of questions (the first questions of a block are not counted): OpenBLAS's
idle threads keep spinning for a while after a call, so alternating question by question would let one
setting's spinning leak into the other's timings. Each question is asked with its cached query vector cleared,
as `make bench` does. Prints the p50 / p95 of the whole ask and of its embed and answer stages per setting and
the load average, and adds them to a JSON file under ``busy_N``. ``--busy N`` keeps N other processes spinning meanwhile (a server
answering other requests, a build, another service on the machine): the case the cap is for.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # noqa: E402  (bench/run.py: the corpus, the gold set and the question rewordings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=300, help="unique questions per round (two rounds)")
    parser.add_argument("--block", type=int, default=30, help="questions asked in a row with one setting")
    parser.add_argument("--busy", type=int, default=0, help="other processes kept spinning on a core meanwhile")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        result = measure(args)
    finally:
        for spinner in spinners:
            spinner.kill()
    for threads, stages in result["by_threads"].items():
        print(f"BLAS threads {threads}: " + ", ".join(f"{stage} p50 {v['p50_ms']} / p95 {v['p95_ms']} ms"
                                                     for stage, v in stages.items()))
    print(f"busy processes {args.busy}; load average before {result['load_average']['before']}, "
          f"after {result['load_average']['after']}")
    if args.out:  # one entry per --busy count, kept beside the others already in the file
        runs = json.loads(args.out.read_text(encoding="utf-8")) if args.out.is_file() else {}
        runs[f"busy_{args.busy}"] = result
        args.out.write_text(json.dumps(runs, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return 0


def measure(args) -> dict:
    from threadpoolctl import ThreadpoolController

    from rag import embeddings
    from rag.embeddings import Embedder
    from rag.eval.gold import load_gold
    from rag.index import build_index, load_index
    from rag.pipeline import Pipeline
    from rag.settings import Settings

    with tempfile.TemporaryDirectory(prefix="rag-blas-") as tmp:
        settings = Settings(corpus_dir=bench.CORPUS, index_dir=Path(tmp) / "index", blas_threads=0)
        embedder = Embedder.from_settings(settings)
        build_index(settings, embedder)
        pipeline = Pipeline(settings, embedder, load_index(settings.index_path))
        controller = ThreadpoolController()
        spinning = controller.select(filepath=[lib["filepath"] for lib in controller.info()
                                               if lib["user_api"] == "blas" and lib.get("threading_layer") != "openmp"])
        default_threads = max((lib["num_threads"] for lib in spinning.info()), default=1)
        questions = bench.bench_questions(load_gold(bench.DEFAULT_GOLD), args.questions)
        for question in questions[:10]:
            pipeline.ask(question)
        load_before = os.getloadavg()
        timings: dict[int, dict[str, list[float]]] = {1: {}, default_threads: {}}
        settings_order = (1, default_threads)
        for round_ in range(2):
            for k, question in enumerate(questions):
                threads = settings_order[(k // args.block + round_) % 2]
                if k % args.block == 0:
                    spinning.limit(limits=threads)
                    time.sleep(0.5)
                embeddings._cached_query.cache_clear()
                answer = pipeline.ask(question)
                if k % args.block < 3:
                    continue
                for stage in ("total", "embed", "answer"):
                    value = answer.latency_ms if stage == "total" else answer.timings_ms.get(stage, 0.0)
                    timings[threads].setdefault(stage, []).append(value)
    return {
        "default_threads": default_threads, "busy_processes": args.busy,
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]},
        "by_threads": {str(threads): {stage: {"p50_ms": round(float(np.median(values)), 2),
                                              "p95_ms": round(float(np.percentile(values, 95)), 2), "n": len(values)}
                                      for stage, values in stages.items()}
                       for threads, stages in timings.items()},
    }


if __name__ == "__main__":
    sys.exit(main())
