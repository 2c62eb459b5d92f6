"""Sentence segmentation on the hard cases of the bundled article: initials, quotes, dashes, headings, date."""

from __future__ import annotations

import pytest

from rag.segment import headings, segment_document
from rag.types import Document

ARTICLE_HEADINGS = [
    "‘Leaders like this come along only once'",
    "A Syrian collapse",
    "Th God of money",
    "A threat to all Shi'ites",
]


@pytest.fixture(scope="module")
def sentences(article_document):
    return segment_document(article_document, 0, chunk_sentences=3, chunk_overlap=1)[0]


@pytest.fixture(scope="module")
def sentence_texts(sentences) -> list[str]:
    return [s.text for s in sentences]


def sentence_containing(sentences, fragment: str):
    found = [s for s in sentences if fragment in s.text]
    assert len(found) == 1, f"{fragment!r} is in {len(found)} sentences"
    return found[0]


# ---------------------------------------------------------------- the date line


def test_leading_date_line_becomes_document_date(article_document, sentences):
    assert article_document.text.startswith(" date 2026-03-06 ")
    assert article_document.date == "2026-03-06"
    first = sentences[0]
    assert first.text.startswith("Iran has spent decades")
    assert first.start == len(" date 2026-03-06 ")
    assert all("2026-03-06" not in s.text and not s.text.startswith("date") for s in sentences)


# ---------------------------------------------------------------- initials


@pytest.mark.parametrize(
    "whole_sentence",
    [
        # "A.J.," in the middle of a sentence
        "Iran has spent decades and billions of dollars preparing foreign proxy fighters like A.J., a commander "
        "in a pro-Iranian paramilitary group in Iraq, for a moment just like this.",
        # "A.J." as the subject, followed by a lower-case verb
        "Since the US and Israel went to war on the Islamic Republic a week ago, A.J. has been awaiting marching "
        "orders from Tehran.",
        # "A.J." opening a sentence, and the possessive "A.J.'s"
        "A.J. proudly keeps a picture on his phone of him meeting Ghaani.",
        "A.J.'s group still kept operatives in Beirut and Tehran at that time.",
        # "... A.J. said." ends the sentence; the next one starts afresh
        "Tehran has sent no new weapons to his group since the battle with Israel last year, A.J. said.",
        "Syrians bought off by Israel were giving coordinates for the attacks, A.J. said.",
    ],
)
def test_initials_never_split_a_sentence(sentence_texts, whole_sentence):
    assert whole_sentence in sentence_texts


def test_no_sentence_is_a_fragment_of_initials(sentence_texts):
    for text in sentence_texts:
        assert text not in ("A.", "A.J.", "J.")
        assert not text.startswith(("J.", "J.,", "J.'s")), text
        assert not text.endswith(("like A.J.", " A.")), text


def test_a_j_said_ends_the_sentence(sentences):
    said = sentence_containing(sentences, "since the battle with Israel last year, A.J. said.")
    following = sentences[said.id + 1]
    assert said.text.endswith("A.J. said.")
    assert following.text == "Reuters couldn't determine if this was the case for other pro-Iran militias in Iraq."


def test_us_initials_in_a_synthetic_document():
    text = (
        "The U.S. embassy in Baghdad was attacked in 2019. Officials said the U.S. would respond.\n"
        "Later, the envoy left for the U.S.\n\n"
        "Dr. J.R. Smith of the U.N. said it was over. The talks resume on Monday."
    )
    sentences, _ = segment_document(Document("us.txt", text, "us"), 0, 3, 1)
    assert [s.text for s in sentences] == [
        "The U.S. embassy in Baghdad was attacked in 2019.",
        "Officials said the U.S. would respond.",
        "Later, the envoy left for the U.S.",
        "Dr. J.R. Smith of the U.N. said it was over.",
        "The talks resume on Monday.",
    ]


# ---------------------------------------------------------------- quotes and dashes


@pytest.mark.parametrize(
    "whole_sentence",
    [
        "\"I just don't think most of them are reliable anymore,\" he told Reuters.",
        "\"Soleimani was not just a once in a generation leader, he was a once in history leader,\" he said.",
        # a question mark inside the quote does not end the sentence before its attribution
        "\"Where are you?\" the protester chided in a video posted online.",
        "\"Everything changed after Nasrallah was killed,\" said Mustafa Fahs, a Lebanese political activist in "
        "close contact with Iraqi Shi'ite leaders.",
        "Israel's military told Reuters that \"terrorist factions in Iraq operate as a proxy of Iran.\"",
    ],
)
def test_quotes_stay_with_their_attribution(sentence_texts, whole_sentence):
    assert whole_sentence in sentence_texts


@pytest.mark.parametrize(
    "whole_sentence",
    [
        "The more than two-dozen attacks claimed online in the name of the Islamic Resistance of Iraq – a label "
        "used by various militants – have caused no significant damage, and in some cases there is no evidence "
        "of the attacks.",
        "In the ensuing months – just before Nasrallah's killing – Israel started assassinating Iranian commanders "
        "in Syria.",
        "\"But there are two gods they worship above all – weapons and money.\"",
    ],
)
def test_en_dashes_do_not_split_sentences(sentence_texts, whole_sentence):
    assert whole_sentence in sentence_texts


def test_sentences_stay_inside_their_paragraph(sentence_texts):
    assert all("\n" not in text for text in sentence_texts)


# ---------------------------------------------------------------- section headings


def test_the_four_headings_are_found(article_document):
    assert [title for _, _, title in headings(article_document)] == ARTICLE_HEADINGS


def test_headings_are_never_part_of_a_sentence(article_document, sentences):
    for start, end, title in headings(article_document):
        for s in sentences:
            assert s.end <= start or s.start >= end, f"sentence {s.id} overlaps heading {title!r}"
            assert not s.text.startswith(title), f"heading {title!r} glued onto sentence {s.id}"


def test_headings_become_section_metadata(article_document, sentences):
    heading_starts = [(start, title) for start, _, title in headings(article_document)]
    for s in sentences:
        preceding = [title for start, title in heading_starts if start < s.start]
        assert s.section == (preceding[-1] if preceding else None), s.text
    first_after = {title: next(s for s in sentences if s.section == title) for title in ARTICLE_HEADINGS}
    assert first_after["A Syrian collapse"].text.startswith("A.J.'s group and other Iranian proxies were deployed")
    assert first_after["A threat to all Shi'ites"].text.startswith("On the third day of the Iran war")


def test_markdown_heading_is_section_not_sentence():
    text = "# Ceasefire talks\n\nNegotiators met in Muscat on Tuesday. They agreed to meet again."
    sentences, chunks = segment_document(Document("talks.md", text, "talks"), 0, 3, 1)
    assert [s.text for s in sentences] == ["Negotiators met in Muscat on Tuesday.", "They agreed to meet again."]
    assert {s.section for s in sentences} == {"Ceasefire talks"}
    assert [c.section for c in chunks] == ["Ceasefire talks"]
