"""Fit the claim checker's models (``rag.claims_model``) on the labelled claim sets and measure them
leave-one-document-out.

Data: ``eval/claims.jsonl`` (the bundled article) and every ``eval/dev/<doc>.claims.jsonl`` (one document each):
520 claims over 25 documents, written for this purpose by people who had not seen the checker's code — true
claims copied or paraphrased, claims with one figure, name or speaker changed, negated, half true, or about
things the document never says (``kind``).

Protocol (as for the answerer, ``rag.answer.training``): the models are fitted on every document but the one
whose claims they judge; their thresholds are chosen on probabilities from models that had not seen the claim's
document either (nested), every document weighing the same. ``python -m rag.claims_training``
(part of ``make train``) writes ``rag/data/claims.json`` and ``docs/claims-lodo.json``; the rules of
``rag.verify`` are scored on the same claims in the same run.

``--nli LOCATION`` (an NLI model, ``rag.nli``) fits the variant whose verdict models also read the NLI model's
entailment log-odds of the chosen passage, and writes it to ``rag/data/claims-nli.json`` and its report to
``docs/claims-nli-lodo.json`` unless ``--out`` / ``--report`` say otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.answer.scorer import Logistic
from rag.answer.training import document_weights
from rag.claims import FEATURE_SIGNS, PASSAGE_FEATURES, ClaimFeaturizer, candidate_groups, overruled
from rag.claims_model import NLI_VERDICT_FEATURES, VERDICT_FEATURES, ClaimModel, verdict_row
from rag.errors import RagError
from rag.eval.claims import GoldClaim, claim_metrics, evidence_spans, load_claims, overlaps
from rag.settings import PROJECT_ROOT
from rag.verify import PARTIAL, SUPPORTED, UNSUPPORTED, judge

DEFAULT_OUT = PROJECT_ROOT / "rag" / "data" / "claims.json"
DEFAULT_REPORT = PROJECT_ROOT / "docs" / "claims-lodo.json"
DEFAULT_NLI_OUT = PROJECT_ROOT / "rag" / "data" / "claims-nli.json"
DEFAULT_NLI_REPORT = PROJECT_ROOT / "docs" / "claims-nli-lodo.json"
REGULARISATION = 1.0  # inverse L2 strength of both models (scikit-learn's C)
# Most claims that are not supported (out-of-document verdicts on the training documents, each document weighing
# the same) the checker may call supported; the threshold on P(supported) is the one with the most right verdicts
# under that limit. Calling a false claim "supported" misleads a reader; calling a true one "partial" sends them to
# the passage shown.
MAX_FALSE_SUPPORT = 0.10
SIGNED_VERDICTS = True
# Answer sentences (an LLM's, verified against the sentences they cite: rag.claims.LearnedJudge): the share of true
# sentences that may be flagged UNSUPPORTED (warned about, or dropped with RAG_LLM_UNSUPPORTED=drop). The rules
# of rag.verify flag 9.3 % of the true claims when judging them against their evidence; the learned verifier is
# held to about the same, and below ``flag_below`` it flags, between it and ``min_support`` it says partial.
MAX_TRUE_FLAGGED = 0.10
THRESHOLDS = np.round(np.arange(0.02, 0.951, 0.01), 2)


def claim_files() -> list[Path]:
    return [PROJECT_ROOT / "eval" / "claims.jsonl", *sorted((PROJECT_ROOT / "eval" / "dev").glob("*.claims.jsonl"))]


@dataclass
class ClaimExample:
    document: str
    claim: GoldClaim
    groups: list  # candidate passages (lists of Sentence)
    matrix: np.ndarray  # (groups, PASSAGE_FEATURES)
    labels: np.ndarray  # per group: it overlaps a gold evidence passage of a supported claim
    spans: list[tuple[str, int, int]]  # where the claim's evidence strings are in the indexed documents
    featurizer: ClaimFeaturizer
    rule_verdict: str  # what the rules of rag.verify say (the comparison)
    rule_evidence_at_1: bool | None
    evidence: list  # the indexed sentences its evidence strings overlap (empty: none named)
    evidence_rule_verdict: str | None  # the rules' verdict on the claim against that evidence


def _overlaps(group, spans) -> bool:
    return any(overlaps(s, spans) for s in group)


def collect(files: list[Path], embedder=None, log=print) -> list[ClaimExample]:
    from rag.claims import check_claim
    from rag.embeddings import Embedder
    from rag.index import open_index
    from rag.pipeline import Pipeline
    from rag.settings import Settings

    examples: list[ClaimExample] = []
    for path in files:
        documents, claims = load_claims(path)
        with tempfile.TemporaryDirectory(prefix="rag-claims-") as tmp:
            corpus = Path(tmp) / "corpus"
            corpus.mkdir()
            if documents:
                for name, text in documents:
                    (corpus / name).write_text(text, encoding="utf-8")
            else:
                for f in sorted((PROJECT_ROOT / "data" / "corpus").iterdir()):
                    if f.is_file():
                        (corpus / f.name).write_bytes(f.read_bytes())
            settings = Settings(corpus_dir=corpus, index_dir=Path(tmp) / "index", blas_threads=1, _env_file=None)
            embedder = embedder or Embedder.from_settings(settings)
            pipeline = Pipeline(settings, embedder, open_index(settings, embedder))
            index = pipeline.index
            featurizer = ClaimFeaturizer(index, embedder)
            for claim in claims:
                spans = evidence_spans(claim, index.documents, f"{path}, line {claim.line}")
                candidates = pipeline.claim_candidates(claim.claim)
                groups = candidate_groups(claim.claim, index, candidates)
                matrix = featurizer.features_many(claim.claim, groups)
                labels = np.array([claim.label == SUPPORTED and _overlaps(g, spans) for g in groups], np.float32)
                ruled = check_claim(claim.claim, index, candidates, pipeline.judge)
                top = ruled.passages[0] if ruled.passages else None
                rule_at_1 = overlaps(top, spans) if spans and top else None
                evidence = [s for s in index.sentences if overlaps(s, spans)] if spans else []
                evidence_rule = pipeline.judge(claim.claim, " ".join(s.text for s in evidence)).verdict \
                    if evidence else None
                examples.append(ClaimExample(path.name.removesuffix(".jsonl").removesuffix(".claims"), claim,
                                             groups, matrix, labels, spans, featurizer, ruled.verdict, rule_at_1,
                                             evidence, evidence_rule))
        log(f"  {path.name}: {len(claims)} claims")
    return examples


def _standardise(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = matrix.mean(axis=0)
    scale = matrix.std(axis=0)
    scale[scale < 1e-6] = 1.0
    return mean, scale


def fit_signed_logistic(matrix: np.ndarray, labels: np.ndarray, weights: np.ndarray,
                        features: tuple[str, ...] = PASSAGE_FEATURES, signed: bool = True) -> Logistic:
    """L2-regularised logistic regression (L-BFGS-B on standardised features; the intercept is free) whose
    weights, when ``signed``, keep the signs of FEATURE_SIGNS."""
    from scipy.optimize import minimize

    mean, scale = _standardise(matrix)
    x = (matrix - mean) / scale
    signs = np.array([FEATURE_SIGNS[f] for f in features])
    bounds = [((0, None) if sign > 0 else (None, 0)) if signed else (None, None) for sign in signs] + [(None, None)]
    weights = weights / weights.sum()

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ theta[:-1] + theta[-1]
        p = 1.0 / (1.0 + np.exp(-z))
        eps = 1e-12
        value = -np.sum(weights * (labels * np.log(p + eps) + (1 - labels) * np.log(1 - p + eps)))
        value += 0.5 * np.sum(theta[:-1] ** 2) / (REGULARISATION * len(labels))
        residual = weights * (p - labels)
        gradient = np.append(x.T @ residual + theta[:-1] / (REGULARISATION * len(labels)), residual.sum())
        return value, gradient

    result = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B", bounds=bounds,
                      options={"maxiter": 5000})
    return Logistic(features, mean, scale, result.x[:-1].astype(np.float64), float(result.x[-1]))


def _group_rows(examples: list[ClaimExample], labels_of) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All candidate passages of these claims with their labels; every claim weighs the same within its
    document, every document the same."""
    per_claim = document_weights([e.document for e in examples])
    matrix = np.concatenate([e.matrix for e in examples]).astype(np.float64)
    labels = np.concatenate([labels_of(e) for e in examples]).astype(np.float64)
    weights = np.concatenate([np.full(len(e.labels), w / len(e.labels)) for e, w in zip(examples, per_claim,
                                                                                       strict=True)])
    return matrix, labels, weights


