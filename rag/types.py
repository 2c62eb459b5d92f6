"""Typed results that cross module boundaries. LangChain types never leave the modules that use LangChain."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Document:
    id: str  # file name inside the corpus folder
    text: str  # the text offsets index into (decoded file for .txt/.md, extracted text for .html/.pdf)
    title: str
    date: str | None = None  # ISO date when the document declares one
    sha256: str = ""  # of the file's bytes as stored
    fmt: str = "txt"


@dataclass(frozen=True)
class Sentence:
    id: int  # position in the index's sentence table
    source: str
    start: int
    end: int
    text: str
    paragraph: int
    section: str | None = None


@dataclass(frozen=True)
class Chunk:
    id: str  # "<source>#<n>"
    source: str
    start: int
    end: int
    text: str
    sentence_ids: tuple[int, ...]
    section: str | None = None


@dataclass(frozen=True)
class Hit:
    rank: int
    score: float  # fused (RRF) score
    chunk: Chunk
    dense_score: float | None = None
    bm25_score: float | None = None

    def to_json(self) -> dict:
        c = self.chunk
        return {
            "rank": self.rank,
            "score": round(float(self.score), 6),
            "source": c.source,
            "start": c.start,
            "end": c.end,
            "text": c.text,
            "chunk_id": c.id,
        }



def search_json(query: str, hits: list[Hit]) -> dict:
    """What ``rag search --json`` prints and the API's /search returns: the query as searched for (cleaned:
    ``Pipeline.clean_query``), the ranked hits."""
    return {"query": query, "hits": [hit.to_json() for hit in hits]}


@dataclass
class Citation:
    n: int
    source: str
    start: int
    end: int
    text: str
    verdict: str = "unchecked"  # supported / partial / unsupported
    reason: str = ""
    section: str | None = None
    # "model": the backend's own marker cited this span; "attributed": added after the answer was written,
    # because the verifier found this span supports an answer sentence (rag.answer.citations).
    origin: str = "model"

    def to_json(self) -> dict:
        return {
            "n": self.n,
            "source": self.source,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "verdict": self.verdict,
            "reason": self.reason,
            "origin": self.origin,
        }


@dataclass
class SentenceCheck:
    """Verification of one answer sentence against the spans it cites."""

    sentence: str
    cited: list[int]
    verdict: str
    reason: str


@dataclass
class Answer:
    question: str
    answer: str
    abstained: bool
    citations: list[Citation]
    backend: str
    latency_ms: float
    checks: list[SentenceCheck] = field(default_factory=list)
    short_answer: str | None = None
    warnings: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    # Probability that the answer answers the question (calibrated on held-out documents); None when the
    # backend cannot estimate it. It is not the same as the sentence verdicts, which only say whether each
    # answer sentence is backed by the span it cites.
    confidence: float | None = None
    # Tokens of the prompt the LLM read (as its server counted them; None for the extractive backend or a
    # server that does not report usage).
    prompt_tokens: int | None = None
    # A follow-up question rewritten into a standalone one from the previous turns (what was retrieved);
    # None when the question was asked without history or needed no rewriting.
    standalone_question: str | None = None

    def to_json(self) -> dict:
        return {
            "question": self.question,
            "standalone_question": self.standalone_question,
            "answer": self.answer,
            "abstained": self.abstained,
            "confidence": None if self.confidence is None else round(float(self.confidence), 4),
            "citations": [c.to_json() for c in self.citations],
            "backend": self.backend,
            "latency_ms": round(self.latency_ms, 3),
            "short_answer": self.short_answer,
            "checks": [asdict(c) for c in self.checks],
            "warnings": self.warnings,
            "prompt_tokens": self.prompt_tokens,
        }


@dataclass
class Evidence:
    """A passage offered as support for a claim."""

    source: str
    start: int
    end: int
    text: str
    score: float


@dataclass
class CheckResult:
    claim: str
    verdict: str  # supported / partial / unsupported
    reason: str
    passages: list[Evidence]

    def to_json(self) -> dict:
        return {
            "claim": self.claim,
            "verdict": self.verdict,
            "reason": self.reason,
            "passages": [asdict(p) for p in self.passages],
        }
