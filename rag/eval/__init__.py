"""Evaluation on a gold question set: retrieval, answer, citation, abstention, calibration and latency metrics,
with baselines (the LangChain tutorial pipeline and the top-1 cosine sentence) scored in the same run on the
same questions.

    from rag.eval import evaluate, format_table
    report = evaluate(pipeline, report_dir="eval-report")          # eval/gold.jsonl; or gold_path="squad.json"
    print(format_table(report["metrics"]))

Modules: ``gold`` (JSONL and SQuAD 2.0 gold sets, ``load_dataset``), ``metrics`` (plain functions, unit-tested
on hand-computed cases), ``baselines``, ``runner`` (``evaluate``), ``report`` (tables, report.md, metrics.json)
and ``plots`` (PNGs). Importing this package is cheap: LangChain, tqdm and matplotlib are imported only inside
the functions that need them.
"""

from rag.eval.baselines import (
    BASELINE_DESCRIPTION,
    BASELINE_DESCRIPTIONS,
    BASELINE_NAME,
    BASELINE_NAMES,
    BASELINES,
    RANKING_DEPTH,
    Top1SentenceBaseline,
    TutorialBaseline,
    build_baselines,
    langchain_embeddings,
    langchain_faiss,
)
from rag.eval.gold import (
    DEFAULT_GOLD,
    GOLD_KEYS,
    OPTIONAL_GOLD_KEYS,
    STYLES,
    GoldQuestion,
    Span,
    document_name,
    evidence_sentences,
    load_dataset,
    load_gold,
    load_squad,
    locate_evidence,
    question_type,
)
from rag.eval.metrics import (
    CALIBRATION_BINS,
    COVERAGE_LEVELS,
    EVIDENCE_MIN_SHARE,
    VERIFIER_NOTE,
    CitedSentence,
    Prediction,
    Supports,
    accuracy_at_coverage,
    accuracy_coverage_curve,
    aggregate,
    breakdown,
    calibration,
    citation_quality,
    contains_alias,
    covered_chars,
    evidence_cited,
    exact_match,
    expected_calibration_error,
    normalize_answer,
    overlap,
    percentile,
    reliability_bins,
    response_confidence,
    retrieval_scores,
    score_question,
    token_f1,
)
from rag.eval.report import (
    METRIC_DEFINITIONS,
    TABLE_ROWS,
    format_table,
    metrics_rows,
    metrics_table,
    write_report,
)
from rag.eval.runner import WARM_UP_QUESTION, corpus_pipeline, evaluate, our_prediction, verifier_supports

__all__ = [
    "BASELINES", "BASELINE_DESCRIPTION", "BASELINE_DESCRIPTIONS", "BASELINE_NAME", "BASELINE_NAMES",
    "CALIBRATION_BINS", "COVERAGE_LEVELS", "DEFAULT_GOLD", "EVIDENCE_MIN_SHARE", "GOLD_KEYS", "METRIC_DEFINITIONS",
    "OPTIONAL_GOLD_KEYS", "RANKING_DEPTH", "STYLES", "TABLE_ROWS", "VERIFIER_NOTE", "WARM_UP_QUESTION",
    "CitedSentence", "GoldQuestion", "Prediction", "Span", "Supports", "Top1SentenceBaseline", "TutorialBaseline",
    "accuracy_at_coverage", "accuracy_coverage_curve", "aggregate", "breakdown", "build_baselines", "calibration",
    "citation_quality", "contains_alias", "corpus_pipeline", "covered_chars", "document_name", "evaluate",
    "evidence_cited", "evidence_sentences", "exact_match", "expected_calibration_error", "format_table",
    "langchain_embeddings", "langchain_faiss", "load_dataset", "load_gold", "load_squad", "locate_evidence",
    "metrics_rows", "metrics_table", "normalize_answer", "our_prediction", "overlap", "percentile", "question_type",
    "reliability_bins", "response_confidence", "retrieval_scores", "score_question", "token_f1", "verifier_supports", "write_report",
]
