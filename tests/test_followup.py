"""Follow-up questions: rewriting without a model (entity carry-over), with an LLM (LangChain's fake chat model
and the loopback OpenAI stub), history validation, and the API of Pipeline.ask(history=...)."""

from __future__ import annotations

import pytest

from rag.answer.followup import Turn, carry_entities, clean_condensed, condense, needs_context, turns_of
from rag.errors import UsageError

GHAANI = Turn("Who replaced Qassem Soleimani?",
              "Soleimani's replacement, Esmail Ghaani, lacks the same stature and authority, many militia figures "
              "say. [1]", "Esmail Ghaani")
PMF = Turn("How many fighters does the Popular Mobilization Forces have?",
           "They also came to dominate the Popular Mobilization Forces, a 150,000-strong state paramilitary umbrella "
           "organization formed to fight Islamic State. [1]", "150,000")


@pytest.mark.parametrize("question, expected", [
    ("Who replaced Qassem Soleimani?", False),
    ("What does he lack?", True),
    ("How big is its budget?", True),
    ("What about Hezbollah?", True),
    ("Why?", True),
    ("What happened after that?", True),
    ("What happened on day two of the war?", False),  # names nothing, but complete in itself
])
def test_needs_context(question, expected):
    assert needs_context(question) is expected


def test_pronouns_take_the_entity_of_the_previous_turn():
    # "Who ...?" answered with a name: "he" is the answer, not the man asked about.
    assert carry_entities("What does he lack?", [GHAANI]) == "What does Esmail Ghaani lack?"
    assert carry_entities("How big is its annual budget?", [PMF]) == \
        "How big is Popular Mobilization Forces' annual budget?"
    stansfield = Turn("What did Gareth Stansfield say Iraqi militia leaders want?", "... Western healthcare ...",
                      "Western healthcare")
    assert carry_entities("Where is he a professor?", [stansfield]) == "Where is Gareth Stansfield a professor?"


def test_ellipsis_reuses_the_previous_question():
    previous = Turn("When did Israel kill Hassan Nasrallah?", "... in September 2024 ... [1]", "September 2024")
    assert carry_entities("What about Qassem Soleimani?", [previous]) == "When did Israel kill Qassem Soleimani?"


@pytest.mark.parametrize("previous, about, expected", [
    # a noun phrase replaces the phrase with its head, or the one opening with its first word
    ("How much would sea level rise if the Antarctic ice sheet melted?", "the Greenland ice sheet",
     "How much would sea level rise if the Greenland ice sheet melted?"),  # was "the the Greenland ice sheet ice sheet"
    ("By how much did blood pressure fall in patients taking velacorin?", "patients given a placebo",
     "By how much did blood pressure fall in patients given a placebo?"),
    # a phrase in lower case never replaces a name (was "sales of chips's revenue ...")
    ("By how much did Kestrane's revenue fall?", "sales of chips for cars",
     "By how much did Kestrane's revenue fall (sales of chips for cars)?"),
    ("What did Qais al-Khazali say?", "Hadi al-Amiri", "What did Hadi al-Amiri say?"),  # a name for a name
])
def test_what_about_puts_its_phrase_in_place_of_the_one_it_parallels(previous, about, expected):
    assert carry_entities(f"What about {about}?", [Turn(previous, "...")]) == expected


def test_it_points_to_a_thing_the_answer_names_in_lower_case():
    firn = Turn("What is snow that has survived a summer called?", "Such snow is called firn. [1]", "firn")
    assert carry_entities("How dense is it?", [firn]) == "How dense is firn?"
    assert carry_entities("Who found him?", [firn]) is None  # a thing is never "he"
    starfish = Turn("Which starfish eats coral?", "The crown-of-thorns starfish eats coral. [1]",
                    "The crown-of-thorns starfish")
    assert carry_entities("Where was its first outbreak?", [starfish]) == \
        "Where was the crown-of-thorns starfish's first outbreak?"
    # a figure or a long answer is no thing to point back to
    assert carry_entities("Is it rising?", [Turn("What is the reef's area?", "It is 344,400 km2. [1]",
                                                 "344,400 km2")]) is None


