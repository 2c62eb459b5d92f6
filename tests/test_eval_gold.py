"""Gold formats (rag.eval.gold): the JSONL schema's optional keys, a JSONL with its document beside it, and SQuAD
2.0 JSON read directly. Small fixtures written here; no model."""

from __future__ import annotations

import json

import pytest

from rag.errors import InputFileError
from rag.eval import GoldQuestion, load_dataset, load_gold, locate_evidence
from rag.eval.gold import document_name, evidence_sentences, question_type
from rag.types import Document

RECORD = {"id": "q1", "question": "Who built it?", "answers": ["Ada"], "evidence": ["Ada built it."], "type": "who"}


def write_jsonl(path, *records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


# ------------------------------------------------------------------ JSONL


def test_optional_style_and_document_keys(tmp_path):
    path = write_jsonl(
        tmp_path / "set.jsonl",
        RECORD | {"style": "paraphrase", "document": "a.txt"},
        {"id": "q2", "question": "Why?", "answers": [], "evidence": [], "type": "unanswerable", "style": "unanswerable"},
        RECORD | {"id": "q3"},
    )
    documents, questions = load_dataset(path)
    assert documents == []  # no a .txt beside the file: the configured corpus
    assert [(q.style, q.document) for q in questions] == [("paraphrase", "a.txt"), ("unanswerable", None), (None, None)]
    assert questions[0] == GoldQuestion("q1", "Who built it?", ("Ada",), ("Ada built it.",), "who", 1, "a.txt",
                                        "paraphrase")
    assert load_gold(path) == questions


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (RECORD | {"style": "sarcastic"}, "'style' must be one of direct, paraphrase, two_step, unanswerable"),
        (RECORD | {"style": "unanswerable"}, "style 'unanswerable' needs empty"),
        (RECORD | {"document": ""}, "'document' must be a non-empty string"),
        (RECORD | {"document": 3}, "'document' must be a non-empty string"),
        (RECORD | {"notes": "x"}, "unexpected notes"),
    ],
)
def test_optional_keys_are_validated(tmp_path, record, message):
    path = write_jsonl(tmp_path / "set.jsonl", record)
    with pytest.raises(InputFileError, match=f"{path}, line 1: .*") as caught:
        load_dataset(path)
    assert message in str(caught.value)


def test_jsonl_with_its_document_beside_it(tmp_path):
    text = "A title\n\nAda built it. Then she left.\n"
    (tmp_path / "doc-a.txt").write_text(text, encoding="utf-8")
    path = write_jsonl(tmp_path / "doc-a.jsonl", RECORD, RECORD | {"id": "q2", "document": "other.txt"})
    documents, questions = load_dataset(path)
    assert documents == [("doc-a.txt", text)]
    assert [q.document for q in questions] == ["doc-a.txt", "other.txt"]  # an explicit document is kept


# ------------------------------------------------------------------ SQuAD 2.0

PARAGRAPH_1 = "Ada Lovelace wrote the first program. She worked with Charles Babbage in London."
PARAGRAPH_2 = "The engine was never finished. It would have used punched cards, as looms did."
SQUAD = {
    "version": "v2.0",
    "data": [
        {
            "title": "Analytical_Engine",
            "paragraphs": [
                {"context": PARAGRAPH_1, "qas": [
                    {"id": "s1", "question": "Who worked with Ada Lovelace?", "is_impossible": False, "answers": [
                        {"text": "Charles Babbage", "answer_start": PARAGRAPH_1.index("Charles")},
                        {"text": "Babbage", "answer_start": PARAGRAPH_1.index("Babbage")},
                        {"text": "Charles Babbage", "answer_start": PARAGRAPH_1.index("Charles")},
                    ]},
                    {"id": "s2", "question": "In what city did Babbage work with Lovelace?", "is_impossible": False,
                     "answers": [{"text": "London", "answer_start": PARAGRAPH_1.index("London")}]},
                ]},
                {"context": PARAGRAPH_2, "qas": [
                    {"id": "s3", "question": "When was the engine finished?", "is_impossible": True, "answers": [],
                     "plausible_answers": [{"text": "never", "answer_start": 15}]},
                    {"id": "s4", "question": "How many cards did it need?", "is_impossible": False,
                     "answers": [{"text": "punched cards", "answer_start": PARAGRAPH_2.index("punched")}]},
                ]},
            ],
        },
        {"title": "Looms / weaving?", "paragraphs": [{"context": "Looms weave cloth.", "qas": [
            {"id": "s5", "question": "What do looms weave?", "is_impossible": False,
             "answers": [{"text": "cloth", "answer_start": 12}]}]}]},
    ],
}


