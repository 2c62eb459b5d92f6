"""The span reader (opt-in, ``RAG_READER=true``): picks the short answer inside the answer's sentences.

The bundled MiniLM reads the question and one sentence together ([CLS] question [SEP] sentence [SEP]) and a
start/end head scores every word piece of the sentence as the first and the last of the answer, SQuAD-style.
It is the encoder fine-tuned on the project's question sets (``rag.answer.reader_training``, ``make train``),
shipped as low-rank adapters (LoRA, Hu et al. 2021) on its linear layers plus the head, in
``rag/answer/data/reader.json`` (about 1 MB of base64 float16): the base weights come from the installed model
package, whose checksum the file records.

At first use the adapted encoder is exported to ONNX (this step needs torch, as the ONNX embedder's export
does) into ``<model_cache_dir>/reader-<reader.json sha256[:12]>/`` and checked against the torch model on
probe pairs before it is ever used; after that only onnxruntime, tokenizers and numpy run.

Why opt-in: one joint encoding of question and sentence per answer costs about 9-11 ms on a 2-core machine
(48-64 word pieces), and the default warm ask must stay within 15 ms. docs/answerer.md has what it buys.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rag.errors import ModelError

if TYPE_CHECKING:
    from rag.model_files import ModelInfo

log = logging.getLogger("rag")

FORMAT = 1
WEIGHTS_FILE = "reader.json"
MODEL_FILE = "model.onnx"
MARKER_FILE = "verified.json"
MAX_TOKENS = 256  # question + sentence; longer sentences are cut (a reader sees one sentence at a time)
MAX_ANSWER_TOKENS = 12  # the longest span it may answer, in word pieces (SQuAD answers: 3 words on average)
MAX_LOGIT_GAP = 1e-3  # ONNX against torch on the probe pairs, after the export
# The linear layers of each BERT layer that get adapters (all of them: attention and feed-forward).
ADAPTED = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
           "intermediate.dense", "output.dense")
PROBES = (
    ("Who replaced Qassem Soleimani?", "Soleimani's replacement, Esmail Ghaani, lacks the same stature."),
    ("How many fighters?", "The force is 150,000-strong and answers to the prime minister."),
    ("When did it happen?", "It happened in 2019, weeks before the vote."),
)


@dataclass(frozen=True)
class ReadSpan:
    """The reader's answer in one sentence: where it is (characters of the sentence) and its score (start plus
    end logit; comparable between sentences of one question)."""

    text: str
    start: int
    end: int
    score: float


# ---------------------------------------------------------------------------------------- weights file


def encode_array(array: np.ndarray) -> dict:
    """A float array as JSON: shape and base64 of its little-endian float16 bytes."""
    data = np.ascontiguousarray(array, dtype="<f2")
    return {"shape": list(data.shape), "f16": base64.b64encode(data.tobytes()).decode("ascii")}


def decode_array(data: dict, where: str) -> np.ndarray:
    try:
        raw = base64.b64decode(data["f16"], validate=True)
        return np.frombuffer(raw, dtype="<f2").astype(np.float32).reshape(data["shape"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{where}: an array of the reader is unreadable ({exc})") from None


@dataclass
class ReaderWeights:
    """What ``reader.json`` holds: the base model it adapts, LoRA factors per adapted layer, the head."""

    base_sha256: str
    base_model_id: str
    rank: int
    alpha: float
    adapters: dict[str, tuple[np.ndarray, np.ndarray]]  # "encoder.layer.0.attention.self.query" -> (A, B)
    head_weight: np.ndarray  # (2, hidden): start, end
    head_bias: np.ndarray  # (2,)
    meta: dict

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "base": {"model_id": self.base_model_id, "sha256": self.base_sha256},
            "rank": self.rank,
            "alpha": self.alpha,
            "adapters": {name: {"a": encode_array(a), "b": encode_array(b)} for name, (a, b) in self.adapters.items()},
            "head": {"weight": encode_array(self.head_weight), "bias": [round(float(x), 6) for x in self.head_bias]},
            "meta": self.meta,
        }


def parse_weights(data: dict, where: str) -> ReaderWeights:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelError(f"{where}: not a reader file of format {FORMAT}")
    try:
        adapters = {name: (decode_array(pair["a"], where), decode_array(pair["b"], where))
                    for name, pair in data["adapters"].items()}
        weights = ReaderWeights(
            str(data["base"]["sha256"]), str(data["base"]["model_id"]), int(data["rank"]), float(data["alpha"]),
            adapters, decode_array(data["head"]["weight"], where), np.asarray(data["head"]["bias"], dtype=np.float32),
            dict(data.get("meta", {})))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelError(f"{where}: reader file incomplete ({exc})") from None
    if weights.head_weight.shape[0] != 2 or weights.head_bias.shape != (2,) or weights.rank < 1:
        raise ModelError(f"{where}: reader head or rank malformed")
    for name, (a, b) in adapters.items():
        if a.shape[0] != weights.rank or b.shape[1] != weights.rank:
            raise ModelError(f"{where}: adapter {name} does not have rank {weights.rank}")
    return weights


def shipped_path() -> Path:
    return Path(str(resources.files("rag.answer") / "data" / WEIGHTS_FILE))


def read_weights(path: Path | None = None) -> tuple[ReaderWeights, str]:
    """(weights, sha256 of the file) of ``path`` (default: the shipped reader)."""
    path = path or shipped_path()
    try:
        raw = path.read_bytes()
        data = json.loads(raw)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the reader ({exc.strerror or exc}); run `make train`") from None
    except ValueError as exc:
        raise ModelError(f"{path}: not JSON ({exc})") from None
    return parse_weights(data, str(path)), hashlib.sha256(raw).hexdigest()


# ---------------------------------------------------------------------------------------- torch side


def _load_encoder(base_path: Path):
    from transformers import AutoModel

    try:
        return AutoModel.from_pretrained(str(base_path), local_files_only=True, attn_implementation="eager")
    except (TypeError, ValueError):  # models without selectable attention implementations
        return AutoModel.from_pretrained(str(base_path), local_files_only=True)


def adapted_model(base_path: Path, weights: ReaderWeights | None = None, rank: int = 8, alpha: float = 16.0,
                  seed: int = 0):
    """The base encoder with LoRA adapters and a start/end head, as a torch module. With ``weights`` the
    adapters and head are loaded from them (to check the export against, to score a fold); without, fresh ones are made for training
    (A Kaiming-uniform, B zero: the adapted model starts as the base). Only the adapters and head train."""
    import torch

    torch.manual_seed(seed)
    encoder = _load_encoder(base_path)
    encoder.requires_grad_(False)
    if weights is not None:
        rank, alpha = weights.rank, weights.alpha

    class LoRALinear(torch.nn.Module):
        def __init__(self, base: torch.nn.Linear):
            super().__init__()
            self.base = base
            self.a = torch.nn.Parameter(torch.empty(rank, base.in_features))
            self.b = torch.nn.Parameter(torch.zeros(base.out_features, rank))
            torch.nn.init.kaiming_uniform_(self.a, a=math.sqrt(5))
            self.scale = alpha / rank

        def forward(self, x):
            return self.base(x) + (x @ self.a.t() @ self.b.t()) * self.scale

    adapters = {}
    for name, module in list(encoder.named_modules()):
        if name.startswith("encoder.layer.") and name.count(".") >= 3 and name.split(".", 3)[3] in ADAPTED:
            parent_name, child = name.rsplit(".", 1)
            wrapped = LoRALinear(module)
            setattr(encoder.get_submodule(parent_name), child, wrapped)
            adapters[name] = wrapped

    class AdaptedReader(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder
            self.head = torch.nn.Linear(encoder.config.hidden_size, 2)
            self.adapter_modules = torch.nn.ModuleDict({k.replace(".", "_"): v for k, v in adapters.items()})

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state
            return self.head(hidden)

    model = AdaptedReader()
    if weights is not None:
        missing = set(adapters) - set(weights.adapters)
        if missing:
            raise ModelError(f"reader weights lack adapters for {sorted(missing)[:3]}")
        with torch.no_grad():
            for name, module in adapters.items():
                a, b = weights.adapters[name]
                module.a.copy_(torch.from_numpy(a))
                module.b.copy_(torch.from_numpy(b))
            model.head.weight.copy_(torch.from_numpy(weights.head_weight))
            model.head.bias.copy_(torch.from_numpy(weights.head_bias))
    model.adapters = adapters
    return model


def merged_model(base_path: Path, weights: ReaderWeights):
    """The base encoder with each adapter folded into its layer's weight (W + alpha/rank * B A) and the head: the
    same function as ``adapted_model`` with ``weights``, as a plain BERT graph that onnxruntime's transformer
    fusions recognise (the export's speed)."""
    import torch

    encoder = _load_encoder(base_path)
    modules = dict(encoder.named_modules())
    adapted = [name for name in modules if name.startswith("encoder.layer.") and name.count(".") >= 3
               and name.split(".", 3)[3] in ADAPTED]
    missing = set(adapted) - set(weights.adapters)
    if missing:
        raise ModelError(f"reader weights lack adapters for {sorted(missing)[:3]}")
    with torch.no_grad():
        for name in adapted:
            a, b = weights.adapters[name]
            modules[name].weight += torch.from_numpy(b @ a * weights.scale)

    class Merged(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder
            self.head = torch.nn.Linear(encoder.config.hidden_size, 2)

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.head(self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                          token_type_ids=token_type_ids).last_hidden_state)

    model = Merged()
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(weights.head_weight))
        model.head.bias.copy_(torch.from_numpy(weights.head_bias))
    return model.eval()


