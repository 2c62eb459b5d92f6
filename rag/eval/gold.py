"""Gold question sets: the project's JSONL schema (eval/README.md) and SQuAD 2.0 JSON.

    documents, questions = load_dataset("eval/gold.jsonl")          # documents == []: the configured corpus
    documents, questions = load_dataset("eval/dev/doc-x.jsonl")     # + ("doc-x.txt", text) when doc-x.txt is beside it
    documents, questions = load_dataset("squad2-dev.json")          # one ("<title>.txt", text) per article

``documents`` are ``(file name, text)`` pairs for a corpus of their own; an empty list means the questions are
about the configured corpus. Every evidence string is an exact substring of its document's text.
Nothing here imports a model: loading a gold file is cheap.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import InputFileError
from rag.eval.answers import normalize_answer
from rag.settings import PROJECT_ROOT

if TYPE_CHECKING:
    from rag.types import Document

def _default_gold() -> Path:
    """eval/gold.jsonl of the checkout; installed from a wheel, the copy under <prefix>/share/rag-news/eval."""
    checkout = PROJECT_ROOT / "eval" / "gold.jsonl"
    if checkout.is_file():
        return checkout
    return Path(sys.prefix) / "share" / "rag-news" / "eval" / "gold.jsonl"


DEFAULT_GOLD = _default_gold()
GOLD_KEYS = ("id", "question", "answers", "evidence", "type")  # required in every JSONL line
OPTIONAL_GOLD_KEYS = ("style", "document")
STYLES = ("direct", "paraphrase", "two_step", "unanswerable")
QUESTION_TYPES = ("who", "when", "where", "how_many", "why", "what", "other")  # derived from SQuAD questions
# a JSONL question's `type`: the wh-types, plus the kinds of question eval/README.md lists
GOLD_TYPES = ("who", "when", "where", "how_many", "why", "what", "quote", "two_step", "unanswerable", "other")

Span = tuple[str, int, int]  # (document id, start, end) character offsets into the document text


@dataclass(frozen=True)
class GoldQuestion:
    id: str
    question: str
    answers: tuple[str, ...]  # acceptable short answers (aliases); empty for an unanswerable question
    evidence: tuple[str, ...]  # exact substrings of a document, all needed to support the answer
    type: str
    line: int  # line number in the gold file (JSONL) or position of the question (SQuAD), for error messages
    document: str | None = None  # id (file name) of the document the question is about, when known
    style: str | None = None  # direct / paraphrase / two_step / unanswerable, when given

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


# ---------------------------------------------------------------------------------------------- any format


def load_dataset(path: str | os.PathLike) -> tuple[list[tuple[str, str]], list[GoldQuestion]]:
    """(documents, questions) of a gold file: SQuAD 2.0 JSON (``.json``) or the project's JSONL.

    SQuAD: one document per article. JSONL: no documents (the questions are about the configured corpus),
    unless a ``<same stem>.txt`` lies beside the file: then that is the one document, and questions that do
    not name a ``document`` are about it. Problems raise InputFileError naming the file (and line).
    """
    path = _readable(path)
    if path.suffix.lower() == ".json":
        return load_squad(path)
    questions = load_gold(path)
    sibling = path.with_suffix(".txt")
    if not sibling.is_file():
        return [], questions
    text = _read_text(sibling)
    questions = [q if q.document else replace(q, document=sibling.name) for q in questions]
    return [(sibling.name, text)], questions


def _readable(path: str | os.PathLike, what: str = "gold file") -> Path:
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: {what} not found")
    if not path.is_file():
        raise InputFileError(f"{path}: not a file")
    return path


def _read_text(path: Path) -> str:
    """The UTF-8 text of a file; a byte order mark at its start (Notepad, Excel exports) is dropped, as the
    corpus reader drops it from documents."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputFileError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read ({exc.strerror or exc})") from None


# ---------------------------------------------------------------------------------------------- JSONL


