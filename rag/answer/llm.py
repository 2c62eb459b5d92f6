"""LLM answer backends through LangChain chat models. LangChain types stay inside this module."""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rag.answer.base import NO_ANSWER, AnswerBackend, AnswerNote, AnswerRequest, Reading
from rag.answer.citations import MARKER
from rag.answer.prompts import fence, fence_tag, render
from rag.errors import BackendError, UsageError

if TYPE_CHECKING:
    from rag.settings import Settings

log = logging.getLogger(__name__)

FALLBACK_HINT = "answer offline with --backend extractive (RAG_BACKEND=extractive)"


EXAMPLE_FENCE = "passages-example"
_HEARTBEAT_S = 1.0  # how often a Reading event is yielded while the model reads the prompt


def format_passages(request: AnswerRequest) -> str:
    """The numbered sentences, one a line, in document order. A ``(source — section)`` line opens each run
    of one document and section, and a blank line marks a gap between sentences that are not consecutive in
    the document; neither is repeated per sentence (small models pay for every token of the prompt)."""
    lines: list[str] = []
    previous = None
    for n, sentence in enumerate(request.passages, start=1):
        where = sentence.source + (f" — {sentence.section}" if sentence.section else "")
        if previous is None or where != previous[0]:
            if lines:
                lines.append("")
            # The section heading is document text too: fenced like the sentence, or a heading could close it.
            lines.append(f"({fence(where)})")
        elif sentence.id != previous[1] + 1:
            lines.append("")
        lines.append(f"[{n}] {fence(sentence.text)}")
        previous = (where, sentence.id)
    return "\n".join(lines)


def build_messages(request: AnswerRequest) -> list[Any]:
    """System rules, one worked example (a user and an assistant message), then the passages and question.

    Everything before the last message is the same for every request (the passages' fence name, which is
    random per request, appears only in the last message), so a server's prompt cache reuses it."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    from rag.answer.prompts import sections

    example = sections("answer_example")
    passages = format_passages(request)
    tag = fence_tag(passages, request.question)
    return [
        SystemMessage(render("answer_system", no_answer=NO_ANSWER)),
        HumanMessage(render("answer_user", passages=example["passages"], question=example["question"],
                            fence=EXAMPLE_FENCE)),
        AIMessage(example["answer"]),
        HumanMessage(render("answer_user", passages=passages, question=request.question, fence=tag)),
    ]


def cited_passages(answer: str, request: AnswerRequest) -> list[str]:
    """The texts of the passages an answer's ``[n]`` markers cite, in the order first cited."""
    numbers = dict.fromkeys(int(m.group(1)) for m in MARKER.finditer(answer))
    return [request.passages[n - 1].text for n in numbers if 1 <= n <= len(request.passages)]


def yes_probability(reply: Any) -> float | None:
    """P(yes) / (P(yes) + P(no)) from a one-token chat reply: its top log-probabilities when the server sent
    them, else 1.0 or 0.0 from the token itself; None when the reply is neither yes nor no."""
    logprobs = (getattr(reply, "response_metadata", None) or {}).get("logprobs") or {}
    first = (logprobs.get("content") or [None])[0] or {}
    yes = no = 0.0
    for candidate in first.get("top_logprobs") or []:
        word = str(candidate.get("token", "")).strip().lower()
        if word in ("yes", "no"):
            p = math.exp(float(candidate.get("logprob", -math.inf)))
            yes, no = (yes + p, no) if word == "yes" else (yes, no + p)
    if yes + no > 0:
        return yes / (yes + no)
    word = _text_of(getattr(reply, "content", "")).strip().lower().strip(".!")
    return 1.0 if word.startswith("yes") else 0.0 if word.startswith("no") else None


def _call_with_limit(call: Any, limit_s: float) -> Any:
    """``call()`` in a worker thread; TimeoutError when it takes longer than ``limit_s``."""
    result: queue.Queue = queue.Queue()

    def work() -> None:
        try:
            result.put((True, call()))
        except BaseException as exc:  # noqa: BLE001 (handed to the caller)
            result.put((False, exc))

    threading.Thread(target=work, name="rag-llm-check", daemon=True).start()
    try:
        ok, value = result.get(timeout=limit_s)
    except queue.Empty:
        raise TimeoutError(f"no reply within {limit_s:g} s") from None
    if not ok:
        raise value
    return value


def _text_of(content: Any) -> str:
    if isinstance(content, list):  # some providers stream content blocks
        return "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    return content or ""


_CHATML_TOKENS_PER_MESSAGE = 5  # <|im_start|>, role, newline, <|im_end|>, newline
_CHATML_TOKENS_TO_REPLY = 3  # <|im_start|>assistant newline


