"""What a question asks for: its answer type, key terms and named entities.

Used by the extractive backend to pick answer sentences and short answer spans, and to decide whether
the article actually holds the asked-for information (abstention from evidence, not from a score).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rag.text import FUNCTION_CAPS, STOPWORDS, alias_table, content_terms, normalize, stem, word_list, words
from rag.verify import numbers, quotes

MONTHS = ("january february march april may june july august september october november december").split()
_YEAR = re.compile(r"\b(1[89]\d\d|20\d\d)s?\b")
_DATE = re.compile(
    r"\b(?:(?:early|late|mid|last|next)[- ])?(?:" + "|".join(m.capitalize() for m in MONTHS) + r")(?:\s+\d{1,2})?(?:,?\s+\d{4})?\b"
    r"|\b(?:early|late|mid)[- ]?\d{4}\b|\b(?:1[89]|20)\d\d\b"
    r"|\b(?:a|one|two|three|four|five|six|\d+|a few|several|a couple of)\s+(?:days?|weeks?|months?|years?)\s+"
    r"(?:ago|earlier|later|before|after)\b"
    r"|\b(?:last|this|next)\s+(?:year|month|week|June|July|spring|summer|autumn|winter)\b"
    r"|\bon\s+(?:day\s+\w+|the\s+\w+\s+day)\b|\b(?:yesterday|today|tomorrow|tonight)\b"
    r"|\b(?:(?:on|by|until|since|from|last|next|this)\s+)?(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)\b"
    # relative moments and durations: "the day before the war began", "for decades", "since 2019"
    r"|\bthe\s+(?:day|night|week|month|year)\s+(?:before|after)\b"
    r"|\b(?:for|spent|over|after|within)\s+(?:(?:a|one|two|three|four|five|six|\d+|a few|several|many)\s+)?"
    r"(?:decades|years|months|weeks|days|hours)\b"
    r"|\b(?:a|one|two|three|four|five|six|\d+)-(?:day|week|month|year)\b",
)


def is_date(text: str) -> bool:
    """Whether ``text`` is a date or a day and nothing else ("March", "Monday", "August 1924")."""
    return _DATE.fullmatch(text.strip()) is not None


def names_nothing(question: str) -> bool:
    """Whether a question holds no content word ("Who?", "When?", "the", "What did he say?"): once stopwords
    (wh-words, pronouns, auxiliaries among them; ``rag/data/en/stopwords.txt``) and punctuation are removed,
    nothing is left to look for. A figure counts as content ("2019?")."""
    return not content_terms(question)


def alternation(name: str, plural: bool = False) -> str:
    """A regex alternation of a word list's entries, longest first ("because of" before "because")."""
    entries = sorted(word_list(name), key=len, reverse=True)
    return "|".join(re.escape(e).replace(r"\ ", r"\s+") + ("s?" if plural else "") for e in entries)


_ROLE = re.compile(r"\b(?:an?|the)\s+(?:[\w'’-]+\s+){0,3}?(?:" + alternation("role_nouns.txt", plural=True) + r")\b",
                   re.IGNORECASE)
_AGE = re.compile(r"\b\d{1,3}[- ]years?[- ]old\b|\baged\s+\d{1,3}\b|\b\d{1,3}-year-old\b", re.IGNORECASE)
_MONEY = re.compile(
    r"\$\s?\d[\d,.]*(?:\s*(?:billion|million|thousand|bn|m))?|\b\d[\d,.]*\s*(?:dollars|euros|pounds)\b"
    r"|\b(?:millions|billions|thousands|hundreds) of (?:dollars|euros|pounds)\b",
    re.I,
)
_CAUSE = re.compile(r"\b(" + alternation("cause_cues.txt") + r")\b", re.IGNORECASE)
_SPEECH = re.compile(r"\b(" + alternation("speech_verbs.txt") + r")\b", re.IGNORECASE)