def test_a_question_without_entities_gets_the_previous_ones():
    assert carry_entities("Why?", [GHAANI]) == "Why (Qassem Soleimani, Esmail Ghaani)?"


KHAZALI = Turn("Who is Qais al-Khazali?",
               "Qais al-Khazali, a US-sanctioned commander whose militia's banners were raised by the protesters, "
               "issued an anodyne statement on X condemning the US. [1]", "US-sanctioned commander")
KHAZALI_SAID = Turn("What did Qais al-Khazali say?", KHAZALI.answer, "anodyne statement")
TRUMP = Turn("Who ordered the killing of Soleimani?",
             "The killing, ordered by President Donald Trump, sent the militias scrambling for a coordinator. [1]",
             "President Donald")  # the span model cut the name short


@pytest.mark.parametrize("question, previous, expected", [
    # A bare wh-word asks the previous question again with it (was "What did when say?", "Who replaced why?").
    ("And when?", KHAZALI_SAID, "When did Qais al-Khazali say it?"),
    ("And why?", KHAZALI_SAID, "Why did Qais al-Khazali say it?"),
    ("And where?", KHAZALI_SAID, "Where did Qais al-Khazali say it?"),
    ("Where?", KHAZALI_SAID, "Where did Qais al-Khazali say it?"),
    ("And where?", KHAZALI, "Where is Qais al-Khazali?"),  # was "Who is where?"
    ("And why?", Turn("When did Israel kill Hassan Nasrallah?", "... in September 2024 ...", "September 2024"),
     "Why did Israel kill Hassan Nasrallah?"),
    # ... and, when the previous question's wh-word is its subject, the previous entities as for "Why?".
    ("And why?", GHAANI, "Why (Qassem Soleimani, Esmail Ghaani)?"),
    ("And when?", TRUMP, "When (Soleimani, President Donald Trump)?"),
    ("And when?", Turn("Who was killed in 2020?", "Qassem Soleimani was killed. [1]", "Qassem Soleimani"),
     "When (Qassem Soleimani)?"),
])
def test_a_bare_wh_word_asks_the_previous_question_with_it(question, previous, expected):
    assert needs_context(question)
    assert carry_entities(question, [previous]) == expected


def test_pronouns_and_wh_words_are_never_taken_for_names():
    assert carry_entities("How about him?", [GHAANI]) == "Who replaced Esmail Ghaani?"  # was "Who is him?"
    assert carry_entities("What about him?", [KHAZALI_SAID]) == "What did Qais al-Khazali say?"
    assert carry_entities("And Hezbollah?", [KHAZALI_SAID]) == "What did Hezbollah say?"  # a name still is one


def test_a_question_after_and_is_taken_as_it_stands():
    # was "Who replaced how many militias are there?"; "there" here points nowhere
    assert carry_entities("And how many militias are there?", [GHAANI]) == "How many militias are there?"
    assert condense("And how many militias are there?", [KHAZALI]) == "How many militias are there?"
    assert carry_entities("And what did he say?", [KHAZALI]) == "What did Qais al-Khazali say?"  # pronouns resolved


def test_there_as_a_place_still_points_back():
    protest = Turn("Where did the protest happen?", "The protest happened in Baghdad. [1]", "Baghdad")
    assert carry_entities("Who was there?", [protest]) == "Who was in Baghdad?"
    assert not needs_context("How many fighters are there in the Popular Mobilization Forces?")


def test_multi_word_names_are_carried_whole():
    # was "When did President Donald do it?": the short answer stops inside the name the answer gives in full
    assert carry_entities("When did he do it?", [TRUMP]) == "When did President Donald Trump do it?"


# ------------------------------------------------------------------ people's names, by how the corpus writes them

STORY = ("The agency hired commander Esmail Ghaani in May. Ghaani said little. Dr. Ruth Lee, 61, heads its lab. "
         "The Quds Force is based in Tehran. Leaders like this come along only once, leaders say. Norwegian "
         "manager Viktor Halvorsen arrived from Norwegian football. Officials met in Harwick on Monday.")