def fit_passage_model(examples: list[ClaimExample]) -> Logistic:
    return fit_signed_logistic(*_group_rows(examples, lambda e: e.labels))


def choose(example: ClaimExample, passage: Logistic) -> tuple[np.ndarray, float, list]:
    """The passage a verdict is given on, as ``rag.claims.check_claim`` chooses it: the most probable candidate
    (its features, its probability, the passage). Joining the best two non-adjacent candidates as one more
    passage (a summary often joins two facts) was measured and left out (LODO accuracy 0.709 without, 0.703
    with; paraphrases 0.721 / 0.712)."""
    probabilities = passage.predict(example.matrix)
    best = int(np.argmax(probabilities))
    return example.matrix[best], float(probabilities[best]), example.groups[best]


class Entailments:
    """An NLI model's scores of (chosen passage, claim) pairs, each pair scored once (the folds of the nested
    protocol mostly choose the same passages)."""

    def __init__(self, model):
        self.model = model
        self.scores: dict[tuple[str, str], float] = {}

    def __call__(self, example: ClaimExample, group: list) -> float:
        key = (" ".join(s.text for s in group), example.claim.claim)
        if key not in self.scores:
            self.scores[key] = float(self.model.entailment([key])[0])
        return self.scores[key]


def _row(example: ClaimExample, passage: Logistic, entailments: Entailments | None) -> np.ndarray:
    row, probability, group = choose(example, passage)
    return verdict_row(row, probability, entailments(example, group) if entailments else None)[0]


