"""The bad-input matrix, through the real ``rag`` command (a subprocess of the venv's console script).

Every case states its exact outcome: the one-line stderr message naming the problem, the documented exit
code (2 usage, 3 input file, 7 answer backend), no traceback, and nothing already indexed lost: an autouse
fixture compares the live build, its manifest and chunks and the corpus folder before and after each test.

Already covered elsewhere, and not repeated here: an empty or blank ``rag search`` query and a missing file
for ``rag index add`` (tests/test_cli.py); the same file checks at the API level, with the index object
itself unchanged (tests/test_index.py::test_bad_file_is_rejected_and_index_untouched); the API's own
question checks (tests/test_answers.py::test_bad_questions_are_usage_errors).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import make_dir, make_settings, write_file
from tests.openai_stub import OpenAIStub
from tests.test_cli import assert_one_line_error
from tests.test_index import minimal_pdf, snapshot

USAGE, INPUT_FILE, BACKEND = 2, 3, 7
MAX_QUESTION_CHARS = 2000  # the default RAG_MAX_QUESTION_CHARS


@dataclass(frozen=True)
class RagHome:
    """Private copies of the session's corpus and index, and the ``rag`` command pointed at them."""

    folder: Path
    executable: str

    @property
    def settings(self):
        return make_settings(self.folder)

    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return os.environ | {"RAG_CORPUS_DIR": str(self.folder / "corpus"),
                             "RAG_INDEX_DIR": str(self.folder / "index")} | (extra or {})

    def run(self, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        # Bytes in and out: some cases feed bytes that are not UTF-8. cwd is the private folder, so no .env
        # of the developer's checkout leaks into the settings.
        result = subprocess.run([self.executable, *args], input=stdin or b"", env=self.environment(env),
                                cwd=self.folder, capture_output=True, timeout=timeout)
        return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode("utf-8"),
                                           result.stderr.decode("utf-8"))


@pytest.fixture(scope="module")
def home(tmp_path_factory, pipeline, rag_executable) -> RagHome:
    folder = tmp_path_factory.mktemp("bad-inputs")
    shutil.copytree(pipeline.settings.corpus_dir, folder / "corpus")
    shutil.copytree(pipeline.settings.index_dir, folder / "index", symlinks=True)
    return RagHome(folder, rag_executable)


@pytest.fixture(autouse=True)
def nothing_indexed_is_lost(home):
    before = snapshot(home.settings)
    yield
    assert snapshot(home.settings) == before, "a refused input changed the index or the corpus"


def assert_error_line(result: subprocess.CompletedProcess, code: int, expected: str) -> None:
    """Exactly one stderr line, equal to ``rag: error: <expected>``, and nothing on stdout."""
    assert_one_line_error(result, code)
    assert result.stderr.strip() == f"rag: error: {expected}"


# ---------------------------------------------------------------------------------------------- questions


@pytest.mark.parametrize("question", ["", " \t  "], ids=["empty", "whitespace"])
@pytest.mark.slow
def test_empty_question_is_a_usage_error(home, question):
    assert_error_line(home.run("ask", question), USAGE, "question is empty")


# One process answers every line of standard input and reports a bad line for that line only. The 200,000-
# character question has to come this way: Linux refuses a single argument over 128 KiB before rag starts.
QUESTION_LINES = [
    ("Who replaced Qassem Soleimani?", "Esmail Ghaani"),
    ("\u200b\u2060\x00\x07", "question is empty"),  # only invisible and control characters
    ("a" * 200_000, f"question is 200,000 characters; the limit is {MAX_QUESTION_CHARS:,} (RAG_MAX_QUESTION_CHARS)"),
    ("", None),  # blank lines are skipped, not errors
    ("Who replaced\x00 Qassem Sole\u200bimani?\x1b", "Esmail Ghaani"),  # NUL, ESC, zero-width inside a name
    ("\u202eWho replaced Qassem Soleimani? \U0001f600\U0001f44d\U0001f3fd", "Esmail Ghaani"),  # RTL override, emoji
    (b"Who replaced \xff\xfe Qassem Soleimani?", "question is not valid UTF-8 text"),  # Latin-1 / UTF-16 bytes
    ("How many fighters does the Popular Mobilization Forces have?", "150,000"),  # later lines still answered
]