def load_gold(path: str | os.PathLike) -> list[GoldQuestion]:
    """Read and validate a gold file's questions; any problem raises InputFileError naming the file and line.

    A ``.json`` file is read as SQuAD 2.0 (its documents are dropped here: use ``load_dataset`` to get them)."""
    path = _readable(path)
    if path.suffix.lower() == ".json":
        return load_squad(path)[1]
    try:
        questions = read_jsonl(path, _gold_question)
    except InputFileError as exc:
        if _looks_like_squad(path):
            raise InputFileError(f"{path}: looks like SQuAD JSON (one object with a 'data' list of articles): "
                                 "name it .json") from None
        raise exc from None
    if not questions:
        raise InputFileError(f"{path}: no questions in the gold file")
    return questions


def read_jsonl(path: Path, parse: Callable[[Any, int, str], Any]) -> list:
    """One ``parse(record, line number, "file, line N")`` per non-blank line of a JSONL file, each with an ``id``
    no other line has; a line that is not JSON or repeats an id raises InputFileError naming the file and line."""
    items: list = []
    first_line_of: dict[str, int] = {}
    for number, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputFileError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        item = parse(record, number, where)
        if item.id in first_line_of:
            raise InputFileError(f"{where}: duplicate id '{item.id}' (first used on line {first_line_of[item.id]})")
        first_line_of[item.id] = number
        items.append(item)
    return items


def _gold_question(record: Any, number: int, where: str) -> GoldQuestion:
    if not isinstance(record, dict):
        raise InputFileError(f"{where}: expected a JSON object with keys {', '.join(GOLD_KEYS)}")
    missing = [key for key in GOLD_KEYS if key not in record]
    unexpected = sorted(set(record) - set(GOLD_KEYS) - set(OPTIONAL_GOLD_KEYS))
    if missing or unexpected:
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(unexpected)}"] if unexpected else []
        )
        raise InputFileError(
            f"{where}: keys must be {', '.join(GOLD_KEYS)}, optionally {', '.join(OPTIONAL_GOLD_KEYS)} "
            f"({'; '.join(problems)})"
        )
    for key in ("id", "question", "type"):
        if not isinstance(record[key], str) or not record[key].strip():
            raise InputFileError(f"{where}: '{key}' must be a non-empty string")
    if record["type"] not in GOLD_TYPES:
        raise InputFileError(f"{where}: 'type' must be one of {', '.join(GOLD_TYPES)} (got {record['type']!r})")
    for key in ("answers", "evidence"):
        value = record[key]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise InputFileError(f"{where}: '{key}' must be a list of non-empty strings")
    for alias in record["answers"]:
        if _empty_alias(alias):
            raise InputFileError(f"{where}: alias {alias!r} is empty once normalised (articles and punctuation "
                                 "dropped, as exact match does), so abstaining would match it")
    if bool(record["answers"]) != bool(record["evidence"]):
        raise InputFileError(
            f"{where}: 'answers' and 'evidence' must both be empty (unanswerable question) or both non-empty"
        )
    style = record.get("style")
    if style is not None and style not in STYLES:
        raise InputFileError(f"{where}: 'style' must be one of {', '.join(STYLES)} (got {style!r})")
    if style == "unanswerable" and record["answers"]:
        raise InputFileError(f"{where}: style 'unanswerable' needs empty 'answers' and 'evidence'")
    document = record.get("document")
    if document is not None and (not isinstance(document, str) or not document.strip()):
        raise InputFileError(f"{where}: 'document' must be a non-empty string (a document id, its file name)")
    return GoldQuestion(record["id"], record["question"], tuple(record["answers"]), tuple(record["evidence"]),
                        record["type"], number, document, style)


# ---------------------------------------------------------------------------------------------- SQuAD 2.0

