"""What the optional all-mpnet-base-v2 embedding model costs beside the bundled all-MiniLM-L6-v2, on the bundled
article: index build, warm per-question latency (by phase), cold `rag ask`, index size. A plain script, never
part of the test suite; the answer quality each buys is measured by `make train` / `make train-mpnet`
(docs/answerer.md, "A larger embedding model").

    .venv/bin/python bench/embedders.py            # both models (mpnet needs `make install-mpnet`)
    .venv/bin/python bench/embedders.py --questions 50

Writes bench/embedders.json. Nothing touches the user's index: every index is built in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.run import CORPUS, bench_questions, cold_ask, machine, warm_ask_phases  # noqa: E402
from rag.eval import DEFAULT_GOLD, load_gold  # noqa: E402

MODELS = ("all-MiniLM-L6-v2", "all-mpnet-base-v2")


def folder_mb(path: Path) -> float:
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6, 2)


def measure(model: str, tmp: Path, questions: list[str], cold_runs: int) -> dict:
    from rag.embeddings import Embedder
    from rag.index import build_index, load_index
    from rag.pipeline import Pipeline
    from rag.settings import Settings

    settings = Settings(corpus_dir=CORPUS, index_dir=tmp / model, embed_model=model, _env_file=None)
    started = time.perf_counter()
    embedder = Embedder.from_settings(settings)
    embedder.encode(["warm up"])  # extracts, exports and verifies the ONNX model the first time
    out: dict = {"model_id": embedder.info.model_id, "sha256": embedder.info.sha256, "backend": embedder.backend,
                 "dim": embedder.dim, "embedder_ready_s": round(time.perf_counter() - started, 2)}
    builds = []
    for run in range(2):
        again = settings.model_copy(update={"index_dir": tmp / f"{model}-build-{run}"})
        t = time.perf_counter()
        build_index(again, embedder)
        builds.append(time.perf_counter() - t)
        shutil.rmtree(again.index_dir, ignore_errors=True)
    out["index_build_s"] = round(min(builds), 2)
    build_index(settings, embedder)
    out["index_mb"] = folder_mb(settings.index_path)
    pipeline = Pipeline(settings, embedder, load_index(settings.index_path))
    out["warm_ms"] = warm_ask_phases(pipeline, questions)
    cold = cold_ask(settings.index_dir, cold_runs, "auto", RAG_EMBED_MODEL=model)
    out["cold_ask"] = {k: v for k, v in cold.items() if k != "first_line"}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=100, help="warm questions per model (unique)")
    parser.add_argument("--cold-runs", type=int, default=3, help="cold `rag ask` runs per model (median)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "embedders.json")
    args = parser.parse_args()
    questions = bench_questions(load_gold(DEFAULT_GOLD), args.questions)
    results: dict = {"machine": machine(), "questions": len(questions), "models": {}}
    with tempfile.TemporaryDirectory(prefix="rag-bench-embedders-") as tmp:
        for model in MODELS:
            print(f"{model} ...", file=sys.stderr)
            results["models"][model] = measure(model, Path(tmp), questions, args.cold_runs)
    args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    for model, r in results["models"].items():
        print(f"{model}: build {r['index_build_s']} s, index {r['index_mb']} MB, warm ask p50 "
              f"{r['warm_ms']['total']['p50']:.1f} ms (embed {r['warm_ms']['embed']['p50']:.1f}), cold ask "
              f"{r['cold_ask']['to_answer_s']} s, peak RSS {r['cold_ask']['maxrss_mb']} MB")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
