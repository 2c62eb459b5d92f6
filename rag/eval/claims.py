"""Evaluation of the claim checker (``rag check``) on a set of labelled claims.

A claim set is JSONL, one claim per line::

    {"id": "glac-c05", "claim": "...", "label": "supported" | "partial" | "unsupported",
     "kind": "paraphrase", "evidence": ["exact substring of the document", ...]}

``kind`` (optional) says how the claim was written — ``verbatim``, ``light_edit``, ``paraphrase``,
``figure_changed``, ``name_swapped``, ``negated``, ``wrong_speaker``, ``reworded_false``, ``not_in_document``,
``partly_true`` in the project's sets — and the report breaks accuracy down by it. Other keys are refused (a
misspelt ``evidence`` would silently drop the evidence). ``evidence`` lists the passages a checker should show (empty for a claim
the document does not address). The claims are about the configured corpus, unless a document lies beside the
file: ``foo.claims.jsonl`` or ``foo.jsonl`` next to ``foo.txt`` checks against a temporary corpus of that one
document, as ``rag eval --gold`` does.

Metrics: accuracy over the three verdicts; **false support** (the share of claims that are not supported which
the checker calls supported: the error that misleads a reader); recall of supported claims (a true claim called
partial or unsupported); the share of supported claims whose top passage overlaps a gold evidence passage; per
kind and per gold label, and the confusion matrix.
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import InputFileError
from rag.eval.gold import _find_all, _read_text, _readable, read_jsonl
from rag.verify import PARTIAL, SUPPORTED, UNSUPPORTED

if TYPE_CHECKING:
    from rag.pipeline import Pipeline

CLAIM_LABELS = (SUPPORTED, PARTIAL, UNSUPPORTED)
CLAIM_SUFFIX = ".claims.jsonl"
CLAIM_KEYS = ("id", "claim", "label")  # required
OPTIONAL_CLAIM_KEYS = ("kind", "evidence")


@dataclass(frozen=True)
class GoldClaim:
    id: str
    claim: str
    label: str  # supported / partial / unsupported
    kind: str | None
    evidence: tuple[str, ...]
    line: int


def document_beside(path: Path) -> Path | None:
    """The document a claim file is about: ``foo.txt`` beside ``foo.claims.jsonl`` or ``foo.jsonl``."""
    stem = path.name[: -len(CLAIM_SUFFIX)] if path.name.endswith(CLAIM_SUFFIX) else path.stem
    sibling = path.with_name(f"{stem}.txt")
    return sibling if sibling.is_file() else None


def load_claims(path: str | os.PathLike) -> tuple[list[tuple[str, str]], list[GoldClaim]]:
    """(documents, claims) of a claim file; problems raise InputFileError naming the file and line.

    With a document beside the file, every claim's evidence is checked against it here, before anything runs;
    claims about the configured corpus are checked against the index by ``check_evidence`` before the first
    claim is scored."""
    path = _readable(path, "claims file")
    claims: list[GoldClaim] = read_jsonl(path, _claim)
    if not claims:
        raise InputFileError(f"{path}: no claims in the file")
    sibling = document_beside(path)
    documents = [(sibling.name, _read_text(sibling))] if sibling else []
    if sibling:
        text = documents[0][1]
        for claim in claims:
            for evidence in claim.evidence:
                if evidence not in text:
                    raise InputFileError(f"{path}, line {claim.line}: evidence \"{_cut(evidence)}\" of {claim.id} "
                                         f"is not in {sibling.name} (evidence must be an exact substring of the "
                                         "document)")
    return documents, claims


def _cut(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


def _claim(record: Any, number: int, where: str) -> GoldClaim:
    if not isinstance(record, dict):
        raise InputFileError(f"{where}: each line must be a JSON object")
    unexpected = sorted(set(record) - set(CLAIM_KEYS) - set(OPTIONAL_CLAIM_KEYS))
    if unexpected:
        raise InputFileError(f"{where}: keys must be {', '.join(CLAIM_KEYS)}, optionally "
                             f"{', '.join(OPTIONAL_CLAIM_KEYS)} (unexpected {', '.join(unexpected)})")
    for key in ("id", "claim", "label"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise InputFileError(f"{where}: '{key}' must be a non-empty string")
    if record["label"] not in CLAIM_LABELS:
        raise InputFileError(f"{where}: label '{record['label']}' is not one of {', '.join(CLAIM_LABELS)}")
    evidence = record.get("evidence", [])
    if not isinstance(evidence, list) or not all(isinstance(e, str) and e for e in evidence):
        raise InputFileError(f"{where}: 'evidence' must be a list of non-empty strings")
    kind = record.get("kind")
    if kind is not None and not isinstance(kind, str):
        raise InputFileError(f"{where}: 'kind' must be a string")
    return GoldClaim(record["id"], record["claim"], record["label"], kind, tuple(evidence), number)


def evidence_spans(claim: GoldClaim, documents: dict, where: str) -> list[tuple[str, int, int]]:
    """(document id, start, end) of every occurrence of the claim's evidence strings in the indexed documents."""
    spans = []
    for text in claim.evidence:
        found = [(doc_id, at, at + len(text)) for doc_id, doc in documents.items()
                 for at in _find_all(doc.text, text)]
        if not found:
            raise InputFileError(f"{where}: evidence \"{_cut(text)}\" of {claim.id} is not in any indexed document "
                                 "(evidence must be an exact substring of the document)")
        spans += found
    return spans


def check_evidence(documents: dict, claims: list[GoldClaim], path: Path | str = "claim file"
                   ) -> dict[str, list[tuple[str, int, int]]]:
    """Claim id -> ``evidence_spans`` of every claim; the first evidence string found in no indexed document
    raises InputFileError naming the file and line."""
    return {claim.id: evidence_spans(claim, documents, f"{path}, line {claim.line}") for claim in claims}