_WH = (  # first match wins; "how many/much" before other "how" questions
    ("how_many", re.compile(r"\bhow\s+(many|much)\b")),
    ("who", re.compile(r"\b(who|whom|whose)\b")),
    ("when", re.compile(r"\b(when|(what|which)\s+(year|date|day|month|decade|century|time|period|era)s?)\b")),
    ("where", re.compile(r"\b(where|(what|which)\s+(city|cities|country|countries|place|location|state|region|"
                         r"continent|town|area)s?)\b")),
    ("why", re.compile(r"\bwhy\b")),
    ("what", re.compile(r"\b(what|which)\b")),
)


def question_type(question: str) -> str:
    """The wh-type of a question: who / when / where / how_many / why / what, else other.

    The earliest wh-word in the question decides ("In what year did who..." is 'when'); "how many" and "how
    much" are how_many, "what/which year/date/century/..." is when and "what/which city/country/place/..." is
    where; other "how" questions are 'other'."""
    text = " ".join(question.lower().split())
    best: tuple[int, int, str] | None = None
    for order, (kind, pattern) in enumerate(_WH):
        match = pattern.search(text)
        if match and (best is None or (match.start(), order) < best[:2]):
            best = (match.start(), order, kind)
    return best[2] if best else "other"


def document_name(title: str) -> str:
    """A safe file name for an article title: letters, digits, '.', '-' and '_' kept, the rest '_'; '.txt'."""
    name = re.sub(r"[^\w.-]+", "_", title.strip(), flags=re.ASCII).strip("._") or "article"
    return name[:120] + ".txt"


def load_squad(path: str | os.PathLike) -> tuple[list[tuple[str, str]], list[GoldQuestion]]:
    """Documents and questions of a SQuAD 2.0 JSON file.

    Each article becomes one document, ``<sanitised title>.txt``: the title (underscores as spaces) on the
    first line, then its paragraphs, separated by blank lines. A question's answers are its answer texts
    (deduplicated, in order; a text that normalises to nothing, such as "the", is dropped, as the official
    SQuAD 2.0 evaluation script drops it); its evidence is the sentence(s) of the paragraph that contain the
    first answer (from its ``answer_start``), split with the indexer's sentence splitter, so they are exact
    substrings of the document; its type comes from its wh-word, or is 'unanswerable' (then style
    'unanswerable' too). Every field is checked: a problem raises InputFileError naming the file, the article,
    the paragraph and the question.
    """
    path = _readable(path)
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = "; it looks like JSONL, one question per line: name it .jsonl" if _looks_like_jsonl(text) else ""
        raise InputFileError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}){hint}") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        hint = (" It looks like one JSONL question: name it .jsonl"
                if isinstance(data, dict) and "question" in data and "answers" in data else "")
        raise InputFileError(f"{path}: not SQuAD JSON (expected an object with a 'data' list of articles).{hint}")
    documents: list[tuple[str, str]] = []
    questions: list[GoldQuestion] = []
    seen_ids: dict[str, str] = {}
    used_names: set[str] = set()
    for a, article in enumerate(data["data"], 1):
        where = f"{path}, article {a}"
        if not isinstance(article, dict):
            raise InputFileError(f"{where}: expected an object with 'title' and 'paragraphs'")
        title = article.get("title")
        if title is not None and not isinstance(title, str):
            raise InputFileError(f"{where}: 'title' must be a string (got {_shown(title)})")
        title = title if title and title.strip() else f"article {a}"
        paragraphs = article.get("paragraphs")
        if not isinstance(paragraphs, list):
            raise InputFileError(f"{where}: expected 'title' and 'paragraphs' (a list of paragraphs)")
        contexts = []
        for p, paragraph in enumerate(paragraphs, 1):
            if not isinstance(paragraph, dict) or not isinstance(paragraph.get("context"), str):
                got = _shown(paragraph.get("context", _MISSING) if isinstance(paragraph, dict) else paragraph)
                raise InputFileError(f"{where}, paragraph {p}: expected a 'context' string (got {got})")
            qas = paragraph.get("qas", [])
            if not isinstance(qas, list):
                raise InputFileError(f"{where}, paragraph {p}: 'qas' must be a list of questions (got {_shown(qas)})")
            contexts.append(paragraph["context"])
        name = document_name(title)
        base, n = name[:-4], 2
        while name in used_names:
            name, n = f"{base}-{n}.txt", n + 1
        used_names.add(name)
        header = " ".join(title.replace("_", " ").split())
        text = header
        for context in contexts:
            text += "\n\n" + context
        text += "\n"
        documents.append((name, text))
        for p, paragraph in enumerate(paragraphs):
            for q, qa in enumerate(paragraph.get("qas", []), 1):
                at = f"{where}, paragraph {p + 1}, question {q}"
                question = _squad_question(qa, contexts[p], name, len(questions) + 1, at)
                if question.id in seen_ids:
                    raise InputFileError(f"{at}: duplicate question id '{question.id}' (first used at "
                                         f"{seen_ids[question.id]})")
                seen_ids[question.id] = at[len(str(path)) + 2:]
                questions.append(question)
    if not questions:
        raise InputFileError(f"{path}: no questions in the SQuAD file")
    return documents, questions


