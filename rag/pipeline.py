"""The pipeline: loads the model and index once, then answers, checks and searches.

This is the library's front door (the CLI and the app are thin layers over it)::

    from rag.pipeline import Pipeline
    pipeline = Pipeline.load()
    answer = pipeline.ask("Who replaced Qassem Soleimani?")
    print(answer.answer, [c.text for c in answer.citations])
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rag import corpus
from rag.answer.base import (
    NO_ANSWER,
    NOTHING_ASKED,
    AnswerBackend,
    AnswerNote,
    AnswerRequest,
    Reading,
    Rewritten,
)
from rag.answer.citations import assemble, split_answer
from rag.answer.followup import NameKinds
from rag.answer.question import analyze, names_nothing, short_answer
from rag.answer.registry import create_backend
from rag.claims import ClaimFeaturizer, LearnedJudge, check_claim
from rag.documents import SUPPORTED_SUFFIXES, DocumentLimits
from rag.embeddings import Embedder
from rag.errors import ModelError, UsageError
from rag.index import Index
from rag.inputs import clean_text_input
from rag.retrieval import HybridRetriever, retriever_for
from rag.settings import Settings
from rag.stores import build_index, open_index
from rag.text import normalize
from rag.types import Answer, CheckResult, Document, Hit, Sentence
from rag.verify import Verdict, best_of, judge

log = logging.getLogger("rag")


@dataclass(frozen=True)
class _Snapshot:
    """Everything that changes together when documents are added. A question reads one snapshot from start
    to end, so a rebuild swapping in a new one never mixes old search results with new sentence ids."""

    index: Index
    retriever: HybridRetriever
    backends: dict[str, AnswerBackend] = field(default_factory=dict)
    # Which names the corpus writes as people's (follow-ups: what "he" and "it" point back to); it reads the
    # documents only when a follow-up asks about a name.
    kinds: NameKinds | None = None


def limit_blas_threads(threads: int) -> None:
    """Cap the threads of numpy's BLAS (OpenBLAS or another pthreads-based library; not OpenMP-based ones such as
    FAISS's, which do not spin) at ``threads``, process-wide; 0 leaves them alone.

    Why: a question's matrix products are small (about 12 word pieces against 1,000 candidate pieces, 40 word
    vectors against 300), so a second BLAS thread gains nothing, and OpenBLAS's idle threads busy-wait after each
    call, taking the core that onnxruntime then needs to encode the next question. Measured with `make bench`'s
    300 questions on the 2-core machine while other work kept it busy (load average 3.4): warm ask p50 35-40 ms
    with numpy's default two threads, 13-15 ms with one (embed stage 13 -> 7 ms, answer stage 21 -> 6.5 ms); on
    the idle machine 12.9 and 12.4 ms. `rag index build` creates no pipeline and is left alone (building the
    bundled article's index alternately with one and two BLAS threads took 1.74 / 1.71 s idle and 3.15 / 2.98 s
    with a core busy, medians of 4); a build inside a serving process (documents added in the app) runs capped,
    at that cost of a few per cent."""
    if threads <= 0:
        return
    from threadpoolctl import ThreadpoolController

    controller = ThreadpoolController()
    spinning = [lib["filepath"] for lib in controller.info()
                if lib["user_api"] == "blas" and lib.get("threading_layer") != "openmp"
                and lib["num_threads"] != threads]
    if spinning:
        controller.select(filepath=spinning).limit(limits=threads)


class Pipeline:
    def __init__(self, settings: Settings, embedder: Embedder, index: Index):
        self.settings, self.embedder = settings, embedder
        limit_blas_threads(settings.blas_threads)
        self._registered: dict[str, AnswerBackend] = {}  # use_backend(): kept across rebuilds
        self._backend_lock = threading.Lock()  # creating a backend
        self._write_lock = threading.Lock()  # one corpus change / rebuild at a time; readers never wait on it
        self._snapshot = self._snapshot_of(index)
        self._claim_featurizer: ClaimFeaturizer | None = None
        self._nli_unused_warned = False
        if hasattr(index, "changed"):  # a shared store (PostgreSQL): follow what other processes commit
            from rag.pgstore import follow

            follow(self)

    def _snapshot_of(self, index: Index) -> _Snapshot:
        retriever = retriever_for(index, self.embedder, rrf_k=self.settings.rrf_k)
        return _Snapshot(index, retriever, dict(self._registered),
                         NameKinds(d.text for d in index.documents.values()))

    @property
    def index(self) -> Index:
        return self._snapshot.index

    @property
    def retriever(self) -> HybridRetriever:
        return self._snapshot.retriever

    @classmethod
    def load(cls, settings: Settings | None = None, **overrides: Any) -> Pipeline:
        settings = settings or Settings(**overrides)
        embedder = Embedder.from_settings(settings)  # the caller's settings, never the environment's
        return cls(settings, embedder, open_index(settings, embedder))

    # ------------------------------------------------------------ backends

    def backend(self, spec: str | None = None, snapshot: _Snapshot | None = None) -> AnswerBackend:
        spec = (spec or self.settings.backend).strip()
        snap = snapshot or self._snapshot
        found = snap.backends.get(spec)
        if found is None:
            with self._backend_lock:
                found = snap.backends.get(spec)
                if found is None:
                    found = snap.backends[spec] = create_backend(spec, self.settings, snap.index, self.embedder)
        return found

    def use_backend(self, backend: AnswerBackend, spec: str | None = None) -> None:
        """Register a ready-made backend (e.g. any LangChain chat model wrapped in LangChainBackend)."""
        with self._backend_lock:
            self._registered[spec or backend.name] = backend
            self._snapshot.backends[spec or backend.name] = backend

    def forget_backend(self, spec: str) -> None:
        """Drop a cached backend so the next use builds it again (e.g. after its endpoint settings changed)."""
        with self._backend_lock:
            self._registered.pop(spec, None)
            self._snapshot.backends.pop(spec, None)

    # ------------------------------------------------------------ search

    def clean_query(self, query: str) -> str:
        """The query as it is searched for (control characters replaced, invisible ones removed: rag.inputs), as
        `rag search --json` and the API echo it; a UsageError when nothing is left or it is over the limit."""
        return clean_text_input(query, self.settings.max_question_chars, "query")

    def search(self, query: str, k: int | None = None) -> list[Hit]:
        query = self.clean_query(query)
        if names_nothing(query):  # "?!", "the": any ranking would be noise presented as results
            raise UsageError("query names nothing to look for: give a name, a word or a figure")
        return self.retriever.search(query, k or self.settings.top_k)

    def as_langchain_retriever(self, k: int | None = None):
        from rag.langchain_retriever import RagRetriever

        return RagRetriever(pipeline=self, k=k)  # follows this pipeline's current index

    def passages_for(self, hits: list[Hit], index: Index | None = None,
                     extra: list[int] | tuple[int, ...] = ()) -> list[Sentence]:
        """Sentences of the retrieved chunks plus neighbours, in document order.

        Two sentences before each chunk (pronouns and quote attributions usually refer back) and one after,
        never crossing into another document; ``extra`` sentence ids come with the sentence before them.
        """
        index, wanted = index or self.index, set()
        sentences = index.sentences

        def add_neighbour(neighbour: int, source: str) -> None:
            if 0 <= neighbour < len(sentences) and sentences[neighbour].source == source:
                wanted.add(neighbour)

        for hit in hits:
            ids = hit.chunk.sentence_ids
            wanted.update(ids)
            for neighbour in (ids[0] - 2, ids[0] - 1, ids[-1] + 1):
                add_neighbour(neighbour, hit.chunk.source)
        for sid in extra:
            wanted.add(sid)
            add_neighbour(sid - 1, sentences[sid].source)
        return [sentences[i] for i in sorted(wanted)]

    def nearest_sentences(self, question: str, n: int, index: Index | None = None) -> list[int]:
        """Ids of the ``n`` sentences nearest the question in embedding space: a paraphrase that shares no
        word with its answer still lands near it, even when the answer's chunk ranks low.

        A flat scan of the sentence vectors (~1 ms per 100k sentences of 384 floats on one core)."""
        index = index or self.index
        vectors = index.sentence_vectors
        if n <= 0 or not len(vectors):
            return []
        scores = vectors @ self.embedder.encode_query(question)
        n = min(n, len(scores))
        top = np.argpartition(-scores, n - 1)[:n]
        return [int(i) for i in top[np.argsort(-scores[top], kind="stable")]]

    def _bridge_hits(self, question: str, hits: list[Hit], retriever: HybridRetriever, n: int = 3) -> list[Hit]:
        """Second-hop retrieval for two-step questions: BM25 on the question plus the names that the top
        passages add (the "commander whose killing Trump ordered" is Soleimani: look up Soleimani too)."""
        from rag.answer.question import entity_phrases

        asked = normalize(question).lower()
        names = [e for hit in hits[:3] for e in entity_phrases(hit.chunk.text) if e.lower() not in asked]
        if not names:
            return []
        seen = {h.chunk.id for h in hits}
        query = question + " " + " ".join(dict.fromkeys(names))
        return [h for h in retriever.lexical_search(query, n + len(seen)) if h.chunk.id not in seen][:n]

    # ------------------------------------------------------------ answering

    def focused_passages(self, question: str, hits: list[Hit], n: int, index: Index | None = None) -> list[Sentence]:
        """The ``n`` sentences of the retrieved chunks nearest the question (cosine of the stored sentence
        vectors, plus a small bonus for the chunk's rank), each with the sentence before it in its paragraph as
        context (pronouns and quote attributions point back), in document order: a short prompt for an LLM,
        in an order that does not depend on the ranking (a server's prompt cache reuses common prefixes)."""
        index = index or self.index
        sentences, vectors = index.sentences, index.sentence_vectors
        query = self.embedder.encode_query(question)
        best_rank: dict[int, int] = {}
        for hit in hits:
            for sid in hit.chunk.sentence_ids:
                best_rank[sid] = min(best_rank.get(sid, hit.rank), hit.rank)
        scored = sorted(best_rank, key=lambda sid: (-(float(vectors[sid] @ query) + 0.1 / best_rank[sid]), sid))
        wanted: set[int] = set()
        for sid in scored[:n]:
            wanted.add(sid)
            before = sid - 1
            if before >= 0 and sentences[before].source == sentences[sid].source and (
                sentences[before].paragraph == sentences[sid].paragraph
            ):
                wanted.add(before)
        return [sentences[i] for i in sorted(wanted)]

    def prepare(
        self, question: str, backend: AnswerBackend, k: int | None = None, snapshot: _Snapshot | None = None
    ) -> AnswerRequest:
        """Retrieve and number the passages a backend answers from (hits are cut to the top-k shown)."""
        snap = snapshot or self._snapshot
        k = k or self.settings.top_k
        hits = snap.retriever.search(question, max(k, backend.passage_depth))
        if backend.focused_sentences > 0:
            found = hits + self._bridge_hits(question, hits, snap.retriever)
            passages = self.focused_passages(question, found, backend.focused_sentences, snap.index)
            return AnswerRequest(question, passages, hits[:k])
        nearest = self.nearest_sentences(question, backend.nearest_sentences, snap.index)
        passages = self.passages_for(hits + self._bridge_hits(question, hits, snap.retriever), snap.index, nearest)
        return AnswerRequest(question, passages, hits[:k])

    def standalone_question(self, question: str, history: list | None, backend: str | None = None) -> str | None:
        """A follow-up rewritten into a standalone question from ``history`` (earlier turns: dicts with
        ``question`` and ``answer``, or (question, answer) pairs), or None when it needs no rewriting
        (see ``rag.answer.followup``)."""
        from rag.answer.followup import condense, turns_of

        turns = turns_of(history, self.settings.max_question_chars)
        if not turns:
            return None
        question = clean_text_input(question, self.settings.max_question_chars)
        snap = self._snapshot
        rewritten = condense(question, turns, self.backend(backend, snap), snap.kinds)
        if rewritten is None:
            return None
        try:
            rewritten = clean_text_input(rewritten, self.settings.max_question_chars)
        except UsageError:
            # The limit is on what the user typed: a rewrite that the names carried over push past it (a 1,990-
            # character follow-up became 2,004) is dropped, and the question is answered as it was asked.
            return None
        return rewritten if rewritten != question else None

    def ask(self, question: str, backend: str | None = None, k: int | None = None,
            history: list | None = None) -> Answer:
        result = None
        for piece in self.ask_stream(question, backend=backend, k=k, history=history):
            if isinstance(piece, Answer):
                result = piece
        assert result is not None
        return result

    def ask_stream(self, question: str, backend: str | None = None, k: int | None = None,
                   history: list | None = None, progress: bool = False,
                   ) -> Iterator[str | Answer | Reading | Rewritten]:
        """Yield answer text pieces as the backend produces them, then the verified ``Answer``.

        ``history``: the earlier turns of a conversation; a follow-up is rewritten into a standalone question,
        which is what is retrieved and answered (``Answer.standalone_question``). ``progress``: also yield a
        ``Rewritten`` event with that question, and ``Reading`` events while an LLM reads its prompt."""
        started = time.perf_counter()
        question = clean_text_input(question, self.settings.max_question_chars)
        snap = self._snapshot
        chosen = self.backend(backend, snap)
        timings: dict[str, float] = {}
        standalone = None
        if history:
            t = time.perf_counter()
            standalone = self.standalone_question(question, history, backend)
            timings["rewrite"] = (time.perf_counter() - t) * 1000
            if standalone and progress:
                yield Rewritten(standalone)
        asked = standalone or question
        if names_nothing(asked):
            # "Who?", "the": nothing to retrieve, and any answer would be a guess the confidence model cannot
            # see through (it scores a sentence against a question it has no words of). Checked after a
            # follow-up is rewritten, so "And when?" answers when the conversation gives it content.
            yield NOTHING_ASKED
            answer = Answer(question, NOTHING_ASKED, True, [], chosen.name, 0.0, confidence=0.0,
                            standalone_question=standalone, timings_ms=timings)
            answer.latency_ms = (time.perf_counter() - started) * 1000
            yield answer
            return
        t = time.perf_counter()
        self.embedder.encode_query(asked)
        timings["embed"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        request = self.prepare(asked, chosen, k, snap)
        timings["retrieve"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        pieces: list[str] = []
        note: AnswerNote | None = None
        for piece in chosen.execute(request):
            if isinstance(piece, AnswerNote):
                note = piece
                continue
            if isinstance(piece, Reading):
                if progress:
                    yield piece
                continue
            if not pieces and piece:
                timings["first_token"] = (time.perf_counter() - t) * 1000
            pieces.append(piece)
            yield piece
        timings["answer"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        answer = self.assemble(asked, "".join(pieces), request.passages, chosen.name, snap.index, note)
        if standalone and answer.abstained and chosen.name == "extractive" and not names_nothing(question):
            # The extractive answerer weighs the names a question holds, and a rewritten follow-up names the
            # entity ("What did Qais al-Khazali say ...?") that the answering sentence may only call "he". Over
            # the same passages (retrieved for the standalone question), the user's own wording gets a turn.
            again = [p for p in chosen.execute(AnswerRequest(question, request.passages, request.hits))]
            retry_note = next((p for p in again if isinstance(p, AnswerNote)), None)
            retried = self.assemble(question, "".join(p for p in again if isinstance(p, str)), request.passages,
                                    chosen.name, snap.index, retry_note)
            if not retried.abstained:
                answer = retried
        timings["verify"] = (time.perf_counter() - t) * 1000
        answer.question = question
        answer.standalone_question = standalone
        answer.hits = request.hits
        answer.timings_ms = timings
        answer.latency_ms = (time.perf_counter() - started) * 1000
        yield answer

    def assemble(
        self, question: str, raw: str, passages: list[Sentence], backend_name: str, index: Index | None = None,
        note: AnswerNote | None = None,
    ) -> Answer:
        """Parse markers, map them to spans, drop unknown ids, renumber, verify every sentence and attribute
        LLM sentences to the passages that support them (see ``rag.answer.citations``); the short answer and
        confidence come from the backend's note when it has one."""
        if note is not None and note.withdrawn:
            # The text was already streamed; the final answer says it was taken back, and why.
            return Answer(question, NO_ANSWER, True, [], backend_name, 0.0, warnings=[note.withdrawn],
                          confidence=note.confidence, prompt_tokens=note.prompt_tokens)
        index = index or self.index
        answer = assemble(question, raw, passages, backend_name, index, self.embedder.encode_query,
                          unsupported=self.settings.llm_unsupported,
                          sentence_judge=self.sentence_judge(index) if backend_name != "extractive" else None)
        if note is not None:
            answer.confidence = note.confidence
            answer.prompt_tokens = note.prompt_tokens
        if not answer.abstained:
            answer.short_answer = (note.short_answer if note is not None and note.short_answer
                                   else self.short_answer(question, [c.text for c in answer.citations]))
        return answer

    def similarity(self, a: str, b: str) -> float:
        return float(self.embedder.encode_query(a) @ self.embedder.encode_query(b))

    def judge(self, claim: str, evidence: str, document: str | None = None) -> Verdict:
        """The rules' verdict on ``evidence`` for ``claim`` (``document``: the text the evidence comes from)."""
        return judge(claim, evidence, self.similarity, document)

    def short_answer(self, question: str, texts: list[str]) -> str | None:
        """The name, date, figure, cause or quote inside the cited sentences that answers the question."""
        return short_answer(analyze(question), texts)

    # ------------------------------------------------------------ checking claims

    def claim_candidates(self, claim: str, k: int | None = None, index: Index | None = None) -> set[int]:
        """Ids of the sentences a claim is checked against: those of the chunks retrieved for it (at least
        8), with their neighbours."""
        snap = self._snapshot
        hits = snap.retriever.search(claim, max(k or self.settings.top_k, 8))
        return {s.id for s in self.passages_for(hits, index or snap.index)}

    def claim_model(self):
        """The learned claim model (``rag.claims_model``), or None when RAG_CLAIM_MODEL is 'rules'. With
        RAG_NLI_MODEL set and no RAG_CLAIM_MODEL, the shipped model fitted with an NLI model."""
        choice = self.settings.claim_model
        if choice is not None and choice.strip().lower() == "rules":
            return None
        from rag.answer.scorer import shipped_for_embedder, warn_if_fitted_on_another_embedder
        from rag.claims_model import DEFAULT_MODEL, NLI_MODEL, load_model

        if choice:
            model, which = load_model(choice), choice
        else:  # the shipped model fitted on this embedding model's features, if there is one
            which = shipped_for_embedder("rag", NLI_MODEL if self.settings.nli_model else DEFAULT_MODEL,
                                         self.embedder.info.sha256)
            model = load_model(None, which)
        warn_if_fitted_on_another_embedder(
            model.meta, self.embedder, f"claim model {which}",
            "fit one with `RAG_EMBED_MODEL=<it> python -m rag.claims_training --out FILE` and set "
            "RAG_CLAIM_MODEL=FILE")
        return model

    def entailment_model(self, claim_model):
        """The NLI model (``rag.nli``) a claim model fitted with one needs, checked to be the same model; None for
        a claim model without an entailment input. ModelError when they do not fit together."""
        wanted = claim_model.nli_sha256 if claim_model is not None else None
        location = self.settings.nli_model
        if wanted is None:
            if location and claim_model is not None and not self._nli_unused_warned:
                self._nli_unused_warned = True
                log.warning("RAG_NLI_MODEL is set, but RAG_CLAIM_MODEL %s was fitted without an NLI model: the NLI "
                            "model is not used", self.settings.claim_model)
            return None
        if not location:
            raise ModelError("this claim model was fitted with an NLI model: set RAG_NLI_MODEL to it, or choose "
                             "another RAG_CLAIM_MODEL")
        from rag.nli import load_entailment_model

        nli = load_entailment_model(location, self.settings.nli_entailment_label)
        if nli.sha256 != wanted:
            raise ModelError(f"RAG_NLI_MODEL {location} (sha256 {nli.sha256[:12]}…) is not the NLI model the claim "
                             f"model was fitted with ({wanted[:12]}…): fit one for it with `python -m "
                             f"rag.claims_training --nli {location} --out FILE` and set RAG_CLAIM_MODEL=FILE")
        return nli

    def claim_featurizer(self, index: Index) -> ClaimFeaturizer:
        """Per-index state of the claim checker (term frequencies, word pieces), made once per index."""
        cached = self._claim_featurizer
        if cached is None or cached.index is not index:
            cached = self._claim_featurizer = ClaimFeaturizer(index, self.embedder)
        return cached

    def sentence_judge(self, index: Index) -> LearnedJudge | None:
        """The learned claim checker as the verifier of an LLM's answer sentences with RAG_LLM_VERIFIER=learned;
        None (the rules judge them) by default, with RAG_CLAIM_MODEL=rules, or with a claim model fitted without an
        operating point for them. An extractive answer quotes its sentences: the rules' exact-copy check says all
        there is to say, at no cost to the warm ask."""
        if self.settings.llm_verifier != "learned":
            return None
        model = self.claim_model()
        if model is None or model.flag_below is None:
            return None
        return LearnedJudge(model, self.claim_featurizer(index), self.judge, self.entailment_model(model))

    def check(self, claim: str, k: int | None = None) -> CheckResult:
        """Find the passages that best support a claim or quote, with a verdict and its reason."""
        claim = clean_text_input(claim, self.settings.max_question_chars, "claim")
        if names_nothing(claim) or len(claim.split()) < 2:
            # "x", "Iran", "He said.": a word found in a passage was called SUPPORTED, verbatim.
            raise UsageError("claim states nothing to check: give a sentence or a quote, e.g. "
                             "'Ghaani lacks Soleimani's stature.'")
        index = self._snapshot.index
        candidates = self.claim_candidates(claim, k, index)
        model = self.claim_model()
        featurizer = self.claim_featurizer(index) if model is not None else None
        return check_claim(claim, index, candidates, self.judge, model, featurizer, self.entailment_model(model))

    # ------------------------------------------------------------ documents

    def documents(self) -> list[dict]:
        return list(self.index.manifest.get("documents", []))

    def refresh(self) -> bool:
        """Swap in the shared store's current index when another process has changed it (PostgreSQL store;
        called every second by rag.pgstore.follow). True when it did."""
        if not hasattr(self.index, "changed") or not self.index.changed():
            return False
        with self._write_lock:
            if not self.index.changed():
                return False
            # current: an add since this index is read as its rows only (rag.pgstore.load_appended)
            self._snapshot = self._snapshot_of(open_index(self.settings, self.embedder, current=self.index))
            return True

    def reload(self) -> Index:
        """Swap in the index as committed now, without building: after another process (an indexing job of the
        app, rag.jobs, or `rag index add`) committed one. Questions keep the old snapshot until it is loaded."""
        with self._write_lock:
            if self.settings.store == "local":
                from rag.index import load_index

                index = load_index(self.settings.index_path)  # the committed build, whatever else changed since
            else:
                index = open_index(self.settings, self.embedder, rebuild_if_stale=False)
            self._snapshot = self._snapshot_of(index)
            return self.index

    def rebuild(self) -> Index:
        with self._write_lock:
            self._snapshot = self._snapshot_of(build_index(self.settings, self.embedder))
            return self.index

    def add_documents(self, paths: list[Path], replace: bool = False) -> list[Document]:
        """Validate, stage and re-index; the corpus changes only once the index that includes the files is
        committed (rag.corpus). On any error, or if the process is killed, nothing changes."""
        settings = self.settings
        max_bytes, max_chars = int(settings.max_file_mb * 1e6), settings.max_text_chars
        limits = DocumentLimits.from_settings(settings)
        docs = corpus.read_new_documents(paths, max_bytes, max_chars, limits)
        with self._write_lock:  # questions keep using the current snapshot while this builds
            with corpus.staged_files(settings.corpus_dir, paths, replace, max_bytes, max_chars, limits) as staged:
                new_snapshot = self._snapshot_of(build_index(settings, self.embedder, staged=staged,
                                                             current=self.index))
            self._snapshot = new_snapshot  # one assignment: readers see the old or the new state, never a mix
        index = self.index
        return [index.documents[d.id] for d in docs if d.id in index.documents]


__all__ = ["Pipeline", "SUPPORTED_SUFFIXES", "best_of", "clean_text_input", "split_answer"]
