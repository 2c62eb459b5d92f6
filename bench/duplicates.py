"""A corpus of duplicates (issue 14, item 13): index time, peak memory and a cold `rag ask` on a generated corpus.
A plain script, never part of the tests:

    .venv/bin/python bench/duplicates.py                      # the probe's size: the article ~1,130 times
    .venv/bin/python bench/duplicates.py --copies 100 --files 3
    PYTHONPATH=/path/to/an/older/checkout .venv/bin/python bench/duplicates.py --copies 100   # before/after

The corpus: the bundled article, a file holding it ``--copies`` times (blank line between copies; 1,130 copies
is 19.9 MB, the probe's file) and ``--files`` more files that are each the article again (the same story from
several wires). Each step runs the ``rag`` command in a fresh process under /usr/bin/time (wall seconds, peak
RSS). Results are printed as JSON and written to ``--out`` (default bench/duplicates_results.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTICLE = ROOT / "data" / "corpus" / "2026-03-06-iran-proxies-iraq.txt"
QUESTION = "Who replaced Qassem Soleimani?"


def timed(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run ``python -m rag.cli ARGS``: (result, wall seconds, peak RSS in MB)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as stats:
        result = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", stats.name, sys.executable, "-m", "rag.cli",
                                 *args], env=env, capture_output=True, text=True)
        seconds, kilobytes = Path(stats.name).read_text().split()[-2:]
    return result, float(seconds), int(kilobytes) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=1130, help="copies of the article in one file")
    parser.add_argument("--files", type=int, default=3, help="further files that are each the article")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "duplicates_results.json")
    parser.add_argument("--label", default="", help="a name for this run in the output (e.g. 'before')")
    args = parser.parse_args()
    article = ARTICLE.read_text(encoding="utf-8")
    work = Path(tempfile.mkdtemp(prefix="rag-duplicates-"))
    try:
        corpus = work / "corpus"
        corpus.mkdir()
        shutil.copy(ARTICLE, corpus / ARTICLE.name)
        (corpus / "wire-repeated.txt").write_text("\n\n".join([article] * args.copies), encoding="utf-8")
        for i in range(args.files):
            (corpus / f"wire-copy-{i + 1}.txt").write_text(article, encoding="utf-8")
        env = os.environ | {"RAG_CORPUS_DIR": str(corpus), "RAG_INDEX_DIR": str(work / "index"),
                            "RAG_MAX_FILE_MB": "100", "RAG_MAX_TEXT_CHARS": "50000000"}
        build, build_s, build_mb = timed(["index", "build", "--json"], env)
        if build.returncode != 0:
            raise SystemExit(f"index build failed: {build.stderr.strip()[-500:]}")
        counts = json.loads(build.stdout)["counts"]
        ask, ask_s, ask_mb = timed(["ask", QUESTION, "--json"], env)
        if ask.returncode != 0:
            raise SystemExit(f"ask failed: {ask.stderr.strip()[-500:]}")
        answer = json.loads(ask.stdout)
        report = {
            "label": args.label,
            "copies": args.copies,
            "files": args.files,
            "corpus_mb": round(sum(p.stat().st_size for p in corpus.iterdir()) / 1e6, 2),
            "index_build_s": build_s,
            "index_build_peak_mb": round(build_mb),
            "counts": counts,
            "index_mb": round(sum(p.stat().st_size for p in (work / "index").rglob("*") if p.is_file()) / 1e6, 1),
            "cold_ask_s": ask_s,
            "cold_ask_peak_mb": round(ask_mb),
            "question": QUESTION,
            "abstained": answer["abstained"],
            "short_answer": answer.get("short_answer"),
            "cited_sources": sorted({c["source"] for c in answer["citations"]}),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))
    previous = json.loads(args.out.read_text()) if args.out.exists() else []
    args.out.write_text(json.dumps([*previous, report], indent=2) + "\n")


if __name__ == "__main__":
    main()
