"""Citation verdicts on crafted sentences, and `check` on claims and quotes (real model for similarity)."""

from __future__ import annotations

import pytest

from rag.verify import judge, negation_flips, numbers, quotes

PMF = ("They also came to dominate the Popular Mobilization Forces, a 150,000-strong state paramilitary "
       "umbrella organization formed to fight Islamic State.")
STANSFIELD = '"The idea that the factions are under the thumb of Iran is not the case anymore," said Stansfield.'


def test_verbatim_sentence_is_supported():
    assert judge(PMF + " [1]", PMF).verdict == "supported"


def test_paraphrase_with_same_facts_is_supported():
    assert judge("The Popular Mobilization Forces is 150,000-strong.", PMF).verdict == "supported"


def test_altered_number_is_unsupported_with_reason():
    verdict = judge("The Popular Mobilization Forces has 200,000 fighters.", PMF)
    assert verdict.verdict == "unsupported"
    assert verdict.reason == "figure 200,000 in the claim, 150,000 in the article"


def test_altered_quote_is_unsupported():
    verdict = judge('Stansfield said "the factions are firmly under the thumb of Iran".', STANSFIELD)
    assert verdict.verdict == "unsupported" and "not found verbatim" in verdict.reason


def test_exact_quote_is_supported():
    verdict = judge('Stansfield said "the factions are under the thumb of Iran is not the case anymore".', STANSFIELD)
    assert verdict.verdict == "supported"


def test_wrong_speaker_is_unsupported():
    verdict = judge('Knights said "the factions are under the thumb of Iran is not the case anymore".', STANSFIELD)
    assert verdict.verdict == "unsupported" and "stansfield" in verdict.reason.lower()


def test_unrelated_sentence_is_unsupported():
    assert judge("Hezbollah fired rockets into Israel from Lebanon.", PMF).verdict == "unsupported"


def test_number_parsing():
    found = dict((s, v) for s, v in numbers("more than two-dozen attacks, a 150,000-strong force, over $3 billion, at least six"))
    assert found["two-dozen"] == 24 and found["150,000"] == 150000 and found["$3 billion"] == 3e9 and found["six"] == 6


def test_quote_extraction_handles_curly_and_straight_quotes():
    assert quotes('He said “this is a test quote” and left') == ["this is a test quote"]
    assert quotes(STANSFIELD) == ["The idea that the factions are under the thumb of Iran is not the case anymore"]


@pytest.mark.parametrize(
    ("claim", "verdict", "reason_part"),
    [
        ("The Popular Mobilization Forces has 200,000 fighters", "unsupported", "200,000 in the claim, 150,000"),
        ("The Popular Mobilization Forces is a 150,000-strong paramilitary organization", "supported", ""),
        ('"Everything changed after Nasrallah was killed," said Mustafa Fahs', "supported", "quote"),
        ('"Everything changed after Nasrallah was killed," said Michael Knights', "unsupported", "attributes it to"),
        ('Fahs said "nothing changed after Nasrallah was killed"', "unsupported", "not found verbatim"),
    ],
)
def test_check_claims_against_the_article(pipeline, claim, verdict, reason_part):
    result = pipeline.check(claim)
    assert result.verdict == verdict, result.reason
    assert reason_part.lower() in result.reason.lower()
    assert result.passages
    for p in result.passages:
        assert p.text == pipeline.index.documents[p.source].text[p.start : p.end]


