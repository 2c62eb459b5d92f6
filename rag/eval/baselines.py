"""Baselines scored in the same run as our pipeline, on the same questions and with the same metrics.

- ``TutorialBaseline``: the LangChain RAG tutorial pipeline (RecursiveCharacterTextSplitter 1000/200, the
  same MiniLM model through HuggingFaceEmbeddings, in-memory FAISS, similarity_search top-4); its top chunk is
  the answer and all four chunks are its citations; it never abstains.
- ``Top1SentenceBaseline``: the single indexed sentence with the highest MiniLM cosine to the question (the
  index's own sentence vectors), cited; it never abstains. The naive extractive answerer.

``langchain_embeddings`` and ``langchain_faiss`` are the LangChain building blocks, also used by the
benchmark (bench/run.py). LangChain is imported only inside the functions that need it.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from rag.errors import UsageError
from rag.eval.gold import Span
from rag.eval.metrics import CitedSentence, Prediction

if TYPE_CHECKING:
    from rag.pipeline import Pipeline
    from rag.types import Document

RANKING_DEPTH = 10  # retrieval metrics look at the top 10, whatever k the answerer uses

TUTORIAL = "tutorial"
TOP1 = "top1_sentence"
BASELINES = (TUTORIAL, TOP1)  # the names `evaluate(baseline=...)` and `rag eval --baselines` accept
BASELINE_NAMES = {TUTORIAL: "LangChain tutorial", TOP1: "top-1 sentence"}
BASELINE_DESCRIPTIONS = {
    TUTORIAL: "LangChain RAG tutorial pipeline: RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200), "
    "HuggingFaceEmbeddings with the same all-MiniLM-L6-v2 model, in-memory FAISS, similarity_search top-4; "
    "the top chunk is the answer and all 4 chunks are its citations; it never abstains",
    TOP1: "top-1 sentence: the single sentence of the indexed corpus with the highest all-MiniLM-L6-v2 cosine to "
    "the question, cited; its ranking is the top 10 sentences; it never abstains",
}
# Where each baseline's metrics and results live in a report ("baseline" is the LangChain tutorial, as it was
# when there was only one).
REPORT_KEYS = {TUTORIAL: "baseline", TOP1: "top1_sentence"}
BASELINE_NAME = BASELINE_NAMES[TUTORIAL]
BASELINE_DESCRIPTION = BASELINE_DESCRIPTIONS[TUTORIAL]


@lru_cache(maxsize=2)
def langchain_embeddings(model_path: str):
    """HuggingFaceEmbeddings over a local model folder, never fetched from the network (cached per process:
    loading the model takes a second or two)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from langchain_huggingface import HuggingFaceEmbeddings
    except ImportError:
        raise UsageError(
            "the LangChain baseline needs langchain-huggingface (pip install langchain-huggingface); "
            "or run without the baseline (--no-baseline)"
        ) from None
    # A folder path, not a hub id, and local_files_only: the model is never fetched from the network.
    return HuggingFaceEmbeddings(model_name=model_path, model_kwargs={"device": "cpu", "local_files_only": True})


def langchain_faiss(texts: Sequence[str], model_path: str | os.PathLike, metadatas: Sequence[dict] | None = None):
    """An in-memory LangChain FAISS store of ``texts`` (``FAISS.from_texts``, as the LangChain docs write it),
    embedded by ``langchain_embeddings``. Never saved: ``save_local`` would pickle the docstore."""
    with warnings.catch_warnings():
        # The tutorial's FAISS store lives in langchain-community, which warns that it is being sunset;
        # the baseline is meant to be exactly that tutorial, so the warning is expected noise here.
        warnings.filterwarnings("ignore", message=".*langchain-community.*", category=DeprecationWarning)
        from langchain_community.vectorstores import FAISS

    if not texts:
        raise UsageError("the baseline has no documents to index")
    return FAISS.from_texts(list(texts), langchain_embeddings(str(model_path)),
                            metadatas=list(metadatas) if metadatas is not None else None)


