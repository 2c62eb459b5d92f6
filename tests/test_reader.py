"""The span reader (rag.answer.reader, opt-in RAG_READER): its weights file, span decoding, the shipped reader
exported to ONNX and read with the real model, and the extractive backend using it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rag.answer import reader
from rag.answer.reader import ReadSpan, best_span, choose_span, decode_array, encode_array, parse_weights
from rag.errors import ModelError
from rag.settings import Settings

GHAANI = "Soleimani's replacement, Esmail Ghaani, lacks the same stature and authority, many militia figures say."


def test_arrays_round_trip_as_float16_base64():
    array = np.array([[0.5, -1.25, 3.0], [1e-3, 0.0, 65504.0]], dtype=np.float32)
    data = encode_array(array)
    assert data["shape"] == [2, 3] and isinstance(data["f16"], str)
    assert np.array_equal(decode_array(json.loads(json.dumps(data)), "test"), array.astype(np.float16).astype(np.float32))


def _weights_json(rank: int = 2) -> dict:
    hidden = 4
    return {"format": reader.FORMAT, "base": {"model_id": "m", "sha256": "0" * 64}, "rank": rank, "alpha": 4.0,
            "adapters": {"encoder.layer.0.attention.self.query": {"a": encode_array(np.ones((rank, hidden))),
                                                                  "b": encode_array(np.zeros((hidden, rank)))}},
            "head": {"weight": encode_array(np.ones((2, hidden))), "bias": [0.0, 0.0]}, "meta": {}}


def test_a_reader_file_is_read_and_a_malformed_one_refused():
    weights = parse_weights(_weights_json(), "test")
    assert weights.scale == 2.0 and weights.head_weight.shape == (2, 4)
    assert parse_weights(json.loads(json.dumps(weights.to_json())), "again").rank == 2
    with pytest.raises(ModelError, match="format"):
        parse_weights({"format": 99}, "test")
    broken = _weights_json()
    broken["rank"] = 3
    with pytest.raises(ModelError, match="rank 3"):
        parse_weights(broken, "test")
    del broken["head"]
    with pytest.raises(ModelError, match="incomplete"):
        parse_weights(broken, "test")
    damaged = _weights_json()
    damaged["head"]["weight"]["f16"] = "not base64!"
    with pytest.raises(ModelError, match="unreadable"):
        parse_weights(damaged, "test")


def test_best_span_takes_whole_words_inside_the_sentence():
    # [CLS] who ? [SEP] Esmail Gha ##ani said [SEP]
    text = "Esmail Ghaani said"
    offsets = [(0, 0), (0, 3), (3, 4), (0, 0), (0, 6), (7, 10), (10, 13), (14, 18), (0, 0)]
    in_sentence = [False, False, False, False, True, True, True, True, False]
    word_ids = [None, 0, 1, None, 0, 1, 1, 2, None]
    start = np.array([9.0, 9, 9, 0, 1, 0, 5, 0, 9])  # the question and [CLS] score high but are not the sentence
    end = np.array([9.0, 9, 9, 0, 0, 0, 5, 0, 9])
    span = best_span(start, end, offsets, in_sentence, word_ids, text)
    assert span == ReadSpan("Ghaani", 7, 13, 10.0)  # started on "##ani": widened to the whole word


def test_best_span_is_at_most_the_longest_answer():
    n = reader.MAX_ANSWER_TOKENS + 5
    text = " ".join(f"w{i}" for i in range(n))
    offsets = [(3 * i, 3 * i + 2) for i in range(n)]
    start, end = np.zeros(n), np.zeros(n)
    start[0], end[-1] = 5.0, 5.0  # the whole sentence would score best, but is too long
    span = best_span(start, end, offsets, [True] * n, list(range(n)), text)
    assert span is not None and len(span.text.split()) <= reader.MAX_ANSWER_TOKENS


def test_choose_span_takes_the_best_scoring_sentence_and_trims_punctuation():
    spans = [ReadSpan("Baghdad,", 0, 8, 3.0), None, ReadSpan('"Tehran"', 0, 8, 7.5)]
    assert choose_span(spans) == "Tehran"
    assert choose_span([None, ReadSpan("  ", 0, 2, 9.0)]) == ""


@pytest.fixture(scope="module")
def shipped_reader():
    return reader.load_reader(Settings().model_cache_dir)


def test_the_shipped_reader_reads_short_answers(shipped_reader):
    """The shipped adapters, exported to ONNX on first use and checked against torch there, read answers."""
    assert choose_span(shipped_reader.read("Who replaced Soleimani?", [GHAANI])) == "Esmail Ghaani"
    assert choose_span(shipped_reader.read(
        "How big is the paramilitary umbrella organisation?",
        ["They also came to dominate the Popular Mobilization Forces, a 150,000-strong state paramilitary "
         "umbrella organization formed to fight Islamic State."])) in ("150,000-strong", "150,000")
    assert shipped_reader.read("Who?", []) == []


def test_a_reader_fitted_on_another_base_model_is_refused(tmp_path):
    weights, _ = reader.read_weights()
    other = weights.to_json()
    other["base"]["sha256"] = "f" * 64
    path = tmp_path / "reader.json"
    path.write_text(json.dumps(other), encoding="utf-8")
    with pytest.raises(ModelError, match="refit it with `make train`"):
        reader.load_reader(Settings().model_cache_dir, path)


def test_an_unreadable_reader_file_says_so(tmp_path):
    with pytest.raises(ModelError, match="cannot read the reader"):
        reader.read_weights(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(ModelError, match="not JSON"):
        reader.read_weights(tmp_path / "bad.json")


def test_the_extractive_backend_reads_its_short_answer_with_the_reader_when_asked(tmp_path, embedder):
    from rag.answer.base import AnswerNote
    from rag.index import open_index
    from rag.pipeline import Pipeline
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, reader=True)
    pipeline = Pipeline(settings, embedder, open_index(settings, embedder))
    from rag.answer.extractive import ExtractiveBackend

    backend = ExtractiveBackend(pipeline.index, embedder, settings)
    assert backend.reader is not None
    request = pipeline.prepare("Who replaced Soleimani?", ExtractiveBackend)
    notes = [part for part in backend.execute(request) if isinstance(part, AnswerNote)]
    assert notes and notes[0].short_answer == "Esmail Ghaani"
    assert ExtractiveBackend(pipeline.index, embedder, make_settings(tmp_path / "off")).reader is None


def test_reader_training_finds_the_answer_in_its_word_pieces():
    from rag.answer.reader import tokenizer_for
    from rag.answer.reader_training import _pair_batch, _targets
    from rag.model_files import BUNDLED_MODEL, resolve_model

    base = resolve_model(BUNDLED_MODEL, Settings().model_cache_dir)
    tokenizer = tokenizer_for(base.path)
    example = {"question": "Who replaced Soleimani?", "sentence": GHAANI, "start": GHAANI.index("Esmail"),
               "end": GHAANI.index("Esmail") + len("Esmail Ghaani")}
    _, _, _, encodings = _pair_batch(tokenizer, [example], reader.pair_inputs)
    (start,), (end,) = _targets([example], encodings)
    assert GHAANI[encodings[0].offsets[start][0]:encodings[0].offsets[end][1]] == "Esmail Ghaani"


@pytest.mark.slow
def test_reader_training_gives_the_same_weights_twice(monkeypatch):
    """`make train` must reproduce the shipped reader.json exactly: seeds, thread count and deterministic torch."""
    from rag.answer import reader_training
    from rag.model_files import BUNDLED_MODEL, resolve_model

    monkeypatch.setattr(reader_training, "EPOCHS", 1)
    base = resolve_model(BUNDLED_MODEL, Settings().model_cache_dir)
    at = GHAANI.index("Esmail Ghaani")
    examples = [{"question": q, "sentence": GHAANI, "start": at, "end": at + len("Esmail Ghaani")}
                for q in ("Who replaced Soleimani?", "Who is the new commander?", "Who lacks stature?")] * 6
    fitted = [reader.weights_of(reader_training.fit(examples, base, log=lambda *a: None), base, {}).to_json()
              for _ in range(2)]
    assert fitted[0] == fitted[1]
    assert fitted[0]["adapters"]["encoder.layer.5.output.dense"]["b"] != encode_array(np.zeros((384, 8))), "it trained"