def test_a_quote_given_to_the_wrong_speaker_is_shown_where_the_article_has_it(pipeline):
    """Seif's words given to Abu Turab al-Tamimi: the passage judged was Tamimi's, the reason said "not found
    verbatim" (read as "made up"), and none of the passages shown held the quote."""
    result = pipeline.check('"Our leaders might be busy with politics," said Abu Turab al-Tamimi.')
    assert result.verdict == "unsupported"
    assert "but the article has it elsewhere (shown below): quote found, but the article attributes it to" in \
        result.reason and "Seif" in result.reason
    assert any("Our leaders might be busy with politics" in p.text for p in result.passages[:2])
    for p in result.passages:
        assert p.text == pipeline.index.documents[p.source].text[p.start : p.end]
    # a quote the article does not hold at all keeps its plain reason
    made_up = pipeline.check('Fahs said "nothing changed after Nasrallah was killed"')
    assert made_up.reason == 'quote "nothing changed after Nasrallah was killed" not found verbatim in the cited passage'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("for $61 million.", [("$61 million", 61e6)]),  # the scale word is not a second figure of 1,000,000
        ("a force of 150 000 men", [("150 000", 150000.0)]),  # spaces group thousands
        ("12\u202f500 troops", [("12\u202f500", 12500.0)]),
        ("a wall 5 m tall", [("5", 5.0)]),  # a spaced "m" is metres
        ("a $5m deal and 1.2bn users", [("$5m", 5e6), ("1.2bn", 1.2e9)]),
        ("$50k, not 50k", [("$50k", 5e4), ("50", 50.0)]),  # "k" is thousands only after a currency sign
        ("three hundred thousand people", [("three hundred thousand", 3e5)]),
        ("one hundred and five men", [("one hundred and five", 105.0)]),
        ("a million voters", [("million", 1e6)]),
        ("one of the sixty-five", [("sixty-five", 65.0)]),  # a lone "one" is a pronoun
        ("hundreds of thousands", [("hundreds", 100.0), ("thousands", 1e3)]),
        ("ten, twenty and thirty", [("ten", 10.0), ("twenty", 20.0), ("thirty", 30.0)]),
        ("In 2019 100 people, often", [("2019", 2019.0), ("100", 100.0)]),
    ],
)
def test_numbers_reads_figures_as_written(text, expected):
    assert numbers(text) == expected


@pytest.mark.parametrize(
    ("claim", "passage", "expected"),
    [
        # the word right after a negation is what it negates, on either side
        ("The upstream states were party to the agreement and recognise it.",
         "The upstream states were not party to it and do not recognise it.",
         [("party", "passage"), ("recognise", "passage")]),
        ("One of the keepers was injured.", "No one was injured, and the panes were replaced.", [("one", "passage")]),
        ("His client had never been promised he could leave.", "His client had been promised he could leave.",
         [("promised", "claim")]),
        ("Ghaani has the same stature as his predecessor.", "Ghaani lacks the same stature.", [("stature", "passage")]),
        # a negating prefix on a word the other text has
        ("The lines had been incorrectly calibrated.", "The lines had been correctly calibrated.",
         [("incorrectly", "claim")]),
        # no flip: both negate, a paraphrase negates with other words, "not only", a negation in another clause
        ("The company declined to say how much it paid.", "The company did not say how much it paid.", []),
        ("The team lost the final.", "The team did not win the final.", []),
        ("Not only the mayor but also the council opposed it.", "The mayor opposed it.", []),
        ("The council approved the plan.", "The mayor did not attend, but the council approved the plan.", []),
        ("Most users will need the tool.", "Most users should not need it, but you will need the tool.", []),
        ("He discovered the comet.", "The comet was covered in dust.", []),  # "dis" is no negating prefix here
    ],
)
def test_negation_flips_name_the_word_only_one_side_negates(claim, passage, expected):
    assert negation_flips(claim, passage) == expected


def test_a_claim_that_drops_the_passages_negation_is_unsupported():
    """A fact-checker's claim left out "neither" and was SUPPORTED ("negation differs" was only PARTIAL, and only
    when one side had no negation anywhere)."""
    passage = ("Two patients in the group died during the study, but an independent monitoring committee concluded "
               "that neither death was related to the drug.")
    verdict = judge("A monitoring committee concluded that both deaths were related to the drug.", passage)
    assert verdict.verdict == "unsupported"
    assert verdict.reason == 'negation differs on "death": only the passage negates it'
    assert judge("A monitoring committee concluded that neither death was related to the drug.",
                 passage).verdict == "supported"
