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

A model fitted with an NLI model (``rag.nli``; ``python -m rag.claims_training --nli LOCATION``) has one more
verdict feature, ``entailment``: the NLI model's log-odds that the chosen passage entails the claim. It records the
NLI model's sha256 and is used only with that model (another model's logits have another scale).
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
NLI_MODEL = "claims-nli.json"  # fitted with the NLI model docs/claims.md names (used when RAG_NLI_MODEL is set)
VERDICT_FEATURES = (*PASSAGE_FEATURES, "passage_probability")
NLI_VERDICT_FEATURES = (*VERDICT_FEATURES, "entailment")


def verdict_row(row: np.ndarray, passage_probability: float, entailment: float | None = None) -> np.ndarray:
    extra = [passage_probability] if entailment is None else [passage_probability, entailment]
    return np.append(row, extra)[None, :]


@dataclass(frozen=True)
class ClaimModel:
    passage: Logistic
    support: Logistic
    partial: Logistic
    min_support: float  # P(supported) needed to say so, chosen to keep false support low (rag.claims_training)
    min_partial: float
    meta: dict
    nli_sha256: str | None = None  # the NLI model the verdict models were fitted with (None: no entailment input)
    # Answer sentences against the sentences they cite (rag.claims.LearnedJudge): below this P(supported) they are
    # flagged unsupported, up to min_support partial (rag.claims_training.flag_threshold). None: not fitted.
    flag_below: float | None = None

    def _verdict_input(self, row: np.ndarray, passage_probability: float, entailment: float | None) -> np.ndarray:
        if (entailment is None) != (self.nli_sha256 is None):
            raise ValueError("the entailment score is given exactly when the model was fitted with one")
        return verdict_row(row, passage_probability, entailment)

    def verdict(self, row: np.ndarray, passage_probability: float, entailment: float | None = None) -> str:
        """The verdict on the chosen passage, from its features, its passage probability and, for a model fitted
        with an NLI model, that model's entailment log-odds."""
        x = self._verdict_input(row, passage_probability, entailment)
        if float(self.support.predict(x)[0]) >= self.min_support:
            return SUPPORTED
        if float(self.partial.predict(x)[0]) >= self.min_partial:
            return PARTIAL
        return UNSUPPORTED

    def support_probability(self, row: np.ndarray, passage_probability: float, entailment: float | None = None
                            ) -> float:
        """P(supported) of a claim against a passage."""
        return float(self.support.predict(self._verdict_input(row, passage_probability, entailment))[0])

    def sentence_verdict(self, support: float) -> str:
        """The verdict on an answer sentence against what it cites, from its P(supported): a pasted claim the
        checker does not call supported is unsupported, but an answer sentence is flagged (or dropped) only below
        ``flag_below``, chosen to flag few true sentences."""
        if self.flag_below is None:
            raise ValueError("this claim model has no operating point for answer sentences (refit it)")
        return SUPPORTED if support >= self.min_support else UNSUPPORTED if support < self.flag_below else PARTIAL

    def to_json(self) -> dict:
        return {"format": MODEL_FORMAT, "passage": self.passage.to_json(), "support": self.support.to_json(), "partial": self.partial.to_json(),
                "min_support": self.min_support, "min_partial": self.min_partial, "meta": self.meta,
                **({"nli_sha256": self.nli_sha256} if self.nli_sha256 else {}),
                **({"flag_below": self.flag_below} if self.flag_below is not None else {})}


def parse_model(data: dict, where: str) -> ClaimModel:
    if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
        raise ModelError(f"{where}: not a claim model of format {MODEL_FORMAT}")
    nli = data.get("nli_sha256")
    verdict_features = VERDICT_FEATURES if nli is None else NLI_VERDICT_FEATURES
    try:
        return ClaimModel(Logistic.from_json(data["passage"], PASSAGE_FEATURES, where),
                          Logistic.from_json(data["support"], verdict_features, where),
                          Logistic.from_json(data["partial"], verdict_features, where), float(data["min_support"]),
                          float(data["min_partial"]), dict(data.get("meta", {})), None if nli is None else str(nli),
                          None if data.get("flag_below") is None else float(data["flag_below"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{where}: claim model is malformed ({exc})") from None


@lru_cache(maxsize=4)
def load_model(path: str | None = None, shipped: str = DEFAULT_MODEL) -> ClaimModel:
    """The shipped model ``shipped`` (package data), or the file at ``path``."""
    return parse_model(*read_model_file(path, "rag", shipped, "claim model"))
