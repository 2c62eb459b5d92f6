"""Calibration metrics on hand-computed cases, and the report's calibration outputs (tables and PNGs) from
synthetic results. No model."""

from __future__ import annotations

import json

import pytest

from rag.eval import (
    METRIC_DEFINITIONS,
    CitedSentence,
    GoldQuestion,
    Prediction,
    accuracy_at_coverage,
    accuracy_coverage_curve,
    aggregate,
    calibration,
    expected_calibration_error,
    format_table,
    reliability_bins,
    response_confidence,
    score_question,
    write_report,
)

CONFIDENCES = [0.95, 0.85, 0.82, 0.3, 0.05]
CORRECT = [True, True, False, False, True]


def test_reliability_bins_hand_computed():
    bins = reliability_bins(CONFIDENCES, CORRECT)
    assert len(bins) == 10 and [b["count"] for b in bins] == [1, 0, 0, 1, 0, 0, 0, 0, 2, 1]
    assert bins[8]["mean_confidence"] == pytest.approx(0.835) and bins[8]["accuracy"] == 0.5
    assert bins[1]["mean_confidence"] is None and bins[1]["accuracy"] is None
    assert (bins[0]["lower"], bins[0]["upper"], bins[9]["lower"], bins[9]["upper"]) == (0.0, 0.1, 0.9, 1.0)


def test_expected_calibration_error_hand_computed():
    # bin 9: 1/5 x |1 - 0.95| = 0.01; bin 8: 2/5 x |0.5 - 0.835| = 0.134; bin 3: 1/5 x |0 - 0.3| = 0.06;
    # bin 0: 1/5 x |1 - 0.05| = 0.19; total 0.394
    assert expected_calibration_error(CONFIDENCES, CORRECT) == pytest.approx(0.394)


def test_expected_calibration_error_edges():
    assert expected_calibration_error([1.0, 1.0], [True, True]) == 0.0  # 1.0 falls in the last bin
    assert expected_calibration_error([0.5, 0.5], [True, False]) == 0.0  # calibrated on average within a bin
    assert expected_calibration_error([0.1], [False]) == pytest.approx(0.1)  # 0.1 opens bin 1
    assert expected_calibration_error([0.0, 1.0], [True, False]) == 1.0  # confidently wrong both ways
    assert expected_calibration_error([], []) is None
    assert expected_calibration_error([0.9, 0.9], [True, False], bins=1) == pytest.approx(0.4)
    with pytest.raises(ValueError):
        expected_calibration_error([1.2], [True])
    with pytest.raises(ValueError):
        expected_calibration_error([0.5], [True, False])


def test_accuracy_coverage_curve_hand_computed():
    confidences, correct = [0.9, 0.2, 0.6, 0.4], [True, False, False, True]
    # most confident first: 0.9 right, 0.6 wrong, 0.4 right, 0.2 wrong
    curve = accuracy_coverage_curve(confidences, correct)
    assert [c for c, _ in curve] == [0.25, 0.5, 0.75, 1.0]
    assert [a for _, a in curve] == pytest.approx([1.0, 0.5, 2 / 3, 0.5])
    assert accuracy_at_coverage(confidences, correct, 0.25) == 1.0
    assert accuracy_at_coverage(confidences, correct, 0.3) == 0.5  # ceil(1.2) = 2 answers
    assert accuracy_at_coverage(confidences, correct, 0.75) == pytest.approx(2 / 3)
    assert accuracy_at_coverage(confidences, correct, 1.0) == 0.5
    assert accuracy_at_coverage(confidences, correct, 0.0) == 1.0  # at least one answer
    assert accuracy_at_coverage([], [], 0.5) is None


def test_accuracy_coverage_ties_keep_input_order():
    curve = accuracy_coverage_curve([0.5, 0.5, 0.5], [False, True, True])
    assert [a for _, a in curve] == pytest.approx([0.0, 0.5, 2 / 3])


def test_calibration_summary_skips_without_confidences():
    rows = [{"confidence": None, "correct": True}, {"confidence": None, "correct": False}]
    summary = calibration(rows)
    assert summary["available"] is False and "calibration skipped" in summary["note"]
    mixed = calibration([{"confidence": 0.8, "correct": True}, {"confidence": None, "correct": False}])
    assert mixed["available"] and mixed["questions"] == 1 and mixed["without_confidence"] == 1
    assert mixed["ece"] == pytest.approx(0.2) and "left out" in mixed["note"]


def test_calibration_summary_hand_computed():
    rows = [{"confidence": c, "correct": ok} for c, ok in zip(CONFIDENCES, CORRECT, strict=True)]
    summary = calibration(rows)
    assert summary["ece"] == pytest.approx(0.394) and summary["questions"] == 5
    assert summary["accuracy"] == 0.6 and summary["mean_confidence"] == pytest.approx(0.594)
    # sorted: 0.95 T, 0.85 T, 0.82 F, 0.3 F, 0.05 T
    # coverage 0.25 keeps ceil(1.25) = 2 answers, 0.5 keeps 3, 0.75 keeps 4, 0.9 and 1 keep all 5
    assert summary["accuracy_at_coverage"] == pytest.approx({"0.25": 1.0, "0.5": 2 / 3, "0.75": 0.5, "0.9": 0.6,
                                                             "1": 0.6}, abs=1e-4)
    assert len(summary["curve"]) == 5 and summary["curve"][-1] == [1.0, 0.6]


