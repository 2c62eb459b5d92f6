"""The learned answer models, read from a small JSON file (never pickle) and applied with numpy.

Three logistic regressions (``rag.answer.training`` fits them and writes the file):
- the sentence model: P(this candidate sentence holds the answer | question), over ``SENTENCE_FEATURES``;
- the confidence model: P(the chosen answer answers the question), over ``ANSWER_FEATURES``; fitted on
  answers chosen with leave-one-document-out sentence probabilities, so it is calibrated on documents its
  inputs were not fitted on;
- the span model: P(this word span of an answer sentence is the short answer), over ``SPAN_FEATURES``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from rag.answer.features import ANSWER_FEATURES, SENTENCE_FEATURES
from rag.answer.span import SPAN_FEATURES
from rag.errors import ModelError

log = logging.getLogger("rag")
MODEL_FORMAT = 1
DEFAULT_MODEL = "answerer.json"


@dataclass(frozen=True)
class Logistic:
    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        z = ((matrix - self.mean) / self.scale) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))

    def to_json(self) -> dict:
        return {"features": list(self.features), "mean": _rounded(self.mean), "scale": _rounded(self.scale),
                "coef": _rounded(self.coef), "intercept": round(float(self.intercept), 6)}

    @classmethod
    def from_json(cls, data: dict, expected: tuple[str, ...], where: str) -> Logistic:
        features = tuple(data["features"])
        if features != expected:
            raise ModelError(f"{where}: model features {features} do not match this version's {expected}; "
                                    "retrain with `make train`")
        arrays = [np.asarray(data[k], dtype=np.float64) for k in ("mean", "scale", "coef")]
        if any(a.shape != (len(features),) or not np.isfinite(a).all() for a in arrays) or (arrays[1] <= 0).any():
            raise ModelError(f"{where}: model weights are malformed")
        return cls(features, *arrays, float(data["intercept"]))


@dataclass(frozen=True)
class AnswerModel:
    sentence: Logistic
    confidence: Logistic
    min_confidence: float  # the default operating point (RAG_MIN_CONFIDENCE overrides it)
    second_sentence: float  # a second sentence joins the answer when its probability reaches this share of the best
    meta: dict
    span: Logistic | None = None  # the short-answer span model (rag.answer.span); None: the rule-based picker

    @property
    def embedding_sha256(self) -> str | None:
        """The sha256 of the embedding model whose cosines the weights were fitted on (None: not recorded)."""
        return fitted_embedding(self.meta)[1]

    def to_json(self) -> dict:
        data = {"format": MODEL_FORMAT, "sentence": self.sentence.to_json(), "confidence": self.confidence.to_json(),
                "min_confidence": self.min_confidence, "second_sentence": self.second_sentence, "meta": self.meta}
        if self.span is not None:
            data["span"] = self.span.to_json()
        return data


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in values]


def parse_model(data: dict, where: str) -> AnswerModel:
    if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
        raise ModelError(f"{where}: not an answer model of format {MODEL_FORMAT}")
    try:
        return AnswerModel(
            Logistic.from_json(data["sentence"], SENTENCE_FEATURES, where),
            Logistic.from_json(data["confidence"], ANSWER_FEATURES, where),
            float(data["min_confidence"]), float(data["second_sentence"]), dict(data.get("meta", {})),
            Logistic.from_json(data["span"], SPAN_FEATURES, where) if "span" in data else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{where}: answer model is malformed ({exc})") from None


def read_model_file(path: str | None, package: str, name: str, what: str) -> tuple[Any, str]:
    """(parsed JSON, where it came from) of a model file: the one at ``path``, else the package's
    ``data/<name>``; an unreadable file or invalid JSON raises ModelError naming it."""
    if path:
        where = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelError(f"{where}: cannot read the {what} ({getattr(exc, 'strerror', None) or exc})") from None
    else:
        where = f"{package.replace('.', '/')}/data/{name}"
        text = resources.files(package).joinpath("data", name).read_text(encoding="utf-8")
    try:
        return json.loads(text), where
    except json.JSONDecodeError as exc:
        raise ModelError(f"{where}: not valid JSON ({exc.msg})") from None


@lru_cache(maxsize=4)
def load_model(path: str | None = None, shipped: str = DEFAULT_MODEL) -> AnswerModel:
    """The shipped model ``shipped`` (package data), or the file at ``path``."""
    return parse_model(*read_model_file(path, "rag.answer", shipped, "answer model"))


@lru_cache(maxsize=16)  # package data does not change while running; the claim checker asks on every check
def shipped_for_embedder(package: str, name: str, embedding_sha256: str) -> str:
    """The package data file of the model ``name`` fitted on this embedding model's features:
    ``<stem>-<sha[:12]>.json`` when one is shipped for it, else ``name`` (fitted on the bundled MiniLM)."""
    stem = name.removesuffix(".json")
    fitted = f"{stem}-{embedding_sha256[:12]}.json"
    return fitted if resources.files(package).joinpath("data", fitted).is_file() else name


def shipped_model_name(embedding_sha256: str) -> str:
    """The shipped answer model for this embedding model (``shipped_for_embedder``)."""
    return shipped_for_embedder("rag.answer", DEFAULT_MODEL, embedding_sha256)


def fitted_embedding(meta: dict) -> tuple[str | None, str | None]:
    """(model id, sha256) of the embedding model a model's ``meta`` says it was fitted on (None: not recorded)."""
    embedding = meta.get("embedding")
    if not isinstance(embedding, dict):
        return None, None
    return embedding.get("model_id"), embedding.get("sha256")


_warned: set[tuple[str, str, str]] = set()


def warn_if_fitted_on_another_embedder(meta: dict, embedder, which: str, refit: str) -> None:
    """Warn once per (model, embedder) when a model's weights were fitted on another embedding model's
    cosines: its probabilities are then not calibrated (it still runs, its decisions shift). ``refit`` says how
    to fit one for this embedder."""
    fitted_id, fitted = fitted_embedding(meta)
    used = embedder.info.sha256
    if fitted is None or fitted == used or (which, fitted, used) in _warned:
        return
    _warned.add((which, fitted, used))
    log.warning("%s was fitted with the embedding model %s (sha256 %s…), not %s (%s…): its probabilities are "
                "not calibrated for it; %s", which, fitted_id or "of another kind", fitted[:12],
                embedder.info.model_id, used[:12], refit)
