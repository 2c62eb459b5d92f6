"""The model's vocabulary word vectors (rag.word_table): which words, the files, damage, and the answerer's use."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rag import word_table
from rag.answer.features import WordVectors
from rag.model_files import ModelInfo
from tests.fakes import HashingEmbedder

VOCAB = {"[CLS]": 0, "[SEP]": 1, "sacked": 2, "fired": 3, "the": 4, "##ing": 5, "ab": 6, "2020": 7, "café": 8,
         "Harbour": 9, "coach": 10, "x-ray": 11}


class VocabularyEmbedder(HashingEmbedder):
    """The hashing fake, with a model folder whose tokenizer.json holds ``VOCAB``; counts the texts it encodes."""

    def __init__(self, folder, sha: str = "ab" * 32):
        super().__init__()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tokenizer.json").write_text(json.dumps({"model": {"type": "WordPiece", "vocab": VOCAB}}),
                                               encoding="utf-8")
        self.info = ModelInfo("tests/vocabulary", folder, sha)
        self.encoded: list[str] = []

    def encode(self, texts, batch_size: int = 64, progress=None):
        self.encoded += list(texts)
        return super().encode(texts, batch_size, progress)


@pytest.fixture
def fake(tmp_path):
    return VocabularyEmbedder(tmp_path / "model")


def test_whole_content_words_of_the_vocabulary_are_kept(fake):
    # Word pieces, stopwords, figures, two-letter words, hyphenated entries and capitalised ones are not.
    assert word_table.vocabulary_words(fake.info.path) == ["café", "coach", "fired", "sacked"]


def test_built_table_is_read_back_and_gives_each_word_its_own_vector(fake, tmp_path):
    built = word_table.load_or_build(fake, tmp_path / "cache", allow_build=True)
    assert len(built) == 4
    assert np.allclose(built.get("sacked"), fake.encode(["sacked"])[0])
    assert built.get("zeppelin") is None
    fake.encoded.clear()
    again = word_table.load_or_build(fake, tmp_path / "cache", allow_build=True)
    assert len(again) == 4
    assert fake.encoded == ["café", "fired", "sacked"], "a load re-embeds only its three probe rows (first, middle, last)"
    folder = word_table.folder_for(fake, tmp_path / "cache")
    assert sorted(p.name for p in folder.iterdir()) == ["marker.json", "vectors.npy", "words.json"]
    np.load(folder / "vectors.npy", allow_pickle=False)  # no pickle


def _damage_rows(folder):
    vectors = np.load(folder / "vectors.npy", allow_pickle=False)
    np.save(folder / "vectors.npy", np.roll(vectors, 1, axis=0), allow_pickle=False)  # same size, rows swapped


def _truncate(folder):
    data = (folder / "vectors.npy").read_bytes()
    (folder / "vectors.npy").write_bytes(data[: len(data) // 2])


def _other_words(folder):
    (folder / "words.json").write_text(json.dumps(["a", "b", "c", "d"]), encoding="utf-8")


@pytest.mark.parametrize("damage", [_damage_rows, _truncate, _other_words, lambda f: (f / "marker.json").unlink()],
                         ids=["rows-swapped", "truncated", "other-words", "no-marker"])
def test_a_damaged_table_is_never_used_and_is_rebuilt(fake, tmp_path, damage):
    cache = tmp_path / "cache"
    word_table.load_or_build(fake, cache, allow_build=True)
    damage(word_table.folder_for(fake, cache))
    assert word_table.load(fake, cache) is None
    rebuilt = word_table.load_or_build(fake, cache, allow_build=True)
    assert np.allclose(rebuilt.get("fired"), fake.encode(["fired"])[0])


def test_another_models_table_is_not_used(fake, tmp_path):
    cache = tmp_path / "cache"
    word_table.load_or_build(fake, cache, allow_build=True)
    other = VocabularyEmbedder(tmp_path / "model", sha="cd" * 32)
    assert word_table.load(other, cache) is None, "another model: another folder"


def test_without_a_table_or_a_writable_cache_the_answerer_embeds_words_itself(fake, tmp_path):
    assert word_table.load_or_build(fake, tmp_path / "cache", allow_build=False) is None
    blocked = tmp_path / "a-file-not-a-folder"
    blocked.write_text("", encoding="utf-8")
    assert word_table.load_or_build(fake, blocked, allow_build=True) is None, "no exception, no table"


def test_the_answerer_takes_words_from_the_table_and_embeds_only_the_others(fake, tmp_path):
    table = word_table.load_or_build(fake, tmp_path / "cache", allow_build=True)
    fake.word_table = lambda: table
    fake.encoded.clear()
    vectors = WordVectors(fake).matrix(["sacked", "zeppelin", "fired", "sacked"])
    assert fake.encoded == ["zeppelin"]
    assert vectors.shape == (4, fake.dim)
    assert np.allclose(vectors[0], table.get("sacked")) and np.allclose(vectors[2], table.get("fired"))


@pytest.mark.slow
def test_the_real_models_table_holds_general_english_with_the_models_vectors(embedder):
    table = embedder.word_table()
    assert table is not None and len(table) > 15_000
    for word in ("sacked", "fired", "glacier", "treaty", "replaced"):
        assert float(table.get(word) @ embedder.encode([word])[0]) > 0.9999, word
    assert float(table.get("sacked") @ table.get("fired")) > float(table.get("sacked") @ table.get("glacier"))


def test_an_index_build_prepares_the_table_so_the_first_question_does_not_wait(fake, tmp_path):
    from rag.index import build_index
    from tests.conftest import make_settings

    calls = []
    fake.word_table = lambda: calls.append("word_table")
    index = build_index(make_settings(tmp_path), fake)
    assert calls == ["word_table"]
    assert len(index.words) > 100, "the index's own vocabulary is stored too"