@pytest.mark.parametrize("name, expected", [
    ("Esmail Ghaani", True),  # a title or role right before it
    ("Ghaani", True),  # the last word of such a name
    ("Ruth Lee", True),  # "Dr." before it, an age after it
    ("Quds Force", False),  # "the" before it (and "force" in it)
    ("Harwick", False),  # a place preposition before it
    ("Viktor Halvorsen", True),
    ("Leaders", None),  # the corpus writes it in lower case too: no name
    ("Tehran", False),
])
def test_the_corpus_tells_people_from_other_names(name, expected):
    from rag.answer.followup import NameKinds

    assert NameKinds([STORY]).is_person(name) is expected


def test_dates_modifiers_and_capitalised_common_words_are_never_referents():
    from rag.answer.followup import NameKinds

    kinds = NameKinds([STORY])
    assert not kinds.is_referent("May") and not kinds.is_referent("Monday")
    assert not kinds.is_referent("Norwegian")  # before a noun every time it is used
    assert kinds.is_referent("Ghaani") and kinds.is_referent("Quds Force")
    assert not kinds.is_name("Leaders") and not kinds.is_name("The") and kinds.is_name("Ghaani")


def test_it_never_points_to_a_person_the_corpus_knows_and_he_never_to_a_common_word():
    from rag.answer.followup import NameKinds

    kinds = NameKinds([STORY])
    # was "Who leads Esmail Ghaani?": the turn named only a person; "it" goes back to the turn before
    hired = Turn("Whom did the Quds Force hire?", "The agency hired commander Esmail Ghaani in May. [1]",
                 "Esmail Ghaani")
    nothing = Turn("Whom did the agency hire?", hired.answer, hired.short_answer)
    assert carry_entities("Who leads it?", [hired], kinds) == "Who leads Quds Force?"
    assert carry_entities("Who leads it?", [nothing], kinds) is None  # asked as it stands
    assert carry_entities("Who leads it?", [Turn("Where is the Quds Force based?", "... [1]", "Tehran"), nothing],
                          kinds) == "Who leads Quds Force?"  # the organisation asked about two turns back
    # was "What does Leaders lack?": a quote's first word taken for the man "him" points to
    nasrallah = Turn("What does Nasrallah lack?", "Leaders like this come along only once, leaders say. [1]",
                     "Leaders")
    assert carry_entities("How about him?", [nasrallah], kinds) == "What does Nasrallah lack?"
    # without the corpus (a library call with no index) the name's form decides, as before
    assert carry_entities("Who leads it?", [nothing]) == "Who leads Esmail Ghaani?"


def test_the_name_the_corpus_puts_beside_the_follow_ups_words_wins():
    """"Who replaced X?" makes "he" the answer, unless the corpus ties the rest of the follow-up to X."""
    from rag.answer.followup import NameKinds

    corpus = ("The US killed commander Qassem Soleimani in 2020. His successor, commander Esmail Ghaani, lacks "
              "his stature. Ghaani visited Baghdad in March.")
    kinds = NameKinds([corpus])
    replaced = Turn("Who replaced Qassem Soleimani?", "His successor, commander Esmail Ghaani, lacks his stature.",
                    "Esmail Ghaani")
    assert carry_entities("When was he killed?", [replaced], kinds) == "When was Qassem Soleimani killed?"
    assert carry_entities("What does he lack?", [replaced], kinds) == "What does Esmail Ghaani lack?"
    assert carry_entities("When did he visit Baghdad?", [replaced], kinds) == "When did Esmail Ghaani visit Baghdad?"
    assert carry_entities("When was he killed?", [replaced]) == "When was Esmail Ghaani killed?"  # no corpus: the form


def test_standalone_questions_are_left_alone():
    assert condense("How many fighters does the Popular Mobilization Forces have?", [GHAANI]) is None
    assert condense("What does he lack?", []) is None