def _verdict_rows(examples: list[ClaimExample], documents: list[str], entailments: Entailments | None = None
                  ) -> tuple[np.ndarray, list[str], list[str]]:
    """The chosen passage of each claim of ``documents`` (its verdict features), chosen by a passage model fitted
    without the claim's document."""
    rows, labels, docs = [], [], []
    for d in documents:
        passage = fit_passage_model([e for e in examples if e.document != d and e.document in documents])
        for e in (e for e in examples if e.document == d):
            rows.append(_row(e, passage, entailments))
            labels.append(e.claim.label)
            docs.append(d)
    return np.array(rows), labels, docs


def best_thresholds(support: np.ndarray, partial: np.ndarray, labels: list[str], documents: list[str]
                    ) -> tuple[float, float]:
    """(min_support, min_partial): among P(supported) thresholds whose false support (claims that are not
    supported called supported; documents weigh the same) is at most MAX_FALSE_SUPPORT, and any P(partial)
    threshold, the pair with the most right verdicts."""
    weights = document_weights(documents)
    gold = np.array(labels)
    not_supported = gold != SUPPORTED
    best, best_value = (float(THRESHOLDS[-1]), float(THRESHOLDS[-1])), -1.0
    for t in THRESHOLDS:
        said_supported = support >= t
        if np.average(said_supported[not_supported], weights=weights[not_supported]) > MAX_FALSE_SUPPORT:
            continue
        for u in THRESHOLDS:
            verdicts = np.where(said_supported, SUPPORTED, np.where(partial >= u, PARTIAL, UNSUPPORTED))
            value = float(np.average(verdicts == gold, weights=weights))
            if value > best_value + 1e-9:
                best, best_value = (float(t), float(u)), value
    return best