def _squad_question(qa: Any, context: str, document: str, number: int, where: str) -> GoldQuestion:
    if not isinstance(qa, dict):
        raise InputFileError(f"{where}: expected an object with id, question and answers (got {_shown(qa)})")
    for key in ("id", "question"):
        if key not in qa:
            raise InputFileError(f"{where}: malformed question (needs id, question, answers with text and "
                                 f"answer_start): no '{key}'")
        if not isinstance(qa[key], str) or not qa[key].strip():
            raise InputFileError(f"{where}: '{key}' must be a non-empty string (got {_shown(qa[key])})")
    qid, text = qa["id"], qa["question"]
    where = f"{where} ({qid})"
    impossible = qa.get("is_impossible")
    if impossible is not None and not isinstance(impossible, bool):
        raise InputFileError(f"{where}: 'is_impossible' must be true or false (got {_shown(impossible)})")
    answers = qa.get("answers")
    if answers is None:
        answers = []
    if not isinstance(answers, list):
        raise InputFileError(f"{where}: 'answers' must be a list (got {_shown(answers)})")
    for i, answer in enumerate(answers, 1):
        if not isinstance(answer, dict) or not isinstance(answer.get("text"), str) or not answer["text"].strip():
            got = _shown(answer.get("text", _MISSING) if isinstance(answer, dict) else answer)
            raise InputFileError(f"{where}: answer {i} needs a non-empty 'text' string (got {got})")
        start = answer.get("answer_start", _MISSING)
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise InputFileError(f"{where}: answer {i} needs an 'answer_start' that is a whole number >= 0 "
                                 f"(got {_shown(start)})")
    if impossible is True:
        if answers:
            raise InputFileError(f"{where}: 'is_impossible' is true but it has answers")
        return GoldQuestion(qid, text, (), (), "unanswerable", number, document, "unanswerable")
    if not answers:
        if impossible is False:
            raise InputFileError(f"{where}: 'is_impossible' is false but it has no answers")
        return GoldQuestion(qid, text, (), (), "unanswerable", number, document, "unanswerable")
    kept = [answer for answer in answers if not _empty_alias(answer["text"])]
    if not kept:
        shown = ", ".join(repr(answer["text"]) for answer in answers)
        raise InputFileError(f"{where}: every answer ({shown}) is empty once normalised (articles and punctuation "
                             "dropped, as exact match does), so abstaining would match it")
    aliases = tuple(dict.fromkeys(answer["text"].strip() for answer in kept))
    first, first_start = kept[0]["text"], kept[0]["answer_start"]
    if context[first_start:first_start + len(first)] != first:
        found = context.find(first)
        if found < 0:
            raise InputFileError(f"{where}: answer '{first}' of {qid} is not in its paragraph")
        first_start = found
    evidence = evidence_sentences(context, first_start, first_start + len(first))
    return GoldQuestion(qid, text, aliases, (evidence,), question_type(text), number, document, None)


_MISSING = object()  # a key that is not there, for _shown