def weights_of(model, base: ModelInfo, meta: dict) -> ReaderWeights:
    """The trained adapters and head of ``adapted_model`` as ``ReaderWeights`` (float16, as they are saved)."""
    first = next(iter(model.adapters.values()))
    return ReaderWeights(
        base.sha256, base.model_id, int(first.a.shape[0]), float(first.scale * first.a.shape[0]),
        {name: (m.a.detach().numpy().astype(np.float16).astype(np.float32),
                m.b.detach().numpy().astype(np.float16).astype(np.float32)) for name, m in model.adapters.items()},
        model.head.weight.detach().numpy().astype(np.float16).astype(np.float32),
        model.head.bias.detach().numpy().astype(np.float32), meta)


# ---------------------------------------------------------------------------------------- decoding


def best_span(start_logits: np.ndarray, end_logits: np.ndarray, offsets: list[tuple[int, int]],
              in_sentence: list[bool], word_ids: list[int | None], text: str) -> ReadSpan | None:
    """The span of whole words with the highest start + end logit, at most MAX_ANSWER_TOKENS word pieces long,
    inside the sentence (``in_sentence`` marks its pieces). A span starting or ending inside a word is widened
    to the whole word ("##iman" -> "Soleimani")."""
    positions = [i for i, inside in enumerate(in_sentence) if inside]
    if not positions:
        return None
    starts = np.array([start_logits[i] for i in positions], dtype=np.float64)
    ends = np.array([end_logits[i] for i in positions], dtype=np.float64)
    pair = starts[:, None] + ends[None, :]
    n = len(positions)
    allowed = np.triu(np.ones((n, n), dtype=bool)) & ~np.triu(np.ones((n, n), dtype=bool), k=MAX_ANSWER_TOKENS)
    pair[~allowed] = -np.inf
    first, last = np.unravel_index(int(np.argmax(pair)), pair.shape)
    i, j = positions[first], positions[last]
    while i > positions[0] and word_ids[i - 1] is not None and word_ids[i - 1] == word_ids[i]:
        i -= 1
    while j < positions[-1] and word_ids[j + 1] is not None and word_ids[j + 1] == word_ids[j]:
        j += 1
    start, end = offsets[i][0], offsets[j][1]
    return ReadSpan(text[start:end], start, end, float(pair[first, last]))


