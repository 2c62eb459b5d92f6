"""Answering: the backend interface (``base``), its implementations (``extractive``: a learned sentence
selector with calibrated confidence; ``llm``: LangChain chat models), the factory (``registry``), and the
parts every backend shares: question analysis (``question``), features and the learned scorer
(``features``, ``scorer``), short answer spans (``span``) and citation assembly (``citations``).

Importing this package is cheap; nothing heavy is imported until a backend is created.
"""

from rag.answer.base import NO_ANSWER, AnswerBackend, AnswerNote, AnswerRequest, Reading, Rewritten
from rag.answer.registry import BACKEND_HELP, create_backend

__all__ = ["BACKEND_HELP", "NO_ANSWER", "AnswerBackend", "AnswerNote", "AnswerRequest", "Reading", "Rewritten",
           "create_backend"]
