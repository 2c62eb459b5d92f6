"""The learned claim checker's models, read from a small JSON file (never pickle) and applied with numpy.

Three logistic regressions, each fitted with a sign constraint on every weight (``rag.claims.FEATURE_SIGNS``):
- the passage model, over ``PASSAGE_FEATURES`` of every candidate passage: P(this passage is the one that states
  the claim); it picks the passage a verdict is given on and orders the passages shown;
- the support model, over the chosen passage's features and the passage model's probability
  (``VERDICT_FEATURES``): P(the claim is supported); the verdict is SUPPORTED when it reaches ``min_support``;
- the partial model, over the same: P(at least part of the claim is stated); below ``min_support`` the verdict
  is PARTIAL when this reaches ``min_partial``, else UNSUPPORTED.

``rag.claims_training`` fits both on the claim sets of ``eval/`` and writes ``rag/data/claims.json``
(``make train``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from rag.answer.scorer import Logistic, read_model_file
from rag.claims import PASSAGE_FEATURES
from rag.errors import ModelError
from rag.verify import PARTIAL, SUPPORTED, UNSUPPORTED

MODEL_FORMAT = 1
DEFAULT_MODEL = "claims.json"
VERDICT_FEATURES = (*PASSAGE_FEATURES, "passage_probability")


def verdict_row(row: np.ndarray, passage_probability: float) -> np.ndarray:
    return np.append(row, passage_probability)[None, :]


@dataclass(frozen=True)
class ClaimModel:
    passage: Logistic
    support: Logistic
    partial: Logistic
    min_support: float  # P(supported) needed to say so, chosen to keep false support low (rag.claims_training)
    min_partial: float
    meta: dict

    def verdict(self, row: np.ndarray, passage_probability: float) -> str:
        """The verdict on the chosen passage, from its features and its passage probability."""
        x = verdict_row(row, passage_probability)
        if float(self.support.predict(x)[0]) >= self.min_support:
            return SUPPORTED
        if float(self.partial.predict(x)[0]) >= self.min_partial:
            return PARTIAL
        return UNSUPPORTED

    def to_json(self) -> dict:
        return {"format": MODEL_FORMAT, "passage": self.passage.to_json(), "support": self.support.to_json(), "partial": self.partial.to_json(),
                "min_support": self.min_support, "min_partial": self.min_partial, "meta": self.meta}


def parse_model(data: dict, where: str) -> ClaimModel:
    if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
        raise ModelError(f"{where}: not a claim model of format {MODEL_FORMAT}")
    try:
        return ClaimModel(Logistic.from_json(data["passage"], PASSAGE_FEATURES, where),
                          Logistic.from_json(data["support"], VERDICT_FEATURES, where),
                          Logistic.from_json(data["partial"], VERDICT_FEATURES, where), float(data["min_support"]),
                          float(data["min_partial"]), dict(data.get("meta", {})))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{where}: claim model is malformed ({exc})") from None


@lru_cache(maxsize=4)
def load_model(path: str | None = None) -> ClaimModel:
    """The shipped model (package data), or the file at ``path``."""
    return parse_model(*read_model_file(path, "rag", DEFAULT_MODEL, "claim model"))