class TutorialBaseline:
    """The LangChain RAG tutorial pipeline over the same documents, answering by its top chunk."""

    name = TUTORIAL
    chunk_size, chunk_overlap, top_k = 1000, 200, 4

    def __init__(self, store, spans: dict[int, Span]):
        self.store, self.spans = store, spans

    @classmethod
    def build(cls, documents: dict[str, Document], model_path: str | os.PathLike) -> TutorialBaseline:
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        splitter = RecursiveCharacterTextSplitter(
            chunk_size=cls.chunk_size, chunk_overlap=cls.chunk_overlap, add_start_index=True
        )
        texts, spans = [], {}
        for doc_id, document in documents.items():
            for chunk in splitter.create_documents([document.text], metadatas=[{"source": doc_id}]):
                start = chunk.metadata["start_index"]
                if start < 0 or document.text[start : start + len(chunk.page_content)] != chunk.page_content:
                    start = document.text.find(chunk.page_content)  # start_index is a find(); re-find if off
                spans[len(texts)] = (doc_id, start, start + len(chunk.page_content))
                texts.append(chunk.page_content)
        store = langchain_faiss(texts, model_path, [{"chunk": i} for i in range(len(texts))])
        return cls(store, spans)

    def _spans(self, vector: list[float], k: int) -> list[tuple[Span, str]]:
        return [(self.spans[d.metadata["chunk"]], d.page_content)
                for d in self.store.similarity_search_by_vector(vector, k=k)]

    def predict(self, question: str) -> Prediction:
        # similarity_search(question, k=4) is embed_query + similarity_search_by_vector; split so the top-10
        # ranking for the retrieval metrics reuses the query vector instead of embedding the question twice.
        started = time.perf_counter()
        vector = self.store.embeddings.embed_query(question)
        top = self._spans(vector, self.top_k)
        latency_ms = (time.perf_counter() - started) * 1000
        ranking = [span for span, _ in self._spans(vector, RANKING_DEPTH)]
        texts = [text for _, text in top]
        # The whole top chunk is the answer, treated as one sentence citing all four chunks.
        return Prediction(
            answer=texts[0] if texts else "",
            short_answer=None,
            abstained=False,
            sentences=[CitedSentence(texts[0], tuple(texts))] if texts else [],
            citations=[span for span, _ in top],
            citation_texts=texts,
            latency_ms=latency_ms,
            ranking=ranking,
        )


class Top1SentenceBaseline:
    """The sentence of the index most similar to the question (cosine of the index's MiniLM sentence vectors,
    which are unit length), as the answer and its one citation. Never abstains."""

    name = TOP1

    def __init__(self, vectors: Any, sentences: Sequence[Any], encode_query):
        self.vectors, self.sentences, self.encode_query = vectors, sentences, encode_query

    @classmethod
    def from_pipeline(cls, pipeline: Pipeline) -> Top1SentenceBaseline:
        index = pipeline.index
        return cls(index.sentence_vectors, index.sentences, pipeline.embedder.encode_query)

    def ranked(self, question: str, k: int = RANKING_DEPTH) -> list[tuple[int, float]]:
        """(sentence position, cosine) of the ``k`` sentences most similar to the question, best first."""
        import numpy as np

        scores = np.asarray(self.vectors @ np.asarray(self.encode_query(question), dtype=np.float32)).ravel()
        k = min(k, scores.size)
        if k == 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((top, -scores[top]))]  # by score, then position (ties: the earlier sentence)
        return [(int(i), float(scores[i])) for i in top]

    def predict(self, question: str) -> Prediction:
        _forget_query_vectors()  # our pipeline embedded this question first: time the embedding again
        started = time.perf_counter()
        ranked = self.ranked(question)
        latency_ms = (time.perf_counter() - started) * 1000
        if not ranked:
            return Prediction("", None, False, [], [], [], latency_ms, [])
        best = self.sentences[ranked[0][0]]
        spans = [(s.source, s.start, s.end) for s in (self.sentences[i] for i, _ in ranked)]
        return Prediction(
            answer=best.text,
            short_answer=None,
            abstained=False,
            sentences=[CitedSentence(best.text, (best.text,))],
            citations=[spans[0]],
            citation_texts=[best.text],
            latency_ms=latency_ms,
            ranking=spans,
        )


def _forget_query_vectors() -> None:
    """Empty the embedder's memo of query vectors (rag.embeddings keeps one per process), if it has one."""
    from rag import embeddings

    cached = getattr(embeddings, "_cached_query", None)
    if cached is not None and hasattr(cached, "cache_clear"):
        cached.cache_clear()


def build_baselines(pipeline: Pipeline, names: Sequence[str]) -> dict[str, Any]:
    """The named baselines (see ``BASELINES``) over the pipeline's indexed documents, in the order given."""
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise UsageError(f"unknown baseline {', '.join(unknown)}; choose from {', '.join(BASELINES)}")
    built: dict[str, Any] = {}
    for name in dict.fromkeys(names):
        if name == TUTORIAL:
            built[name] = TutorialBaseline.build(pipeline.index.documents, pipeline.embedder.info.path)
        else:
            built[name] = Top1SentenceBaseline.from_pipeline(pipeline)
    return built
