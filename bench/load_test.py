"""Load test of the served app on loopback: concurrent API clients asking questions through ``/ask``.

    .venv/bin/python bench/load_test.py                           # 50 clients x 10 questions on `rag serve`
    .venv/bin/python bench/load_test.py --clients 20 --questions 3
    .venv/bin/python bench/load_test.py --url http://127.0.0.1:7860   # an app that is already running

Without --url it starts `rag serve` on a free 127.0.0.1 port, over the bundled corpus with its index built into
a temporary folder (the user's index/ is never touched), and stops it afterwards. Every client is its own
gradio_client session; all start asking at once. Each answer is checked: the expected words for an answerable
question, an abstention for the unanswerable one, and the same answer as a sequential warm-up pass gave (the
answers must not depend on what else the server is doing). Prints a summary, writes bench/load_results.json,
and exits 1 on any error or wrong answer. Loopback only; the counts and the time are bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from rag.eval.metrics import percentile
from rag.net import free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "load_results.json"
RAG = Path(sys.executable).parent / "rag"

# (question, words the answer must contain; None: the article does not say, so the answer must abstain).
# Questions the shipped answerer gets right, so that a wrong answer under load means a concurrency bug; answer
# quality itself is measured by `rag eval` and `make train`.
QUESTIONS: list[tuple[str, str | None]] = [
    ("Who replaced Qassem Soleimani?", "Esmail Ghaani"),
    ("How strong is the Popular Mobilization Forces?", "150,000"),
    ("Which US president ordered the killing of Soleimani?", "Donald Trump"),
    ("Who said that everything changed after Nasrallah was killed?", "Mustafa Fahs"),
    ("Which city hosts a US base and was rocked by explosions?", "Erbil"),
    ("How many fighters does the Popular Mobilization Forces have?", "150,000"),
    ("How much money does the Iraqi government give the Popular Mobilization Forces each year?", "$3 billion"),
    ("According to A.J., which city was the key to coordinating the axis of resistance?", "Damascus"),
    ("In which city did A.J. say a Lebanese figure would bring the factions together?", "Beirut"),
    ("What is the capital of France?", None),
]


@dataclass
class Outcome:
    client: int
    question: str
    latency_ms: float
    error: str | None = None  # the request failed (exception from the client)
    wrong: str | None = None  # it succeeded with a wrong answer


def answer_problem(answer: dict, expected: str | None, reference: dict | None) -> str | None:
    """Why an answer is wrong, or None when it is right."""
    if expected is None and not answer.get("abstained"):
        return f"expected an abstention, got {answer.get('answer', '')[:80]!r}"
    if expected is not None and (answer.get("abstained") or expected not in answer.get("answer", "")):
        return f"expected {expected!r} in the answer, got {answer.get('answer', '')[:80]!r}"
    if reference is not None and fingerprint(answer) != fingerprint(reference):
        parts = [name for name, ours, theirs in zip(("answer", "abstained", "citations"), fingerprint(answer),
                                                     fingerprint(reference), strict=True) if ours != theirs]
        return (f"differs from the sequential answer in {', '.join(parts)}: {fingerprint(answer)!r} vs "
                f"{fingerprint(reference)!r}")
    return None


def fingerprint(answer: dict) -> tuple:
    return (answer.get("answer"), answer.get("abstained"),
            tuple((c["source"], c["start"], c["end"], c["verdict"]) for c in answer.get("citations", [])))


def new_client(url: str, auth: tuple[str, str] | None = None):
    from gradio_client import Client

    return Client(url, auth=auth, verbose=False, download_files=False, analytics_enabled=False)


def sequential_answers(url: str, questions=QUESTIONS, auth: tuple[str, str] | None = None,
                       rounds: int = 2) -> tuple[dict[str, dict], list[float]]:
    """Each question asked one at a time, ``rounds`` times: the warm-up, the reference answers for the
    concurrent run, and the latency of a server with nothing else to do (ms, last round only)."""
    client = new_client(url, auth)
    answers, latencies = {}, []
    for _ in range(rounds):
        latencies = []
        for question, _ in questions:
            started = time.perf_counter()
            answers[question] = client.predict(question, api_name="/ask")
            latencies.append((time.perf_counter() - started) * 1000)
    return answers, latencies


def run_load(url: str, clients: int, questions_per_client: int, questions=QUESTIONS,
             references: dict[str, dict] | None = None, auth: tuple[str, str] | None = None,
             timeout_s: float = 600) -> tuple[list[Outcome], float]:
    """``clients`` sessions ask ``questions_per_client`` questions each, all at once. Returns every outcome
    and the wall time in seconds from the first question to the last answer."""
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    ready = threading.Barrier(clients + 1)

    def session(number: int) -> None:
        try:
            client = new_client(url, auth)
        except Exception as exc:  # a client that cannot connect: every one of its questions is an error
            ready.wait()
            with lock:
                outcomes.extend(Outcome(number, "(connect)", 0.0, error=f"{type(exc).__name__}: {exc}")
                                for _ in range(questions_per_client))
            return
        ready.wait()
        for i in range(questions_per_client):
            # Clients start at different questions, so every question is in flight at once.
            question, expected = questions[(number + i) % len(questions)]
            started = time.perf_counter()
            try:
                answer = client.predict(question, api_name="/ask")
            except Exception as exc:  # counted and reported, never fatal to the run
                outcome = Outcome(number, question, (time.perf_counter() - started) * 1000,
                                  error=f"{type(exc).__name__}: {str(exc)[:200]}")
            else:
                outcome = Outcome(number, question, (time.perf_counter() - started) * 1000,
                                  wrong=answer_problem(answer, expected, (references or {}).get(question)))
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=session, args=(n,), name=f"client-{n}", daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    ready.wait(timeout=timeout_s)
    started = time.perf_counter()
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    wall = time.perf_counter() - started
    with lock:
        finished = list(outcomes)
    missing = clients * questions_per_client - len(finished)
    finished.extend(Outcome(-1, "(unfinished)", timeout_s * 1000, error=f"no answer within {timeout_s:.0f} s")
                    for _ in range(missing))
    return finished, wall


def _ms(values: list[float], q: float) -> float | None:
    """The q-th percentile in ms, rounded (None when nothing was answered)."""
    value = percentile(values, q)
    return None if value is None else round(value, 1)


def summarize(outcomes: list[Outcome], wall_s: float) -> dict:
    answered = [o for o in outcomes if o.error is None]
    latencies = [o.latency_ms for o in answered]
    return {
        "requests": len(outcomes),
        "errors": sum(o.error is not None for o in outcomes),
        "wrong_answers": sum(o.wrong is not None for o in outcomes),
        "wall_s": round(wall_s, 3),
        "throughput_per_s": round(len(answered) / wall_s, 2) if wall_s > 0 else None,
        "latency_ms": {name: _ms(latencies, q) for name, q in
                       (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))}
                      | {"mean": round(sum(latencies) / len(latencies), 1) if latencies else None},
    }


# ---------------------------------------------------------------------------------------------- the server


def wait_until_serving(url: str, server: subprocess.Popen, log_file: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if server.poll() is not None:
            raise SystemExit(f"rag serve exited with {server.returncode}:\n{log_file.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"rag serve did not answer on {url} within {timeout_s:.0f} s")
        time.sleep(0.25)


def start_server(folder: Path, port: int) -> subprocess.Popen:
    """`rag serve` with the default host (127.0.0.1), the bundled corpus and an index in ``folder``."""
    env = os.environ | {"RAG_CORPUS_DIR": str(ROOT / "data" / "corpus"), "RAG_INDEX_DIR": str(folder / "index"),
                        "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("RAG_HOST", None)
    log = (folder / "serve.log").open("wb")
    return subprocess.Popen([str(RAG), "serve", "--port", str(port)], env=env, cwd=folder, stdout=log,
                            stderr=subprocess.STDOUT)


def stop_server(server: subprocess.Popen) -> None:
    stop_process(server, timeout=20)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50, help="concurrent API sessions (default 50)")
    parser.add_argument("--questions", type=int, default=10, help="questions per session (default 10)")
    parser.add_argument("--url", help="an app already running (default: start `rag serve` on a free port)")
    parser.add_argument("--auth", metavar="USER:PASSWORD", help="login, for an app started with RAG_AUTH")
    parser.add_argument("--timeout", type=float, default=600, help="seconds before the run is abandoned")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"results file (default {RESULTS})")
    args = parser.parse_args(argv)
    if not (1 <= args.clients <= 500 and 1 <= args.questions <= 100):
        parser.error("keep it bounded: 1-500 clients, 1-100 questions each")
    auth = tuple(args.auth.split(":", 1)) if args.auth else None

    with tempfile.TemporaryDirectory(prefix="rag-load-") as tmp:
        server = None
        url = args.url
        if url is None:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            server = start_server(Path(tmp), port)
            print(f"starting rag serve on {url} ...", file=sys.stderr)
            wait_until_serving(url, server, Path(tmp) / "serve.log")
        try:
            references, unloaded_latencies = sequential_answers(url, auth=auth)
            warm_up_problems = {q: p for q, expected in QUESTIONS
                                if (p := answer_problem(references[q], expected, None))}
            print(f"{args.clients} clients x {args.questions} questions on {url} ...", file=sys.stderr)
            outcomes, wall = run_load(url, args.clients, args.questions, references=references, auth=auth,
                                      timeout_s=args.timeout)
        finally:
            if server is not None:
                stop_server(server)

    summary = summarize(outcomes, wall)
    failures = [asdict(o) for o in outcomes if o.error or o.wrong]
    report = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "url": url if args.url else "rag serve on a free 127.0.0.1 port (started by the load test)",
        "clients": args.clients,
        "questions_per_client": args.questions,
        "max_concurrency": None if args.url else int(os.environ.get("RAG_MAX_CONCURRENCY", 4)),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count()},
        **summary,
        "one_client_latency_ms": {"p50": _ms(unloaded_latencies, 50),
                                  "max": round(max(unloaded_latencies), 1)},
        "warm_up_problems": warm_up_problems,
        "failures": failures[:50],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    latency = summary["latency_ms"]
    print(f"{summary['requests']} requests, {summary['errors']} errors, {summary['wrong_answers']} wrong answers, "
          f"{summary['throughput_per_s']} answers/s over {summary['wall_s']} s; latency ms p50 {latency['p50']}, "
          f"p95 {latency['p95']}, p99 {latency['p99']}, max {latency['max']} (one client alone: p50 "
          f"{report['one_client_latency_ms']['p50']})")
    print(f"written to {args.output}")
    for failure in failures[:5]:
        print(f"  {failure['error'] or failure['wrong']} ({failure['question']})", file=sys.stderr)
    return 1 if summary["errors"] or summary["wrong_answers"] or warm_up_problems else 0


if __name__ == "__main__":
    sys.exit(main())
