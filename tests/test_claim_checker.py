"""The claim checker (`rag check`): the learned model's file, its features' findings, the reasons a reader gets,
the claim sets and their evaluation (`rag eval --claims`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from rag.claims import FEATURE_SIGNS, PASSAGE_FEATURES, difference
from rag.claims_model import DEFAULT_MODEL, NLI_MODEL, VERDICT_FEATURES, ClaimModel, load_model, parse_model
from rag.claims_training import claim_files
from rag.errors import InputFileError, ModelError
from rag.eval.claims import claim_metrics, document_beside, load_claims
from rag.model_files import BUNDLED_SHA256
from rag.settings import PROJECT_ROOT
from rag.verify import judge, unresolved_names

# ---------------------------------------------------------------------------------------------- reasons


@pytest.mark.parametrize(("claim", "passage", "expected"), [
    ("Soleimani's replacement, Esmail Ghaani, has the same stature and authority.",
     "Soleimani's replacement, Esmail Ghaani, lacks the same stature and authority.",
     'the passage says "lacks" where the claim says "has"'),
    ("The killing was ordered by President Joe Biden.",
     "The killing, ordered by President Donald Trump, sent the militias scrambling.",
     'the passage says "donald trump" where the claim says "joe biden"'),
    ("Qais al-Khazali issued a fiery statement on X praising the US.",
     "Qais al-Khazali, a US-sanctioned commander, issued an anodyne statement on X condemning the US.",
     'the passage says "an anodyne" where the claim says "a fiery", and "condemning" where the claim says '
     '"praising"'),
    ("The council did approve the budget.", "The council did not approve the budget on Monday.",
     'the passage says "not", which the claim leaves out'),
    # figures whole (was '"150" where the claim says "200"' and '"2" where the claim says "1"')
    ("The PMF is a 200,000-strong umbrella organization.", "The PMF is a 150,000-strong umbrella organization.",
     'the passage says "150,000-strong" where the claim says "200,000-strong"'),
    ("The fund paid out $1.5 million last year.", "The fund paid out $2.5 million last year.",
     'the passage says "2.5" where the claim says "1.5"'),
])
def test_difference_names_where_a_near_copy_departs_from_its_passage(claim, passage, expected):
    assert difference(claim, passage) == expected


def test_difference_is_silent_for_exact_copies_and_for_claims_that_are_not_copies():
    passage = "The council approved the budget on Monday after a long debate."
    assert difference("The council approved the budget on Monday.", passage) is None
    assert difference("Lawmakers backed the spending plan at the start of the week.", passage) is None
    # Words the claim leaves out of the passage are no departure: claims summarise.
    assert difference("The council approved the budget after a long debate.", passage) is None
    # Nor are words it moves: a reordered passage.
    assert difference("President Donald Trump ordered the killing.",
                      "The killing, ordered by President Donald Trump, sent the militias scrambling.") is None


def test_a_surname_in_the_passage_resolves_the_full_name_the_document_gave():
    document = "gareth stansfield, a professor at exeter, said so. later: \"it is over,\" said stansfield."
    passage = "\"it is over,\" said stansfield."
    assert unresolved_names(["gareth"], [["gareth", "stansfield"]], passage, document) == []
    # Not when the document never wrote that full name.
    assert unresolved_names(["john"], [["john", "stansfield"]], passage, document) == ["john"]
    # Nor when the passage holds only the first words of a longer name: "the reef" is not the reef's authority.
    body = ["great", "barrier", "reef", "marine", "park", "authority"]
    assert unresolved_names(["marine", "park", "authority"], [body], "the great barrier reef lost coral",
                            "the great barrier reef marine park authority said so") == ["marine", "park", "authority"]


def test_the_rules_resolve_a_full_name_from_the_document_and_name_speakers_by_said():
    document = ("Qassem Soleimani led the Quds Force. Soleimani's replacement, Esmail Ghaani, lacks the same "
                "stature. In Baghdad, Iraqi officials met. \"The factions are split,\" said Stansfield.")
    passage = "Soleimani's replacement, Esmail Ghaani, lacks the same stature."
    claim = "Esmail Ghaani lacks the stature of Qassem Soleimani."
    assert "Qassem" in judge(claim, passage).reason  # without the document: the first name is missing
    assert judge(claim, passage, document=document).verdict == "supported"
    # a quote given to the wrong person: the speaker is whom "said" names, not every capitalised word
    quoted = judge('Khazali said "The factions are split"', 'In Baghdad, Iraqi officials met. "The factions are '
                   'split," said Stansfield.')
    assert quoted.reason == 'quote found, but the article attributes it to Stansfield, not Khazali'


# ---------------------------------------------------------------------------------------------- the model file


@pytest.mark.parametrize("shipped", [DEFAULT_MODEL, NLI_MODEL])
def test_every_feature_has_a_sign_and_the_shipped_models_keep_it(shipped):
    assert set(PASSAGE_FEATURES) | {"passage_probability", "entailment"} == set(FEATURE_SIGNS)
    model = load_model(None, shipped)
    assert (model.nli_sha256 is not None) == (shipped == NLI_MODEL)
    for logistic in (model.passage, model.support, model.partial):
        for name, weight in zip(logistic.features, logistic.coef, strict=True):
            assert weight * FEATURE_SIGNS[name] >= -1e-9, (name, weight)
    assert 0 < model.min_support < 1 and 0 < model.min_partial < 1


@pytest.mark.parametrize("shipped", [DEFAULT_MODEL, NLI_MODEL])
def test_the_shipped_models_were_fitted_on_the_claim_sets_of_this_checkout(shipped):
    import hashlib

    meta = load_model(None, shipped).meta
    files = {str(f.relative_to(PROJECT_ROOT)): hashlib.sha256(f.read_bytes()).hexdigest() for f in claim_files()}
    assert meta["files"] == files, "claim sets changed: run `make train` (and `python -m rag.claims_training --nli`)"
    assert meta["claims"] == sum(len(load_claims(f)[1]) for f in claim_files())
    assert meta["lodo"]["false_support"] < 0.15
    assert meta["embedding"]["sha256"] == BUNDLED_SHA256, "fitted on the bundled MiniLM's features, and says so"


def test_a_claim_model_fitted_on_another_embedder_is_used_with_one_warning(fake_pipeline, caplog):
    from rag.answer import scorer

    scorer._warned.clear()
    with caplog.at_level("WARNING", logger="rag"):
        models = [fake_pipeline.claim_model() for _ in range(2)]
    warnings = [r.getMessage() for r in caplog.records if "was fitted with the embedding model" in r.getMessage()]
    assert models[0] is models[1] and len(warnings) == 1
    assert warnings[0].startswith("claim model claims.json") and "RAG_CLAIM_MODEL=FILE" in warnings[0]


def test_the_model_file_round_trips_and_malformed_files_are_refused(tmp_path):
    model = load_model()
    again = parse_model(json.loads(json.dumps(model.to_json())), "copy")
    row = np.linspace(0, 1, len(PASSAGE_FEATURES))
    assert again.verdict(row, 0.5) == model.verdict(row, 0.5)
    data = model.to_json()
    with pytest.raises(ModelError, match="format"):
        parse_model({**data, "format": 99}, "x")
    broken = json.loads(json.dumps(data))
    broken["support"]["features"] = broken["support"]["features"][:-1]
    with pytest.raises(ModelError, match="do not match"):
        parse_model(broken, "x")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_model(str(tmp_path / "bad.json"))
    assert VERDICT_FEATURES[-1] == "passage_probability"
    assert isinstance(again, ClaimModel)
    # A model fitted with an NLI model keeps its sha256, reads the entailment score, and needs it.
    nli = load_model(None, NLI_MODEL)
    again = parse_model(json.loads(json.dumps(nli.to_json())), "copy")
    assert again.nli_sha256 == nli.nli_sha256 and again.support.features[-1] == "entailment"
    assert again.verdict(row, 0.5, 3.0) == nli.verdict(row, 0.5, 3.0)
    assert nli.verdict(row, 0.9, -8.0) != "supported"
    with pytest.raises(ValueError, match="entailment"):
        nli.verdict(row, 0.5)
    with pytest.raises(ValueError, match="entailment"):
        model.verdict(row, 0.5, 1.0)
    # Answer sentences: flagged below flag_below, partial up to min_support, supported from it.
    assert again.flag_below == nli.flag_below and 0 < model.flag_below < model.min_support
    assert [model.sentence_verdict(p) for p in (model.flag_below - 0.01, model.flag_below, model.min_support)] == \
        ["unsupported", "partial", "supported"]
    older = {k: v for k, v in data.items() if k != "flag_below"}
    with pytest.raises(ValueError, match="operating point for answer sentences"):
        parse_model(older, "older").sentence_verdict(0.5)


# ---------------------------------------------------------------------------------------------- claim sets


def test_claim_sets_are_valid_and_their_evidence_is_in_their_document():
    files = claim_files()
    assert len(files) == 33
    labels = []
    for path in files:
        documents, claims = load_claims(path)
        text = documents[0][1] if documents else (PROJECT_ROOT / "data" / "corpus" /
                                                  "2026-03-06-iran-proxies-iraq.txt").read_text(encoding="utf-8")
        for claim in claims:
            assert all(e in text for e in claim.evidence), (path.name, claim.id)
            labels.append(claim.label)
    assert {"supported", "partial", "unsupported"} == set(labels)


def test_load_claims_refuses_bad_files_with_the_line(tmp_path):
    path = tmp_path / "x.claims.jsonl"
    path.write_text('{"id": "a", "claim": "c", "label": "maybe"}\n')
    with pytest.raises(InputFileError, match=r"line 1: label 'maybe'"):
        load_claims(path)
    path.write_text('{"id": "a", "claim": "c", "label": "supported"}\n{"id": "a", "claim": "d", "label": "partial"}\n')
    with pytest.raises(InputFileError, match="line 2: duplicate id 'a'"):
        load_claims(path)
    path.write_text('{"id": "a", "claim": "c", "label": "supported", "evidence": "x"}\n')
    with pytest.raises(InputFileError, match="'evidence' must be a list"):
        load_claims(path)
    with pytest.raises(InputFileError, match="not found"):
        load_claims(tmp_path / "missing.jsonl")


def test_a_document_beside_a_claim_file_is_its_corpus(tmp_path):
    (tmp_path / "doc.txt").write_text("A sentence.")
    assert document_beside(tmp_path / "doc.claims.jsonl") == tmp_path / "doc.txt"
    assert document_beside(tmp_path / "doc.jsonl") == tmp_path / "doc.txt"
    assert document_beside(tmp_path / "other.claims.jsonl") is None


def test_claim_metrics_count_false_support_and_recall():
    rows = [
        {"label": "supported", "verdict": "supported", "kind": "verbatim", "evidence_at_1": True},
        {"label": "supported", "verdict": "partial", "kind": "paraphrase", "evidence_at_1": False},
        {"label": "unsupported", "verdict": "supported", "kind": "negated", "evidence_at_1": None},
        {"label": "unsupported", "verdict": "unsupported", "kind": "negated", "evidence_at_1": None},
        {"label": "partial", "verdict": "partial", "kind": "partly_true", "evidence_at_1": None},
    ]
    for r in rows:
        r.update(correct=r["label"] == r["verdict"], evidence_in_passages=r["evidence_at_1"], latency_ms=1.0)
    m = claim_metrics(rows)
    assert m["accuracy"] == 0.6 and m["false_support"] == round(1 / 3, 4) and m["supported_recall"] == 0.5
    assert m["binary_accuracy"] == 0.6 and m["evidence_at_1"] == 0.5
    assert m["by_kind"]["negated"]["accuracy"] == 0.5
    assert m["confusion"]["unsupported"]["supported"] == 1


# ---------------------------------------------------------------------------------------------- real pipeline


@pytest.mark.parametrize(("claim", "verdict", "reason_part"), [
    ("The killing was ordered by President Joe Biden.", "unsupported", "biden"),
    ("Qais al-Khazali, a US-sanctioned commander, issued a fiery statement on X praising the US.",
     "unsupported", '"condemning" where the claim says "praising"'),
    ("The Popular Mobilization Forces is a 150,000-strong paramilitary organization", "supported", ""),
    ("The capital of Australia is Canberra.", "unsupported", "australia"),
    # the app's example claim: "Qassem" is the rest of the name the passage gives as "Soleimani" (was UNSUPPORTED)
    ("Esmail Ghaani lacks the stature and authority of Qassem Soleimani.", "supported", "100%"),
])
def test_the_learned_checker_on_the_bundled_article(pipeline, claim, verdict, reason_part):
    result = pipeline.check(claim)
    assert result.verdict == verdict, result.reason
    assert reason_part in result.reason.lower()
    for p in result.passages:
        assert p.text == pipeline.index.documents[p.source].text[p.start : p.end]


def test_a_supported_verdict_the_rules_find_unsupported_on_its_passage_is_partial(pipeline):
    from rag.claims import check_claim, overruled
    from rag.verify import Verdict

    assert overruled("supported", "unsupported") and not overruled("supported", "partial")
    assert not overruled("unsupported", "unsupported")
    claim = "The Popular Mobilization Forces is a 150,000-strong paramilitary organization"
    index = pipeline.index
    candidates = pipeline.claim_candidates(claim)
    model, featurizer = pipeline.claim_model(), pipeline.claim_featurizer(index)
    assert check_claim(claim, index, candidates, pipeline.judge, model, featurizer).verdict == "supported"
    # The same claim, with rules that find a disqualifier on the chosen passage: PARTIAL, and the reason says both.
    contradicting = lambda c, p, d=None: Verdict("unsupported", "figure 150,000 in the claim, 200,000 in it", 0.1)  # noqa: E731
    result = check_claim(claim, index, candidates, contradicting, model, featurizer)
    assert result.verdict == "partial"
    assert result.reason.startswith("judged to state it as a whole") and "figure 150,000" in result.reason


def test_the_rules_alone_can_still_be_chosen(pipeline):
    from rag.pipeline import Pipeline

    rules = Pipeline(pipeline.settings.model_copy(update={"claim_model": "rules"}), pipeline.embedder, pipeline.index)
    assert rules.claim_model() is None
    # The rules see a name the passage lacks and stop at "partial"; the learned checker says unsupported.
    assert rules.check("The killing was ordered by President Joe Biden.").verdict == "partial"


@pytest.mark.slow
def test_rag_eval_claims_scores_a_claim_set(rag_executable, tmp_path):
    path = PROJECT_ROOT / "eval" / "dev" / "enc-glaciers.claims.jsonl"
    out = subprocess.run([rag_executable, "eval", "--claims", str(path), "--json", "--report", str(tmp_path)],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    metrics = json.loads(out.stdout)
    assert metrics["claims"] == 20 and 0 <= metrics["accuracy"] <= 1
    assert "enc-glaciers.txt" in metrics["corpus"]
    assert len((tmp_path / "claims-results.jsonl").read_text().splitlines()) == 20
    both = subprocess.run([rag_executable, "eval", "--claims", str(path), "--gold", str(path)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert both.returncode == 2 and "--claims and --gold" in both.stderr


def test_claim_files_are_found_beside_their_documents():
    assert all(Path(f).is_file() for f in claim_files())


@pytest.mark.slow
@pytest.mark.parametrize(("variable", "command"), [
    ("RAG_CLAIM_MODEL", ["check", "Esmail Ghaani replaced Soleimani."]),
    ("RAG_ANSWER_MODEL", ["ask", "Who replaced Soleimani?"]),
])
def test_a_missing_model_file_is_a_one_line_error_with_exit_6(rag_executable, tmp_path, variable, command):
    import os

    env = {**os.environ, variable: str(tmp_path / "missing.json")}
    out = subprocess.run([rag_executable, *command], capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 6, out.stderr
    assert out.stderr.strip().count("\n") == 0 and "missing.json: cannot read the" in out.stderr