def _stdin_of(lines) -> bytes:
    return b"\n".join(line if isinstance(line, bytes) else line.encode("utf-8") for line, _ in lines) + b"\n"


@pytest.mark.slow
def test_question_lines_are_cleaned_answered_or_rejected_one_by_one(home):
    result = home.run("ask", "--json", "-", stdin=_stdin_of(QUESTION_LINES))
    assert result.returncode == USAGE, result.stderr
    assert result.stderr == "" and "Traceback" not in result.stdout
    records = [json.loads(line) for line in result.stdout.splitlines()]
    expected = [(line, outcome) for line, outcome in QUESTION_LINES if outcome is not None]
    assert len(records) == len(expected)
    for record, (line, outcome) in zip(records, expected, strict=True):
        if outcome.startswith("question "):
            assert record["error"] == outcome, record
            assert set(record) == {"question", "error"}
            if isinstance(line, bytes):  # echoed with U+FFFD for the undecodable bytes: the output stays UTF-8
                assert record["question"] == line.decode("utf-8", "replace")
        else:
            assert "error" not in record and not record["abstained"], record
            assert outcome in record["answer"]
            # What was answered is the cleaned question: no control, invisible or pictograph character left.
            assert record["question"] in ("Who replaced Qassem Soleimani?", line)
            assert record["question"].isprintable() and record["question"].isascii()


@pytest.mark.slow
def test_question_line_errors_name_the_line_on_stderr(home):
    result = home.run("ask", "-", stdin=_stdin_of(QUESTION_LINES))
    assert result.returncode == USAGE
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.splitlines() == [
        "rag: error: line 2: question is empty",
        f"rag: error: line 3: question is 200,000 characters; the limit is {MAX_QUESTION_CHARS:,} "
        "(RAG_MAX_QUESTION_CHARS)",
        "rag: error: line 7: question is not valid UTF-8 text",
    ]
    assert result.stdout.count("Esmail Ghaani") >= 3 and "150,000" in result.stdout
    assert "Q: Who replaced Qassem Soleimani?\n" in result.stdout  # echoed as cleaned, not with the NUL/RTL marks


# ---------------------------------------------------------------------------------------------- backends


def test_unknown_backend_is_a_usage_error(home):
    result = home.run("ask", "--backend", "gpt-5-turbo-max", "Who is A.J.?")
    assert_error_line(result, USAGE, "unknown backend 'gpt-5-turbo-max'; expected extractive | openai:MODEL | "
                                     "ollama:MODEL | openai-compatible:BASE_URL[#MODEL] "
                                     "(e.g. openai-compatible:http://127.0.0.1:8000/v1#llama-3.1-8b)")