def fit(examples: list[ClaimExample], documents: list[str] | None = None, entailments: Entailments | None = None
        ) -> ClaimModel:
    documents = documents or list(dict.fromkeys(e.document for e in examples))
    within = [e for e in examples if e.document in documents]
    rows, labels, docs = _verdict_rows(within, documents, entailments)
    weights = document_weights(docs)
    features = VERDICT_FEATURES if entailments is None else NLI_VERDICT_FEATURES
    support = fit_signed_logistic(rows, np.array([lab == SUPPORTED for lab in labels], float), weights,
                                  features, SIGNED_VERDICTS)
    partial = fit_signed_logistic(rows, np.array([lab != UNSUPPORTED for lab in labels], float), weights,
                                  features, SIGNED_VERDICTS)
    min_support, min_partial = best_thresholds(support.predict(rows), partial.predict(rows), labels, docs)
    return ClaimModel(fit_passage_model(within), support, partial, min_support, min_partial, {},
                      None if entailments is None else entailments.model.sha256)


def _result(e: ClaimExample, verdict: str, group: list) -> dict:
    spans = e.spans
    return {"document": e.document, "id": e.claim.id, "claim": e.claim.claim, "label": e.claim.label,
            "kind": e.claim.kind, "verdict": verdict, "correct": verdict == e.claim.label,
            "evidence_at_1": _overlaps(group, spans) if spans else None, "evidence_in_passages": None,
            "rule_verdict": e.rule_verdict, "rule_evidence_at_1": e.rule_evidence_at_1, "latency_ms": 0.0}


def evidence_support(model: ClaimModel, example: ClaimExample, entailments: Entailments | None) -> float | None:
    """P(supported) of the claim against its own evidence sentences (as an answer sentence against what it cites);
    None for a claim without evidence."""
    if not example.evidence:
        return None
    row = example.featurizer.features_many(example.claim.claim, [example.evidence])[0]
    probability = float(model.passage.predict(row[None, :])[0])
    return model.support_probability(row, probability, entailments(example, example.evidence) if entailments else None)


def _rules_on(example: ClaimExample, group: list) -> str:
    """The rules' verdict on the claim against one of its candidate passages (the document given, as
    rag.claims.check_claim gives it)."""
    embedder = example.featurizer.embedder
    similarity = lambda a, b: float(embedder.encode_query(a) @ embedder.encode_query(b))  # noqa: E731
    return judge(example.claim.claim, " ".join(s.text for s in group), similarity,
                 example.featurizer.index.documents[group[0].source].text).verdict


def leave_one_document_out(examples: list[ClaimExample], log=print, entailments: Entailments | None = None
                           ) -> list[dict]:
    documents = list(dict.fromkeys(e.document for e in examples))
    results = []
    for d in documents:
        model = fit(examples, [x for x in documents if x != d], entailments)
        for e in (e for e in examples if e.document == d):
            row, probability, group = choose(e, model.passage)
            entailment = entailments(e, group) if entailments else None
            verdict = model.verdict(row, probability, entailment)
            # as rag.claims.check_claim does; the rules (an encoding per call) only run when they could overrule
            if verdict == SUPPORTED and overruled(verdict, _rules_on(e, group)):
                verdict = PARTIAL
            results.append({**_result(e, verdict, group),
                            "evidence_support": evidence_support(model, e, entailments),
                            "evidence_rule_verdict": e.evidence_rule_verdict, "min_support": model.min_support})
        log(f"  held out {d}")
    return results


def flag_threshold(results: list[dict], ceiling: float) -> float:
    """The highest P(supported) threshold below which at most MAX_TRUE_FLAGGED of the true claims (judged against
    their evidence, each document weighing the same) fall; at most ``ceiling`` (the model's min_support)."""
    rows = [r for r in results if r.get("evidence_support") is not None and r["label"] == SUPPORTED]
    support = np.array([r["evidence_support"] for r in rows])
    weights = document_weights([r["document"] for r in rows])
    best = float(THRESHOLDS[0])
    for t in THRESHOLDS:
        if t <= ceiling and np.average(support < t, weights=weights) <= MAX_TRUE_FLAGGED:
            best = float(t)
    return best


