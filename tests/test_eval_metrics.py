"""Evaluation metrics on hand-computed cases. No model: the citation verifier is replaced by a stub judge."""

from __future__ import annotations

import re

import pytest

from rag.errors import InputFileError
from rag.eval import (
    CitedSentence,
    GoldQuestion,
    Prediction,
    aggregate,
    citation_quality,
    contains_alias,
    covered_chars,
    evidence_cited,
    exact_match,
    locate_evidence,
    normalize_answer,
    overlap,
    percentile,
    retrieval_scores,
    score_question,
    token_f1,
)
from rag.types import Document


def word_judge(sentence: str, evidence: str) -> bool:
    """Stub verifier: a sentence is supported when every one of its words occurs in the evidence."""
    evidence_words = set(re.findall(r"\w+", evidence.lower()))
    return set(re.findall(r"\w+", sentence.lower())) <= evidence_words


# ------------------------------------------------------------------ answer normalisation, EM, F1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The  Quick, brown fox!", "quick brown fox"),
        ("An apple a day", "apple day"),
        ("“Baghdad’s” Green Zone", "baghdads green zone"),  # typographic quotes are punctuation too
        ("150,000", "150000"),
        ("Theatre", "theatre"),  # articles only as whole words
        ("", ""),
    ],
)
def test_normalize_answer_follows_squad(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match_against_best_alias():
    assert exact_match("the Donald Trump.", ["Donald Trump"]) == 1.0
    assert exact_match("Trump", ["Donald Trump", "Trump"]) == 1.0
    assert exact_match("Donald", ["Donald Trump"]) == 0.0


def test_token_f1_hand_computed():
    # "donald" vs "donald trump": precision 1, recall 1/2 -> F1 2/3
    assert token_f1("Donald", ["Donald Trump"]) == pytest.approx(2 / 3)
    # "president donald trump said" vs "donald trump": precision 2/4, recall 1 -> F1 2/3
    assert token_f1("President Donald Trump said", ["Donald Trump"]) == pytest.approx(2 / 3)
    # best alias wins: vs "trump" 2/3, vs "donald trump" 1/2
    assert token_f1("Trump said", ["Donald Trump", "Trump"]) == pytest.approx(2 / 3)
    assert token_f1("Ghaani", ["Esmail Ghaani"]) == pytest.approx(2 / 3)
    assert token_f1("Baghdad", ["Tehran"]) == 0.0


def test_empty_predictions():
    assert exact_match("", ["Baghdad"]) == 0.0
    assert token_f1("", ["Baghdad"]) == 0.0
    # SQuAD 2.0: no gold answer, so only the empty prediction is right
    assert exact_match("", []) == 1.0
    assert token_f1("", []) == 1.0
    assert token_f1("Baghdad", []) == 0.0
    assert exact_match("the", []) == 1.0  # normalises to empty


def test_contains_alias_matches_whole_words_after_normalisation():
    assert contains_alias("He met President Donald Trump.", ["Trump"])
    assert not contains_alias("He played the trumpet.", ["Trump"])
    assert contains_alias("Some 150,000 fighters.", ["150000"])
    assert contains_alias("It was in December 2024 [1].", ["december 2024"])
    assert not contains_alias("anything at all", ["the"])  # an alias normalising to nothing never matches
    assert not contains_alias("", ["Baghdad"])


# ------------------------------------------------------------------ spans and retrieval


def test_overlap_and_covered_chars():
    assert overlap(("d", 0, 10), ("d", 5, 20)) == 5
    assert overlap(("d", 0, 10), ("d", 10, 20)) == 0  # touching is not overlapping
    assert overlap(("d", 0, 10), ("e", 0, 10)) == 0  # different documents
    # union: 10-60 and 40-80 cover 10-80 = 70 characters, the other document covers nothing
    assert covered_chars(("d", 0, 100), [("d", 10, 60), ("d", 40, 80), ("e", 0, 100)]) == 70
    assert covered_chars(("d", 0, 100), []) == 0


def test_retrieval_single_evidence():
    evidence = [[("d", 100, 150)]]
    ranking = [("d", 0, 50), ("d", 140, 200), ("d", 300, 400)]
    assert retrieval_scores(ranking, evidence) == {
        "hit_at_1": 0.0, "recall_at_3": 1.0, "recall_at_5": 1.0, "mrr_at_10": 0.5,
    }


def test_retrieval_multi_evidence_recall_is_fraction_of_spans():
    evidence = [[("d", 100, 150)], [("d", 500, 550)]]
    ranking = [("d", 90, 120), ("d", 0, 10), ("d", 20, 30), ("d", 520, 600), ("d", 40, 50)]
    assert retrieval_scores(ranking, evidence) == {
        "hit_at_1": 1.0, "recall_at_3": 0.5, "recall_at_5": 1.0, "mrr_at_10": 1.0,
    }


def test_retrieval_nothing_relevant_in_top_ten():
    evidence = [[("d", 1000, 1100)]]
    ranking = [("d", i * 10, i * 10 + 10) for i in range(10)] + [("d", 1000, 1050)]  # relevant at rank 11
    assert retrieval_scores(ranking, evidence) == {
        "hit_at_1": 0.0, "recall_at_3": 0.0, "recall_at_5": 0.0, "mrr_at_10": 0.0,
    }
    assert retrieval_scores([], evidence)["hit_at_1"] == 0.0


def test_retrieval_any_occurrence_of_a_repeated_evidence_counts():
    evidence = [[("d", 0, 20), ("d", 500, 520)]]
    assert retrieval_scores([("d", 300, 400), ("d", 510, 600)], evidence)["mrr_at_10"] == 0.5


def test_evidence_cited_needs_half_of_every_span():
    evidence = [[("d", 100, 200)]]
    assert evidence_cited([("d", 0, 300)], evidence)  # containment
    assert evidence_cited([("d", 150, 400)], evidence)  # exactly 50%
    assert not evidence_cited([("d", 151, 400)], evidence)  # 49%
    assert evidence_cited([("d", 100, 130), ("d", 170, 200)], evidence)  # 30% + 30% together
    assert not evidence_cited([("e", 0, 300)], evidence)
    two_spans = [[("d", 100, 200)], [("d", 500, 600)]]
    assert not evidence_cited([("d", 100, 200)], two_spans)  # all spans are needed
    assert evidence_cited([("d", 100, 200), ("d", 480, 600)], two_spans)


# ------------------------------------------------------------------ ALCE citation recall and precision


def test_citation_single_supporting_citation():
    assert citation_quality([CitedSentence("a b", ("a b",))], word_judge) == (1.0, 1.0)


def test_citation_needed_together_both_relevant():
    # neither citation supports alone, but removing either breaks support: both are needed
    assert citation_quality([CitedSentence("a b", ("a", "b"))], word_judge) == (1.0, 1.0)


def test_citation_redundant_citation_is_irrelevant():
    # "c" does not support alone and "a b" still supports without it: irrelevant (ALCE)
    assert citation_quality([CitedSentence("a b", ("a b", "c"))], word_judge) == (1.0, 0.5)


def test_citation_two_individually_supporting_citations_are_both_relevant():
    assert citation_quality([CitedSentence("a b", ("a b", "b a"))], word_judge) == (1.0, 1.0)


def test_citation_unsupported_sentence_makes_its_citations_irrelevant():
    assert citation_quality([CitedSentence("a d", ("a", "b"))], word_judge) == (0.0, 0.0)


def test_citation_mixed_answer():
    sentences = [
        CitedSentence("a b", ("a b", "c")),  # supported; 1 of 2 citations relevant
        CitedSentence("x y", ()),  # no citation: unsupported
        CitedSentence("p", ("p",)),  # supported; 1 of 1 relevant
    ]
    recall, precision = citation_quality(sentences, word_judge)
    assert recall == pytest.approx(2 / 3)
    assert precision == pytest.approx(2 / 3)


def test_citation_edge_cases():
    assert citation_quality([], word_judge) is None
    assert citation_quality([CitedSentence("a", ())], word_judge) == (0.0, 0.0)  # no citations: precision 0


# ------------------------------------------------------------------ per-question scoring and aggregation


DOC = "d"
EVIDENCE = [[(DOC, 100, 150)]]


def question(qid: str, answers=("Esmail Ghaani", "Ghaani"), kind="who") -> GoldQuestion:
    evidence = ("Soleimani's replacement, Esmail Ghaani.",) if answers else ()
    return GoldQuestion(qid, "Who replaced Soleimani?", tuple(answers), evidence, kind, 1)


def prediction(answer="", short=None, abstained=False, cited=(), latency=10.0) -> Prediction:
    sentences = [CitedSentence(answer, tuple(text for _, text in cited))] if answer else []
    return Prediction(answer, short, abstained, sentences, citations=[span for span, _ in cited],
                      citation_texts=[text for _, text in cited], latency_ms=latency, ranking=[(DOC, 90, 160)])


def test_score_answered_with_short_answer():
    result = score_question(
        question("q1"),
        prediction("Soleimani's replacement, Esmail Ghaani.", short="Esmail Ghaani",
                   cited=[((DOC, 100, 150), "Soleimani's replacement, Esmail Ghaani.")]),
        EVIDENCE, word_judge,
    )
    assert result["exact_match"] == 1.0 and result["f1"] == 1.0  # scored on the short answer
    assert result["contains_alias"] is True and result["correct"] is True  # on the full answer
    assert result["hit_at_1"] == 1.0 and result["evidence_cited"] is True
    assert (result["citation_recall"], result["citation_precision"]) == (1.0, 1.0)
    assert result["cited_chars"] == 50


def test_score_without_short_answer_uses_the_full_answer():
    result = score_question(question("q1"), prediction("It was Esmail Ghaani."), EVIDENCE, word_judge)
    # "it was esmail ghaani" vs "esmail ghaani": precision 2/4, recall 1 -> 2/3
    assert result["exact_match"] == 0.0 and result["f1"] == pytest.approx(2 / 3, abs=1e-4)
    assert result["correct"] is True
    assert result["citation_recall"] == 0.0 and result["evidence_cited"] is False  # cites nothing


def test_score_abstention_on_answerable_question():
    result = score_question(question("q1"), prediction(abstained=True), EVIDENCE, word_judge)
    assert (result["exact_match"], result["f1"], result["correct"], result["contains_alias"]) == (0.0, 0.0, False, False)
    assert result["evidence_cited"] is False
    assert result["citation_recall"] is None and result["cited_chars"] is None  # nothing to check
    assert result["hit_at_1"] == 1.0  # retrieval is scored whatever the answerer did


def test_score_unanswerable_question():
    abstained = score_question(question("q2", answers=()), prediction(abstained=True), [], word_judge)
    assert (abstained["exact_match"], abstained["f1"], abstained["correct"]) == (1.0, 1.0, True)
    assert abstained["hit_at_1"] is None and abstained["contains_alias"] is None and abstained["evidence_cited"] is None
    answered = score_question(question("q3", answers=()), prediction("Tehran."), [], word_judge)
    assert (answered["exact_match"], answered["f1"], answered["correct"]) == (0.0, 0.0, False)


def test_aggregate_splits_has_ans_and_no_ans():
    results = [
        score_question(question("a1"), prediction("Esmail Ghaani", latency=10), EVIDENCE, word_judge),
        score_question(question("a2", kind="when"), prediction(abstained=True, latency=20), EVIDENCE, word_judge),
        score_question(question("n1", answers=(), kind="unanswerable"), prediction(abstained=True, latency=30), [],
                       word_judge),
        score_question(question("n2", answers=(), kind="unanswerable"), prediction("Tehran", latency=40), [],
                       word_judge),
    ]
    metrics = aggregate(results)
    assert (metrics["questions"], metrics["answerable"], metrics["unanswerable"], metrics["answered"]) == (4, 2, 2, 2)
    assert metrics["has_ans_exact_match"] == 0.5 and metrics["no_ans_exact_match"] == 0.5
    assert metrics["exact_match"] == 0.5 and metrics["accuracy"] == 0.5
    assert metrics["abstained_unanswerable"] == 0.5 and metrics["false_abstention"] == 0.5
    assert metrics["answer_contains_alias"] == 0.5
    assert metrics["evidence_cited"] == 0.0
    assert metrics["hit_at_1"] == 1.0  # answerable questions only
    assert metrics["latency_p50_ms"] == 25.0
    assert metrics["per_type"]["unanswerable"] == {"questions": 2, "answerable": 0, "accuracy": 0.5, "exact_match": 0.5,
                                                   "f1": 0.5}
    assert list(metrics["per_type"]) == ["who", "when", "unanswerable"]


def test_percentile_interpolates_linearly():
    assert percentile([40, 10, 30, 20], 50) == 25
    assert percentile([10, 20, 30, 40], 95) == pytest.approx(38.5)  # position 2.85
    assert percentile([7], 95) == 7
    assert percentile([], 50) is None


def test_locate_evidence_finds_every_occurrence_and_rejects_missing_evidence():
    docs = {"a.txt": Document("a.txt", "one two. one two.", "A")}
    located = locate_evidence([GoldQuestion("q1", "?", ("two",), ("one two",), "what", 7)], docs)
    assert located == {"q1": [[("a.txt", 0, 7), ("a.txt", 9, 16)]]}
    with pytest.raises(InputFileError, match=r"gold\.jsonl, line 7: .*three"):
        locate_evidence([GoldQuestion("q1", "?", ("x",), ("three",), "what", 7)], docs, "gold.jsonl")
