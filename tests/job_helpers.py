"""Stand-in embedders for the indexing-job tests (tests/test_jobs.py): the job process makes its embedder from
``module:Class`` (rag.jobs), so they live in a module of their own."""

from __future__ import annotations

import sys
import time

from tests.fakes import HashingEmbedder


def _in_a_job_process() -> bool:
    main = sys.modules.get("__main__")
    return getattr(getattr(main, "__spec__", None), "name", None) == "rag.jobs"


class StuckEmbedder(HashingEmbedder):
    """The hashing embedder, except that in an indexing job's process (``python -m rag.jobs``) its batch encoding,
    which the job's build calls, never returns: a job stuck in its build. In the test's own process it is the
    hashing embedder, so questions are answered at once."""

    def encode(self, texts, batch_size: int = 64, progress=None):
        if texts and _in_a_job_process():
            time.sleep(3600)
        return super().encode(texts, batch_size, progress)
