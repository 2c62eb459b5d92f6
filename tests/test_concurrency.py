"""Questions keep being answered, from a consistent index, while documents are added (real model, index)."""

from __future__ import annotations

import threading
import time

import pytest

from rag.index import open_index
from rag.pipeline import Pipeline

pytestmark = pytest.mark.slow  # answers while a document is indexed, in threads: tens of seconds


def test_questions_are_answered_while_a_document_is_indexed(indexed_settings, embedder, tmp_path):
    pipeline = Pipeline(indexed_settings, embedder, open_index(indexed_settings, embedder))
    # A document big enough that indexing it takes a while on this machine.
    big = tmp_path / "big-report.md"
    big.write_text("\n\n".join(f"Paragraph {i} reports that envoy number {i} met officials in city {i} to discuss "
                               f"the ceasefire terms and the reconstruction budget." for i in range(1500)),
                   encoding="utf-8")
    done = threading.Event()
    failures: list[BaseException] = []

    def add() -> None:
        try:
            pipeline.add_documents([big])
        except BaseException as exc:  # reported below
            failures.append(exc)
        finally:
            done.set()

    writer = threading.Thread(target=add)
    writer.start()
    latencies = []
    while not done.is_set():
        started = time.perf_counter()
        answer = pipeline.ask("Who replaced Qassem Soleimani?")
        latencies.append(time.perf_counter() - started)
        assert "Ghaani" in answer.answer
        for c in answer.citations:  # citations always resolve in the index the answer came from
            assert c.text == pipeline.index.documents[c.source].text[c.start : c.end]
    writer.join()
    assert not failures, failures
    # Questions did not wait for the build: several were answered while it ran (a blocked reader gets one).
    assert len(latencies) >= 3, f"only {len(latencies)} answers during the build"
    assert "big-report.md" in pipeline.index.documents
    assert "Ghaani" in pipeline.ask("Who replaced Qassem Soleimani?").answer
