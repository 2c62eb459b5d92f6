"""Presentation of an evaluation run: the terminal table, report.md, metrics.json, results.jsonl and the PNG
plots (plots in ``rag.eval.plots``; matplotlib is imported only when a report is written)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from rag.errors import UsageError
from rag.eval.baselines import BASELINE_NAMES, REPORT_KEYS, TOP1, TUTORIAL
from rag.eval.metrics import CALIBRATION_BINS, VERIFIER_NOTE

# The systems of a report, in column order: (key in metrics/report, column label).
SYSTEMS: tuple[tuple[str, str], ...] = (
    ("ours", "ours"),
    (REPORT_KEYS[TUTORIAL], BASELINE_NAMES[TUTORIAL]),
    (REPORT_KEYS[TOP1], BASELINE_NAMES[TOP1]),
)

# (section, label, metric key ('/' for nested keys), format): the rows of the terminal and markdown tables.
TABLE_ROWS: tuple[tuple[str, str, str, str], ...] = (
    ("Retrieval (answerable)", "Hit@1", "hit_at_1", "pct"),
    ("Retrieval (answerable)", "Recall@3", "recall_at_3", "pct"),
    ("Retrieval (answerable)", "Recall@5", "recall_at_5", "pct"),
    ("Retrieval (answerable)", "MRR@10", "mrr_at_10", "num"),
    ("Answers", "Accuracy (alias / abstained)", "accuracy", "pct"),
    ("Answers", "Answer contains alias (HasAns)", "answer_contains_alias", "pct"),
    ("Answers", "EM (all)", "exact_match", "pct"),
    ("Answers", "F1 (all)", "f1", "pct"),
    ("Answers", "HasAns EM", "has_ans_exact_match", "pct"),
    ("Answers", "HasAns F1", "has_ans_f1", "pct"),
    ("Answers", "NoAns EM = F1", "no_ans_exact_match", "pct"),
    ("Citations", "Citation recall (answered)", "citation_recall", "pct"),
    ("Citations", "Citation precision (answered)", "citation_precision", "pct"),
    ("Citations", "Cited spans contain evidence (HasAns)", "evidence_cited", "pct"),
    ("Citations", "Cited characters per answer", "cited_chars_per_answer", "int"),
    ("Abstention", "Unanswerable abstained", "abstained_unanswerable", "pct"),
    ("Abstention", "False abstention (answerable)", "false_abstention", "pct"),
    ("Latency", "p50 per question", "latency_p50_ms", "ms"),
    ("Latency", "p95 per question", "latency_p95_ms", "ms"),
    ("Calibration", "ECE (10 bins)", "calibration/ece", "num"),
    ("Calibration", "Accuracy at 50% coverage", "calibration/accuracy_at_coverage/0.5", "pct"),
    ("Calibration", "Accuracy at 90% coverage", "calibration/accuracy_at_coverage/0.9", "pct"),
)

METRIC_DEFINITIONS: dict[str, str] = {
    "Hit@1": "the top retrieved chunk overlaps a gold evidence span (answerable questions).",
    "Recall@k": "share of a question's evidence spans overlapped by some top-k chunk (multi-evidence questions "
    "score fractions), averaged.",
    "MRR@10": "1 / rank of the first chunk overlapping an evidence span within the top 10, else 0.",
    "Accuracy": "answerable: the answer text contains a gold alias; unanswerable: the system abstained.",
    "Answer contains alias": "the normalised full answer (markers removed, hyphens as spaces) contains a normalised alias as whole "
    "words; abstaining scores 0.",
    "EM / F1": "SQuAD exact match and token F1 against the best alias, on the short answer when the system gives "
    "one, else on the full answer text; abstaining is the empty prediction.",
    "HasAns / NoAns": "the SQuAD 2.0 split: NoAns EM = F1 = 1 iff the system abstained.",
    "Citation recall": "ALCE: share of answer sentences supported by the concatenation of their cited spans.",
    "Citation precision": "ALCE: share of citations that are relevant; a citation is irrelevant when its sentence "
    "is unsupported, or when it alone does not support the sentence and the other citations still do.",
    "Cited spans contain gold evidence": "every evidence span has at least 50% of its characters covered by the "
    "union of cited spans (abstaining scores 0; answerable questions).",
    "Cited characters per answer": "total length of the cited spans of an answer (what a reader must read).",
    "Unanswerable abstained": "share of unanswerable questions the system declined to answer.",
    "False abstention": "share of answerable questions the system declined to answer.",
    "Latency": "wall-clock time per question (ours: retrieval, answer and verification; LangChain tutorial: its "
    "top-4 similarity search; top-1 sentence: question embedding and cosine over all sentences), after one warm-up "
    "question.",
    "Per type / style / document": "questions, accuracy and F1 of each question type, style (when the gold set "
    "gives one) and document (named by the gold set, or the one document holding a question's evidence).",
    "Confidence": "the system's probability that its response is right: an answer's `confidence` "
    "(rag.types.Answer: the probability that the answer answers the question), and 1 - `confidence` for an "
    "abstention (the probability that abstaining is right: the backend abstains when its best answer is unlikely "
    "to answer). A response is right as for Accuracy: an answer containing a gold alias (answerable question), an "
    "abstention on an unanswerable question. Questions whose answer has no confidence are left out of the "
    "calibration metrics; when none has one, they are skipped.",
    "ECE": f"expected calibration error over answerable and unanswerable questions: the confidences are put in "
    f"{CALIBRATION_BINS} equal-width bins [0, 0.1), [0.1, 0.2), ..., [0.9, 1.0] and "
    "ECE = sum over bins of (questions in bin / all questions) x |accuracy in bin - mean confidence in bin|; "
    "0 is perfectly calibrated. The reliability diagram plots accuracy against mean confidence per bin.",
    "Accuracy at coverage c": "accuracy over the ceil(c x N) responses (answers and abstentions) with the highest "
    "confidence (ties in gold order); the accuracy-coverage curve plots it for every c = n / N. A confidence that "
    "ranks right responses first makes the curve fall from left to right.",
}




def _format(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "num":
        return f"{value:.3f}"
    if kind == "int":
        return f"{value:,.0f}"
    return f"{value:,.2f} ms" if value < 10 else f"{value:,.1f} ms"


def _lookup(metrics: dict[str, Any] | None, key: str) -> Any:
    value: Any = metrics
    for part in key.split("/"):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def systems_run(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, label) of the systems present in a run's metrics, ours first."""
    return [(key, label) for key, label in SYSTEMS if metrics.get(key) is not None]


