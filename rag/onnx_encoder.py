"""ONNX Runtime encoder for the sentence-transformers model: the same vectors without importing torch.

Importing torch and sentence-transformers costs 5-8 s on a small machine, which dominated the cold start of
``rag ask``. The transformer plus mean pooling is exported once to ONNX (this step needs torch and the
``onnx`` package) into ``<model_cache_dir>/onnx-<model sha256[:12]>/`` and checked against the
sentence-transformers vectors before it is ever used: every sentence of a varied verification set must agree
to ``MAX_COSINE_GAP`` (1e-4) cosine. After that only onnxruntime, tokenizers and numpy are needed.

On every load the probe sentences are re-encoded and compared with the sentence-transformers vectors saved
at export time, so a damaged file or an onnxruntime that computes differently is caught without torch.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rag.errors import ModelError

if TYPE_CHECKING:
    import numpy as np

    from rag.model_files import ModelInfo

log = logging.getLogger("rag")

MAX_COSINE_GAP = 1e-4
ONNX_OPSET = 17
FORMAT = 3  # 2: transformer ops fused by onnxruntime's optimizer; 3: the token vectors are a second output
MODEL_FILE = "model.onnx"
MARKER_FILE = "verified.json"
PROBE_VECTORS_FILE = "probe_vectors.npy"
# Sentence-transformers module types the export reproduces (transformer, mean pooling, optional normalise).
_SUPPORTED_MODULES = {"Transformer", "Pooling", "Normalize"}

# Encoded together as one padded batch on every load (kept short: this is part of every cold start).
PROBES = (
    "Who replaced Qassem Soleimani?",
    "The militias control a network of businesses, from checkpoints and construction firms to banks, "
    "and their leaders want access to Western healthcare and schooling abroad for their children.",
)
# Checked once at export, in batches and one by one: punctuation, numbers, quotes, accents, empty-ish text,
# and an input longer than max_seq_length (truncated).
VERIFICATION_SENTENCES = (
    *PROBES,
    " ".join(["Iraq's armed factions and the state are entangled in oil, politics and money."] * 30),
    "",
    "a",
    "Baghdad, March 6 (Reuters) - Iraq's Shi'ite militias face pressure.",
    '"We are not going anywhere," said one commander, who asked not to be named.',
    "In 2019, protesters stormed the U.S. embassy; 150,000 fighters were on the state payroll.",
    "Ümit Özdağ met José Núñez in São Paulo — a café meeting on 3/4/2024 at 10:30 a.m.",
    "WHAT DID THE PRIME MINISTER SAY ABOUT THE POPULAR MOBILISATION FORCES?",
    "the the the the the",
    "$4.5 billion, 12% growth and 1,000s of jobs.",
    "Tehran’s influence — once unchallenged — has waned since 2020.",
    "How many fighters does Kataib Hezbollah have?",
)


def onnx_folder(info: ModelInfo, cache_dir: Path) -> Path:
    return cache_dir / f"onnx-{info.sha256[:12]}"


def _pipeline_config(model_path: Path) -> tuple[int, bool]:
    """(max_seq_length, do_lower_case) of a sentence-transformers folder; ModelError when its modules are
    not the transformer + mean pooling (+ normalise) that the export reproduces."""
    modules_file = model_path / "modules.json"
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        kinds = {m["type"].rsplit(".", 1)[-1] for m in modules}
        pooling_dir = next(m["path"] for m in modules if m["type"].endswith("Pooling"))
        pooling = json.loads((model_path / pooling_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, StopIteration) as exc:
        raise ModelError(f"{model_path}: not a sentence-transformers folder the ONNX export supports ({exc})") from None
    modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v}
    if not kinds <= _SUPPORTED_MODULES or modes != {"pooling_mode_mean_tokens"}:
        raise ModelError(f"{model_path}: ONNX export supports transformer + mean pooling only (found {sorted(kinds)}, "
                         f"{sorted(modes)})")
    try:
        config = json.loads((model_path / "sentence_bert_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    return int(config.get("max_seq_length") or 512), bool(config.get("do_lower_case", False))


def cpu_session(model_file: Path, threads: int | None = None):
    """An onnxruntime CPU session for a model file; ModelError when onnxruntime cannot load it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    # Spinning worker threads win a little on an idle machine but lose a lot on a busy one, where they
    # steal the second of two cores from FAISS, BM25 and the web server (one query, 2 threads: idle
    # 3.7 ms spinning vs 4.3 ms not; loaded 12 ms spinning vs 7 ms not).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
        raise ModelError(f"{model_file}: onnxruntime cannot load it ({exc})") from None


