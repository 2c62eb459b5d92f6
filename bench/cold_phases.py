"""Where a cold ``rag ask`` spends its time, phase by phase: what ``rag ask`` does, inlined, in a fresh interpreter.

    .venv/bin/python bench/cold_phases.py "QUESTION"    # prints {"phase": milliseconds, ...} as one JSON line

Run by bench/run.py (``cold_phases``) as a child process, so every import is cold; the first phase is the
interpreter itself, so nothing but the standard library's json/sys/time is imported before the clock starts.
"""

import json
import os
import sys
import time

# The project folder first, as for `python -c` run from it: this checkout's rag package, installed or not.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(question: str) -> dict[str, float]:
    marks = [("interpreter", time.perf_counter())]

    def mark(name: str) -> None:
        marks.append((name, time.perf_counter()))

    import faiss  # noqa: F401
    import numpy  # noqa: F401

    mark("import numpy + faiss")
    from rag.settings import Settings

    settings = Settings()
    mark("import pydantic + settings")
    from rag.embeddings import Embedder
    from rag.index import open_index
    from rag.pipeline import Pipeline

    mark("import rag modules")
    embedder = Embedder.from_settings(settings)  # RAG_EMBED_BACKEND picks the engine being timed
    backend = embedder.backend
    mark(f"embedding model ready ({backend})")
    index = open_index(settings, embedder)
    mark("index loaded")
    Pipeline(settings, embedder, index).ask(question)
    mark("first answer")
    return {b[0]: round((b[1] - a[1]) * 1000, 1) for a, b in zip(marks, marks[1:], strict=False)}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