def test_an_abstention_is_as_confident_as_its_answer_is_unlikely():
    # Answer.confidence is the probability that the answer answers the question; a backend abstains when that
    # is low, so its confidence in the abstention is 1 - confidence.
    assert response_confidence({"confidence": 0.2, "abstained": True}) == pytest.approx(0.8)
    assert response_confidence({"confidence": 0.7, "abstained": False}) == 0.7
    assert response_confidence({"confidence": None, "abstained": True}) is None
    rows = [
        {"confidence": 0.1, "abstained": True, "correct": True},  # 0.9 sure it was right to abstain: right
        {"confidence": 0.4, "abstained": True, "correct": False},  # 0.6 sure: wrong (answerable question)
        {"confidence": 0.9, "abstained": False, "correct": True},  # 0.9 sure of the answer: right
    ]
    summary = calibration(rows)
    # bin 9 (0.9, 0.9): accuracy 1, confidence 0.9 -> 2/3 x 0.1; bin 6 (0.6): accuracy 0 -> 1/3 x 0.6
    assert summary["ece"] == pytest.approx(2 / 3 * 0.1 + 1 / 3 * 0.6, abs=1e-4)
    assert summary["curve"][-1] == [1.0, pytest.approx(2 / 3, abs=1e-4)]
    assert summary["accuracy_at_coverage"]["0.5"] == 1.0  # the two 0.9-confident responses come first


def test_ece_is_defined_for_readers():
    assert "equal-width bins" in METRIC_DEFINITIONS["ECE"]
    assert "abstention" in METRIC_DEFINITIONS["Confidence"]


# ------------------------------------------------------------------ report outputs

EVIDENCE = [[("a.txt", 0, 20)]]


def _results(confidences):
    rows = []
    for i, confidence in enumerate(confidences):
        answerable = i % 3 != 2
        question = GoldQuestion(f"q{i}", "Who built it?", ("Ada",) if answerable else (), ("Ada built the engine",)
                                if answerable else (), "who" if answerable else "unanswerable", i + 1,
                                "a.txt" if i < 4 else "b.txt", "direct" if answerable else "unanswerable")
        right = i % 2 == 0
        prediction = Prediction(
            answer="Ada built the engine." if right and answerable else ("" if not answerable and right else "Bob."),
            short_answer=None, abstained=not answerable and right,
            sentences=[CitedSentence("Ada built the engine.", ("Ada built the engine",))],
            citations=[("a.txt", 0, 20)], citation_texts=["Ada built the engine"], latency_ms=1.0 + i,
            ranking=[("a.txt", 0, 20)], confidence=confidence)
        rows.append(score_question(question, prediction, EVIDENCE if answerable else [], lambda s, e: True))
    return rows


def _report(rows):
    run = {"gold": "g.jsonl", "questions": len(rows), "answerable": sum(r["answerable"] for r in rows),
           "unanswerable": sum(not r["answerable"] for r in rows), "backend": "extractive", "k": 5,
           "documents": ["a.txt", "b.txt"], "baselines": {}, "date": "2026-11-30"}
    metrics = {"run": run, "ours": aggregate(rows), "baseline": None, "top1_sentence": None}
    return {"metrics": metrics, "results": rows, "baseline": None, "top1_sentence": None}


def test_report_with_confidences_has_calibration_outputs(tmp_path):
    report = _report(_results([0.9, 0.2, 0.8, 0.6, 0.7, 0.1]))
    write_report(report, tmp_path)
    for png in ("reliability.png", "accuracy_coverage.png", "accuracy_by_type.png", "latency.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    metrics = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["ours"]["calibration"]["available"] and metrics["ours"]["calibration"]["questions"] == 6
    assert set(metrics["ours"]["per_document"]) == {"a.txt", "b.txt"}
    assert set(metrics["ours"]["per_style"]) == {"direct", "unanswerable"}
    report_md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "## Calibration" in report_md and "![reliability diagram](reliability.png)" in report_md
    assert "## Per document" in report_md and "## Per question style" in report_md
    assert "ECE (10 bins)" in format_table(report["metrics"])


def test_report_without_confidences_notes_the_skip(tmp_path):
    (tmp_path / "reliability.png").write_bytes(b"stale")  # from an earlier run into the same folder
    report = _report(_results([None] * 4))
    write_report(report, tmp_path)
    assert not (tmp_path / "reliability.png").exists() and not (tmp_path / "accuracy_coverage.png").exists()
    report_md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "Skipped: no answer carries a confidence" in report_md
    assert "calibration: no answer carries a confidence" in format_table(report["metrics"])


@pytest.mark.parametrize("k", [0, -3, 1000, 2.5, "3", True])
def test_evaluate_refuses_a_k_the_cli_would_refuse(fake_pipeline, tmp_path, k):
    """From Python a k of -3 or 1000 ran and was written into the report; 2.5 failed inside retrieval."""
    from rag.errors import UsageError
    from rag.eval import evaluate

    with pytest.raises(UsageError, match=r"^k must be a whole number from 1 to 50"):
        evaluate(fake_pipeline, k=k, baseline=False, report_dir=tmp_path / "report")
    assert not (tmp_path / "report").exists()  # refused before anything ran or was written