def padded(encodings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """int64 (input_ids, attention_mask, token_type_ids) of tokenizer encodings of different lengths, padded
    with zeros to the longest."""
    import numpy as np

    width = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(encodings), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for row, e in enumerate(encodings):
        ids[row, :len(e.ids)] = e.ids
        mask[row, :len(e.ids)] = 1
        types[row, :len(e.ids)] = e.type_ids
    return ids, mask, types


class OnnxEncoder:
    """Tokenizes with the model's own ``tokenizer.json`` and runs the exported graph on onnxruntime."""

    def __init__(self, folder: Path, model_path: Path, threads: int | None = None):
        from tokenizers import Tokenizer

        self.folder = folder
        self.max_seq_length, self.lower_case = _pipeline_config(model_path)
        tokenizer_file = model_path / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise ModelError(f"{model_path}: no tokenizer.json (needed by the ONNX encoder)")
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.enable_truncation(self.max_seq_length)
        pad_id = self.tokenizer.token_to_id("[PAD]")
        pad_token = "[PAD]" if pad_id is not None else (self.tokenizer.id_to_token(0) or "")
        self.tokenizer.enable_padding(pad_id=pad_id or 0, pad_token=pad_token)
        self.session = cpu_session(folder / MODEL_FILE, threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """L2-normalised float32 vectors; texts are length-sorted into batches so padding stays short."""
        import numpy as np

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for rows, encodings in self._batches(texts, batch_size, progress):
            out[rows] = self.session.run(["embedding"], self._feed(encodings))[0]
        return _normalised(out)

    def _batches(self, texts: list[str], batch_size: int, progress: bool):
        """(positions in ``texts``, their encodings) batch by batch, longest texts first so padding stays short."""
        # sentence-transformers strips (and optionally lowercases) before tokenizing; do the same.
        cleaned = [t.strip().lower() if self.lower_case else t.strip() for t in texts]
        order = sorted(range(len(cleaned)), key=lambda i: -len(cleaned[i]))
        starts = range(0, len(order), batch_size)
        if progress:
            from tqdm import tqdm

            starts = tqdm(starts, desc="embedding", unit="batch")
        for start in starts:
            rows = order[start : start + batch_size]
            yield rows, self.tokenizer.encode_batch([cleaned[i] for i in rows])

    def encode_with_tokens(self, texts: list[str], batch_size: int = 64,
                           progress: bool = False) -> tuple[np.ndarray, list[np.ndarray]]:
        """The texts' vectors (as ``encode``) and, per text, its word pieces' contextual vectors from the same
        run (``token_rows``: L2-normalised float32, special tokens and punctuation dropped)."""
        vectors, tokens, _ = self.encode_with_token_words(texts, batch_size, progress)
        return vectors, tokens

    def encode_with_token_words(self, texts: list[str], batch_size: int = 64, progress: bool = False
                                ) -> tuple[np.ndarray, list[np.ndarray], list[tuple[str, ...]]]:
        """As ``encode_with_tokens``, plus per text the word each token row is a piece of (``token_words``)."""
        import numpy as np

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        tokens: list = [None] * len(texts)
        words: list = [None] * len(texts)
        for rows, encodings in self._batches(texts, batch_size, progress):
            pooled, hidden = self.session.run(["embedding", "tokens"], self._feed(encodings))
            out[rows] = pooled
            for k, (i, e) in enumerate(zip(rows, encodings, strict=True)):
                tokens[i] = token_rows(hidden[k], e.tokens, e.special_tokens_mask, e.attention_mask)
                words[i] = token_words(e.tokens, e.special_tokens_mask, e.attention_mask, e.word_ids)
        return _normalised(out), tokens, words

    def _feed(self, encodings) -> dict[str, np.ndarray]:
        import numpy as np

        arrays = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        return {name: arrays[name] for name in self.input_names}


def _normalised(vectors: np.ndarray) -> np.ndarray:
    import numpy as np

    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def _kept(tokens: list[str], special: list[int], mask: list[int]) -> list[int]:
    """Positions of the tokens that carry words: not special ([CLS], [SEP], padding), not punctuation."""
    return [i for i, (t, s, m) in enumerate(zip(tokens, special, mask, strict=False))
            if m and not s and t.lstrip("#").isalnum()]


def token_rows(hidden: np.ndarray, tokens: list[str], special: list[int], mask: list[int]) -> np.ndarray:
    """The L2-normalised float32 rows of ``hidden`` (one per token) for the tokens that carry words: not
    special ([CLS], [SEP], padding) and not punctuation. Shape (0, dim) when none do."""
    import numpy as np

    keep = _kept(tokens, special, mask)
    rows = np.asarray(hidden[keep], dtype=np.float32).reshape(len(keep), hidden.shape[-1])
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def token_words(tokens: list[str], special: list[int], mask: list[int],
                word_ids: list[int | None]) -> tuple[str, ...]:
    """For each row ``token_rows`` keeps, the whole word (as the tokenizer split the text) it is a piece of:
    "soleimani" for each of "sole", "##iman", "##i". Lets a question's pieces be weighed per word."""
    keep = _kept(tokens, special, mask)
    pieces: dict[int | None, str] = {}
    for i in keep:
        pieces[word_ids[i]] = pieces.get(word_ids[i], "") + tokens[i].removeprefix("##")
    return tuple(pieces[word_ids[i]] for i in keep)


def cosine_gap(a: np.ndarray, b: np.ndarray) -> float:
    """Largest 1 - cosine between matching rows of two sets of vectors."""
    import numpy as np

    a = a.astype(np.float64) / np.linalg.norm(a.astype(np.float64), axis=1, keepdims=True)
    b = b.astype(np.float64) / np.linalg.norm(b.astype(np.float64), axis=1, keepdims=True)
    return float(np.max(1.0 - np.sum(a * b, axis=1)))


def _fuse_transformer_ops(model_file: Path, model_path: Path) -> dict[str, int]:
    """Rewrite a BERT-family graph with onnxruntime's transformer fusions (attention, skip + layer norm,
    bias + GELU); exact GELU is kept (no tanh approximation), so the float32 maths is the same and the
    verification below still holds. About 1.5-2x faster on CPU. Other model types are left as exported."""
    try:
        config = json.loads((model_path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if config.get("model_type") != "bert":
        return {}
    try:
        from onnxruntime.transformers.fusion_options import FusionOptions
        from onnxruntime.transformers.optimizer import optimize_model

        options = FusionOptions("bert")
        options.enable_gelu_approximation = False
        optimized = optimize_model(str(model_file), model_type="bert", num_heads=int(config["num_attention_heads"]),
                                   hidden_size=int(config["hidden_size"]), optimization_options=options, opt_level=0)
        optimized.save_model_to_file(str(model_file))
        return {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
    except Exception as exc:  # the optimizer's failures vary by model; the plain export still works
        log.info("ONNX transformer fusion skipped (%s); using the plain export", exc)
        return {}


def _marker_matches(folder: Path, info: ModelInfo) -> bool:
    try:
        marker = json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))
        return (marker.get("format") == FORMAT and marker.get("model_sha256") == info.sha256
                and (folder / MODEL_FILE).stat().st_size == marker["onnx_bytes"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def load(info: ModelInfo, cache_dir: Path, threads: int | None = None) -> OnnxEncoder:
    """Open a previously exported and verified encoder; ModelError if there is none or it fails its probes."""
    import numpy as np

    folder = onnx_folder(info, cache_dir)
    if not _marker_matches(folder, info):
        raise ModelError(f"{folder}: no verified ONNX export for this model")
    try:
        probe_vectors = np.load(folder / PROBE_VECTORS_FILE, allow_pickle=False)
    except (OSError, ValueError):
        raise ModelError(f"{folder}: probe vectors missing or unreadable") from None
    encoder = OnnxEncoder(folder, info.path, threads)
    gap = cosine_gap(encoder.encode(list(PROBES)), probe_vectors)
    if not gap <= MAX_COSINE_GAP:
        raise ModelError(f"{folder}: ONNX vectors differ from sentence-transformers by {gap:.2e} cosine")
    return encoder


def export(info: ModelInfo, cache_dir: Path, reference: Callable[[list[str]], np.ndarray]) -> Path:
    """Export the transformer + mean pooling to ONNX and verify it against ``reference`` (the
    sentence-transformers encode) before moving it into place. Needs torch, transformers and onnx."""
    import numpy as np
    import torch
    from transformers import AutoModel

    _pipeline_config(info.path)  # refuse unsupported pipelines before spending time on an export
    target = onnx_folder(info, cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".onnx-export-", dir=target.parent))
    started = time.perf_counter()
    try:
        try:
            model = AutoModel.from_pretrained(str(info.path), local_files_only=True, attn_implementation="eager")
        except (TypeError, ValueError):  # models without selectable attention implementations
            model = AutoModel.from_pretrained(str(info.path), local_files_only=True)
        model.eval()
        import inspect

        accepted = inspect.signature(model.forward).parameters
        names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in accepted]

        class MeanPooled(torch.nn.Module):
            """The transformer followed by sentence-transformers' mean pooling over non-padding tokens; the
            token vectors before pooling are a second output (the answerer's token matches)."""

            def __init__(self, transformer):
                super().__init__()
                self.transformer = transformer

            def forward(self, *inputs):
                feed = dict(zip(names, inputs, strict=True))
                hidden = self.transformer(**feed).last_hidden_state
                mask = feed["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), hidden

        example = tuple(torch.ones(2, 8, dtype=torch.long) for _ in names)
        axes = {n: {0: "batch", 1: "tokens"} for n in names} | {"embedding": {0: "batch"},
                                                                "tokens": {0: "batch", 1: "tokens"}}
        import warnings

        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about Python booleans in the attention code
            torch.onnx.export(MeanPooled(model), example, str(tmp / MODEL_FILE), input_names=names,
                              output_names=["embedding", "tokens"], dynamic_axes=axes, opset_version=ONNX_OPSET, dynamo=False)
        fused = _fuse_transformer_ops(tmp / MODEL_FILE, info.path)
        encoder = OnnxEncoder(tmp, info.path)
        sentences = list(VERIFICATION_SENTENCES)
        expected = reference(sentences)
        gap = max(cosine_gap(encoder.encode(sentences, batch_size=8), expected),
                  cosine_gap(np.vstack([encoder.encode([s]) for s in sentences]), expected))
        if not gap <= MAX_COSINE_GAP:
            raise ModelError(f"ONNX export differs from sentence-transformers by {gap:.2e} cosine (> {MAX_COSINE_GAP})")
        del encoder
        np.save(tmp / PROBE_VECTORS_FILE, expected[: len(PROBES)].astype(np.float32), allow_pickle=False)
        import onnxruntime

        marker = {
            "format": FORMAT,
            "model_id": info.model_id,
            "model_sha256": info.sha256,
            "onnx_bytes": (tmp / MODEL_FILE).stat().st_size,
            "max_cosine_gap": gap,
            "verified_sentences": len(sentences),
            "opset": ONNX_OPSET,
            "fused_ops": fused,
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "export_seconds": round(time.perf_counter() - started, 2),
        }
        (tmp / MARKER_FILE).write_text(json.dumps(marker, indent=2), encoding="utf-8")
        install(tmp, target, lambda folder: _marker_matches(folder, info))
        log.info("exported ONNX encoder to %s (max cosine gap %.1e)", target, gap)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def install(tmp: Path, target: Path, verified: Callable[[Path], bool]) -> None:
    """Move a finished, verified export from ``tmp`` to ``target``, unless another process finished the same
    export meanwhile (theirs is kept: it may be in use); a stale or damaged ``target`` is moved aside first."""
    if verified(target):
        return
    _discard(target)
    try:
        tmp.rename(target)
    except OSError:  # another process won the race between the check and the rename
        if not verified(target):
            raise


def _discard(folder: Path) -> None:
    """Move a stale or damaged export aside atomically (a reader never sees it half-deleted), then delete it."""
    if folder.exists():
        aside = Path(tempfile.mkdtemp(prefix=".onnx-stale-", dir=folder.parent))
        folder.rename(aside / folder.name)
        shutil.rmtree(aside, ignore_errors=True)


def load_or_export(
    info: ModelInfo, cache_dir: Path, reference: Callable[[list[str]], np.ndarray], threads: int | None = None
) -> OnnxEncoder:
    """The verified encoder, exporting it first when there is none (or the cached one fails its probes)."""
    try:
        return load(info, cache_dir, threads)
    except ModelError as exc:
        folder = onnx_folder(info, cache_dir)
        if folder.exists():
            log.warning("%s; exporting it again", exc)
            _discard(folder)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    export(info, cache_dir, reference)
    return load(info, cache_dir, threads)
