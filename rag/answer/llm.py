"""LLM answer backends through LangChain chat models. LangChain types stay inside this module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rag.answer.base import NO_ANSWER, AnswerBackend, AnswerRequest
from rag.answer.prompts import fence, fence_tag, render
from rag.errors import BackendError, UsageError

if TYPE_CHECKING:
    from rag.settings import Settings

FALLBACK_HINT = "answer offline with --backend extractive (RAG_BACKEND=extractive)"


def format_passages(request: AnswerRequest) -> str:
    lines = []
    for n, sentence in enumerate(request.passages, start=1):
        # The section heading is document text too: fenced like the sentence, or a heading could close the fence.
        where = sentence.source + (f" — {sentence.section}" if sentence.section else "")
        lines.append(f"[{n}] ({fence(where)}) {fence(sentence.text)}")
    return "\n".join(lines)


def build_messages(request: AnswerRequest) -> list[Any]:
    from langchain_core.messages import HumanMessage, SystemMessage

    passages = format_passages(request)
    tag = fence_tag(passages, request.question)
    return [
        SystemMessage(render("answer_system", no_answer=NO_ANSWER, fence=tag)),
        HumanMessage(render("answer_user", passages=passages, question=request.question, fence=tag)),
    ]


class LangChainBackend(AnswerBackend):
    """Any LangChain chat model as an answer backend; tokens are streamed as they arrive."""

    def __init__(self, chat_model: Any, name: str, endpoint: str | None = None):
        self.chat_model, self.name, self.endpoint = chat_model, name, endpoint

    @classmethod
    def from_spec(cls, kind: str, arg: str, settings: Settings) -> LangChainBackend:
        common = {"temperature": settings.llm_temperature, "timeout": settings.llm_timeout, "max_retries": 1}
        try:
            if kind == "openai":
                from langchain_openai import ChatOpenAI

                if not os.environ.get("OPENAI_API_KEY"):
                    raise BackendError(f"backend 'openai:{arg}' needs OPENAI_API_KEY; or {FALLBACK_HINT}")
                return cls(ChatOpenAI(model=arg, **common), f"openai:{arg}", "api.openai.com")
            if kind == "ollama":
                from langchain_ollama import ChatOllama

                base_url = os.environ.get("OLLAMA_HOST", "http://127.0.0.1:11434")
                if not base_url.startswith("http"):
                    base_url = "http://" + base_url
                model = ChatOllama(
                    model=arg,
                    base_url=base_url,
                    temperature=settings.llm_temperature,
                    client_kwargs={"timeout": settings.llm_timeout},
                )
                return cls(model, f"ollama:{arg}", base_url)
            from langchain_openai import ChatOpenAI

            base_url, _, model_name = arg.partition("#")
            if not base_url.startswith(("http://", "https://")):
                raise UsageError(f"openai-compatible backend needs an http(s) URL, got '{base_url}'")
            model = ChatOpenAI(
                model=model_name or "default",
                base_url=base_url,
                api_key=os.environ.get("OPENAI_API_KEY") or "not-needed",
                **common,
            )
            return cls(model, f"openai-compatible:{arg}", base_url)
        except ImportError as exc:
            raise BackendError(f"backend '{kind}' needs a package that is not installed ({exc.name})") from None

    def execute(self, request: AnswerRequest) -> Iterator[str]:
        messages = build_messages(request)
        try:
            for chunk in self.chat_model.stream(messages):
                content = chunk.content
                if isinstance(content, list):  # some providers stream content blocks
                    content = "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
                if content:
                    yield content
        except BackendError:
            raise
        except Exception as exc:  # provider SDKs raise their own connection/timeout types
            where = f" at {self.endpoint}" if self.endpoint else ""
            kind = "timed out" if "timeout" in type(exc).__name__.lower() else "failed"
            raise BackendError(
                f"LLM backend '{self.name}'{where} {kind}: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}; "
                f"{FALLBACK_HINT}"
            ) from None
