"""The answer-backend interface: one small ABC with one abstract method, and the types it exchanges.

A backend receives the question and numbered passages (sentences of the retrieved chunks, in document
order) and yields the answer text in pieces; every answer sentence ends with ``[n]`` markers that refer
to those passage numbers, or the whole answer is the no-answer phrase. A backend that can estimate how
likely its answer is to be right may yield one ``AnswerNote`` after the text. Parsing markers, mapping them
to spans and verifying them is done once for every backend (``rag.answer.citations``).

Implementations live beside this module (``extractive``, ``llm``); ``registry`` turns a string into one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rag.types import Hit, Sentence

NO_ANSWER = "The article does not say."
# The reply to a question with no content word ("Who?", "the"): nothing to retrieve or answer from.
NOTHING_ASKED = "The question names nothing to look for: ask about a person, place, event or figure."


@dataclass(frozen=True)
class AnswerRequest:
    question: str
    passages: list[Sentence]  # passage n is passages[n - 1]
    hits: list[Hit] = field(default_factory=list)


@dataclass(frozen=True)
class AnswerNote:
    """What a backend knows about its answer beyond the text (yielded once, after the text pieces)."""

    confidence: float | None = None  # probability that the answer answers the question
    short_answer: str | None = None  # the span inside the cited sentences that answers it, when known
    prompt_tokens: int | None = None  # tokens of the prompt, as the model's server counted them
    # The backend takes back the answer it streamed (its own check found that the cited passages do not answer
    # the question): the final answer is an abstention, and this says why.
    withdrawn: str | None = None


@dataclass(frozen=True)
class Reading:
    """Yielded by a backend while it waits for the model's first token: the model is reading the passages.

    Only consumers that ask for progress see it (``Pipeline.ask_stream(progress=True)``); it is never text."""

    passages: int  # how many numbered passages the prompt holds
    elapsed_s: float  # seconds since the request was sent


@dataclass(frozen=True)
class Rewritten:
    """Yielded by ``Pipeline.ask_stream(progress=True)`` before retrieval when a follow-up question was
    rewritten into a standalone one (``question``): what is retrieved and answered."""

    question: str


class AnswerBackend(ABC):
    """Turns a question and numbered passages into answer text with ``[n]`` citation markers."""

    name: str = "backend"
    passage_depth: int = 0  # retrieve at least this many chunks for the passages (0: the top-k setting)
    nearest_sentences: int = 0  # also offer this many sentences nearest the question in embedding space
    # >0: offer only this many sentences of the retrieved chunks (those nearest the question), each with the
    # sentence before it as context, instead of whole chunks with their neighbours (short prompts for LLMs).
    focused_sentences: int = 0

    @abstractmethod
    def execute(self, request: AnswerRequest) -> Iterator[str | AnswerNote | Reading]:
        """Yield the answer text in pieces (one piece is fine), optionally followed by one ``AnswerNote``;
        ``Reading`` events may come before the first piece."""