def answer_sentence_summary(results: list[dict]) -> dict:
    """The learned verifier of answer sentences against the rules, LODO: each document's claims judged against
    their evidence, flagged below a threshold chosen on the other documents' (held-out) probabilities."""
    judged = [r for r in results if r.get("evidence_support") is not None]
    said = {"learned": [], "rules": []}
    for r in judged:
        others = [x for x in results if x["document"] != r["document"]]
        floor = flag_threshold(others, r["min_support"])
        support = r["evidence_support"]
        said["learned"].append(SUPPORTED if support >= r["min_support"] else UNSUPPORTED if support < floor else PARTIAL)
        said["rules"].append(r["evidence_rule_verdict"])
    gold = np.array([r["label"] for r in judged])
    kinds = np.array([r["kind"] for r in judged])
    true, false = gold == SUPPORTED, gold == UNSUPPORTED
    out = {"claims": len(judged)}
    for name, verdicts in said.items():
        v = np.array(verdicts)
        out[name] = {"accuracy": float(np.mean(v == gold)),
                     "true_flagged": float(np.mean(v[true] == UNSUPPORTED)),
                     "paraphrases_flagged": float(np.mean(v[true & (kinds == "paraphrase")] == UNSUPPORTED)),
                     "true_called_supported": float(np.mean(v[true] == SUPPORTED)),
                     "false_caught": float(np.mean(v[false] == UNSUPPORTED)),
                     "false_called_supported": float(np.mean(v[false] == SUPPORTED)),
                     "half_true_flagged": float(np.mean(v[gold == PARTIAL] == UNSUPPORTED))}
    return out


def summary(results: list[dict]) -> dict:
    learned = claim_metrics(results)
    rules = claim_metrics([{**r, "verdict": r["rule_verdict"], "correct": r["rule_verdict"] == r["label"],
                            "evidence_at_1": r["rule_evidence_at_1"]} for r in results])
    for m in (learned, rules):
        for key in ("evidence_in_passages", "latency_p50_ms"):
            m.pop(key, None)
    return {"learned": learned, "rules": rules, "answer_sentences": answer_sentence_summary(results)}


def format_summary(s: dict) -> str:
    pct = lambda v: "–" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    lines = [f"{'LODO, ' + str(s['learned']['claims']) + ' claims':34s} {'learned':>9s} {'rules':>9s}"]
    for key, label in (("accuracy", "accuracy (3 verdicts)"), ("binary_accuracy", "supported vs not"),
                       ("false_support", "false support"), ("supported_recall", "supported called supported"),
                       ("evidence_at_1", "passage shown first is the evidence")):
        lines.append(f"{label:34s} {pct(s['learned'][key]):>9s} {pct(s['rules'][key]):>9s}")
    for kind in s["learned"]["by_kind"]:
        lines.append(f"{'  kind: ' + kind:34s} {pct(s['learned']['by_kind'][kind]['accuracy']):>9s} "
                     f"{pct(s['rules']['by_kind'][kind]['accuracy']):>9s}")
    sentences = s["answer_sentences"]
    lines.append(f"{'answer sentences, ' + str(sentences['claims']) + ' claims':34s} {'learned':>9s} {'rules':>9s}")
    for key, label in (("accuracy", "accuracy (3 verdicts)"), ("true_flagged", "true ones flagged unsupported"),
                       ("paraphrases_flagged", "  paraphrases flagged"), ("false_caught", "false ones flagged"),
                       ("false_called_supported", "false ones called supported")):
        lines.append(f"{label:34s} {pct(sentences['learned'][key]):>9s} {pct(sentences['rules'][key]):>9s}")
    return "\n".join(lines)


