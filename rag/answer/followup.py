"""Follow-up questions: rewrite "How many fighters does it have?" into a standalone question from the earlier
turns of the conversation, so that retrieval and the answerer see what the user means.

Two ways, picked by the backend:

- an LLM backend (one with a ``complete(system, user)`` method) is asked to condense the conversation and
  the follow-up into one question (``prompts/condense_system.txt``, ``prompts/condense_user.txt``; the
  earlier turns are fenced as data like passages are). An empty, multi-question or runaway reply falls back
  to the rule below;
- otherwise (the extractive backend) the entities of the previous question and answer are carried over: a
  pronoun (he, his, it, they...) is replaced by the entity it most likely refers to (a name is carried whole),
  "What about X?" reuses the previous question with X in place of its entity (X may be a pronoun: "How
  about him?"), a bare "When?" / "And why?" asks the previous question again with the new wh-word ("What
  did Qais al-Khazali say?" -> "When did Qais al-Khazali say it?"), "And <a question>" is that question
  (its pronouns resolved), and a question naming no entity at all gets the previous turn's entities added
  (also a bare wh-word whose previous question cannot be re-asked: "Why (Qassem Soleimani, Esmail Ghaani)?").

A question that names its own entities and holds no pronoun is taken as standalone and left alone (and no
LLM is called for it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rag.answer.question import alternation, entity_phrases, is_date
from rag.errors import UsageError
from rag.text import STOPWORDS as _STOPWORDS
from rag.text import content_terms, word_list

if TYPE_CHECKING:
    from rag.answer.base import AnswerBackend

MAX_TURNS = 20  # turns accepted in a history (older ones are ignored)
CONDENSE_TURNS = 3  # turns shown to an LLM when condensing
_ANSWER_CHARS = 400  # of each earlier answer shown to an LLM

_PERSONAL = {"he": "", "him": "", "his": "'s", "she": "", "her": "", "hers": "'s", "himself": "", "herself": ""}
_IMPERSONAL = {"it": "", "its": "'s", "they": "", "them": "", "their": "'s", "theirs": "'s", "itself": ""}
_PLACE = {"there": ""}
_PRONOUN = re.compile(r"\b(" + "|".join(sorted({**_PERSONAL, **_IMPERSONAL, **_PLACE}, key=len, reverse=True))
                      + r")\b", re.IGNORECASE)
_AUXILIARY = alternation("auxiliary_verbs.txt")
_BE = {"am", "is", "are", "was", "were", "be", "been"}
# "there" as in "How many militias are there?" / "there are": no place to point back to.
_EXISTENTIAL = re.compile(r"(?:\s+(?:is|are|was|were|has|have|had|will|would|may|might|must|can|could)|['’]s)\b",
                          re.IGNORECASE)
_AFTER_BE = re.compile(r"\b(?:is|are|was|were|be|been)\s+$", re.IGNORECASE)
_WH = ("who", "whom", "whose", "what", "which", "when", "where", "why", "how")
_NOT_NAMES = {*_WH, *word_list("auxiliary_verbs.txt"), *_PERSONAL, *_IMPERSONAL, *_PLACE}
# "What about X?", "How about X?"; "And X?" where X is a name (capitalised: "And Hezbollah?", not "And when?").
_ELLIPSIS = re.compile(r"^\s*(?:and\s+)?(?:what|how)\s+about\s+(?P<x>.+?)\s*[?.!]*\s*$"
                       r"|^\s*and\s+(?P<y>(?-i:[A-Z]).*?)\s*[?.!]*\s*$", re.IGNORECASE)
# A bare wh-word ("When?", "And why?"): the previous question, asked with that wh-word.
_WH_ONLY = re.compile(r"^\s*(?:and\s+)?(?P<wh>when|where|why|how)\s*[?.!]*\s*$", re.IGNORECASE)
# "And how many militias are there?": a question of its own after "and".
_AND_QUESTION = re.compile(r"^\s*and\s+(?P<rest>(?:" + "|".join(_WH) + "|" + _AUXILIARY + r")\b.*)$",
                           re.IGNORECASE | re.DOTALL)
# A previous question the wh-word can be swapped in: "What did X say?", "When did X ...?", "Who is X?".
_REASKABLE = re.compile(r"^\s*(?P<wh>what|who|whom|when|where|why|how)\s+(?P<aux>" + _AUXILIARY
                        + r")\s+(?P<rest>.+?)\s*[?.!]*\s*$", re.IGNORECASE | re.DOTALL)
# Words that make an entity an organisation, a place or a thing rather than a person ("it", "they").
_NOT_PERSON = set(word_list("organisation_words.txt"))
_PLACE_WORDS = set(word_list("place_words.txt"))  # never a person's name, not an organisation's either
_NEVER_PERSON = _NOT_PERSON | _PLACE_WORDS
_MARKERS = re.compile(r"\s*\[\d+\]")
_WORD_AT = re.compile(r"[\w'’-]+")


@dataclass(frozen=True)
class Turn:
    """One earlier exchange: the question as it was answered (its standalone form) and the answer text."""

    question: str
    answer: str
    short_answer: str | None = None


def turns_of(history: Iterable | None, max_chars: int = 2000) -> list[Turn]:
    """Validate a history from a caller: a list of ``{"question", "answer"[, "short_answer"]}`` objects (the
    API's and ``rag ask --json``'s field names; ``standalone_question`` is preferred to ``question`` when
    present) or ``[question, answer]`` pairs. Only the last ``MAX_TURNS`` count."""
    if history is None:
        return []
    if isinstance(history, str | bytes) or not isinstance(history, Iterable):
        raise UsageError("history must be a list of {question, answer} objects or [question, answer] pairs")
    turns = []
    for item in list(history)[-MAX_TURNS:]:
        if isinstance(item, dict):
            question = item.get("standalone_question") or item.get("question")
            answer, short = item.get("answer", ""), item.get("short_answer")
        elif isinstance(item, list | tuple) and len(item) == 2:
            (question, answer), short = item, None
        else:
            raise UsageError("each history turn must be {question, answer} or [question, answer]")
        if not isinstance(question, str) or not isinstance(answer or "", str) or not question.strip():
            raise UsageError("each history turn needs a question (text) and an answer (text)")
        if len(question) > max_chars or len(answer or "") > 20 * max_chars:
            raise UsageError("a history turn is too long")
        turns.append(Turn(question.strip(), _MARKERS.sub("", answer or "").strip(),
                          short if isinstance(short, str) and short.strip() else None))
    return turns


_SHORT_WORDS = 5  # a question naming no entity leans on the conversation when it is this short ("Why?")
_POINTS_BACK = re.compile(r"\b(?:that|this|these|those|then|the same)\s*[?.!]*\s*$", re.IGNORECASE)


def _pronoun(question: str) -> re.Match | None:
    """The first pronoun of a question that points back ("he", "its", "there" as a place, not in "How many
    militias are there?")."""
    for match in _PRONOUN.finditer(question):
        if match.group(1).lower() == "there" and (
            _EXISTENTIAL.match(question, match.end())
            or (_AFTER_BE.search(question[: match.start()]) and re.match(r"\s*\w", question[match.end():]))
            or (_AFTER_BE.search(question[: match.start()]) and re.match(r"\s*how\s+(?:many|much)\b", question,
                                                                        re.IGNORECASE))
        ):
            continue
        return match
    return None


def _ellipsis(question: str) -> str | None:
    """X of "What about X?" / "How about X?" / "And X?" (X a name, or a pronoun to resolve), else None."""
    match = _ELLIPSIS.match(question)
    if not match:
        return None
    new = (match.group("x") or match.group("y") or "").strip()
    first = re.match(r"[\w'’]+", new)
    if match.group("y") and (first is None or first.group(0).lower() in _NOT_NAMES):
        return None  # "And When did ...?": a question, not a name
    if match.group("x") and first is not None and first.group(0).lower() in _WH:
        return None  # "What about when ...?"
    return new or None


def _and_question(question: str) -> str | None:
    """The question after a leading "And" ("And how many militias are there?" -> "how many militias are
    there?"), None when the question does not open with "And" and a question word or auxiliary."""
    match = _AND_QUESTION.match(question)
    return match.group("rest").strip() if match else None


def needs_context(question: str) -> bool:
    """Whether a question leans on the conversation: it holds a pronoun, is an ellipsis ("What about X?",
    "And X?"), a bare wh-word ("And when?"), opens with "And" ("And how many ...?"), or names no entity and is
    short or ends pointing back ("Why?", "What happened after that?"). A longer question that names nothing
    ("What happened on day two of the war?") is taken as it is."""
    if _pronoun(question) or _ellipsis(question) or _WH_ONLY.match(question):
        return True
    if entity_phrases(question):
        return False
    if _and_question(question):
        return True
    return len(_WORD_AT.findall(question)) <= _SHORT_WORDS or bool(_POINTS_BACK.search(question))


def condense(question: str, turns: list[Turn], backend: AnswerBackend | None = None,
             kinds: NameKinds | None = None) -> str | None:
    """The standalone form of ``question`` given the earlier ``turns``, or None when it needs none (``kinds``:
    which names the corpus writes as people's, for the rule without an LLM)."""
    if not turns or not needs_context(question):
        return None
    complete = getattr(backend, "complete", None)
    if complete is not None:
        rewritten = _condense_with_llm(question, turns, complete)
        if rewritten:
            return rewritten
    return carry_entities(question, turns, kinds)


# ------------------------------------------------------------------------------------------ with an LLM


def _condense_with_llm(question: str, turns: list[Turn], complete) -> str | None:
    from rag.answer.prompts import fence, fence_tag, render

    lines = []
    for turn in turns[-CONDENSE_TURNS:]:
        answer = _MARKERS.sub("", turn.answer).strip()
        answer = answer if len(answer) <= _ANSWER_CHARS else answer[:_ANSWER_CHARS] + "…"
        lines.append(f"User: {fence(turn.question)}\nAssistant: {fence(answer)}")
    conversation = "\n".join(lines)
    tag = fence_tag(conversation, question)
    reply = complete(render("condense_system"), render("condense_user", conversation=conversation,
                                                         question=fence(question), fence=tag))
    rewritten = clean_condensed(reply, question)
    return rewritten if rewritten and grounded(rewritten, question, turns) else None


def grounded(rewritten: str, question: str, turns: list[Turn]) -> bool:
    """Whether an LLM's rewrite did its job: it names an entity of the conversation or of the question (small
    models sometimes return "Who lacks what?" for "What does he lack?"), and it is not the question itself."""
    if rewritten.strip(" ?.!").lower() == question.strip(" ?.!").lower():
        return False
    said = " ".join([question, *(f"{t.question} {t.answer} {t.short_answer or ''}" for t in turns)]).lower()
    return any(entity.lower() in said for entity in _entities(rewritten))


def clean_condensed(reply: str, question: str) -> str | None:
    """The question inside an LLM's reply: its first line, without a "Standalone question:" label or quotes;
    None when that is empty or implausible (far longer than a question)."""
    line = next((ln.strip() for ln in (reply or "").splitlines() if ln.strip()), "")
    line = re.sub(r"^(?:\*\*)?(?:standalone|rewritten|reformulated)?\s*question\s*:\s*(?:\*\*)?\s*", "", line,
                  flags=re.IGNORECASE)
    line = line.strip().strip("\"'“”‘’`").strip()
    if not line or len(line) > 3 * len(question) + 200 or len(re.findall(r"\w+", line)) < 2:
        return None
    return line


# ------------------------------------------------------------------------------------------ without an LLM


def _entities(text: str | None) -> list[str]:
    """Entity phrases anywhere in ``text`` (a single capitalised word opening it counts too: "Erbil"), without
    the full stop of a sentence they end ("in Baghdad." -> "Baghdad"; "A.J." keeps its own)."""
    if not text:
        return []
    phrases = [re.sub(r"(?<=[^\W\d_]{2})\.$", "", p) for p in entity_phrases("about " + text)]
    return list(dict.fromkeys(phrases))


_RERANKED = 3  # candidates a follow-up's other words may reorder
_TITLE = alternation("person_titles.txt")
_OPENERS = set(word_list("function_caps.txt"))
# after a name: an age ("Fahs, 41,") or an apposition naming a person's role ("Fahs, a Lebanese political activist")
_PERSON_AFTER = re.compile(r",\s+(?:\d{1,3},|(?:a|an|the)\s+(?:[\w'’-]+\s+){0,3}?(?i:" + _TITLE + r")s?\b)")
_BEFORE, _AFTER = 60, 250  # characters looked at before and after each use of a name
_CAPITAL_AFTER = re.compile(r"\s+[A-Z]")
_MODIFIED_AFTER = re.compile(r"-(?:based|backed|led|owned|run|aligned)\b")
_WHICH_AFTER = re.compile(r",\s+which\b")
_NEXT_SUBJECT = re.compile(r"[^.!?\n]{0,200}[.!?][\"”’]?\s+(He|She|It|Its)\b")
_NAME_WORD = r"(?:[A-Z](?:[\w'’-]+|\.)\s+)"  # a capitalised word before a surname: "Esmail" of "Esmail Ghaani"


class NameKinds:
    """Whether a name is a person's, judged by how the corpus writes it, not by its form: a title or a person's
    role right before it ("commander Esmail Ghaani", "Dr. Lee"), an age or a role in apposition after it
    ("Fahs, 41,", "Fahs, a political activist"), or "He"/"She" opening the next sentence when the name opens its
    own, say a person; "the" right before it ("the Quds Force"), a place preposition ("in Erbil"), ", which" or
    "-based" after it, or "It" next, say something else. None when the corpus says neither, or both equally (the
    caller then goes by the name's form). A single word counts its uses as the last word of a longer name too
    ("Ghaani"). Also: which capitalised words are no names or no referents, and which names the corpus puts
    beside a follow-up's words."""

    def __init__(self, texts: Iterable[str]):
        self._texts = list(texts)
        self._known: dict[tuple[str, str], bool | None] = {}
        self._sentences: list[str] | None = None

    def _cached(self, how, entity: str) -> bool | None:
        key = (how.__name__, entity)
        if key not in self._known:
            self._known[key] = how(entity)
        return self._known[key]

    def is_person(self, entity: str) -> bool | None:
        return self._cached(self._judge, entity)

    def is_name(self, entity: str) -> bool:
        return bool(self._cached(self._is_name, entity))

    def is_referent(self, entity: str) -> bool:
        return bool(self._cached(self._is_referent, entity))

    def together(self, entity: str, terms: set[str]) -> int:
        """In how many sentences of the corpus ``entity`` (a name's last word) stands with one of ``terms``
        (stems of a follow-up's other words: "When was he killed?" -> {"kill"})."""
        if self._sentences is None:
            self._sentences = [s for t in self._texts for s in re.split(r"(?<=[.!?])\s+|\n+", t) if s]
        word = entity.split()[-1].strip("'’.")
        pattern = re.compile(re.escape(word) + r"(?!\w)")
        return sum(1 for s in self._sentences if word in s and next(_uses(pattern, s), None) is not None
                   and terms & set(content_terms(s)))

    def _is_name(self, entity: str) -> bool:
        """False for a single capitalised word that is no name: one general English capitalises only to open a
        sentence, or that the corpus also writes in lower case ("Leaders like this come along only once")."""
        word = entity.strip().strip("'’.")
        if " " in word:
            return True
        if word in _OPENERS:
            return False
        lower = re.compile(re.escape(word.lower()) + r"\b")
        return not any(_uses(lower, t) for t in self._texts if word.lower() in t)

    def _is_referent(self, entity: str) -> bool:
        """False for what a pronoun never points back to: a date ("March", "Monday") or a word the corpus uses
        as a modifier, before a noun, most of the time ("Norwegian manager", "Iraqi factions")."""
        word = entity.strip().strip("'’.")
        if is_date(word):
            return False
        if " " in word:
            return True
        pattern = re.compile(re.escape(word) + r"(?![\w'’-])(\s+[a-z][\w-]*)?")
        uses = [m.group(1) for t in self._texts if word in t for m in _uses(pattern, t)]
        modified = sum(1 for u in uses if u and u.strip() not in _STOPWORDS)
        return not (uses and modified >= 0.6 * len(uses))

    def _judge(self, entity: str) -> bool | None:
        entity = entity.strip()
        if any(w.lower().strip("'’.") in _NEVER_PERSON for w in entity.replace("-", " ").split()):
            return False  # "Lady Elliot Island"
        if re.match(r"(?i:" + _TITLE + r")\.?\s+[A-Z]", entity):
            return True  # "President Donald Trump"
        if not self.is_name(entity):
            return None
        # Each use of the name, then the words just before and after it: scanning whole documents for a cue
        # pattern of 120 titles took 2 s per name on 2 million characters; this takes milliseconds.
        use = re.compile(re.escape(entity).replace(r"\ ", r"\s+") + r"(?!\w)")
        optional = _NAME_WORD + "?" if " " not in entity else ""  # "commander Esmail" before "Ghaani"
        title_before = re.compile(r"\b(?i:" + _TITLE + r")\.?\s+" + optional + r"$")
        other_before = re.compile(r"\b(?i:the|in|near|inside|across|throughout)\s+" + optional + r"$")
        opens_before = re.compile(r"(?:^|[.!?][\"”’]?\s+|\n)" + optional + r"$")
        people = others = 0
        first = entity.split()[0]
        for text in (t for t in self._texts if first in t):
            for m in _uses(use, text):
                before = ("\n" if m.start() <= _BEFORE else "") + text[max(0, m.start() - _BEFORE):m.start()]
                after = text[m.end():m.end() + _AFTER]
                if after.startswith("-"):  # "Tehran-based", "Iran-backed"
                    others += bool(_MODIFIED_AFTER.match(after))
                    continue
                if _CAPITAL_AFTER.match(after):
                    continue  # part of a longer name: "the Gutenberg Bible"
                people += bool(title_before.search(before) or _PERSON_AFTER.match(after))
                others += bool((other_before.search(before) and not after.startswith(("'s", "’s")))
                               or _WHICH_AFTER.match(after))
                if opens_before.search(before):  # the name opens its sentence: what does the next one call it?
                    next_one = _NEXT_SUBJECT.match(after)
                    if next_one:
                        people += next_one.group(1) in ("He", "She")
                        others += next_one.group(1) in ("It", "Its")
        if people == others:
            return None
        return people > others


def _uses(pattern: re.Pattern, text: str) -> Iterator[re.Match]:
    """``pattern``'s matches in ``text`` that do not continue a word ("Ghaani", not "al-Ghaani"). The check is
    made here, not by a look-behind in the pattern: a pattern that starts with its literal text is searched
    for with a fast scan (a look-behind first made each search 30 times slower)."""
    for m in pattern.finditer(text):
        if m.start() == 0 or not (text[m.start() - 1].isalnum() or text[m.start() - 1] in "_'’-"):
            yield m


def _organisation(entity: str) -> bool:
    words = entity.replace("-", " ").split()
    return any(w.lower().strip("'’.") in _NOT_PERSON for w in words) or (len(entity) >= 3 and entity.isupper())


_WHAT_WHICH = re.compile(r"\s*(?:what|which)\b", re.IGNORECASE)


def _lower_article(phrase: str) -> str:
    """"The crown-of-thorns starfish" -> "the crown-of-thorns starfish" (an article capitalised to open a
    sentence); a name's own capital stays ("The Hague")."""
    match = re.match(r"(?:The|A|An)\s+(?=[a-z])", phrase)
    return phrase[0].lower() + phrase[1:] if match else phrase


def _thing_answer(turn: Turn) -> str | None:
    """The short answer of a "What/Which ...?" turn when it names a thing in lower case ("firn", "polonium",
    "the crown-of-thorns starfish"): a few words, no figure, not only function words; else None."""
    short = _lower_article((turn.short_answer or "").strip(" .,;:"))
    found = _WORD_AT.findall(short)
    thing = (bool(_WHAT_WHICH.match(turn.question)) and 0 < len(found) <= 4 and not any(c.isdigit() for c in short)
             and short[:1].islower() and any(w.lower() not in _STOPWORDS for w in found))
    return short if thing else None


def _person(entity: str, kinds: NameKinds | None = None) -> bool:
    if not entity[:1].isupper():
        return False  # a thing the answer names in lower case
    said = kinds.is_person(entity) if kinds is not None else None
    if said is not None:
        return said
    return not _organisation(entity) and not entity.isupper() and "." not in entity[:-1]


def _multiword(entity: str) -> bool:
    return len(entity.replace("-", " ").split()) >= 2


def _whole(entity: str, phrases: list[str]) -> str:
    """``entity`` as the longest of ``phrases`` that holds it as whole words: a short answer cut inside a name
    ("President Donald") is carried as the answer names it ("President Donald Trump")."""
    inside = re.compile(r"(?<![\w'’-])" + re.escape(entity) + r"(?![\w-])")
    return max((p for p in phrases if inside.search(p)), key=len, default=entity)


def _referent(word: str, turns: list[Turn], kinds: NameKinds | None = None, question: str | None = None,
              ) -> str | None:
    """The entity a pronoun most likely points to in the previous turn, else in the one before it (``kinds``:
    what the corpus says about which names are people's: "its board" after a turn that named only a person
    points back to the agency named two turns back)."""
    found = _referent_in(word, turns[-1], kinds, question)
    if found is None and kinds is not None and len(turns) > 1:
        found = _referent_in(word, turns[-2], kinds, question)
    return found


def _referent_in(word: str, last: Turn, kinds: NameKinds | None, question: str | None = None) -> str | None:
    asked, said = _entities(last.question), _entities(last.answer)
    short = list(dict.fromkeys(_whole(e, said) for e in _entities(last.short_answer)))
    thing = None if short else _thing_answer(last)
    if thing:  # "What is such snow called?" -> "firn": "How dense is it?"
        short = [thing]
    # "Who replaced X?" asks for a person, whose name the answer gives; "Whom did X ...?" keeps X as the subject,
    # and "Who is X?" asks about X.
    asked_who = re.match(r"\s*who\b(?!\s+(?:is|was|are|were)\b)", last.question, re.IGNORECASE) is not None
    if kinds is not None:  # no dates or modifiers; for "he", no capitalised first word ("Leaders like this ...")
        asked, said, short = ([e for e in group if kinds.is_referent(e)
                               and (word not in _PERSONAL or kinds.is_name(e))] for group in (asked, said, short))
    person = [e for e in dict.fromkeys([*short, *said, *asked]) if _person(e, kinds)]
    if word in _PERSONAL:
        ranked = [
            *([e for e in short if e in person and _multiword(e)] if asked_who else []),
            *([e for e in said if e in person and _multiword(e) and e not in last.question] if asked_who else []),
            *[e for e in asked if e in person and _multiword(e)],
            *[e for e in short if e in person],
            *[e for e in said if e in person and _multiword(e)],
            *[e for e in asked if e in person],
            *[e for e in said if e in person],
        ]
    else:
        # A name the corpus writes as a person's is never "it" (was: "Who leads it?" -> "Who leads Esmail
        # Ghaani?" when the last turn named no organisation); by its form alone a name cannot tell.
        people = {e for e in person if kinds is not None and kinds.is_person(e)}
        ranked = [e for e in [
            *[e for e in asked if _organisation(e)],
            *short,
            *[e for e in said if _organisation(e)],
            *asked,
            *said,
        ] if e not in people]
    ranked = list(dict.fromkeys(ranked))
    if kinds is not None and question is not None and len(ranked) > 1:
        # Of the likeliest few, the one the corpus names beside the follow-up's other words: "Who replaced
        # Qassem Soleimani?" then "When was he killed?" is about Soleimani, whom the corpus says was killed,
        # not about the answer, Esmail Ghaani. Only a clear lead overrides the order above.
        terms = set(content_terms(question)) - {t for e in ranked for t in content_terms(e)}
        if terms:
            # for "he", only names the corpus confirms as people's may overtake ("Reuters" stood beside "faction")
            rivals = [e for e in ranked[1:_RERANKED] if word not in _PERSONAL or kinds.is_person(e)]
            counts = {e: kinds.together(e, terms) for e in [ranked[0], *rivals]}
            best = max(counts, key=lambda e: counts[e])
            if counts[best] > counts[ranked[0]]:
                return best
    return ranked[0] if ranked else None


def _ask_again(wh: str, last: Turn) -> str | None:
    """The previous question asked with another wh-word ("when", "where", "why", "how"), or None when its form
    does not allow it (its wh-word is the subject: "Who replaced X?"; "How many ...?")."""
    match = _REASKABLE.match(last.question)
    if not match:
        return None
    old, aux, rest = match.group("wh").lower(), match.group("aux"), match.group("rest")
    if old in ("who", "whom", "what"):
        if aux.lower() in _BE:  # "Who is X?" -> "Where is X?"; not "Who was killed in ...?" (no subject left)
            head = rest.split()[0]
            if head.islower() and head.endswith(("ed", "en")):
                return None
        elif old == "what":  # "What did X say?" -> "When did X say it?"
            subject, _, verb = rest.rpartition(" ")
            subject = re.sub(r"^(?:the)\s+", "", subject, flags=re.IGNORECASE)
            if verb.isalpha() and verb.islower() and subject in _entities(last.question):
                rest = f"{rest} it"
        else:  # "Whom did X meet?": who it was is not known here
            return None
    return f"{wh.capitalize()} {aux} {rest}?"


def _resolve_pronoun(question: str, pronoun: re.Match, turns: list[Turn], kinds: NameKinds | None = None,
                     ) -> str | None:
    word = pronoun.group(1).lower()
    target = _referent(word, turns, kinds, question[: pronoun.start()] + " " + question[pronoun.end():])
    if target is None:
        return None
    suffix = {**_PERSONAL, **_IMPERSONAL}.get(word, "")
    if word == "her" and re.match(r"\s+[a-z]+\b(?!\s*\?)", question[pronoun.end():]):
        suffix = "'s"  # "her husband": possessive
    if word == "there":
        target = "in " + target
    if suffix == "'s" and target.endswith("s"):
        suffix = "'"  # "Forces'"
    return question[: pronoun.start()] + target + suffix + question[pronoun.end():]


_PHRASE_ENDS = {"in", "on", "at", "for", "to", "from", "by", "with", "and", "or", "but", "if", "when", "after",
                "before", "than", "while", "because", "since", "until"}


def _about_instead(previous: str, new: str) -> str:
    """The previous question about ``new`` instead ("What about X?"): X put in place of the phrase of the
    question it parallels. A noun phrase replaces the phrase with the same head ("the Greenland ice sheet" for
    "the Antarctic ice sheet"), or the phrase that opens with the same word ("patients given a placebo" for
    "patients taking velacorin"); a name replaces the name most like it; else X is added in brackets."""
    words = list(_WORD_AT.finditer(previous))
    said = [w.group(0).lower() for w in words]
    new_words = [w.lower() for w in _WORD_AT.findall(new)]
    if len(new_words) >= 2 and words and (new[:1].islower() or new_words[0] in _STOPWORDS):  # a noun phrase
        if new_words[-1] in said:  # same head noun
            head = said.index(new_words[-1])
            start = next((i for i in range(head - 1, max(head - 6, -1), -1) if said[i] == new_words[0]), None)
            if start is None:  # the modifiers before the head, back to a determiner or a phrase boundary
                start = head
                while start > 0 and said[start - 1] not in _PHRASE_ENDS and said[start - 1] not in _WH \
                        and head - start < len(new_words) - 1:
                    start -= 1
            return previous[: words[start].start()] + new + previous[words[head].end():]
        first = new_words[0]
        if first not in _STOPWORDS and first in said:  # same opening word: up to the end of its phrase
            start = said.index(first)
            end = start
            while end + 1 < len(said) and said[end + 1] not in _PHRASE_ENDS and end - start < len(new_words) + 1:
                end += 1
            return previous[: words[start].start()] + new + previous[words[end].end():]
    asked = [e for e in _entities(previous) if e in previous]
    if asked and (new[:1].isupper() or not any(w[:1].isupper() for w in asked)):
        # a name for a name: the one most like X in length
        size = len(new.replace("-", " ").split())
        old = min(asked, key=lambda e: (abs(len(e.replace("-", " ").split()) - size), -len(e)))
        return previous.replace(old, new, 1)
    return f"{previous.rstrip(' ?.!')} ({new})?"


def carry_entities(question: str, turns: list[Turn], kinds: NameKinds | None = None) -> str | None:
    """Rewrite a follow-up with the entities of the previous turn (see the module's docstring); ``kinds``
    tells people's names from others' by how the corpus writes them."""
    last = turns[-1]
    new = _ellipsis(question)
    if new is not None:
        pronoun = _pronoun(new)
        if pronoun:  # "How about him?": about whom "him" points to
            new = _resolve_pronoun(new, pronoun, turns, kinds)
            if new is None:
                return None
        return _about_instead(last.question, new)
    wh_only = _WH_ONLY.match(question)
    if wh_only:
        again = _ask_again(wh_only.group("wh").lower(), last)
        if again:
            return again
        question = wh_only.group("wh").capitalize() + "?"  # then as "When?": the previous entities added
    rest = _and_question(question)
    if rest:
        rest = rest[0].upper() + rest[1:]
        pronoun = _pronoun(rest)
        if pronoun:
            return _resolve_pronoun(rest, pronoun, turns, kinds)
        if not _POINTS_BACK.search(rest):
            return rest  # a question of its own: taken as it stands
        question = rest
    pronoun = _pronoun(question)
    if pronoun:
        return _resolve_pronoun(question, pronoun, turns, kinds)
    if entity_phrases(question):
        return None
    said = _entities(last.answer)
    short = [_whole(e, said) for e in _entities(last.short_answer)]
    entities = list(dict.fromkeys([*_entities(last.question), *short]))
    if not entities:
        return None
    body = question.rstrip(" ?.!")
    mark = question[len(body):].strip() or "?"
    return f"{body} ({', '.join(entities[:3])}){mark[0]}"