def tokenizer_for(base_path: Path):
    from tokenizers import Tokenizer

    tokenizer_file = base_path / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise ModelError(f"{base_path}: no tokenizer.json (needed by the reader)")
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_padding()
    tokenizer.enable_truncation(MAX_TOKENS, strategy="only_second")
    return tokenizer


def pair_inputs(tokenizer, question: str, sentences: list[str]):
    """Padded int64 arrays (input_ids, attention_mask, token_type_ids) and the encodings, one row a sentence."""
    from rag.onnx_encoder import padded

    encodings = [tokenizer.encode(question.strip(), s) for s in sentences]
    return (*padded(encodings), encodings)


def spans_from_logits(logits: np.ndarray, encodings, sentences: list[str]) -> list[ReadSpan | None]:
    out = []
    for r, (e, sentence) in enumerate(zip(encodings, sentences, strict=True)):
        in_sentence = [s == 1 for s in e.sequence_ids]
        out.append(best_span(logits[r, :, 0], logits[r, :, 1], e.offsets, in_sentence, e.word_ids, sentence))
    return out


# ---------------------------------------------------------------------------------------- runtime


class Reader:
    """The exported reader on onnxruntime."""

    def __init__(self, folder: Path, base_path: Path, threads: int | None = None):
        from rag.onnx_encoder import cpu_session

        self.tokenizer = tokenizer_for(base_path)
        self.session = cpu_session(folder / MODEL_FILE, threads)

    def logits(self, question: str, sentences: list[str]):
        ids, mask, types, encodings = pair_inputs(self.tokenizer, question, sentences)
        logits = self.session.run(["logits"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})[0]
        return logits, encodings

    def read(self, question: str, sentences: list[str]) -> list[ReadSpan | None]:
        """The best span of each sentence (None for an empty one)."""
        if not sentences:
            return []
        logits, encodings = self.logits(question, sentences)
        return spans_from_logits(logits, encodings, sentences)


