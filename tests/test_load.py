"""Concurrent use of the served app: a bounded load test through the ``/ask`` API on loopback, and the
thread-safety it relies on. The full 50 x 10 run is ``bench/load_test.py`` (its numbers are in the README).

Marked slow as a label only: ``make test`` runs it. It asserts no errors and right answers, never latency.
"""

from __future__ import annotations

import sys
import threading

import pytest

from bench.load_test import QUESTIONS, fingerprint, run_load, summarize
from rag.segment import split_sentences
from ui.app import build_app, start

CLIENTS, QUESTIONS_PER_CLIENT, MAX_CONCURRENCY = 20, 3, 3


@pytest.mark.slow
def test_concurrent_api_clients_all_get_right_answers_within_the_concurrency_limit(pipeline, monkeypatch):
    references = {question: pipeline.ask(question).to_json() for question, _ in QUESTIONS}
    answering, peak = 0, 0
    counter = threading.Lock()
    real_ask = pipeline.ask

    def counted_ask(*args, **kwargs):
        nonlocal answering, peak
        with counter:
            answering += 1
            peak = max(peak, answering)
        try:
            return real_ask(*args, **kwargs)
        finally:
            with counter:
                answering -= 1

    # The API handler looks pipeline.ask up on every call, so the counter sees every request it answers.
    monkeypatch.setattr(pipeline, "ask", counted_ask)
    settings = pipeline.settings.model_copy(update={"host": "127.0.0.1", "port": 0, "auth": None,
                                                    "max_concurrency": MAX_CONCURRENCY})
    monkeypatch.setattr(pipeline, "settings", settings)
    app = build_app(pipeline)
    _, url, _ = start(app, settings, block=False, quiet=True)
    try:
        outcomes, wall = run_load(url, CLIENTS, QUESTIONS_PER_CLIENT, references=references, timeout_s=120)
    finally:
        app.close()
    summary = summarize(outcomes, wall)
    problems = [(o.question, o.error or o.wrong) for o in outcomes if o.error or o.wrong]
    assert problems == []
    assert summary["requests"] == CLIENTS * QUESTIONS_PER_CLIENT
    assert 1 <= peak <= MAX_CONCURRENCY, f"{peak} questions were answered at once"


def test_sentence_splitting_gives_the_same_sentences_in_many_threads():
    """Answers are split into sentences (and documents segmented) in the app's worker threads at once; a shared
    pysbd segmenter once mixed up their texts, and concurrent answers came back with unchecked citations."""
    texts = [f"Convoy {i} reached Mosul on Monday. Officials said {i} trucks were unloaded! Was depot {i} full?"
             for i in range(8)]
    expected = {text: split_sentences(text) for text in texts}
    assert all(len(sentences) == 3 for sentences in expected.values())
    mismatches: list[tuple[str, list[str]]] = []

    def split_repeatedly(text: str) -> None:
        for _ in range(200):
            if (sentences := split_sentences(text)) != expected[text]:
                mismatches.append((text, sentences))

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, so a shared segmenter would be caught mid-split
    try:
        threads = [threading.Thread(target=split_repeatedly, args=(text,)) for text in texts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        sys.setswitchinterval(previous)
    assert mismatches == []


def test_fingerprint_covers_what_a_concurrent_answer_must_keep():
    answer = {"answer": "A [1].", "abstained": False,
              "citations": [{"source": "a.txt", "start": 0, "end": 5, "verdict": "supported", "text": "x"}]}
    unchecked = answer | {"citations": [answer["citations"][0] | {"verdict": "unchecked"}]}
    assert fingerprint(answer) != fingerprint(unchecked)
