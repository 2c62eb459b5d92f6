"""Latency of `rag check` on the bundled article: the learned claim checker against the rules alone, in one warm
process, the two settings alternating claim by claim so that both see the same machine.

    .venv/bin/python bench/claims_check.py [--rounds 5] [--nli LOCATION] [--out bench/claims_check.json]

Questions: the 40 claims of eval/claims.jsonl, each checked ``rounds`` times per setting (after one warm-up pass
of both). With ``--nli`` (an NLI model, as RAG_NLI_MODEL) a third setting: the learned checker with that NLI
model and the shipped claims-nli.json. Writes p50 / p95 / mean in milliseconds per setting and the machine it ran
on.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def stats(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"p50": round(statistics.median(ordered), 2), "p95": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
            "mean": round(statistics.fmean(ordered), 2), "n": len(ordered)}


def main(argv: list[str] | None = None) -> int:
    from rag.embeddings import Embedder
    from rag.eval.claims import load_claims
    from rag.index import open_index
    from rag.pipeline import Pipeline
    from rag.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--nli", metavar="LOCATION", help="also time the checker with this NLI model")
    parser.add_argument("--nli-label", type=int, help="its entailment class (as RAG_NLI_ENTAILMENT_LABEL)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "claims_check.json")
    args = parser.parse_args(argv)

    settings = Settings()
    embedder = Embedder.from_settings(settings)
    index = open_index(settings, embedder)
    pipelines = {"learned": Pipeline(settings, embedder, index),
                 "rules": Pipeline(settings.model_copy(update={"claim_model": "rules"}), embedder, index)}
    if args.nli:
        pipelines["learned + NLI"] = Pipeline(settings.model_copy(update={
            "nli_model": args.nli, "nli_entailment_label": args.nli_label}), embedder, index)
    _, claims = load_claims(ROOT / "eval" / "claims.jsonl")
    for pipeline in pipelines.values():  # warm-up: model files, word pieces, caches
        for claim in claims:
            pipeline.check(claim.claim)
    timings: dict[str, list[float]] = {name: [] for name in pipelines}
    for _ in range(args.rounds):
        for claim in claims:
            for name, pipeline in pipelines.items():
                started = time.perf_counter()
                pipeline.check(claim.claim)
                timings[name].append((time.perf_counter() - started) * 1000)
    result = {"claims": len(claims), "rounds": args.rounds, "ms": {name: stats(v) for name, v in timings.items()},
              "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine()},
              "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result["ms"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
