"""The factory: one string names an answer backend (``extractive``, ``openai:MODEL`` ...)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rag.errors import UsageError

if TYPE_CHECKING:
    from rag.answer.base import AnswerBackend
    from rag.embeddings import Embedder
    from rag.index import Index
    from rag.settings import Settings

BACKEND_HELP = (
    "extractive | openai:MODEL | ollama:MODEL | openai-compatible:BASE_URL[#MODEL] "
    "(e.g. openai-compatible:http://127.0.0.1:8000/v1#llama-3.1-8b)"
)


def create_backend(spec: str, settings: Settings, index: Index, embedder: Embedder) -> AnswerBackend:
    spec = (spec or "").strip()
    kind, _, arg = spec.partition(":")
    if kind == "extractive" and not arg:
        from rag.answer.extractive import ExtractiveBackend

        return ExtractiveBackend(index, embedder, settings)
    if kind in ("openai", "ollama", "openai-compatible") and arg:
        from rag.answer.llm import LangChainBackend

        return LangChainBackend.from_spec(kind, arg, settings)
    raise UsageError(f"unknown backend '{spec}'; expected {BACKEND_HELP}")