def overlaps(passage, spans: list[tuple[str, int, int]]) -> bool:
    """Whether a passage (or a sentence: anything with source, start and end) overlaps one of the spans."""
    return any(passage.source == doc and min(passage.end, end) > max(passage.start, start)
               for doc, start, end in spans)


def score_claims(pipeline: Pipeline, claims: list[GoldClaim], path: Path | str = "claim file",
                 progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Check every claim; one result dict per claim. Every claim's evidence is looked up in the index before
    the first claim is checked, so a set that does not match the corpus stops at once."""
    spans_of = check_evidence(pipeline.index.documents, claims, path)
    results = []
    for done, claim in enumerate(claims, 1):
        spans = spans_of[claim.id]
        started = time.perf_counter()
        checked = pipeline.check(claim.claim)
        elapsed = (time.perf_counter() - started) * 1000
        results.append({
            "id": claim.id, "claim": claim.claim, "label": claim.label, "kind": claim.kind,
            "verdict": checked.verdict, "reason": checked.reason, "correct": checked.verdict == claim.label,
            "evidence_at_1": overlaps(checked.passages[0], spans) if spans and checked.passages else None,
            "evidence_in_passages": any(overlaps(p, spans) for p in checked.passages) if spans else None,
            "passages": [p.__dict__ for p in checked.passages], "latency_ms": round(elapsed, 2),
        })
        if progress is not None:
            progress(done, len(claims))
    return results


def _share(values: list[bool | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known) / len(known), 4) if known else None


def claim_metrics(results: list[dict]) -> dict[str, Any]:
    """Accuracy, false support, supported recall, evidence found; per kind and per gold label; confusion."""
    not_supported = [r for r in results if r["label"] != SUPPORTED]
    supported = [r for r in results if r["label"] == SUPPORTED]
    with_evidence = [r for r in supported if r["evidence_at_1"] is not None]
    latencies = sorted(r["latency_ms"] for r in results)
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        by_kind[r["kind"] or "(none)"].append(r)
    return {
        "claims": len(results),
        "accuracy": _share([r["correct"] for r in results]),
        "binary_accuracy": _share([(r["verdict"] == SUPPORTED) == (r["label"] == SUPPORTED) for r in results]),
        "false_support": _share([r["verdict"] == SUPPORTED for r in not_supported]),
        "supported_recall": _share([r["verdict"] == SUPPORTED for r in supported]),
        "evidence_at_1": _share([r["evidence_at_1"] for r in with_evidence]),
        "evidence_in_passages": _share([r["evidence_in_passages"] for r in with_evidence]),
        "latency_p50_ms": round(latencies[len(latencies) // 2], 2) if latencies else None,
        "by_kind": {kind: {"claims": len(rs), "label": Counter(r["label"] for r in rs).most_common(1)[0][0],
                           "accuracy": _share([r["correct"] for r in rs]),
                           "verdicts": dict(Counter(r["verdict"] for r in rs))}
                    for kind, rs in sorted(by_kind.items())},
        "confusion": {label: {v: sum(r["label"] == label and r["verdict"] == v for r in results)
                              for v in CLAIM_LABELS} for label in CLAIM_LABELS},
    }


def evaluate_claims(pipeline: Pipeline, claims_path: str | os.PathLike, progress: bool = False) -> dict[str, Any]:
    """Check every claim of a claim file (against its own document when one lies beside it) and score the
    verdicts. Returns ``{"metrics": claim_metrics(...), "results": [...]}``."""
    from rag.eval.runner import _progress, corpus_pipeline

    claims_path = Path(claims_path)
    documents, claims = load_claims(claims_path)
    with corpus_pipeline(pipeline, documents) as own, _progress(len(claims), progress, None) as advance:
        results = score_claims(own, claims, claims_path, lambda done, total: advance("claims"))
    metrics = claim_metrics(results)
    metrics["corpus"] = f"a temporary corpus of {documents[0][0]}" if documents else str(pipeline.settings.corpus_dir)
    return {"metrics": metrics, "results": results}


def format_claim_table(metrics: dict[str, Any]) -> str:
    pct = lambda v: "–" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    lines = [
        f"claims: {metrics['claims']}  (corpus: {metrics.get('corpus', '?')})",
        f"accuracy (3 verdicts)       {pct(metrics['accuracy'])}",
        f"supported vs not            {pct(metrics['binary_accuracy'])}",
        f"false support (not supported called supported)  {pct(metrics['false_support'])}",
        f"supported claims called supported              {pct(metrics['supported_recall'])}",
        f"top passage holds the evidence (supported)     {pct(metrics['evidence_at_1'])}",
        f"latency p50                 {metrics['latency_p50_ms']} ms",
        "",
        f"{'kind':18s} {'claims':>6s} {'gold':>11s} {'accuracy':>9s}  verdicts",
    ]
    for kind, row in metrics["by_kind"].items():
        verdicts = ", ".join(f"{v} {n}" for v, n in sorted(row["verdicts"].items()))
        lines.append(f"{kind:18s} {row['claims']:6d} {row['label']:>11s} {pct(row['accuracy']):>9s}  {verdicts}")
    lines += ["", "confusion (rows: gold, columns: verdict)",
              f"{'':12s}" + "".join(f"{v:>12s}" for v in CLAIM_LABELS)]
    for label, row in metrics["confusion"].items():
        lines.append(f"{label:12s}" + "".join(f"{row[v]:12d}" for v in CLAIM_LABELS))
    return "\n".join(lines)