# Capitalised words that are not entities even mid-sentence in a question.
_NUMBER_WORDS_SET = {"one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "dozen"}


@dataclass
class QuestionInfo:
    text: str
    kind: str  # who / when / where / how_many / money / age / why / quote_speaker / quote_content / what / yesno
    terms: list[str]  # stemmed content terms
    entities: list[str] = field(default_factory=list)  # lower-cased capitalised words of the question
    quoted: list[str] = field(default_factory=list)  # quoted phrases in the question
    numbers: list[str] = field(default_factory=list)
    focus: str | None = None  # stemmed head noun of the asked-for thing ("spokesman" in "Who is the spokesman...")


def analyze(question: str, known_names: frozenset[str] = frozenset()) -> QuestionInfo:
    q = normalize(question).strip()
    lowered = q.lower()
    first = words(lowered)[:3]
    quoted = quotes(q)
    kind = "what"
    if re.search(r"\bhow old\b|\bage of\b|\bwhat age\b", lowered):
        kind = "age"
    elif re.search(r"\bhow (much|expensive)\b|\bbudget\b|\bcost\b|\bfunding\b|\bmoney\b|\bsalar(y|ies)\b|"
                   r"\b(paid|earn|earns|price|worth)\b", lowered) \
            and not re.match(r"(why|when|where|who|whom|whose)\b", lowered):  # "When was the budget cut?" asks when
        kind = "money" if re.search(r"\bhow much\b|\bbudget\b|\bcost\b|\bfunding\b|\bsalar(y|ies)\b|\bpaid\b|"
                                    r"\bearns?\b|\bprice\b|\bworth\b", lowered) else "what"
    elif re.search(r"\bhow (many|big|large)\b|^(what|which) (is|was) the number of\b|\bhow strong\b|\bsize of\b", lowered):
        kind = "how_many"
    elif re.search(r"\bhow long\b", lowered) or re.search(r"^(when|what year|in what year|which year|in which year|what month|what date|on what day)\b", lowered) \
            or re.search(r"\b(what|which) (year|month|date|day)\b|(^|, |\band )when\b", lowered) \
            or re.search(r"\b(since|until|by|before|after) (what|when)\??$", lowered):
        kind = "when"
    elif re.search(r"\b(what|which) (?:is|was) (?:the |his |her |their )?(?:(?:full|real|first|last) )?name\b|"
                   r"\bwhat is [\w.'’ ]+'s (?:(?:full|real|first|last) )?name\b|^name of\b|"
                   r"^what (?:is|was|are|were) (?:the )?[\w'’ -]+ called\b", lowered):
        kind = "name"
    elif re.search(r"^who (said|told|described|called)\b", lowered) or (quoted and re.search(r"^who\b", lowered)):
        kind = "quote_speaker"
    elif re.match(r"(who|what) (is|was|are|were) [\w.'’ -]+\?*$", lowered) and len(lowered.split()) <= 6 \
            and not re.search(r"\bthe (\w+ )?(name|leader|head|president|spokesman|commander)\b", lowered):
        kind = "define"
    elif re.search(r"^(who|whom|whose)\b|\bwho\b|^[^,]*, whose\b", lowered) or re.search(
        r"\b(which|what) ([\w'’-]+ ){0,2}(person|leader|commander|ruler|president|analyst|academic|official|cleric|man|"
        r"woman|spokesman|group|faction|organization|organisation|militia|party|leader's)\b", lowered
    ):
        kind = "who"
    elif re.search(r"^(where|in which city|which city|what city|in what city|which country|what part)\b", lowered) \
            or re.search(r"\b(which|what) (\w+ )?(city|country|town|region|part|place|capital|base)\b", lowered) \
            or lowered.startswith("where"):
        kind = "where"
    elif lowered.startswith("why") or re.search(r"\b(purpose|reason|motive)\b", lowered) or "what caused" in lowered:
        kind = "why"
    elif re.search(r"\bwhat did .+ (say|tell|call|chant)|\bhow did .+ (describe|characteri[sz]e|call)\b|\bwhat .+ (said|chanted)\b", lowered):
        kind = "quote_content"
    elif first and first[0] in ("is", "are", "was", "were", "did", "does", "do", "has", "have", "can", "could"):
        kind = "yesno"
    entities = entity_phrases(q, known_names)
    focus_match = re.search(
        r"\b(?:who|what) (?:is|was|are|were) the (\w+)|\b(?:which|what) (?!is\b|was\b|did\b|does\b|do\b|are\b|were\b"
        r"|has\b|have\b|kind\b|type\b|part\b)(\w+)", lowered)
    focus = None
    if focus_match:
        word = focus_match.group(1) or focus_match.group(2)
        if word not in STOPWORDS and not word.isdigit() and word not in _NUMBER_WORDS_SET:
            focus = stem(word)
    if kind == "name":
        focus = _named_head(lowered) or focus
    return QuestionInfo(
        focus=focus,
        text=question,
        kind=kind,
        terms=content_terms(q),
        entities=entities,
        quoted=quoted,
        numbers=[s for s, _ in numbers(q)],
    )


_HEAD_STOP = {"who", "whom", "whose", "that", "which", "close", "in", "at", "of", "from", "with", "led", "run", "by",
              "called", "named", "is", "was", "a", "an", "the", "did", "does", "do", "to", "for", "on"}


def _named_head(lowered: str) -> str | None:
    """The thing whose name is asked: "figure" in "name of the Lebanese political figure close to Hezbollah"."""
    match = re.search(r"\bname of (?:the |a |an |his |her |their )?(.+)$|^what (?:is|was|are|were) (?:the )?(.+?) called\b"
                      r"|'s (?:(?:full|real|first|last) )?name\b", lowered)
    if not match or not (match.group(1) or match.group(2)):
        return None
    phrase: list[str] = []
    for word in re.findall(r"[\w'’.-]+", match.group(1) or match.group(2)):
        if word.endswith(("'s", "’s")):  # "Khazali's militia": the possessor is not the thing named
            phrase = []
            continue
        if word in _HEAD_STOP or "." in word:
            break
        phrase.append(word)
    return stem(phrase[-1]) if phrase else None


_ENTITY = re.compile(r"[A-Z][\w'’.-]*(?:\s+(?:(?:al|bin|ibn|de|van|of|the)[- ])?[A-Z][\w'’.-]*)*")
_QUESTION_WORDS = {"who", "whom", "whose", "what", "when", "where", "why", "how", "which", "in", "on", "at", "the",
                   "a", "an", "according", "after", "before", "during", "besides", "for", "is", "was", "did", "does",
                   "do", "are", "were", "has", "have", "if", "as", "of", "to", "by", "from", "with"}


def is_generic(part: str) -> bool:
    p = part.lower().strip(".'’")
    p = p[:-2] if p.endswith(("'s", "’s")) else p
    if "-" in p and not p.startswith(("al-", "abu-")):
        return any(x in ("pro", "anti", "backed", "based", "led", "sanctioned", "favored")
                   for x in p.split("-"))
    return p in _QUESTION_WORDS or p in STOPWORDS or len(p) < 2


def entity_phrases(text: str, known_names: frozenset[str] = frozenset()) -> list[str]:
    """Capitalised phrases of a question ("Qassem Soleimani", "Islamic State", "A.J."), minus question words.

    Phrases made only of generic words (Iran, US, Iraqi...) are dropped. Quoted material is skipped: in
    "Who said '...'", the quote's words are looked up as a quote, not as entities.
    """
    for q in quotes(text):
        text = text.replace(q, " ")
    phrases = []
    normalized = normalize(text)
    for m in _ENTITY.finditer(normalized):
        parts = re.split(r"\s+", m.group(0))
        while parts and parts[0].lower() in _QUESTION_WORDS:
            parts = parts[1:]
        at_start = not normalized[: m.start()].strip(" \"'“‘(")
        if at_start and len(parts) == 1 and not parts[0][1:].isupper() and parts[0] not in known_names:
            continue  # "Roughly how many...": capitalised only because it opens the question
        if parts and not all(is_generic(p) for p in parts):
            phrase = " ".join(parts)
            phrase = phrase[:-2] if phrase.endswith("'s") else phrase
            phrases.append(phrase)
    return list(dict.fromkeys(phrases))


ALIASES = alias_table()


def _acronym_matches(acronym: str, text: str) -> bool:
    for m in _ENTITY.finditer(text):
        initials = "".join(w[0] for w in m.group(0).split() if w[0].isupper())
        if initials.upper() == acronym.upper():
            return True
    return False




class EntityMatcher:
    """Decides whether a question entity is mentioned in a passage.

    A full phrase, an alias ("United States" / "US"), an acronym ("PMF" / "Popular Mobilization Forces")
    or a distinctive part ("Soleimani" for "Qassem Soleimani") counts. A part is not enough when the corpus
    shows it naming different things ("Kataib Hezbollah" vs "Lebanese Hezbollah"): then the phrase's other
    distinctive words must be there too.
    """

    def __init__(self, texts: list[str]):
        modifiers: dict[str, set[str]] = {}
        for text in texts:
            for m in _ENTITY.finditer(normalize(text)):
                words_ = [w.rstrip(".,").removesuffix("'s") for w in m.group(0).split()]
                while words_ and words_[0] in FUNCTION_CAPS:
                    words_ = words_[1:]
                if not words_:
                    continue
                head = words_[-1]
                modifiers.setdefault(head, set()).add(words_[-2] if len(words_) > 1 else "")
        # A head word seen after two different capitalised modifiers names different things.
        self.ambiguous_heads = {head for head, mods in modifiers.items() if len(mods - {""}) >= 2}
        # Words written capitalised mid-sentence: proper names of this corpus.
        self.known_names = frozenset(
            m.group(0).rstrip(".,").removesuffix("'s")
            for text in texts
            for m in re.finditer(r"(?<=[a-z,;] )[A-Z][\w'’.-]*", normalize(text))
        )

    def present(self, entity: str, text: str) -> bool:
        norm_text = normalize(text)
        lowered = norm_text.lower()
        key = entity.lower().strip(".")
        if key in lowered:
            return True
        if any(re.search(rf"\b{re.escape(alias)}\b", norm_text) for alias in ALIASES.get(key, ())):
            return True
        if entity.isupper() and 2 <= len(entity) <= 6 and _acronym_matches(entity, norm_text):
            return True
        parts = [p.rstrip(".").removesuffix("'s") for p in entity.split() if not is_generic(p) and len(p.strip(".")) >= 3]
        parts += [p[3:] for p in parts if p.lower().startswith("al-") and len(p) > 5]  # "al-Assad" -> "Assad"
        if not parts:
            return False

        def mentioned(part: str) -> bool:
            return re.search(rf"(?<![\w-]){re.escape(part)}(?:'s)?\b", norm_text) is not None

        if len(parts) > 1 and parts[-1] in self.ambiguous_heads:
            return all(mentioned(p) for p in parts)
        return any(mentioned(p) for p in parts)


def type_candidates(kind: str, sentence: str) -> list[tuple[int, int]]:
    """Character spans in ``sentence`` that could answer a question of this kind."""
    if kind == "when":
        return [m.span() for m in _DATE.finditer(sentence)]
    if kind == "age":
        return [m.span() for m in _AGE.finditer(sentence)]
    if kind == "money":
        return [m.span() for m in _MONEY.finditer(sentence)]
    if kind == "how_many":
        spans = []
        for surface, _ in numbers(sentence):
            i = sentence.lower().find(surface.lower())
            if i >= 0 and not _YEAR.fullmatch(surface):
                spans.append((i, i + len(surface)))
        return spans
    roles = [m.span() for m in _ROLE.finditer(sentence)] if kind in ("who", "quote_speaker") else []
    if kind in ("who", "quote_speaker", "where", "name"):
        return _name_spans(sentence) + roles
    if kind == "why":
        return [m.span() for m in _CAUSE.finditer(sentence)]
    if kind == "quote_content":
        return [m.span() for m in re.finditer(r"[\"“][^\"“”]+[\"”]", sentence)] + (
            [m.span() for m in _SPEECH.finditer(sentence)]
        )
    return []


_NAME_SPAN = re.compile(r"\b[A-Z][\w'’.-]*(?:\s+(?:al-|bin |ibn |de |van |of )?[A-Z][\w'’.-]*)*")


def _name_spans(sentence: str) -> list[tuple[int, int]]:
    """Capitalised name spans, without leading function words ("In Baghdad" -> "Baghdad")."""
    spans = []
    for m in _NAME_SPAN.finditer(sentence):
        start, text = m.start(), m.group(0)
        while True:
            first, _, rest = text.partition(" ")
            if first in FUNCTION_CAPS and rest:
                start += len(first) + 1
                text = rest
            else:
                break
        if text.split(" ")[0] in FUNCTION_CAPS or re.search(r"-(based|backed|sanctioned|led|majority|favored|era)$", text):
            continue
        spans.append((start, start + len(text)))
    return spans


_CLAUSE_END = re.compile(r"[,;:.!?]|\s[–—]\s|\s-\s")
_TOKEN = re.compile(r"[\w'’-]+")
_LOCATIVE = re.compile(r"\b(in|at|from|to|into|near|across|toward|towards|of)\s+$", re.IGNORECASE)


def _why_spans(sentence: str) -> list[tuple[int, int]]:
    """From a causal cue to the end of its clause: "for fear of being targeted by Israeli or US strikes"."""
    spans = []
    for m in _CAUSE.finditer(sentence):
        stop = _CLAUSE_END.search(sentence, m.end())
        spans.append((m.start(), stop.start() if stop else len(sentence)))
    return spans


def _candidates(info: QuestionInfo, text: str) -> list[tuple[int, int]]:
    if info.kind == "why":
        return _why_spans(text)
    if info.kind == "quote_content":
        return [(m.start() + 1, m.end() - 1) for m in re.finditer(r"[\"“][^\"“”]+[\"”]", text)]
    return type_candidates(info.kind, text)


def short_answer(info: QuestionInfo, texts: list[str]) -> str | None:
    """The span inside the answer sentences that answers the question: a name, date, figure, cause or quote.

    Candidates of the asked-for type are scored by how close they sit to the question's words (answers
    stand next to the context the question restates), with a bonus next to the focus noun ("President
    Donald Trump" for "which president") and a penalty for words the question already contains.
    """
    if info.kind in ("what", "yesno"):
        return None
    question = normalize(info.text).lower()
    q_terms = set(info.terms)
    best: tuple[float, str] | None = None
    for order, text in enumerate(texts):
        tokens = [(m.start(), m.end(), stem(m.group(0).lower().removesuffix("'s").removesuffix("’s")))
                  for m in _TOKEN.finditer(text)]
        for start, end in _candidates(info, text):
            span = text[start:end].strip(" ,.;:\"“”'")
            span = re.sub(r"['’]s$", "", span)  # "Khazali's" answers "who" as "Khazali"
            if not span:
                continue
            lowered = normalize(span).lower()
            span_words = [w.strip("'’.,").removesuffix("'s") for w in lowered.split()]
            if info.kind in ("who", "quote_speaker", "where", "name", "when", "how_many", "money", "age") and (
                lowered in question or all(w in question or w in STOPWORDS for w in span_words)
            ):
                continue
            inside = [i for i, (s, e, _) in enumerate(tokens) if s >= start and e <= end]
            if not inside:
                continue
            first, last = inside[0], inside[-1]
            value = 0.0
            for i, (_, _, token_stem) in enumerate(tokens):
                if first <= i <= last or token_stem not in q_terms:
                    continue
                distance = first - i if i < first else i - last
                value += 1.0 / distance
            if info.focus is not None:
                near = tokens[max(0, first - 3): first] + tokens[last + 1: last + 4]
                if any(t[2] == info.focus or t[2].startswith(info.focus) for t in near):
                    value += 2.0
            if info.kind in ("who", "name", "quote_speaker") and span[:1].isupper() and " " in span:
                value += 0.3
            if info.kind == "where" and _LOCATIVE.search(text[:start]):
                value += 0.5
            if info.kind == "when" and re.search(r"[A-Za-z]", span) and re.search(r"\d", span):
                value += 0.3
            value -= 0.01 * order
            if best is None or value > best[0]:
                best = (value, span)
    return best[1] if best else None