def metrics_rows(metrics: dict[str, Any]) -> list[tuple[str, str, str, str | None]]:
    """(section, label, ours, LangChain tutorial baseline or None) formatted for display."""
    theirs = metrics.get("baseline")
    return [
        (section, label, _format(_lookup(metrics["ours"], key), kind),
         _format(_lookup(theirs, key), kind) if theirs else None)
        for section, label, key, kind in TABLE_ROWS
    ]


def metrics_table(metrics: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of the metrics table with one column per system run: section, metric, ours, baselines."""
    systems = systems_run(metrics)
    rows = [[section, label, *(_format(_lookup(metrics[key], name), kind) for key, _ in systems)]
            for section, label, name, kind in TABLE_ROWS]
    return ["section", "metric", *(label for _, label in systems)], rows


def format_table(metrics: dict[str, Any]) -> str:
    """The metrics as a terminal table, ours and the baselines side by side."""
    run = metrics["run"]
    headers, rows = metrics_table(metrics)
    systems = headers[2:]
    width = max(len(row[1]) for row in rows) + 2
    column = max(12, *(len(s) + 2 for s in systems))
    lines = [
        f"{run['questions']} questions ({run['answerable']} answerable, {run['unanswerable']} unanswerable) "
        f"from {run['gold']}; backend {run['backend']}, k={run['k']}",
        f"{'':{width + 2}}" + "".join(f"{s:>{column}}" for s in systems),
    ]
    section = None
    for row in rows:
        if row[0] != section:
            section = row[0]
            lines.append(section)
        lines.append(f"  {row[1]:{width}}" + "".join(f"{v:>{column}}" for v in row[2:]))
    calibration = metrics["ours"].get("calibration") or {}
    if not calibration.get("available", True):
        lines.append(f"calibration: {calibration['note']}")
    if metrics.get("baseline") is not None:
        lines.append(f"baseline: {BASELINE_NAMES[TUTORIAL]} (splitter 1000/200, MiniLM, FAISS top-4, top chunk as answer)")
    if metrics.get(REPORT_KEYS[TOP1]) is not None:
        lines.append(f"baseline: {BASELINE_NAMES[TOP1]} (the sentence with the highest MiniLM cosine, cited)")
    return "\n".join(lines)


def _markdown_table(metrics: dict[str, Any]) -> str:
    headers, rows = metrics_table(metrics)
    lines = ["| metric | " + " | ".join(headers[2:]) + " |", "|---|" + "---:|" * (len(headers) - 2)]
    lines += [f"| {row[0].split(' (')[0]}: {row[1]} | " + " | ".join(row[2:]) + " |" for row in rows]
    return "\n".join(lines)


def _breakdown_table(metrics: dict[str, Any], key: str, heading: str) -> list[str]:
    """Markdown table of one breakdown (per_type, per_style, per_document) across the systems run."""
    systems = systems_run(metrics)
    ours = metrics["ours"].get(key)
    if not ours:
        return []
    header = f"| {heading} | questions | answerable | " + " | ".join(
        f"{label} accuracy | {label} F1" if system == "ours" else f"{label} accuracy" for system, label in systems) + " |"
    rule = "|---|---:|---:|" + "---:|" * (len(systems) + 1)
    lines = [header, rule]
    for value, row in ours.items():
        cells = [f"{100 * row['accuracy']:.1f}%", f"{100 * row['f1']:.1f}%"]
        for system, _ in systems[1:]:
            other = (metrics[system].get(key) or {}).get(value)
            cells.append(f"{100 * other['accuracy']:.1f}%" if other else "-")
        lines.append(f"| {_cell(str(value), 80)} | {row['questions']} | {row.get('answerable', '-')} | "
                     + " | ".join(cells) + " |")
    return lines


def _calibration_section(metrics: dict[str, Any]) -> list[str]:
    lines = ["## Calibration", ""]
    available = [(key, label, metrics[key]["calibration"]) for key, label in systems_run(metrics)
                 if (metrics[key].get("calibration") or {}).get("available")]
    ours = metrics["ours"].get("calibration") or {}
    if not available:
        return lines + [f"Skipped: {ours.get('note', 'no answer carries a confidence')}.", ""]
    levels = list(available[0][2]["accuracy_at_coverage"])
    lines += ["| system | questions | ECE | mean confidence | accuracy | "
              + " | ".join(f"accuracy at {100 * float(c):g}% coverage" for c in levels) + " |",
              "|---|---:|---:|---:|---:|" + "---:|" * len(levels)]
    for _, label, cal in available:
        lines.append(f"| {label} | {cal['questions']} | {cal['ece']:.3f} | {100 * cal['mean_confidence']:.1f}% | "
                     f"{100 * cal['accuracy']:.1f}% | "
                     + " | ".join(f"{100 * cal['accuracy_at_coverage'][c]:.1f}%" for c in levels) + " |")
    for _, label, cal in available:
        if cal.get("note"):
            lines.append(f"\n{label}: {cal['note']}.")
    if not ours.get("available"):
        lines.append(f"\nours: {ours.get('note')}.")
    lines += ["", "![reliability diagram](reliability.png)", "", "![accuracy against coverage](accuracy_coverage.png)",
              ""]
    return lines


def write_report(report: dict[str, Any], directory: str | os.PathLike) -> Path:
    """Write report.md, metrics.json, results.jsonl, accuracy_by_type.png and latency.png into ``directory``,
    and reliability.png and accuracy_coverage.png when some answers carry a confidence. A folder or file that
    cannot be written is a one-line UsageError."""
    directory = prepare_report_dir(directory)
    try:
        _write_report_files(report, directory)
    except OSError as exc:
        raise UsageError(_cannot_write(directory, exc)) from None
    return directory


def write_claims_report(report: dict[str, Any], directory: str | os.PathLike) -> Path:
    """Write claims-metrics.json and claims-results.jsonl (``rag eval --claims --report``) into ``directory``."""
    directory = prepare_report_dir(directory)
    try:
        (directory / "claims-metrics.json").write_text(json.dumps(report["metrics"], indent=2) + "\n",
                                                       encoding="utf-8")
        with (directory / "claims-results.jsonl").open("w", encoding="utf-8") as out:
            for row in report["results"]:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
    except OSError as exc:
        raise UsageError(_cannot_write(directory, exc)) from None
    return directory


def prepare_report_dir(directory: str | os.PathLike) -> Path:
    """Create the report folder ``directory`` (and its parents) if need be, and check that files can be written
    in it. A one-line UsageError if not: a file in its place or on its path, a folder that cannot be created or
    is read-only. ``rag eval --report`` calls it before the run, so a bad folder wastes no evaluation."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"--report {directory}: exists and is not a folder")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = next((p for p in directory.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:  # NotADirectoryError, or FileExistsError from a file at a parent's place
            raise UsageError(f"--report {directory}: cannot create the folder, {blocker} is not a folder") from None
        raise UsageError(f"--report {directory}: cannot create the folder ({_reason(exc)})") from None
    try:
        with tempfile.TemporaryFile(dir=directory):  # writable? (permissions, a read-only file system)
            pass
    except OSError as exc:
        raise UsageError(f"--report {directory}: cannot write in the folder ({_reason(exc)})") from None
    return directory


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _cannot_write(directory: Path, exc: OSError) -> str:
    name = Path(exc.filename).name if exc.filename else None
    return f"--report {directory}: cannot write {name or 'the report'} ({_reason(exc)})"


def _write_report_files(report: dict[str, Any], directory: Path) -> None:
    from rag.eval.plots import (  # matplotlib: only when a report is written
        plot_accuracy_by_type,
        plot_accuracy_coverage,
        plot_latency,
        plot_reliability,
    )

    metrics = report["metrics"]
    results = {key: (report["results"] if key == "ours" else report[key]["results"])
               for key, _ in SYSTEMS if key == "ours" or report.get(key)}
    (directory / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    with (directory / "results.jsonl").open("w", encoding="utf-8") as out:
        for system, rows in results.items():
            for row in rows:
                out.write(json.dumps({"system": system, **row}, ensure_ascii=False) + "\n")
    labels = dict(SYSTEMS)
    plot_accuracy_by_type({labels[key]: metrics[key]["per_type"] for key in results}, directory / "accuracy_by_type.png")
    plot_latency({labels[key]: [r["latency_ms"] for r in rows] for key, rows in results.items()},
                  directory / "latency.png")
    calibrated = {labels[key]: metrics[key]["calibration"] for key in results
                  if (metrics[key].get("calibration") or {}).get("available")}
    for stale in ("reliability.png", "accuracy_coverage.png"):
        (directory / stale).unlink(missing_ok=True)
    if calibrated:
        plot_reliability(calibrated, directory / "reliability.png")
        plot_accuracy_coverage(calibrated, directory / "accuracy_coverage.png")
    (directory / "report.md").write_text(report_markdown(report), encoding="utf-8")


def report_markdown(report: dict[str, Any]) -> str:
    metrics, run = report["metrics"], report["metrics"]["run"]
    baselines = run.get("baselines") or {}
    lines = [
        "# Evaluation report",
        "",
        f"- Gold set: `{run['gold']}`: {run['questions']} questions, {run['answerable']} answerable, "
        f"{run['unanswerable']} unanswerable",
        f"- Ours: backend `{run['backend']}`, k={run['k']}; documents: {', '.join(run['documents'])}",
        *(f"- Baseline: {text}" for text in baselines.values()),
        *([] if baselines else ["- Baseline: not run"]),
        f"- Date: {run['date']}",
        "",
        "## Results",
        "",
        _markdown_table(metrics),
        "",
        f"> {VERIFIER_NOTE}",
        "",
    ]
    if metrics.get("baseline"):
        lines += [
            "The tutorial baseline's citation recall is high by construction: its answer *is* its first citation; its "
            "citation precision is 1 in the number of chunks it cites (25 % with 4), also by construction; ours is "
            "100 % / 100 % because every answer sentence is the sentence it cites. Its answer contains an alias more "
            "easily because the \"answer\" is a 1,000-character chunk; EM/F1 and cited characters show the "
            "difference that matters to a reader.",
            "",
        ]
    for key, heading, title in (("per_type", "type", "Per question type"), ("per_style", "style", "Per question style"),
                                ("per_document", "document", "Per document")):
        table = _breakdown_table(metrics, key, heading)
        if table:
            lines += [f"## {title}", "", *table, ""]
    lines += ["![accuracy by question type](accuracy_by_type.png)", "", "![latency per question](latency.png)", ""]
    lines += _calibration_section(metrics)
    lines += ["## Metric definitions", ""]
    lines += [f"- **{name}**: {text}" for name, text in METRIC_DEFINITIONS.items()]
    misses = [r for r in report["results"] if not r["correct"]]
    lines += ["", f"## Questions ours got wrong ({len(misses)})", ""]
    if misses:
        lines += ["| id | type | question | expected | ours |", "|---|---|---|---|---|"]
        for r in misses:
            got = "(abstained)" if r["abstained"] else (r["short_answer"] or r["answer"])
            expected = " / ".join(r["answers"]) or "(abstain)"
            lines.append(f"| {r['id']} | {r['type']} | {_cell(r['question'])} | {_cell(expected)} | {_cell(got, 160)} |")
    lines += ["", "Per-question details: `results.jsonl` (one line per question and system); metrics: `metrics.json`.", ""]
    return "\n".join(lines)


def _cell(text: str, limit: int = 200) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"
