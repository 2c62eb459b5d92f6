"""The gold-set and claim-set loaders refuse what they cannot read faithfully, in one line naming the file and
the line (JSONL) or the article, paragraph and question (SQuAD). Real files in tmp_path, no mocks."""

from __future__ import annotations

import codecs
import glob
import json
import subprocess
import sys

import pytest

from rag.errors import InputFileError
from rag.eval import load_dataset, load_gold
from rag.eval.claims import load_claims, score_claims
from rag.settings import PROJECT_ROOT

QUESTION = {"id": "q1", "question": "Who built it?", "answers": ["Ada"], "evidence": ["Ada built it."], "type": "who"}
CONTEXT = "Ada built it. Then she left."


def squad(qa: dict | None = None, paragraph: dict | None = None, article: dict | None = None) -> dict:
    qa = {"id": "s1", "question": "Who built it?", "answers": [{"text": "Ada", "answer_start": 0}],
          "is_impossible": False} | (qa or {})
    paragraph = {"context": CONTEXT, "qas": [qa]} | (paragraph or {})
    return {"version": "v2.0", "data": [{"title": "Doc", "paragraphs": [paragraph]} | (article or {})]}


def write(path, content: str | bytes):
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def refused(path, load=load_dataset) -> str:
    with pytest.raises(InputFileError) as caught:
        load(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    assert caught.value.exit_code == 3
    return message


# ---------------------------------------------------------------------------------------------- SQuAD fields


Q = "article 1, paragraph 1, question 1"
S = Q + " (s1)"


@pytest.mark.parametrize(
    ("data", "where", "problem"),
    [
        (squad(paragraph={"context": None}), "article 1, paragraph 1", "expected a 'context' string (got null)"),
        (squad(paragraph={"context": ["x"]}), "article 1, paragraph 1", 'expected a \'context\' string (got ["x"])'),
        (squad(paragraph={"qas": None}), "article 1, paragraph 1", "'qas' must be a list of questions (got null)"),
        (squad(paragraph={"qas": {"id": "s1"}}), "article 1, paragraph 1", "'qas' must be a list"),
        (squad({"question": None}), Q, "'question' must be a non-empty string (got null)"),
        (squad({"question": 7}), Q, "'question' must be a non-empty string (got 7)"),
        (squad({"id": None}), Q, "'id' must be a non-empty string (got null)"),
        (squad({"id": 12}), Q, "'id' must be a non-empty string (got 12)"),
        (squad(article={"title": ["a"]}), "article 1", "'title' must be a string (got [\"a\"])"),
        (squad({"is_impossible": "false"}), S, "'is_impossible' must be true or false (got \"false\")"),
        (squad({"is_impossible": 0}), S, "'is_impossible' must be true or false (got 0)"),
        (squad({"answers": []}), S, "'is_impossible' is false but it has no answers"),
        (squad({"is_impossible": True}), S, "'is_impossible' is true but it has answers"),
        (squad({"answers": {"text": "Ada"}}), S, "'answers' must be a list"),
        (squad({"answers": [{"text": 5, "answer_start": 0}]}), S, "answer 1 needs a non-empty 'text' string (got 5)"),
        (squad({"answers": [{"answer_start": 0}]}), S, "answer 1 needs a non-empty 'text' string (got nothing)"),
        (squad({"answers": [{"text": "Ada", "answer_start": 0}, {"text": "Ada", "answer_start": "0"}]}), S,
         "answer 2 needs an 'answer_start' that is a whole number >= 0 (got \"0\")"),
        (squad({"answers": [{"text": "Ada", "answer_start": 1.5}]}), S, "answer 1 needs an 'answer_start' that is a whole number"),
        (squad({"answers": [{"text": "Ada", "answer_start": True}]}), S, "answer 1 needs an 'answer_start' that is a whole number"),
        (squad({"answers": [{"text": "Ada"}]}), S, "answer 1 needs an 'answer_start' that is a whole number >= 0 (got nothing)"),
        (squad({"answers": [{"text": "The", "answer_start": 0}]}), S, "every answer ('The') is empty once normalised"),
        ({"data": ["x"]}, "article 1", "expected an object with 'title' and 'paragraphs'"),
        ({"data": [{"title": "x", "paragraphs": ["c"]}]}, "article 1, paragraph 1", "expected a 'context' string"),
        (squad(paragraph={"qas": ["Who?"]}), Q, "expected an object with id, question"),
    ],
)
def test_squad_fields_of_the_wrong_type_are_refused_naming_where(tmp_path, data, where, problem):
    path = write(tmp_path / "squad.json", json.dumps(data))
    message = refused(path)
    assert f"{path}, {where}: {problem}" in message, message
    assert problem in message, message


def test_a_well_formed_squad_file_still_loads(tmp_path):
    data = squad()
    data["data"][0]["paragraphs"][0]["qas"] += [
        {"id": "s2", "question": "Who sold it?", "answers": [], "is_impossible": True},
        {"id": "s3", "question": "What did she do?", "answers": [{"text": "left", "answer_start": 23}]},  # SQuAD 1.1
        # an alias that normalises to nothing is dropped beside a real one, as the official SQuAD script does
        {"id": "s4", "question": "Who?", "answers": [{"text": "the", "answer_start": 1}, {"text": "Ada", "answer_start": 0}],
         "is_impossible": False},
    ]
    documents, questions = load_dataset(write(tmp_path / "squad.json", json.dumps(data)))
    assert documents == [("Doc.txt", "Doc\n\n" + CONTEXT + "\n")]
    assert [(q.id, q.answers, q.type) for q in questions] == [
        ("s1", ("Ada",), "who"), ("s2", (), "unanswerable"), ("s3", ("left",), "what"), ("s4", ("Ada",), "who")]
    assert questions[3].evidence == ("Ada built it.",)


def test_a_duplicate_squad_id_names_both_places(tmp_path):
    data = squad()
    data["data"].append({"title": "Other", "paragraphs": [{"context": CONTEXT, "qas": [squad()["data"][0][
        "paragraphs"][0]["qas"][0]]}]})
    message = refused(write(tmp_path / "squad.json", json.dumps(data)))
    assert "article 2, paragraph 1, question 1: duplicate question id 's1'" in message
    assert "first used at article 1, paragraph 1, question 1" in message


def test_a_bad_squad_file_exits_3_on_one_line_from_the_cli(tmp_path):
    path = write(tmp_path / "squad.json", json.dumps(squad({"is_impossible": "false"})))
    done = subprocess.run([sys.executable, "-m", "rag.cli", "eval", "--gold", str(path), "--no-baseline"],
                          capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300)
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    assert "'is_impossible' must be true or false" in done.stderr


# ---------------------------------------------------------------------------------------------- byte order mark


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    gold = write(tmp_path / "set.jsonl", codecs.BOM_UTF8 + json.dumps(QUESTION).encode() + b"\n")
    assert [q.id for q in load_gold(gold)] == ["q1"]
    sq = write(tmp_path / "squad.json", codecs.BOM_UTF8 + json.dumps(squad()).encode())
    assert [q.id for q in load_dataset(sq)[1]] == ["s1"]
    write(tmp_path / "doc.txt", codecs.BOM_UTF8 + CONTEXT.encode())  # dropped, as the corpus reader drops it
    claims = write(tmp_path / "doc.claims.jsonl", codecs.BOM_UTF8 + json.dumps(
        {"id": "c1", "claim": "Ada built it.", "label": "supported", "evidence": ["Ada built it."]}).encode() + b"\n")
    documents, loaded = load_claims(claims)
    assert documents == [("doc.txt", CONTEXT)] and [c.id for c in loaded] == ["c1"]


# ---------------------------------------------------------------------------------------------- empty aliases


@pytest.mark.parametrize("alias", ["The", "A", "—", "an.", " ... "])
def test_an_alias_that_normalises_to_nothing_is_refused(tmp_path, alias):
    path = write(tmp_path / "set.jsonl", json.dumps(QUESTION | {"answers": ["Ada", alias]}) + "\n")
    message = refused(path)
    assert f"{path}, line 1: alias {alias!r} is empty once normalised" in message


def test_short_real_aliases_still_load(tmp_path):
    path = write(tmp_path / "set.jsonl", json.dumps(QUESTION | {"answers": ["US", "A1", "P", "The Hague"]}) + "\n")
    assert load_gold(path)[0].answers == ("US", "A1", "P", "The Hague")


# ---------------------------------------------------------------------------------------------- wrong extension


def test_jsonl_named_json_says_so(tmp_path):
    lines = [QUESTION, QUESTION | {"id": "q2"}]
    path = write(tmp_path / "set.json", "".join(json.dumps(r) + "\n" for r in lines))
    message = refused(path)
    assert "not valid JSON" in message and "looks like JSONL, one question per line: name it .jsonl" in message
    one = write(tmp_path / "one.json", json.dumps(QUESTION) + "\n")
    assert "looks like one JSONL question: name it .jsonl" in refused(one)


def test_squad_named_jsonl_says_so(tmp_path):
    compact = write(tmp_path / "squad.jsonl", json.dumps(squad()) + "\n")
    assert "looks like SQuAD JSON (one object with a 'data' list of articles): name it .json" in refused(compact)
    pretty = write(tmp_path / "pretty.jsonl", json.dumps(squad(), indent=2))
    assert "name it .json" in refused(pretty)


def test_a_plain_bad_file_gets_no_misleading_hint(tmp_path):
    assert "looks like" not in refused(write(tmp_path / "x.json", "{"))
    assert "looks like" not in refused(write(tmp_path / "x.jsonl", '{"id": "q1"}\n'))


# ---------------------------------------------------------------------------------------------- question types


def test_type_must_be_a_listed_one(tmp_path):
    message = refused(write(tmp_path / "set.jsonl", json.dumps(QUESTION | {"type": "hwo"}) + "\n"))
    assert f"{tmp_path / 'set.jsonl'}, line 1: 'type' must be one of who, when, where" in message
    assert "(got 'hwo')" in message
    for kind in ("quote", "two_step", "other", "how_many"):
        assert load_gold(write(tmp_path / "ok.jsonl", json.dumps(QUESTION | {"type": kind}) + "\n"))[0].type == kind


# ---------------------------------------------------------------------------------------------- claim sets


CLAIM = {"id": "c1", "claim": "Ada built it.", "label": "supported", "kind": "verbatim", "evidence": ["Ada built it."]}


def test_claims_refuse_unknown_keys(tmp_path):
    path = write(tmp_path / "x.claims.jsonl", json.dumps(CLAIM) + "\n" + json.dumps(
        {k: v for k, v in CLAIM.items() if k != "evidence"} | {"id": "c2", "evidance": ["Ada built it."]}) + "\n")
    message = refused(path, load_claims)
    assert f"{path}, line 2: keys must be id, claim, label, optionally kind, evidence (unexpected evidance)" in message


def test_claims_evidence_is_checked_against_the_document_beside_at_load(tmp_path):
    write(tmp_path / "doc.txt", CONTEXT)
    later = CLAIM | {"id": "c9", "evidence": ["Ada sold it."]}
    path = write(tmp_path / "doc.claims.jsonl", "".join(json.dumps(r) + "\n" for r in (CLAIM, CLAIM | {"id": "c2"},
                                                                                         later)))
    message = refused(path, load_claims)
    assert f"{path}, line 3: evidence \"Ada sold it.\" of c9 is not in doc.txt" in message


def test_claims_about_the_corpus_check_every_evidence_before_the_first_claim(tmp_path, fake_pipeline,
                                                                           article_text):
    first_sentence = article_text.split("\n")[0].strip()  # in the bundled article, so claim c1 is fine
    assert first_sentence in article_text
    path = write(tmp_path / "corpus.claims.jsonl", "".join(json.dumps(r) + "\n" for r in (
        CLAIM | {"evidence": [first_sentence]}, CLAIM | {"id": "c2", "evidence": ["Ada sold it."]})))
    _, claims = load_claims(path)  # no document beside: about the configured corpus, checked against the index
    scored = []
    with pytest.raises(InputFileError, match=r"line 2: evidence \"Ada sold it.\" of c2 is not in any indexed"):
        score_claims(fake_pipeline, claims, path, lambda done, total: scored.append(done))
    assert scored == []  # raised before claim c1 was checked


def test_a_missing_claims_file_is_named_as_such(tmp_path):
    assert "claims file not found" in refused(tmp_path / "missing.claims.jsonl", load_claims)
    assert "gold file not found" in refused(tmp_path / "missing.jsonl", load_dataset)


# ---------------------------------------------------------------------------------------------- existing sets


def test_every_existing_set_still_loads():
    root = PROJECT_ROOT / "eval"
    not_sets = {"conversations.jsonl", "conversations-other.jsonl", "llm_sentences.jsonl"}
    files = sorted(glob.glob(str(root / "*.jsonl")) + glob.glob(str(root / "dev" / "*.jsonl"))
                   + glob.glob("/work/shared/qa/*.json"))
    loaded = 0
    for name in files:
        if name.endswith("claims.jsonl"):
            assert load_claims(name)[1]
        elif name.rsplit("/", 1)[-1] not in not_sets:
            assert load_dataset(name)[1]
        else:
            continue
        loaded += 1
    assert loaded >= 52