def count_prompt_tokens(base_url: str | None, model: str, messages: list[Any]) -> int | None:
    """The prompt's tokens by the server's own tokenizer, for OpenAI-compatible servers that report no usage
    while streaming (llama-cpp-python's ``/extras/tokenize/count``, llama.cpp's ``/tokenize``): the messages'
    text plus ChatML framing (exact for ChatML models such as Qwen; a close estimate for other templates).
    None when the server offers neither endpoint."""
    if not base_url:
        return None
    import httpx

    root = base_url.rstrip("/").removesuffix("/v1")
    texts = [m.content if isinstance(m.content, str) else _text_of(m.content) for m in messages]
    framing = _CHATML_TOKENS_PER_MESSAGE * len(messages) + _CHATML_TOKENS_TO_REPLY
    try:
        with httpx.Client(timeout=5.0) as client:
            total = 0
            for text in texts:
                reply = client.post(f"{root}/extras/tokenize/count", json={"input": text, "model": model})
                if reply.status_code == 404:
                    reply = client.post(f"{root}/tokenize", json={"content": text})
                    reply.raise_for_status()
                    total += len(reply.json()["tokens"])
                    continue
                reply.raise_for_status()
                total += int(reply.json()["count"])
            return total + framing
    except (httpx.HTTPError, KeyError, TypeError, ValueError):
        return None