@pytest.fixture
def squad_file(tmp_path):
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(SQUAD), encoding="utf-8")
    return path


def test_squad_articles_become_documents(squad_file):
    documents, questions = load_dataset(squad_file)
    assert [name for name, _ in documents] == ["Analytical_Engine.txt", "Looms_weaving.txt"]
    assert documents[0][1] == f"Analytical Engine\n\n{PARAGRAPH_1}\n\n{PARAGRAPH_2}\n"
    assert [q.id for q in questions] == ["s1", "s2", "s3", "s4", "s5"]
    assert [q.document for q in questions] == ["Analytical_Engine.txt"] * 4 + ["Looms_weaving.txt"]
    assert load_gold(squad_file) == questions


def test_squad_questions(squad_file):
    documents, questions = load_dataset(squad_file)
    s1, s2, s3, s4, s5 = questions
    assert s1.answers == ("Charles Babbage", "Babbage")  # deduplicated, in order
    assert s1.evidence == ("She worked with Charles Babbage in London.",)
    assert (s1.type, s1.style, s1.answerable) == ("who", None, True)
    assert (s2.type, s4.type, s5.type) == ("where", "how_many", "what")
    assert (s3.answers, s3.evidence, s3.type, s3.style) == ((), (), "unanswerable", "unanswerable")
    assert s4.evidence == ("It would have used punched cards, as looms did.",)
    # every evidence string is an exact substring of its document, so the run can locate it
    docs = {name: Document(name, text, name) for name, text in documents}
    located = locate_evidence(questions, docs, "squad.json")
    assert located["s1"] == [[("Analytical_Engine.txt", documents[0][1].index("She worked"),
                               documents[0][1].index("She worked") + len(s1.evidence[0]))]]


def test_squad_answer_spanning_two_sentences_takes_both():
    paragraph = "It rained. Then it snowed. Later, sun."
    start = paragraph.index("rained")
    assert evidence_sentences(paragraph, start, paragraph.index("snowed") + 6) == "It rained. Then it snowed."
    assert evidence_sentences(paragraph, paragraph.index("sun"), paragraph.index("sun") + 3) == "Later, sun."


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Who proved it?", "who"),
        ("Whose theorem is it?", "who"),
        ("When was it proved?", "when"),
        ("In what year was it proved?", "when"),
        ("In which country is it?", "where"),
        ("Where is the engine?", "where"),
        ("How many steps does it take?", "how_many"),
        ("How much memory is used?", "how_many"),
        ("Why is it hard?", "why"),
        ("What is a Turing machine?", "what"),
        ("Which class contains P?", "what"),
        ("How is time measured?", "other"),
        ("Name the class of problems.", "other"),
        ("In the theory, who defined what?", "who"),  # the earliest wh-word decides
    ],
)
def test_question_type_from_wh_word(question, kind):
    assert question_type(question) == kind


def test_document_name_is_a_safe_file_name():
    assert document_name("Computational_complexity_theory") == "Computational_complexity_theory.txt"
    assert document_name("../etc/passwd") == "etc_passwd.txt"
    assert document_name("???") == "article.txt"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not valid JSON"),
        ('{"version": "v2.0"}', "not SQuAD JSON"),
        ('{"data": [{"title": "x"}]}', "article 1: expected 'title' and 'paragraphs'"),
        ('{"data": [{"title": "x", "paragraphs": [{"context": "c", "qas": [{"id": "1"}]}]}]}', "malformed question"),
        ('{"data": []}', "no questions"),
    ],
)
def test_malformed_squad_is_rejected_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputFileError, match=message) as caught:
        load_dataset(path)
    assert str(path) in str(caught.value)


def test_question_about_a_document_is_only_looked_up_there():
    docs = {"a.txt": Document("a.txt", "Ada built it.", "A"), "b.txt": Document("b.txt", "Ada built it.", "B")}
    q = GoldQuestion("q1", "Who?", ("Ada",), ("Ada built it.",), "who", 1, "b.txt")
    assert locate_evidence([q], docs) == {"q1": [[("b.txt", 0, 13)]]}
    with pytest.raises(InputFileError, match="document 'c.txt' of q1 is not indexed"):
        locate_evidence([GoldQuestion("q1", "Who?", ("Ada",), ("Ada",), "who", 1, "c.txt")], docs)
