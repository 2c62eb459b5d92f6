"""Load test of the JSON API (``POST /api/v1/ask``) on loopback, with 1 or more `rag serve` worker processes.

    .venv/bin/python bench/api_load.py --workers 2                 # 50 clients x 10 questions
    .venv/bin/python bench/api_load.py --url http://127.0.0.1:7860 # a server already running

Without --url it starts `rag serve --workers N` on a free 127.0.0.1 port over the bundled corpus, its index built
into a temporary folder. The questions are bench/load_test.py's; every answer must equal the one-at-a-time
answer to the same question (the answer text and citations). Prints one JSON summary (answers/s, latency p50 /
p95 / p99, errors, mismatches) and exits 1 on any error or mismatch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.load_test import QUESTIONS  # noqa: E402
from rag.eval.metrics import percentile  # noqa: E402
from rag.net import free_port, stop_process  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RAG = Path(sys.executable).parent / "rag"


def post(url: str, question: str, timeout: float = 60) -> dict:
    request = urllib.request.Request(f"{url}/api/v1/ask", data=json.dumps({"question": question}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def fingerprint(answer: dict) -> tuple:
    return answer["answer"], tuple((c["source"], c["start"], c["end"]) for c in answer["citations"])


def run(url: str, clients: int, per_client: int) -> dict:
    questions = [q for q, _ in QUESTIONS]
    reference = {q: fingerprint(post(url, q)) for q in questions}  # one at a time (also warms every worker up)
    for q in questions:
        post(url, q)
    latencies: list[float] = []
    errors: list[str] = []
    mismatches: list[str] = []
    lock = threading.Lock()
    go = threading.Event()

    def client(number: int) -> None:
        go.wait()
        for i in range(per_client):
            q = questions[(number + i) % len(questions)]
            started = time.perf_counter()
            try:
                got = fingerprint(post(url, q))
            except (OSError, urllib.error.URLError, ValueError) as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            with lock:
                latencies.append(time.perf_counter() - started)
                if got != reference[q]:
                    mismatches.append(q)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    started = time.perf_counter()
    go.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {
        "clients": clients, "questions_per_client": per_client, "answers": len(latencies), "errors": len(errors),
        "first_errors": errors[:3], "mismatches": len(mismatches), "wall_s": round(wall, 2),
        "answers_per_s": round(len(latencies) / wall, 1),
        "p50_s": round(percentile(latencies, 50), 3), "p95_s": round(percentile(latencies, 95), 3),
        "p99_s": round(percentile(latencies, 99), 3), "cores": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--url")
    args = parser.parse_args(argv)
    server = None
    folder = Path(tempfile.mkdtemp(prefix="rag-api-load-"))
    try:
        url = args.url
        if url is None:
            shutil.copytree(ROOT / "data" / "corpus", folder / "corpus")
            port = free_port()
            env = {**os.environ, "RAG_CORPUS_DIR": str(folder / "corpus"), "RAG_INDEX_DIR": str(folder / "index"),
                   "RAG_MAX_CONCURRENCY": os.environ.get("RAG_MAX_CONCURRENCY", "4"),
                   "RAG_MAX_QUEUE": os.environ.get("RAG_MAX_QUEUE", "100")}
            subprocess.run([str(RAG), "index", "build"], env=env, check=True, capture_output=True)
            log = (folder / "serve.log").open("wb")
            server = subprocess.Popen([str(RAG), "serve", "--port", str(port), "--workers", str(args.workers)],
                                      env=env, stdout=log, stderr=subprocess.STDOUT)
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 180
            while True:
                if server.poll() is not None:
                    print((folder / "serve.log").read_text(errors="replace"), file=sys.stderr)
                    return 1
                try:
                    urllib.request.urlopen(f"{url}/api/openapi.json", timeout=5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        return 1
                    time.sleep(0.5)
        summary = run(url, args.clients, args.questions) | {"workers": args.workers}
        print(json.dumps(summary))
        return 0 if summary["errors"] == 0 and summary["mismatches"] == 0 else 1
    finally:
        if server is not None:
            stop_process(server)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
