"""Answer backends: one small ABC with one abstract method, chosen from one string by one factory.

A backend receives the question and numbered passages (sentences of the retrieved chunks, in document
order) and yields the answer text in pieces; every answer sentence ends with ``[n]`` markers that refer
to those passage numbers, or the whole answer is the no-answer phrase. Parsing markers, mapping them to
spans and verifying them is the pipeline's job, identical for every backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rag.errors import UsageError

if TYPE_CHECKING:
    from rag.embeddings import Embedder
    from rag.index import Index
    from rag.settings import Settings
    from rag.types import Hit, Sentence

NO_ANSWER = "The article does not say."


@dataclass(frozen=True)
class AnswerRequest:
    question: str
    passages: list[Sentence]  # passage n is passages[n - 1]
    hits: list[Hit] = field(default_factory=list)


class AnswerBackend(ABC):
    """Turns a question and numbered passages into answer text with ``[n]`` citation markers."""

    name: str = "backend"
    passage_depth: int = 0  # retrieve at least this many chunks for the passages (0: the top-k setting)

    @abstractmethod
    def execute(self, request: AnswerRequest) -> Iterator[str]:
        """Yield the answer text in pieces (one piece is fine); the pieces joined are the whole answer."""


BACKEND_HELP = (
    "extractive | openai:MODEL | ollama:MODEL | openai-compatible:BASE_URL[#MODEL] "
    "(e.g. openai-compatible:http://127.0.0.1:8000/v1#llama-3.1-8b)"
)


def create_backend(spec: str, settings: Settings, index: Index, embedder: Embedder) -> AnswerBackend:
    """The factory: one string names the backend."""
    spec = (spec or "").strip()
    kind, _, arg = spec.partition(":")
    if kind == "extractive" and not arg:
        from rag.extractive import ExtractiveBackend

        return ExtractiveBackend(index, embedder)
    if kind in ("openai", "ollama", "openai-compatible") and arg:
        from rag.llm import LangChainBackend

        return LangChainBackend.from_spec(kind, arg, settings)
    raise UsageError(f"unknown backend '{spec}'; expected {BACKEND_HELP}")
