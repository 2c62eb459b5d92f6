"""The gold set itself (schema, coverage, evidence in the article) and the loader's validation."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from rag.errors import InputFileError
from rag.eval import DEFAULT_GOLD, GOLD_KEYS, load_gold


def test_schema_is_exact(gold):
    for record in gold:
        assert sorted(record) == sorted(GOLD_KEYS), record
        assert isinstance(record["id"], str) and record["id"]
        assert isinstance(record["question"], str) and record["question"].strip()
        assert isinstance(record["type"], str) and record["type"]
        assert isinstance(record["answers"], list) and all(isinstance(a, str) and a for a in record["answers"])
        assert isinstance(record["evidence"], list) and all(isinstance(e, str) and e for e in record["evidence"])
        # unanswerable means no answers and no evidence; answerable means both
        assert bool(record["answers"]) == bool(record["evidence"]), record["id"]


def test_ids_are_unique(gold):
    duplicates = [qid for qid, count in Counter(r["id"] for r in gold).items() if count > 1]
    assert not duplicates


def test_every_evidence_string_occurs_in_the_article(gold, article_text):
    missing = [(r["id"], e) for r in gold for e in r["evidence"] if e not in article_text]
    assert not missing


def test_size_and_unanswerable_share(gold):
    assert len(gold) >= 60
    unanswerable = sum(not r["answers"] for r in gold)
    assert unanswerable / len(gold) >= 0.15


def test_question_types_are_covered(gold):
    types = Counter(r["type"] for r in gold)
    for kind in ("who", "when", "where", "how_many", "why", "quote", "two_step", "unanswerable"):
        assert types[kind] >= 3, kind
    assert all(len(r["evidence"]) == 2 for r in gold if r["type"] == "two_step")
    assert all(not r["answers"] for r in gold if r["type"] == "unanswerable")


def test_load_gold_reads_the_bundled_set(gold):
    questions = load_gold(DEFAULT_GOLD)
    assert [q.id for q in questions] == [r["id"] for r in gold]
    assert questions[0].line == 1 and questions[0].answerable


VALID = {"id": "q1", "question": "Who?", "answers": ["Ada"], "evidence": ["Ada did it."], "type": "who"}


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"id": "q2", "question": ', "not valid JSON"),
        ('["a list"]', "expected a JSON object"),
        (json.dumps({k: v for k, v in VALID.items() if k != "type"} | {"id": "q2"}), "missing type"),
        (json.dumps(VALID | {"id": "q2", "notes": "x"}), "unexpected notes"),
        (json.dumps(VALID | {"id": "q2", "answers": "A"}), "'answers' must be a list"),
        (json.dumps(VALID | {"id": "q2", "evidence": [""]}), "'evidence' must be a list of non-empty strings"),
        (json.dumps(VALID | {"id": ""}), "'id' must be a non-empty string"),
        (json.dumps(VALID | {"id": "q2", "evidence": []}), "must both be empty"),
        (json.dumps(VALID), "duplicate id 'q1' (first used on line 1)"),
    ],
)
def test_load_gold_rejects_a_malformed_line_naming_file_and_line(tmp_path, bad_line, message):
    path = tmp_path / "my-gold.jsonl"
    # line 2 is blank (allowed), so the bad record is on line 3
    path.write_text(json.dumps(VALID) + "\n\n" + bad_line + "\n", encoding="utf-8")
    with pytest.raises(InputFileError) as caught:
        load_gold(path)
    assert f"{path}, line 3:" in str(caught.value)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "gold file not found"), (b"", "no questions"), (b"\xff\xfe{}\n", "not UTF-8")],
)
def test_load_gold_rejects_unreadable_files(tmp_path, content, message):
    path = tmp_path / "gold.jsonl"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputFileError, match=message):
        load_gold(path)
    with pytest.raises(InputFileError, match="not a file"):
        load_gold(tmp_path)