def choose_span(spans: list[ReadSpan | None]) -> str:
    """The answer among the best spans of an answer's sentences: the highest-scoring, trimmed of punctuation."""
    found = [s for s in spans if s is not None and s.text.strip()]
    if not found:
        return ""
    return max(found, key=lambda s: s.score).text.strip(" ,.;:\"“”'")


def reader_folder(reader_sha256: str, cache_dir: Path) -> Path:
    return cache_dir / f"reader-{reader_sha256[:12]}"


def _marker_matches(folder: Path, reader_sha256: str) -> bool:
    try:
        marker = json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))
        return (marker.get("format") == FORMAT and marker.get("reader_sha256") == reader_sha256
                and (folder / MODEL_FILE).stat().st_size == marker["onnx_bytes"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def export(weights: ReaderWeights, reader_sha256: str, base: ModelInfo, cache_dir: Path) -> Path:
    """Export the adapted encoder and head to ONNX, check it against torch on the probe pairs (largest logit
    difference at most MAX_LOGIT_GAP), then move it into place. Needs torch, transformers and onnx."""
    import warnings

    import torch

    from rag.onnx_encoder import _fuse_transformer_ops, install

    if weights.base_sha256 != base.sha256:
        raise ModelError(f"the reader adapts the model with checksum {weights.base_sha256[:12]}, not {base.model_id} "
                         f"({base.sha256[:12]}); refit it with `make train`")
    target = reader_folder(reader_sha256, cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".reader-export-", dir=target.parent))
    started = time.perf_counter()
    try:
        model = merged_model(base.path, weights)
        expected_model = adapted_model(base.path, weights).eval()
        example = tuple(torch.ones(2, 8, dtype=torch.long) for _ in range(3))
        names = ["input_ids", "attention_mask", "token_type_ids"]
        axes = {n: {0: "batch", 1: "tokens"} for n in names} | {"logits": {0: "batch", 1: "tokens"}}
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about Python booleans in the attention code
            torch.onnx.export(model, example, str(tmp / MODEL_FILE), input_names=names, output_names=["logits"],
                              dynamic_axes=axes, opset_version=17, dynamo=False)
        fused = _fuse_transformer_ops(tmp / MODEL_FILE, base.path)
        reader = Reader(tmp, base.path)
        tokenizer = tokenizer_for(base.path)
        gap = 0.0
        for question, sentence in PROBES:
            ids, mask, types, _ = pair_inputs(tokenizer, question, [sentence])
            with torch.no_grad():  # against the adapters as trained, not the merged copy that was exported
                expected = expected_model(torch.from_numpy(ids), torch.from_numpy(mask),
                                          torch.from_numpy(types)).numpy()
            got, _ = reader.logits(question, [sentence])
            gap = max(gap, float(np.max(np.abs(got - expected))))
        del reader
        if not gap <= MAX_LOGIT_GAP:
            raise ModelError(f"reader ONNX export differs from torch by {gap:.2e} (> {MAX_LOGIT_GAP})")
        marker = {"format": FORMAT, "reader_sha256": reader_sha256, "base_sha256": base.sha256,
                  "onnx_bytes": (tmp / MODEL_FILE).stat().st_size, "max_logit_gap": gap, "fused_ops": fused,
                  "torch": torch.__version__, "export_seconds": round(time.perf_counter() - started, 2)}
        (tmp / MARKER_FILE).write_text(json.dumps(marker, indent=2), encoding="utf-8")
        install(tmp, target, lambda folder: _marker_matches(folder, reader_sha256))
        log.info("exported the reader to %s (largest logit gap %.1e)", target, gap)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_reader(cache_dir: Path, path: Path | None = None, threads: int | None = None) -> Reader:
    """The reader of ``path`` (default: the shipped one), exported first when no verified export is cached."""
    from rag.model_files import BUNDLED_MODEL, resolve_model

    weights, sha = read_weights(path)
    with _LOCK:  # one export at a time, and one session per reader and cache folder in a process
        key = (str(cache_dir), sha, threads)
        if key not in _LOADED:
            base = resolve_model(BUNDLED_MODEL, cache_dir)
            folder = reader_folder(sha, cache_dir)
            if not _marker_matches(folder, sha):
                export(weights, sha, base, cache_dir)
            _LOADED[key] = Reader(folder, base.path, threads)
        return _LOADED[key]


# A backend is rebuilt when the index changes (a document added); the reader it loads is the same.
_LOCK = threading.Lock()
_LOADED: dict[tuple[str, str, int | None], Reader] = {}
