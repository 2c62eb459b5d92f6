"""Post-hoc attribution of LLM answer sentences (rag.answer.citations): every sentence the model wrote is
matched to the retrieved sentences that support it, whatever markers it wrote (none, wrong ones, right
ones); what nothing supports is flagged or dropped (RAG_LLM_UNSUPPORTED). Extractive answers are unchanged.
The "model" is LangChain's fake chat model on the real index and embedder."""

from __future__ import annotations

from langchain_core.language_models.fake_chat_models import FakeListChatModel

from rag.answer.citations import assemble, attribute_sentence, rule_judge
from rag.answer.llm import LangChainBackend

QUESTION = "Who replaced Qassem Soleimani?"


def ask_fake(pipeline, text: str, name: str, question: str = QUESTION):
    pipeline.use_backend(LangChainBackend(FakeListChatModel(responses=[text]), name), spec=name)
    return pipeline.ask(question, backend=name)


def exact(pipeline, answer) -> bool:
    return all(c.text == pipeline.index.documents[c.source].text[c.start : c.end] for c in answer.citations)


def test_a_sentence_without_markers_is_attributed(pipeline):
    answer = ask_fake(pipeline, "Esmail Ghaani replaced Soleimani, but he lacks the same stature and authority.",
                      "fake-no-markers")
    assert answer.answer.endswith("[1]")
    [citation] = answer.citations
    assert citation.origin == "attributed" and "Esmail Ghaani" in citation.text and exact(pipeline, answer)
    assert answer.checks[0].verdict == "supported" and "attributed: [1]" in answer.checks[0].reason
    assert answer.to_json()["citations"][0]["origin"] == "attributed"
    assert answer.warnings == []


def test_a_wrong_marker_keeps_the_models_citation_and_adds_the_right_one(pipeline):
    passages = pipeline.prepare(QUESTION, LangChainBackend(FakeListChatModel(responses=[""]), "x")).passages
    wrong = next(i for i, s in enumerate(passages, 1) if "Ghaani" not in s.text)
    answer = ask_fake(pipeline, f"Soleimani's replacement was Esmail Ghaani [{wrong}].", "fake-wrong-marker")
    origins = {c.origin for c in answer.citations}
    assert origins == {"model", "attributed"}
    attributed = next(c for c in answer.citations if c.origin == "attributed")
    assert "Esmail Ghaani" in attributed.text
    assert answer.checks[0].verdict == "supported" and sorted(answer.checks[0].cited) == [1, 2]
    assert exact(pipeline, answer)


def test_a_correct_marker_needs_no_attribution(pipeline):
    passages = pipeline.prepare(QUESTION, LangChainBackend(FakeListChatModel(responses=[""]), "x")).passages
    n = next(i for i, s in enumerate(passages, 1) if "Esmail Ghaani" in s.text)
    answer = ask_fake(pipeline, f"Soleimani's replacement was Esmail Ghaani [{n}].", "fake-right-marker")
    assert [(c.n, c.origin) for c in answer.citations] == [(1, "model")]
    assert answer.answer == "Soleimani's replacement was Esmail Ghaani [1]."


def test_unsupported_sentences_are_flagged_or_dropped(pipeline):
    text = "Esmail Ghaani replaced Soleimani. Ghaani was born in Paris in 1957."
    flagged = ask_fake(pipeline, text, "fake-flag")
    assert [c.verdict for c in flagged.checks] == ["supported", "unsupported"]
    assert "Paris" in flagged.answer
    assert any("answer sentence 2 is not supported" in w for w in flagged.warnings)

    settings = pipeline.settings
    pipeline.settings = settings.model_copy(update={"llm_unsupported": "drop"})
    try:
        dropped = ask_fake(pipeline, text, "fake-drop")
        nothing = ask_fake(pipeline, "Ghaani was born in Paris in 1957.", "fake-drop-all")
    finally:
        pipeline.settings = settings
    assert "Paris" not in dropped.answer and dropped.answer.startswith("Esmail Ghaani replaced Soleimani.")
    assert len(dropped.checks) == 1 and any("dropped answer sentence 2" in w for w in dropped.warnings)
    assert nothing.abstained and nothing.citations == [] and any("dropped" in w for w in nothing.warnings)


