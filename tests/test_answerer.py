"""The learned extractive answerer: question analysis, features, the scorer file, answer choice, short answer
spans, confidence and the training script. Fast: the hashing embedder of tests/fakes.py, no model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rag.answer.base import NO_ANSWER, AnswerNote, AnswerRequest
from rag.answer.extractive import ExtractiveBackend, choose
from rag.answer.features import ANSWER_FEATURES, SENTENCE_FEATURES, Candidates, Featurizer
from rag.answer.question import analyze, short_answer
from rag.answer.scorer import AnswerModel, Logistic, load_model, parse_model, shipped_model_name
from rag.answer.span import SPAN_FEATURES, answer_head, best_span, candidate_spans, span_features
from rag.answer.training import answer_bearing
from rag.answer.training import collect as real_collect
from rag.errors import ModelError
from rag.model_files import BUNDLED_SHA256
from rag.settings import PROJECT_ROOT
from rag.types import Sentence

# ---------------------------------------------------------------------------------------------- question analysis


@pytest.mark.parametrize(("question", "kind"), [
    ("Who took over the company after the founder resigned?", "who"),
    ("When did the glacier start to retreat?", "when"),
    ("In what year was the lighthouse built?", "when"),
    ("Where did the fire start?", "where"),
    ("How many people were evacuated?", "how_many"),
    ("How much did the stadium cost?", "money"),
    ("How old was the keeper when he retired?", "age"),
    ("Why did the council cut the budget?", "why"),
    ("Who said the vote was 'a betrayal of riders'?", "quote_speaker"),
    ("What did the mayor say about the veto?", "quote_content"),
    ("What does the new drug treat in most patients?", "what"),
])
def test_question_kind(question, kind):
    assert analyze(question).kind == kind


def test_question_entities_and_terms():
    info = analyze("Why did Mayor Ines Carvalho veto the Riverside line budget?")
    assert "Ines Carvalho" in " ".join(info.entities)
    assert "veto" in info.terms and "budget" in info.terms


def test_the_sentence_model_learns_the_evidence_sentence_that_holds_the_answer():
    evidence = np.array([1, 1, 0], dtype=np.float32)
    texts = ["The club sacked its manager on Monday.", "Dana Whitcombe replaced him.", "Dana Whitcombe smiled."]
    assert answer_bearing(evidence, texts, ("Dana Whitcombe",)).tolist() == [0, 1, 0]
    # no evidence sentence holds an alias (a paraphrased answer): all evidence sentences stay positive
    assert answer_bearing(evidence, texts, ("the coach",)).tolist() == [1, 1, 0]
    assert answer_bearing(evidence, texts, ()).tolist() == [1, 1, 0]  # unanswerable: unchanged


# ---------------------------------------------------------------------------------------------- short answers


def test_short_answer_picks_the_asked_type():
    texts = ["The council voted 7-4 on March 3, 2026 to cut the Riverside line's budget by $40 million."]
    assert "March 3, 2026" in short_answer(analyze("When did the council vote to cut the budget?"), texts)
    assert "$40 million" in short_answer(analyze("How much was cut from the line's budget?"), texts)


def test_short_answer_skips_names_the_question_already_has():
    texts = ["Dana Whitcombe replaced Tom Ashworth as manager of the club."]
    assert short_answer(analyze("Who replaced Tom Ashworth as manager?"), texts) == "Dana Whitcombe"


def test_span_candidates_respect_clauses_and_function_words():
    text = "The council, led by Mayor Ines Carvalho, voted on March 3, 2026 to cut $40 million."
    spans = {s.text for s in candidate_spans(text)}
    assert {"Ines Carvalho", "Mayor Ines Carvalho", "March 3, 2026", "$40 million"} <= spans
    assert not any(s.startswith(("the ", "The ", "to ")) or s.endswith((" the", " to")) for s in spans)
    assert "council, led" not in " ".join(spans)  # a comma ends a span (but not inside "March 3, 2026")


@pytest.mark.parametrize(("question", "head"), [
    ("What kind of job did Maria take so her sister could study?", "job"),
    ("Which river competes with the Nile?", "river"),
    ("How many votes did the motion get?", "votes"),
    ("Who is the spokesman for the utility?", "spokesman"),
    ("What did the mayor say?", None),
    ("Who won the final?", None),
])
def test_answer_head_is_the_noun_naming_what_is_asked(question, head):
    assert answer_head(question) == head


class _TinyWordVectors:
    """Word vectors for a handful of words: "governess" sits near "job", everything else apart."""

    AXES = {"job": 0, "governess": 0, "paris": 1, "sister": 2, "maria": 3, "take": 4, "study": 5}

    def matrix(self, items):
        out = np.zeros((len(items), 8), dtype=np.float32)
        for r, word in enumerate(items):
            out[r, self.AXES.get(word, 7)] = 1.0
        return out


def test_span_features_measure_closeness_to_the_question_and_to_the_asked_noun():
    info = analyze("What kind of job did Maria take so her sister could study?")
    text = "Maria worked as a governess in Paris so that her sister could study."
    spans = [sp for sp in candidate_spans(text) if sp.text in ("governess", "Paris", "Maria")]
    rows = span_features(info, text, spans, _TinyWordVectors())
    column = {name: rows[:, SPAN_FEATURES.index(name)] for name in ("head_similarity", "soft_in_question_max")}
    by_text = {sp.text: i for i, sp in enumerate(spans)}
    assert column["head_similarity"][by_text["governess"]] == 1.0
    assert column["head_similarity"][by_text["Paris"]] == 0.0
    assert column["soft_in_question_max"][by_text["Maria"]] == 1.0  # the question has it: not the answer
    assert column["soft_in_question_max"][by_text["Paris"]] == 0.0
    without = span_features(info, text, spans)  # no word vectors: exact stems only
    assert without[by_text["governess"], SPAN_FEATURES.index("head_similarity")] == 0.0


def test_span_model_picks_the_typed_span():
    """A hand-set span model that prefers spans of the asked-for type not already in the question."""
    weights = np.zeros(len(SPAN_FEATURES))
    weights[SPAN_FEATURES.index("typed_overlap")] = 4.0
    weights[SPAN_FEATURES.index("in_question_share")] = -4.0
    model = _logistic(SPAN_FEATURES, weights)
    info = analyze("When did the council vote to cut the budget?")
    text = "The council voted on March 3, 2026 to cut the budget."
    assert best_span(info, [text], model) == "March 3, 2026"
    features = span_features(info, text, candidate_spans(text))
    assert features.shape[1] == len(SPAN_FEATURES) and np.isfinite(features).all()


# ---------------------------------------------------------------------------------------------- scorer file


def _logistic(features, coef, intercept=0.0):
    n = len(features)
    return Logistic(tuple(features), np.zeros(n), np.ones(n), np.asarray(coef, dtype=float), intercept)


def test_logistic_prediction_is_the_sigmoid_of_the_standardised_score():
    model = Logistic(("a", "b"), np.array([1.0, 0.0]), np.array([2.0, 1.0]), np.array([1.0, -1.0]), 0.5)
    x = np.array([[3.0, 1.0]])  # ((3-1)/2)*1 + (1-0)/1*(-1) + 0.5 = 0.5
    assert model.predict(x)[0] == pytest.approx(1 / (1 + np.exp(-0.5)))


def test_model_json_round_trip_and_validation():
    model = AnswerModel(_logistic(SENTENCE_FEATURES, np.linspace(-1, 1, len(SENTENCE_FEATURES))),
                        _logistic(ANSWER_FEATURES, np.linspace(1, -1, len(ANSWER_FEATURES)), -0.3),
                        0.42, 0.6, {"note": "test"}, _logistic(SPAN_FEATURES, np.linspace(0, 1, len(SPAN_FEATURES))))
    data = json.loads(json.dumps(model.to_json()))
    again = parse_model(data, "test")
    assert again.min_confidence == 0.42 and again.second_sentence == 0.6
    assert np.allclose(again.sentence.coef, model.sentence.coef)
    assert np.allclose(again.span.coef, model.span.coef)
    without_span = {k: v for k, v in data.items() if k != "span"}
    assert parse_model(without_span, "test").span is None  # the rule-based picker then
    renamed = json.loads(json.dumps(data))
    renamed["sentence"]["features"][0] = "something_else"
    with pytest.raises(ModelError, match="do not match"):
        parse_model(renamed, "test")
    broken = json.loads(json.dumps(data))
    broken["confidence"]["scale"][0] = 0.0
    with pytest.raises(ModelError, match="malformed"):
        parse_model(broken, "test")
    with pytest.raises(ModelError, match="format"):
        parse_model({"format": 99}, "test")


def test_shipped_model_loads_and_says_how_it_was_made():
    model = load_model()
    assert 0.0 < model.min_confidence < 1.0
    assert np.isfinite(model.sentence.coef).all() and np.isfinite(model.confidence.coef).all()
    assert model.span is not None and np.isfinite(model.span.coef).all()
    data = model.meta["data"]
    assert any(name.endswith("eval/gold.jsonl") for name in data), "the training data is named with checksums"
    assert len(model.meta["documents"]) >= 5
    assert "lodo" in model.meta
    assert model.embedding_sha256 == BUNDLED_SHA256, "fitted on the bundled MiniLM's features, and says so"


def test_the_shipped_model_is_chosen_by_the_embedding_model_it_was_fitted_on():
    assert shipped_model_name(BUNDLED_SHA256) == "answerer.json"
    assert shipped_model_name("0" * 64) == "answerer.json", "an embedder without its own model gets the default"


def test_a_model_fitted_on_another_embedder_is_used_with_one_warning(fake_pipeline, caplog):
    """The hashing embedder is not the MiniLM the shipped model was fitted on: the answerer still answers, and
    says once that its confidence is not calibrated for this embedder."""
    from rag.answer import scorer

    scorer._warned.clear()
    with caplog.at_level("WARNING", logger="rag"):
        for _ in range(2):
            backend = ExtractiveBackend(fake_pipeline.index, fake_pipeline.embedder, fake_pipeline.settings)
    warnings = [r.getMessage() for r in caplog.records if "was fitted with the embedding model" in r.getMessage()]
    assert len(warnings) == 1 and "all-MiniLM-L6-v2" in warnings[0] and "RAG_ANSWER_MODEL" in warnings[0]
    assert backend.model.embedding_sha256 == BUNDLED_SHA256
    caplog.clear()
    own = AnswerModel(backend.model.sentence, backend.model.confidence, 0.2, 0.6,
                      {"embedding": {"model_id": "fake", "sha256": fake_pipeline.embedder.info.sha256}})
    with caplog.at_level("WARNING", logger="rag"):
        ExtractiveBackend(fake_pipeline.index, fake_pipeline.embedder, fake_pipeline.settings, model=own)
    assert not [r for r in caplog.records if "was fitted with the embedding model" in r.getMessage()]


def test_bad_model_file_is_one_clear_error(tmp_path):
    path = tmp_path / "model.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_model(str(path))


# ---------------------------------------------------------------------------------------------- answer choice


def _sentences(texts, paragraph=0):
    out, at = [], 0
    for i, text in enumerate(texts):
        out.append(Sentence(i, "doc.txt", at, at + len(text), text, paragraph))
        at += len(text) + 1
    return out


def _candidates(texts):
    sentences = _sentences(texts)
    n = len(sentences)
    zeros = np.zeros(n, dtype=np.float32)
    return Candidates(analyze("Who?"), sentences, np.zeros((n, len(SENTENCE_FEATURES)), np.float32),
                      zeros, zeros, zeros, zeros)


def test_choose_takes_the_best_and_the_sentence_a_pronoun_needs():
    candidates = _candidates(["Dana Whitcombe was hired in May.", "She said the squad was too small.", "Other."])
    assert choose(candidates, np.array([0.1, 0.9, 0.05]), 0.6) == [0, 1]


def test_choose_adds_a_nearly_as_probable_second_sentence_only():
    candidates = _candidates(["First fact.", "Unrelated.", "Second fact."])
    assert choose(candidates, np.array([0.8, 0.1, 0.5]), 0.6) == [0, 2]
    assert choose(candidates, np.array([0.8, 0.1, 0.3]), 0.6) == [0]


# ---------------------------------------------------------------------------------------------- features + backend


def test_features_are_finite_and_mark_the_asked_type(fake_pipeline):
    featurizer = Featurizer(fake_pipeline.index)
    question = "When did the US kill Qassem Soleimani?"
    request = fake_pipeline.prepare(question, ExtractiveBackend)
    q_vec = fake_pipeline.embedder.encode_query(question)
    candidates = featurizer.candidates(question, q_vec, request.passages, request.hits)
    assert candidates.matrix.shape == (len(request.passages), len(SENTENCE_FEATURES))
    assert np.isfinite(candidates.matrix).all()
    typed = {s.text for s, t in zip(candidates.sentences, candidates.typed, strict=True) if t}
    assert any("2020" in text for text in typed), "a sentence with the year is typed for a when-question"
    col = SENTENCE_FEATURES.index("entities_own")
    named = [s for s, row in zip(candidates.sentences, candidates.matrix, strict=True) if row[col] == 1.0]
    assert named and all("Soleimani" in s.text for s in named)
    answer = featurizer.answer_features(candidates, np.linspace(0.9, 0.1, len(candidates.sentences)), [0])
    assert answer.shape == (len(ANSWER_FEATURES),) and np.isfinite(answer).all()


def test_document_features_say_which_document_a_candidate_comes_from(fake_pipeline, tmp_path, fake_embedder):
    col = {name: SENTENCE_FEATURES.index(name) for name in ("document_hits", "document_top", "document_dense_gap")}
    question = "How far have the glaciers retreated since the end of the Little Ice Age?"
    request = fake_pipeline.prepare(question, ExtractiveBackend)
    alone = Featurizer(fake_pipeline.index).candidates(
        question, fake_pipeline.embedder.encode_query(question), request.passages, request.hits)
    assert (alone.matrix[:, col["document_hits"]] == 1.0).all() and (alone.matrix[:, col["document_top"]] == 1.0).all()
    assert (alone.matrix[:, col["document_dense_gap"]] == 0.0).all(), "one document: nothing to tell apart"

    from rag.index import open_index
    from rag.pipeline import Pipeline
    from tests.conftest import make_settings

    settings = make_settings(tmp_path)  # the bundled article, plus an encyclopedic article beside it
    glaciers = PROJECT_ROOT / "eval" / "dev" / "enc-glaciers.txt"
    (settings.corpus_dir / glaciers.name).write_bytes(glaciers.read_bytes())
    index = open_index(settings, fake_embedder)
    both = Pipeline(settings, fake_embedder, index)
    request = both.prepare(question, ExtractiveBackend)
    candidates = Featurizer(index).candidates(question, fake_embedder.encode_query(question), request.passages,
                                              request.hits)
    sources = {s.source for s in candidates.sentences}
    assert len(sources) == 2, "candidates from both documents"
    top_source = min(request.hits, key=lambda h: h.rank).chunk.source
    for sentence, row in zip(candidates.sentences, candidates.matrix, strict=True):
        assert row[col["document_top"]] == float(sentence.source == top_source)
        shared = sum(h.chunk.source == sentence.source for h in request.hits) / len(request.hits)
        assert row[col["document_hits"]] == pytest.approx(shared)
        assert row[col["document_dense_gap"]] <= 0.0
    assert any(row[col["document_dense_gap"]] < 0.0 for row in candidates.matrix)


def test_token_match_ranks_the_sentence_whose_words_the_question_uses(fake_pipeline, fake_embedder):
    featurizer = Featurizer(fake_pipeline.index, fake_embedder)
    question = "Who replaced Qassem Soleimani at the head of the Quds Force?"
    request = fake_pipeline.prepare(question, ExtractiveBackend)
    scores = featurizer.token_match(question, request.passages)
    assert scores.shape == (len(request.passages),) and np.isfinite(scores).all()
    assert scores.min() >= -1.0 and scores.max() <= 1.0
    best = request.passages[int(scores.argmax())]
    assert "Soleimani" in best.text or "Quds" in best.text
    # The same numbers come from the word-piece rows stored with the index and from encoding the sentences now.
    assert fake_pipeline.index.token_vectors is not None
    assert np.allclose(scores, Featurizer(_without_stored_tokens(fake_pipeline.index), fake_embedder).token_match(
        question, request.passages), atol=1e-3)
    # Without an embedder that gives token vectors the feature is 0, not an error.
    assert not Featurizer(fake_pipeline.index).token_match(question, request.passages).any()
    candidates = featurizer.candidates(question, fake_embedder.encode_query(question), request.passages, request.hits)
    col = SENTENCE_FEATURES.index
    assert np.allclose(candidates.matrix[:, col("tokens")], scores)
    assert candidates.matrix[:, col("tokens_gap")].max() == 0.0
    assert candidates.matrix[:, col("tokens_rank_inv")].max() == 1.0


def test_question_pieces_are_weighed_per_word_by_rarity(fake_pipeline, fake_embedder):
    featurizer = Featurizer(fake_pipeline.index, fake_embedder)
    weights = featurizer._piece_weights(("who", "replaced", "soleimani", "soleimani", "soleimani", "s"))
    assert weights.sum() == pytest.approx(1.0)
    assert weights[0] == weights[5] == 0.0, "a stopword and a one-letter piece weigh nothing"
    assert weights[2] == weights[3] == weights[4], "a word's pieces share its weight"
    # "Soleimani" is in many of the article's sentences, "replaced" in few: the verb outweighs the name.
    assert weights[1] > weights[2:5].sum()
    assert featurizer._piece_weights(("the", "of")).tolist() == [0.5, 0.5], "no content word: equal weights"


def test_sentences_of_an_index_without_token_vectors_are_encoded_once(fake_pipeline, fake_embedder, monkeypatch):
    index = _without_stored_tokens(fake_pipeline.index)
    featurizer = Featurizer(index, fake_embedder)
    encoded: list[str] = []
    original = fake_embedder.encode_with_tokens
    monkeypatch.setattr(fake_embedder, "encode_with_tokens",
                        lambda texts, **kw: encoded.extend(texts) or original(texts, **kw))
    passages = list(index.sentences[:6])
    featurizer.token_match("What did the militias want?", passages)
    featurizer.token_match("Who leads the militias?", passages[2:] + list(index.sentences[6:8]))
    assert sorted(encoded) == sorted(s.text for s in index.sentences[:8])


def _without_stored_tokens(index):
    """A copy of ``index`` as built before token vectors were stored."""
    import dataclasses

    return dataclasses.replace(index, token_vectors=None, token_offsets=None)


def test_backend_reports_confidence_and_abstains_below_the_operating_point(fake_pipeline):
    always = ExtractiveBackend(fake_pipeline.index, fake_pipeline.embedder,
                               fake_pipeline.settings.model_copy(update={"min_confidence": 0.0}))
    never = ExtractiveBackend(fake_pipeline.index, fake_pipeline.embedder,
                              fake_pipeline.settings.model_copy(update={"min_confidence": 1.0}))
    question = "Who replaced Qassem Soleimani?"
    request: AnswerRequest = fake_pipeline.prepare(question, always)
    answered = list(always.execute(request))
    assert isinstance(answered[-1], AnswerNote) and 0.0 <= answered[-1].confidence <= 1.0
    assert "[" in answered[0] and answered[0] != NO_ANSWER
    withheld = list(never.execute(request))
    assert withheld[0] == NO_ANSWER and withheld[-1].confidence == pytest.approx(answered[-1].confidence)


@pytest.mark.slow
def test_training_is_reproducible(tmp_path, fake_embedder, monkeypatch):
    """Three small dev documents, fitted twice with the hashing embedder: the same bytes both times."""
    from rag.answer import training

    questions = [p for p in sorted((PROJECT_ROOT / "eval" / "dev").glob("*.jsonl")) if p.with_suffix(".txt").exists()]
    groups = [(p.stem, [p]) for p in questions[:3]]
    assert len(groups) == 3
    monkeypatch.setattr(training, "dataset_files", lambda: groups)
    monkeypatch.setattr(training, "collect", lambda g, embedder, log=print: _collect(g, embedder))
    first = training.train(tmp_path / "a.json", tmp_path / "a-lodo.json", log=lambda m: None, embedder=fake_embedder)
    training.train(tmp_path / "b.json", None, log=lambda m: None, embedder=fake_embedder)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert first.embedding_sha256 == fake_embedder.info.sha256, "the model records the embedder it was fitted on"
    report = json.loads((tmp_path / "a-lodo.json").read_text(encoding="utf-8"))
    assert set(report["summary"]["by_document"]) == {name for name, _ in groups}
    assert 0.0 <= first.min_confidence <= 1.0


_COLLECTED: dict = {}


def _collect(groups, embedder):
    key = tuple(name for name, _ in groups)
    if key not in _COLLECTED:
        _COLLECTED[key] = real_collect(groups, embedder=embedder, log=lambda m: None)
    return _COLLECTED[key]


def test_training_with_an_embedding_model_that_is_not_there_is_one_line_and_exit_6(monkeypatch, capsys, tmp_path):
    from rag.answer import training

    monkeypatch.setenv("RAG_EMBED_MODEL", str(tmp_path / "no-such-model"))
    assert training.main(["--out", str(tmp_path / "m.json")]) == 6
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: embedding model") and not (tmp_path / "m.json").exists()