@pytest.fixture
def closed_port():
    """A loopback port that refuses connections: bound (so nothing else takes it) but never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.slow
def test_unreachable_llm_endpoint_exits_7(home, closed_port):
    url = f"http://127.0.0.1:{closed_port}/v1"
    result = home.run("ask", "--backend", f"openai-compatible:{url}#tiny", "Who is A.J.?",
                      env={"RAG_LLM_TIMEOUT": "5"})
    assert_error_line(result, BACKEND, f"LLM backend 'openai-compatible:{url}#tiny' at {url} failed: "
                                       "OpenAIConnectionError: Connection error.; answer offline with "
                                       "--backend extractive (RAG_BACKEND=extractive)")


@pytest.mark.slow
def test_slow_llm_endpoint_times_out_and_exits_7(home):
    # The stub would answer after 30 s; with RAG_LLM_TIMEOUT=1 the command gives up long before (the client
    # retries once), so the subprocess timeout of 25 s is a bound, not a measurement.
    with OpenAIStub("Too late [1].", delay=30) as server:
        result = home.run("ask", "--backend", f"openai-compatible:{server.url}#tiny", "Who is A.J.?",
                          env={"RAG_LLM_TIMEOUT": "1"}, timeout=25)
    # RAG_LLM_TIMEOUT still works: it sets the first-token limit, which is what runs out here.
    assert_error_line(result, BACKEND, f"LLM backend 'openai-compatible:{server.url}#tiny' at {server.url} "
                                       "timed out: sent no first token within 1 s (RAG_LLM_FIRST_TOKEN_TIMEOUT; it "
                                       "may still be reading the passages: a local model on a CPU needs time); "
                                       "answer offline with --backend extractive (RAG_BACKEND=extractive)")
    assert 1 <= len(server.requests) <= 2  # the request, and at most the one retry


# ---------------------------------------------------------------------------------------------- files


# name -> (make the file in a folder, the exact message after "rag: error: " ({path} is the path given)).
BAD_FILES = {
    "empty": (lambda d: write_file(d / "empty.txt", b""), "empty.txt: file is empty"),
    "binary": (lambda d: write_file(d / "image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))),
               "image.txt: looks binary, not text"),
    "not utf-8": (lambda d: write_file(d / "latin1.txt", "Café in Erbil, naïve résumé.".encode("latin-1")),
                  "latin1.txt: not valid UTF-8 text (byte 3); save it as UTF-8"),
    "oversized": (lambda d: write_file(d / "huge.txt", b"A long sentence about Baghdad. " * 700),  # 21.7 kB
                  "huge.txt: 0.0217 MB exceeds the 0.01 MB limit (RAG_MAX_FILE_MB)"),
    "truncated pdf": (lambda d: write_file(d / "broken.pdf", minimal_pdf(["A sentence about Basra."])[:200]),
                      "broken.pdf: damaged or truncated PDF (PdfStreamError)"),
    "html without main text": (
        lambda d: write_file(d / "nav.html", b"<html><head><script>var x = 1;</script></head><body><nav></nav></body></html>"),
        "nav.html: no readable main text found in the HTML"),
    "html tag soup": (lambda d: write_file(d / "soup.html", b"<<<<>>>> ))(( <div <p </"),
                      "soup.html: no readable main text found in the HTML"),
    "html without markup": (lambda d: write_file(d / "plain.html", b"Just a sentence, no markup at all."),
                            "plain.html: does not look like HTML"),
    "directory": (lambda d: make_dir(d / "folder.txt"), "{path}: is a directory, not a document"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
@pytest.mark.slow
def test_bad_file_is_refused_by_index_add(home, tmp_path, kind):
    make, message = BAD_FILES[kind]
    path = make(tmp_path)
    result = home.run("index", "add", str(path), env={"RAG_MAX_FILE_MB": "0.01"})
    assert_error_line(result, INPUT_FILE, message.format(path=path))


# ---------------------------------------------------------------------------------------------- gold files

VALID_GOLD = {"id": "q1", "question": "Who replaced Qassem Soleimani?", "answers": ["Esmail Ghaani"],
              "evidence": ["Soleimani's replacement, Esmail Ghaani"], "type": "who"}


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"id": "q2", "question": ', "not valid JSON (Expecting value at column 26)"),
        (json.dumps({k: v for k, v in VALID_GOLD.items() if k != "answers"} | {"id": "q2"}),
         "keys must be id, question, answers, evidence, type, optionally style, document (missing answers)"),
        (json.dumps(VALID_GOLD | {"id": "q2", "question": "   "}), "'question' must be a non-empty string"),
        (json.dumps(VALID_GOLD | {"id": "q2", "evidence": ["Not a sentence of the article"]}),
         'evidence "Not a sentence of the article" of q2 is not in any indexed document '
         "(evidence must be an exact substring of the article)"),
    ],
    ids=["broken-json", "missing-key", "blank-question", "evidence-not-in-corpus"],
)
@pytest.mark.slow
def test_malformed_gold_line_is_named_with_its_line_number(home, tmp_path, bad_line, message):
    gold = tmp_path / "gold.jsonl"
    # Line 2 is blank (allowed), so the bad record is on line 3.
    gold.write_text(json.dumps(VALID_GOLD) + "\n\n" + bad_line + "\n", encoding="utf-8")
    result = home.run("eval", "--gold", str(gold), "--no-baseline")
    assert_error_line(result, INPUT_FILE, f"{gold}, line 3: {message}")
