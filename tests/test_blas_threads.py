"""RAG_BLAS_THREADS: an answering process caps numpy's (spinning, pthreads) BLAS threads, and only those.

Why it matters is measured in bench/ (`make bench`) and in ``rag.pipeline.limit_blas_threads``; here: what it
touches, in the real libraries this environment loads (numpy's OpenBLAS, FAISS's OpenMP OpenBLAS).
"""

from __future__ import annotations

import faiss  # noqa: F401  (loads FAISS's own BLAS and OpenMP, which must be left alone)
import numpy as np
import pytest
from threadpoolctl import ThreadpoolController

from tests.conftest import make_fake_pipeline


def _blas() -> dict[str, dict]:
    return {lib["filepath"]: lib for lib in ThreadpoolController().info() if lib["user_api"] in ("blas", "openmp")}


def _spinning(libs: dict[str, dict]) -> list[str]:
    return [path for path, lib in libs.items() if lib["user_api"] == "blas" and lib.get("threading_layer") != "openmp"]


@pytest.fixture
def restored_threads():
    """Puts every library's thread count back after the test (the limits are process-wide)."""
    np.ones((64, 64)) @ np.ones((64, 64))  # numpy's BLAS is loaded
    before = _blas()
    if not _spinning(before):
        pytest.skip("numpy here uses no pthreads-based BLAS")
    yield before
    controller = ThreadpoolController()
    for path, lib in before.items():
        controller.select(filepath=path).limit(limits=lib["num_threads"])


def test_an_answering_pipeline_caps_numpys_blas_threads_and_leaves_openmp_alone(tmp_path, restored_threads, embedder):
    ThreadpoolController().select(filepath=_spinning(restored_threads)).limit(limits=2)
    make_fake_pipeline(tmp_path)  # RAG_BLAS_THREADS defaults to 1
    after = _blas()
    for path in _spinning(restored_threads):
        assert after[path]["num_threads"] == 1, after[path]
    for path, lib in restored_threads.items():
        if path not in _spinning(restored_threads):  # FAISS's OpenMP BLAS and libgomp do not spin
            assert after[path]["num_threads"] == lib["num_threads"], lib
    # The real model's answer, its products on one thread: the same question, the same cited answer.
    pipeline = make_fake_pipeline(tmp_path / "real", embedder=embedder)
    answer = pipeline.ask("Which Exeter University academic said Iraqi militia leaders want Western schooling abroad?")
    assert not answer.abstained and answer.citations and "Stansfield" in answer.answer


def test_zero_leaves_the_blas_threads_as_they_were(tmp_path, restored_threads):
    ThreadpoolController().select(filepath=_spinning(restored_threads)).limit(limits=2)
    make_fake_pipeline(tmp_path, blas_threads=0)
    after = _blas()
    assert all(after[path]["num_threads"] == 2 for path in _spinning(restored_threads))


def test_a_negative_thread_count_is_refused(tmp_path):
    from pydantic import ValidationError

    from tests.conftest import make_settings

    with pytest.raises(ValidationError, match="blas_threads"):
        make_settings(tmp_path, blas_threads=-1)