def train(out: Path = DEFAULT_OUT, report_path: Path | None = DEFAULT_REPORT, log=print,
          nli: str | None = None, nli_label: int | None = None, embedder=None) -> ClaimModel:
    """Fit on every claim set and measure LODO; with ``nli`` (a ``rag.nli`` location) the variant that reads
    that NLI model's entailment scores. ``embedder``: the embedding model whose features are fitted (default:
    the one RAG_EMBED_MODEL names); the model records which it was."""
    from threadpoolctl import threadpool_limits

    from rag.answer.training import FIT_BLAS_THREADS, _sha256
    from rag.embeddings import Embedder
    from rag.settings import Settings

    if embedder is None:
        embedder = Embedder.from_settings(Settings(_env_file=None))

    entailments = None
    if nli is not None:
        from rag.nli import load_entailment_model

        entailments = Entailments(load_entailment_model(nli, nli_label))
    with threadpool_limits(FIT_BLAS_THREADS, user_api="blas"):
        files = claim_files()
        log(f"featurising the claims of {len(files)} files")
        examples = collect(files, embedder=embedder, log=log)
        log("leave-one-document-out")
        results = leave_one_document_out(examples, log=log, entailments=entailments)
        model = fit(examples, entailments=entailments)
    s = summary(results)
    log(format_summary(s))
    extra = {} if nli is None else {"nli_model": {"location": nli, "sha256": entailments.model.sha256}}
    model = ClaimModel(model.passage, model.support, model.partial, model.min_support, model.min_partial, {
        "embedding": {"model_id": embedder.info.model_id, "sha256": embedder.info.sha256},
        **extra,
        "claims": len(examples), "documents": len({e.document for e in examples}),
        "files": {str(f.relative_to(PROJECT_ROOT)): _sha256(f) for f in files},
        "lodo": {k: s["learned"][k] for k in ("accuracy", "binary_accuracy", "false_support", "supported_recall",
                                                "evidence_at_1")},
        "lodo_answer_sentences": {k: s["answer_sentences"]["learned"][k] for k in ("true_flagged", "false_caught")},
    }, model.nli_sha256, flag_threshold(results, model.min_support))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(model.to_json(), indent=1) + "\n", encoding="utf-8")
    if report_path is not None:
        report_path.write_text(json.dumps({"summary": s, "claims": results}, indent=1, ensure_ascii=False) + "\n",
                               encoding="utf-8")
    return model


def default_paths(embedding_sha256: str, nli: bool) -> tuple[Path, Path]:
    """Where the model and its report go by default: claims(-nli).json and docs/claims(-nli)-lodo.json for the
    bundled MiniLM; for another embedding model, the names the pipeline looks for it under
    (``rag.answer.scorer.shipped_for_embedder``), so a refit never replaces the MiniLM model."""
    from rag.model_files import BUNDLED_SHA256

    out, report = (DEFAULT_NLI_OUT, DEFAULT_NLI_REPORT) if nli else (DEFAULT_OUT, DEFAULT_REPORT)
    if embedding_sha256 == BUNDLED_SHA256:
        return out, report
    tag = embedding_sha256[:12]
    return out.with_name(f"{out.stem}-{tag}.json"), report.with_name(f"{report.stem}-{tag}.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help=f"model file (default {DEFAULT_OUT.name}, with --nli "
                                                   f"{DEFAULT_NLI_OUT.name}, in rag/data/)")
    parser.add_argument("--report", type=Path, help="per-claim LODO report (default docs/claims-lodo.json, with "
                                                     "--nli docs/claims-nli-lodo.json)")
    parser.add_argument("--nli", metavar="LOCATION", help="fit with this NLI model (a folder or an installed "
                                                          "package, as RAG_NLI_MODEL; rag.nli)")
    parser.add_argument("--nli-label", type=int, help="index of its entailment class (default: from its "
                                                      "config.json, as RAG_NLI_ENTAILMENT_LABEL)")
    args = parser.parse_args(argv)
    try:
        from rag.embeddings import Embedder
        from rag.settings import Settings

        embedder = Embedder.from_settings(Settings(_env_file=None))
        out, report = default_paths(embedder.info.sha256, bool(args.nli))
        train(args.out or out, args.report or report, log=lambda *a: print(*a, file=sys.stderr), nli=args.nli,
              nli_label=args.nli_label, embedder=embedder)
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