def _shown(value: Any) -> str:
    """A JSON value as a message shows it: its JSON text, cut to 40 characters, or "nothing" when absent."""
    if value is _MISSING:
        return "nothing"
    shown = json.dumps(value, ensure_ascii=False)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def _empty_alias(alias: str) -> bool:
    """Whether an alias normalises to nothing as exact match normalises answers ("The", "A", "—"): the empty
    answer of an abstention would match it."""
    return not normalize_answer(alias)


def _looks_like_jsonl(text: str) -> bool:
    """Several lines that are each a JSON object: a JSONL file (given a .json name)."""
    lines = [line for line in text.splitlines() if line.strip()][:5]
    if len(lines) < 2:
        return False
    try:
        return all(isinstance(json.loads(line), dict) for line in lines)
    except json.JSONDecodeError:
        return False


def _looks_like_squad(path: Path) -> bool:
    """Whether a file is one JSON object with a 'data' list: SQuAD JSON (given a .jsonl name)."""
    try:
        data = json.loads(_read_text(path))
    except (json.JSONDecodeError, InputFileError):
        return False
    return isinstance(data, dict) and isinstance(data.get("data"), list)


def evidence_sentences(paragraph: str, start: int, end: int) -> str:
    """The run of whole sentences of ``paragraph`` that covers ``paragraph[start:end]`` (an exact substring)."""
    spans = _sentence_spans(paragraph)
    covering = [(s, e) for s, e in spans if s < max(end, start + 1) and e > start]
    if not covering:  # the answer falls between sentences (whitespace): the nearest one before it
        covering = [max((span for span in spans if span[0] <= start), default=(0, len(paragraph)))]
    return paragraph[covering[0][0]:covering[-1][1]]


@lru_cache(maxsize=256)  # a SQuAD paragraph has several questions
def _sentence_spans(paragraph: str) -> list[tuple[int, int]]:
    """(start, end) of the sentences of a paragraph, as the indexer splits them."""
    from rag.segment import split_sentences

    spans: list[tuple[int, int]] = []
    cursor = 0
    for sentence in split_sentences(paragraph):
        found = paragraph.find(sentence, cursor)
        if found < 0:
            continue
        spans.append((found, found + len(sentence)))
        cursor = found + len(sentence)
    return spans


# ---------------------------------------------------------------------------------------------- evidence spans


def locate_evidence(
    questions: Sequence[GoldQuestion], documents: dict[str, Document], gold_path: Path | str = "gold file"
) -> dict[str, list[list[Span]]]:
    """Every occurrence of each evidence string in the indexed documents, by exact substring search.

    Returns question id -> one list of occurrences per evidence string; a question that names its
    ``document`` is only looked up in that document. An evidence string found nowhere means the gold set
    does not match the corpus, so the run stops rather than scoring against nothing.
    """
    located: dict[str, list[list[Span]]] = {}
    for question in questions:
        where = f"{gold_path}, {'question' if str(gold_path).lower().endswith('.json') else 'line'} {question.line}"
        searched = documents
        if question.document is not None:
            if question.document not in documents:
                raise InputFileError(f"{where}: document '{question.document}' of {question.id} is not indexed")
            searched = {question.document: documents[question.document]}
        spans_per_evidence = []
        for text in question.evidence:
            occurrences = [
                (doc_id, start, start + len(text))
                for doc_id, document in searched.items()
                for start in _find_all(document.text, text)
            ]
            if not occurrences:
                shown = text if len(text) <= 60 else text[:57] + "..."
                raise InputFileError(
                    f"{where}: evidence \"{shown}\" of {question.id} is not in "
                    f"{'any indexed document' if question.document is None else question.document} "
                    "(evidence must be an exact substring of the article)"
                )
            spans_per_evidence.append(occurrences)
        located[question.id] = spans_per_evidence
    return located


def _find_all(text: str, needle: str) -> Iterator[int]:
    start = text.find(needle)
    while start != -1:
        yield start
        start = text.find(needle, start + 1)