def test_history_is_validated():
    assert turns_of(None) == []
    assert turns_of([["Who replaced Qassem Soleimani?", "Esmail Ghaani [1]"]]) == [
        Turn("Who replaced Qassem Soleimani?", "Esmail Ghaani")]
    turn = turns_of([{"question": "Who?", "standalone_question": "Who replaced Soleimani?", "answer": "Ghaani"}])[0]
    assert turn.question == "Who replaced Soleimani?"  # the standalone form is what the turn asked
    for bad in ("text", [1], [{"answer": "x"}], [["only one"]], [{"question": "x" * 3000, "answer": ""}]):
        with pytest.raises(UsageError):
            turns_of(bad)


@pytest.mark.parametrize("reply, expected", [
    ("Standalone question: What does Esmail Ghaani lack?", "What does Esmail Ghaani lack?"),
    ('"What does Esmail Ghaani lack?"\nHe lacks stature.', "What does Esmail Ghaani lack?"),
    ("**Rewritten question:** What does Esmail Ghaani lack?", "What does Esmail Ghaani lack?"),
    ("", None),
    ("?", None),
])
def test_clean_condensed(reply, expected):
    assert clean_condensed(reply, "What does he lack?") == expected


class _Recorder:
    """A backend with ``complete``: records the condense prompt and replies with a scripted question."""

    def __init__(self, reply: str):
        self.reply, self.calls = reply, []

    def complete(self, system: str, user: str) -> str:
        self.calls.append((system, user))
        return self.reply


def test_llm_condenses_with_the_fenced_conversation():
    backend = _Recorder("What does Esmail Ghaani lack?")
    assert condense("What does he lack?", [GHAANI], backend) == "What does Esmail Ghaani lack?"
    system, user = backend.calls[0]
    assert "standalone" in system.lower() or "without the conversation" in system
    assert "<passages-" in user and "Follow-up question: What does he lack?" in user
    assert "[1]" not in user  # markers are stripped from earlier answers


def test_llm_condense_falls_back_to_entities_on_a_useless_reply():
    assert condense("What does he lack?", [GHAANI], _Recorder("")) == "What does Esmail Ghaani lack?"
    # A rewrite that names nothing from the conversation (seen from a 1.5B model) is not trusted either.
    assert condense("What does he lack?", [GHAANI], _Recorder("Who lacks what?")) == "What does Esmail Ghaani lack?"
    assert condense("What does he lack?", [GHAANI], _Recorder("What does he lack?")) == "What does Esmail Ghaani lack?"


# ------------------------------------------------------------------ through the pipeline


def test_pipeline_retrieves_the_rewritten_question_with_an_llm(pipeline):
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    from rag.answer.llm import LangChainBackend

    # First reply: the condensed question; second: the answer, which cites passage 1 (attributed if wrong).
    model = FakeListChatModel(responses=["What does Esmail Ghaani lack?",
                                         "Esmail Ghaani lacks the stature and authority of Soleimani [1]."])
    pipeline.use_backend(LangChainBackend(model, "fake-followup"), spec="fake-followup")
    history = [{"question": GHAANI.question, "answer": GHAANI.answer}]
    answer = pipeline.ask("What does he lack?", backend="fake-followup", history=history)
    assert answer.question == "What does he lack?"
    assert answer.standalone_question == "What does Esmail Ghaani lack?"
    assert answer.to_json()["standalone_question"] == "What does Esmail Ghaani lack?"
    assert any("stature and authority" in c.text for c in answer.citations)
    assert answer.checks[0].verdict == "supported"


def test_pipeline_progress_reports_the_rewritten_question(fake_pipeline):
    from rag.answer import Rewritten

    history = [["Who replaced Qassem Soleimani?", "Esmail Ghaani replaced him."]]
    events = [p for p in fake_pipeline.ask_stream("What does he lack?", history=history, progress=True)
              if isinstance(p, Rewritten)]
    assert [e.question for e in events] == ["What does Esmail Ghaani lack?"]


def test_bad_history_is_a_usage_error(fake_pipeline):
    with pytest.raises(UsageError):
        fake_pipeline.ask("What does he lack?", history="not a list")