class LangChainBackend(AnswerBackend):
    """Any LangChain chat model as an answer backend; tokens are streamed as they arrive.

    Two limits replace a single total timeout: the first token must come within ``first_token_timeout``
    seconds (a local model reads the whole prompt first), then no gap between tokens may exceed
    ``idle_timeout``. A long answer from a slow model is fine as long as it keeps coming."""

    focused_sentences = 6

    def __init__(self, chat_model: Any, name: str, endpoint: str | None = None, *,
                 first_token_timeout: float = 120.0, idle_timeout: float = 30.0, focused_sentences: int = 6,
                 answer_check: bool = True, min_check: float = 0.55):
        self.chat_model, self.name, self.endpoint = chat_model, name, endpoint
        self.kind = name.partition(":")[0]
        self.first_token_timeout, self.idle_timeout = first_token_timeout, idle_timeout
        self.focused_sentences = focused_sentences
        self.answer_check, self.min_check = answer_check, min_check

    @classmethod
    def from_spec(cls, kind: str, arg: str, settings: Settings) -> LangChainBackend:
        first, idle = settings.first_token_timeout, settings.idle_timeout
        # The HTTP client's own read timeout is only a backstop behind the two limits enforced while streaming.
        http_timeout = max(first, idle) + 5.0
        limits = {"first_token_timeout": first, "idle_timeout": idle, "focused_sentences": settings.llm_sentences,
                  "answer_check": settings.llm_answer_check, "min_check": settings.llm_min_check}
        common = {"temperature": settings.llm_temperature, "timeout": http_timeout, "max_retries": 1}
        try:
            if kind == "openai":
                from langchain_openai import ChatOpenAI

                if not os.environ.get("OPENAI_API_KEY"):
                    raise BackendError(f"backend 'openai:{arg}' needs OPENAI_API_KEY; or {FALLBACK_HINT}")
                return cls(ChatOpenAI(model=arg, stream_usage=True, **common), f"openai:{arg}", "api.openai.com",
                           **limits)
            if kind == "ollama":
                from langchain_ollama import ChatOllama

                base_url = os.environ.get("OLLAMA_HOST", "http://127.0.0.1:11434")
                if not base_url.startswith("http"):
                    base_url = "http://" + base_url
                model = ChatOllama(
                    model=arg,
                    base_url=base_url,
                    temperature=settings.llm_temperature,
                    client_kwargs={"timeout": http_timeout},
                )
                return cls(model, f"ollama:{arg}", base_url, **limits)
            from langchain_openai import ChatOpenAI

            base_url, _, model_name = arg.partition("#")
            if not base_url.startswith(("http://", "https://")):
                raise UsageError(f"openai-compatible backend needs an http(s) URL, got '{base_url}'")
            model = ChatOpenAI(
                model=model_name or "default",
                base_url=base_url,
                api_key=os.environ.get("OPENAI_API_KEY") or "not-needed",
                stream_usage=True,  # the prompt's token count, when the server reports usage
                **common,
            )
            return cls(model, f"openai-compatible:{arg}", base_url, **limits)
        except ImportError as exc:
            raise BackendError(f"backend '{kind}' needs a package that is not installed ({exc.name})") from None

    def execute(self, request: AnswerRequest) -> Iterator[str | AnswerNote | Reading]:
        usage: dict[str, int] = {}
        messages = build_messages(request)
        pieces: list[str] = []
        for piece in self._stream(messages, len(request.passages), usage):
            if isinstance(piece, str):
                pieces.append(piece)
            yield piece
        prompt_tokens = usage.get("input_tokens")
        if prompt_tokens is None and self.kind == "openai-compatible":
            prompt_tokens = count_prompt_tokens(self.endpoint, getattr(self.chat_model, "model_name", ""), messages)
        confidence, withdrawn = None, None
        cited = cited_passages("".join(pieces), request)
        if self.answer_check and cited:
            confidence = self.check_answer(request.question, cited)
            if confidence is not None and confidence < self.min_check:
                withdrawn = (f"the model's own check gives {confidence:.0%} that the cited passages say what the "
                             f"question asks (below RAG_LLM_MIN_CHECK={self.min_check:g}): answer withdrawn")
        yield AnswerNote(confidence=confidence, prompt_tokens=prompt_tokens, withdrawn=withdrawn)

    def check_answer(self, question: str, cited: list[str]) -> float | None:
        """The model's probability that ``cited`` (the passages its answer cites) says what the question asks:
        one more request, a one-token reply. From the server's log-probabilities of "yes" and "no" when it
        reports them (OpenAI-compatible servers), else 1 or 0 from the token it wrote. None when the check
        fails or times out: the answer is then kept, unchecked, rather than lost."""
        from langchain_core.messages import HumanMessage, SystemMessage

        # Unfenced, unlike the answer prompt: on 44 answers of four documents a fence around the text lowered
        # P(yes) for right answers more than for wrong ones (false withdrawals 10 % -> 31 %), and this request
        # can only keep or withdraw the answer, never add to it: a document that talks the check into "yes"
        # gets what no check gives, one that talks it into "no" withdraws answers from itself.
        text = " ".join(cited)
        messages = [SystemMessage(render("answer_check_system")),
                    HumanMessage(render("answer_check_user", text=text, question=question))]
        try:
            if self.kind == "ollama":
                model = self.chat_model.bind(num_predict=1)
            elif self.kind == "openai":
                model = self.chat_model.bind(max_tokens=1, logprobs=True, top_logprobs=10)
            else:  # llama.cpp-style servers read max_tokens; LangChain would send max_completion_tokens
                model = self.chat_model.bind(extra_body={"max_tokens": 1}, logprobs=True, top_logprobs=10)
            reply = _call_with_limit(lambda: model.invoke(messages), self.first_token_timeout)
        except Exception as exc:  # noqa: BLE001 (a failed check keeps the answer; it is only not checked)
            log.warning("LLM answer check failed (%s: %s); the answer is kept unchecked",
                        type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "")
            return None
        return yes_probability(reply)

    def complete(self, system: str, user: str) -> str:
        """One short completion (the follow-up condenser), under the same two limits."""
        from langchain_core.messages import HumanMessage, SystemMessage

        messages = [SystemMessage(system), HumanMessage(user)]
        return "".join(p for p in self._stream(messages, 0, {}) if isinstance(p, str))

    def _stream(self, messages: list[Any], passages: int, usage: dict[str, int]) -> Iterator[str | Reading]:
        """The model's text pieces, from a worker thread, under the first-token and idle limits; ``Reading``
        events every second until the first token. Fills ``usage`` with the server's token counts."""
        events: queue.Queue = queue.Queue()
        stop = threading.Event()

        def work() -> None:
            try:
                for chunk in self.chat_model.stream(messages):
                    events.put(("chunk", chunk))
                    if stop.is_set():
                        break
                events.put(("end", None))
            except BaseException as exc:  # noqa: BLE001 (handed to the consumer, which raises it)
                events.put(("error", exc))

        threading.Thread(target=work, name="rag-llm-stream", daemon=True).start()
        sent = last = time.monotonic()
        streaming = False
        try:
            while True:
                limit = self.idle_timeout if streaming else self.first_token_timeout
                now = time.monotonic()
                deadline = last + limit
                try:
                    kind, item = events.get(timeout=max(0.0, min(deadline - now, _HEARTBEAT_S)))
                except queue.Empty:
                    now = time.monotonic()
                    if now >= deadline:
                        raise self._timed_out(streaming, limit) from None
                    if not streaming:
                        yield Reading(passages, now - sent)
                    continue
                if kind == "end":
                    return
                if kind == "error":
                    raise self._failed(item) from None
                counts = getattr(item, "usage_metadata", None) or {}
                for key in ("input_tokens", "output_tokens"):
                    if counts.get(key):
                        usage[key] = max(usage.get(key, 0), int(counts[key]))
                text = _text_of(item.content)
                if text:
                    streaming, last = True, time.monotonic()
                    yield text
        finally:
            stop.set()

    def _where(self) -> str:
        return f" at {self.endpoint}" if self.endpoint else ""

    def _timed_out(self, streaming: bool, limit: float) -> BackendError:
        if streaming:
            what = f"stalled for {limit:g} s between two tokens (RAG_LLM_IDLE_TIMEOUT)"
        else:
            what = (f"sent no first token within {limit:g} s (RAG_LLM_FIRST_TOKEN_TIMEOUT; it may still be reading "
                    f"the passages: a local model on a CPU needs time)")
        return BackendError(f"LLM backend '{self.name}'{self._where()} timed out: {what}; {FALLBACK_HINT}")

    def _failed(self, exc: BaseException) -> BackendError:
        if isinstance(exc, BackendError):
            return exc
        # Provider SDKs raise their own connection/timeout types.
        kind = "timed out" if "timeout" in type(exc).__name__.lower() else "failed"
        detail = str(exc).splitlines()[0][:200] if str(exc) else ""
        return BackendError(f"LLM backend '{self.name}'{self._where()} {kind}: {type(exc).__name__}: {detail}; "
                            f"{FALLBACK_HINT}")