def test_citations_are_numbered_by_first_appearance(pipeline):
    """An attributed marker in sentence 1 comes before the model's marker in sentence 2."""
    question = "How strong is the Popular Mobilization Forces?"
    passages = pipeline.prepare(question, LangChainBackend(FakeListChatModel(responses=[""]), "x")).passages
    n = next(i for i, s in enumerate(passages, 1) if "150,000-strong" in s.text)
    text = f"Esmail Ghaani replaced Soleimani. The Popular Mobilization Forces is 150,000-strong [{n}]."
    answer = ask_fake(pipeline, text, "fake-order", question)
    markers = [int(m) for m in __import__("re").findall(r"\[(\d+)\]", answer.answer)]
    assert markers == sorted(markers) and markers[0] == 1
    assert [c.n for c in answer.citations] == list(range(1, len(answer.citations) + 1))


def test_a_claim_joining_two_sentences_is_attributed_to_both(pipeline):
    passages = [s for s in pipeline.index.sentences
                if "ordered by President Donald Trump" in s.text or "Soleimani's replacement" in s.text]
    similarity = lambda a, b: float(pipeline.embedder.encode_query(a) @ pipeline.embedder.encode_query(b))  # noqa: E731
    found, verdict = attribute_sentence(
        "The killing was ordered by President Donald Trump, and Esmail Ghaani replaced Soleimani.", passages,
        rule_judge(similarity))
    assert sorted(found) == [0, 1] and verdict.verdict == "supported"


def test_extractive_answers_are_not_attributed(pipeline):
    sentences = pipeline.index.sentences[:3]
    raw = f"{sentences[0].text} [1]"
    answer = assemble("Q?", raw, sentences, "extractive", pipeline.index, pipeline.embedder.encode_query)
    assert answer.answer == raw and [c.origin for c in answer.citations] == ["model"]
    unmarked = assemble("Q?", sentences[1].text, sentences, "extractive", pipeline.index,
                        pipeline.embedder.encode_query)
    assert unmarked.citations == [] and unmarked.checks[0].reason == "no citation"


def test_llm_sentences_are_verified_by_the_learned_checker_when_chosen(pipeline):
    """RAG_LLM_VERIFIER=learned: the claim checker judges an LLM's sentences (rag.claims.LearnedJudge), and flags a
    swapped name where the rules (the default) only say partial; with RAG_CLAIM_MODEL=rules the rules judge."""
    from rag.claims import LearnedJudge
    from rag.pipeline import Pipeline

    assert pipeline.sentence_judge(pipeline.index) is None  # the default: the rules
    learned = Pipeline(pipeline.settings.model_copy(update={"llm_verifier": "learned"}), pipeline.embedder,
                       pipeline.index)
    assert isinstance(learned.sentence_judge(learned.index), LearnedJudge)
    question = "Who ordered the killing of Soleimani?"
    invented = "The killing was ordered by President Joe Biden."
    flagged = ask_fake(learned, invented, "fake-biden", question)
    assert flagged.checks[0].verdict == "unsupported"
    assert any("answer sentence 1 is not supported" in w for w in flagged.warnings)
    ruled = ask_fake(pipeline, invented, "fake-biden-rules", question)
    assert ruled.checks[0].verdict == "partial" and "Biden" in ruled.checks[0].reason
    both = Pipeline(pipeline.settings.model_copy(update={"llm_verifier": "learned", "claim_model": "rules"}),
                    pipeline.embedder, pipeline.index)
    assert both.sentence_judge(both.index) is None
    # A true sentence is kept with its citation either way.
    true = ask_fake(learned, "President Donald Trump ordered the killing.", "fake-trump", question)
    assert true.checks[0].verdict in ("supported", "partial") and "Donald Trump" in true.citations[0].text
    assert true.warnings == []
