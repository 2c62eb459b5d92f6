"""The ``rag`` command as a user runs it: a subprocess of the venv's console script, against private copies of
the corpus and index (RAG_CORPUS_DIR / RAG_INDEX_DIR) so the repository's index/ is never touched."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

HEAVY_MODULES = ("torch", "faiss", "sentence_transformers", "transformers", "langchain_core", "gradio", "numpy")


@dataclass(frozen=True)
class CliHome:
    """A private corpus + index copy and the ``rag`` command pointed at it."""

    folder: Path
    executable: str

    @property
    def corpus_dir(self) -> Path:
        return self.folder / "corpus"

    @property
    def index_dir(self) -> Path:
        return self.folder / "index"

    def run(self, *args: str, env: dict[str, str] | None = None, stdin: str | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
        environment = os.environ | {"RAG_CORPUS_DIR": str(self.corpus_dir), "RAG_INDEX_DIR": str(self.index_dir)}
        # cwd is the private folder so that no .env file of the developer's checkout leaks into the settings.
        return subprocess.run([self.executable, *args], env=environment | (env or {}), cwd=cwd or self.folder,
                              input=stdin, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def cli(tmp_path_factory, pipeline, rag_executable) -> CliHome:
    home = CliHome(tmp_path_factory.mktemp("cli"), rag_executable)
    shutil.copytree(pipeline.settings.corpus_dir, home.corpus_dir)
    shutil.copytree(pipeline.settings.index_dir, home.index_dir, symlinks=True)
    return home


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    assert result.returncode == code, result.stderr
    message = result.stderr.strip()
    assert "Traceback" not in result.stderr
    assert len(message.splitlines()) == 1, message
    assert message.startswith("rag: error: ")
    for fragment in fragments:
        assert fragment in message
    assert result.stdout == ""


def test_help_imports_no_heavy_library():
    probe = (
        "import json, sys; from rag.cli import build_parser; build_parser(); "
        f"print(json.dumps([m for m in {list(HEAVY_MODULES)!r} if m in sys.modules]))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(result.stdout) == []


def test_help_runs(cli):
    result = cli.run("--help")
    assert result.returncode == 0
    for command in ("index", "search", "ask", "check", "serve"):
        assert command in result.stdout


@pytest.mark.parametrize(("args", "expected"), [
    (["search", "Ghaani", "--k", "abc"], "rag: error: argument --k: invalid int value: 'abc' (see `rag search --help`)"),
    (["search"], "rag: error: the following arguments are required: query (see `rag search --help`)"),
    (["index"], "rag: error: the following arguments are required: ACTION (see `rag index --help`)"),
])
def test_argument_errors_are_one_line_too(cli, args, expected):
    """argparse printed a usage block before its error line (README: errors are one line)."""
    result = cli.run(*args)
    assert_one_line_error(result, 2)
    assert result.stderr.strip() == expected
    assert cli.run("bogus").stderr.startswith("rag: error: argument COMMAND: invalid choice: 'bogus'")


def test_search_json_contract(cli, article_text):
    result = cli.run("search", "Who replaced Qassem Soleimani?", "--k", "3", "--json")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, "exactly one JSON object"
    payload = json.loads(lines[0])
    assert set(payload) == {"query", "hits"}
    assert payload["query"] == "Who replaced Qassem Soleimani?"
    assert len(payload["hits"]) == 3
    types = {"rank": int, "score": float, "source": str, "start": int, "end": int, "text": str, "chunk_id": str}
    for expected_rank, hit in enumerate(payload["hits"], 1):
        assert set(hit) == set(types)
        for key, kind in types.items():
            assert type(hit[key]) is kind, key
        assert hit["rank"] == expected_rank
        assert article_text[hit["start"] : hit["end"]] == hit["text"]
    assert any("Esmail Ghaani" in hit["text"] for hit in payload["hits"])
    # The query is echoed as it was searched for: control characters as spaces, invisible characters removed
    # (was echoed raw, while `rag ask` and `rag check` echo the cleaned text).
    raw = "Who\x07replaced\u200b Soleimani\u202e?"
    payload = json.loads(cli.run("search", raw, "--k", "1", "--json").stdout)
    assert payload["query"] == "Who replaced Soleimani?"


def test_index_info_json(cli, pipeline):
    result = cli.run("index", "info", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert set(info) == {"format_version", "created", "build_seconds", "embedding", "chunking", "index_type",
                         "counts", "documents", "skipped", "ignored", "path"}
    assert info["skipped"] == [] and info["ignored"] == []
    assert info["counts"] == pipeline.index.manifest["counts"]
    assert info["embedding"]["model_id"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert info["path"] == str(cli.index_dir / "default")


def test_index_info_text(cli):
    result = cli.run("index", "info")
    assert result.returncode == 0, result.stderr
    assert "all-MiniLM-L6-v2" in result.stdout
    assert "2026-03-06-iran-proxies-iraq.txt" in result.stdout
    assert re.search(r"pieces +[\d,]+ word-piece vectors for the answerer's token matches \(\d+\.\d MB\)", result.stdout)
    assert re.search(r"words +[\d,]+ vocabulary words with their vectors for the answerer's soft word matches "
                     r"\(\d+\.\d MB\)\n", result.stdout)


@pytest.mark.parametrize("query", ["", "   "])
def test_empty_query_exits_2(cli, query):
    assert_one_line_error(cli.run("search", query), 2, "query is empty")


def test_adding_a_missing_file_exits_3_and_leaves_the_index(cli):
    manifest_before = (cli.index_dir / "default" / "manifest.json").read_bytes()
    missing = cli.folder / "no-such-file.txt"
    assert_one_line_error(cli.run("index", "add", str(missing)), 3, "no-such-file.txt", "no such file")
    assert (cli.index_dir / "default" / "manifest.json").read_bytes() == manifest_before
    assert sorted(p.name for p in cli.corpus_dir.iterdir()) == ["2026-03-06-iran-proxies-iraq.txt"]


# ---------------------------------------------------------------------------------------------- rag eval --report


def test_eval_refuses_a_report_folder_it_cannot_create_before_the_run(cli, tmp_path):
    (tmp_path / "afile").write_text("not a folder\n", encoding="utf-8")
    gold = Path(__file__).resolve().parent.parent / "eval" / "gold.jsonl"
    for run in (["--gold", str(gold), "--no-baseline"], ["--claims", str(gold.parent / "claims.jsonl")]):
        result = cli.run("eval", *run, "--report", "afile/sub", cwd=tmp_path)
        assert_one_line_error(result, 2)
        assert result.stderr == "rag: error: --report afile/sub: cannot create the folder, afile is not a folder\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


# ---------------------------------------------------------------------------------------------- rag chat

CHAT_HELP_LINES = ["commands:", "  /reset   start a new conversation", "  /help    list these commands",
                   "  /quit    leave (/exit too, or the end of the input)",
                   'any other line is a question (a line of "/" and a word that is no command is refused)']
UNKNOWN_COMMAND = "rag: error: unknown command /rset (the commands are /reset, /help, /quit and /exit)"


def test_chat_commands_are_never_asked_as_questions(cli):
    lines = "Who replaced Qassem Soleimani?\n/help\n/rset\n/reset now\n/exit\nWho is Ghaani?\n"
    result = cli.run("chat", stdin=lines)
    assert result.returncode == 2, result.stderr  # the mistyped commands, as a refused question would
    assert result.stderr.splitlines() == [
        UNKNOWN_COMMAND, "rag: error: /reset takes nothing after it (the commands are /reset, /help, /quit and /exit)"]
    assert "Esmail Ghaani" in result.stdout
    help_at = result.stdout.index("commands:\n")
    assert result.stdout[help_at:].splitlines()[: len(CHAT_HELP_LINES)] == CHAT_HELP_LINES
    # One question answered: /help, /rset and "/reset now" were not asked, and /exit left before the last line.
    assert result.stdout.count("(confidence ") + result.stdout.count("(no answer") == 1


def test_chat_json_reports_an_unknown_command_as_an_error_record(cli):
    result = cli.run("chat", "--json", stdin="Who replaced Qassem Soleimani?\n/help\n/rset\n/quit\n")
    assert result.returncode == 2
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 2 and "Esmail Ghaani" in records[0]["answer"]
    assert records[1] == {"question": "/rset", "error": UNKNOWN_COMMAND.removeprefix("rag: error: ")}
    assert result.stderr.splitlines() == CHAT_HELP_LINES  # stdout keeps only JSON records


# ---------------------------------------------------------------------------------------------- settings


def test_a_misspelled_setting_is_warned_about_and_the_default_used(cli):
    result = cli.run("search", "Who replaced Qassem Soleimani?", "--json", env={"RAG_TOPK": "3"})
    assert result.returncode == 0, result.stderr
    assert result.stderr == "rag: warning: unknown setting RAG_TOPK (did you mean RAG_TOP_K?)\n"
    assert len(json.loads(result.stdout)["hits"]) == 5  # the default top_k: a warning, not an error


def test_a_misspelled_setting_in_env_file_is_warned_about_naming_the_file(cli):
    env_file = cli.folder / ".env"
    env_file.write_text("RAG_TOPK=3\nRAG_TOP_K=2\n", encoding="utf-8")
    try:
        result = cli.run("search", "Who replaced Qassem Soleimani?", "--json")
    finally:
        env_file.unlink()
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"rag: warning: unknown setting RAG_TOPK in {env_file} (did you mean RAG_TOP_K?)\n"
    assert len(json.loads(result.stdout)["hits"]) == 2  # the file's correctly spelled setting still applies


# ---------------------------------------------------------------------------------------------- rag serve


@pytest.fixture
def busy_port():
    """A loopback port another process listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_serve_on_a_busy_port_is_a_one_line_usage_error(cli, busy_port):
    result = cli.run("serve", "--port", str(busy_port))
    assert_one_line_error(result, 2)
    assert result.stderr == f"rag: error: port {busy_port} on 127.0.0.1 is already in use\n"
    result = cli.run("serve", "--port", "0", "--workers", "2", "--ui-port", str(busy_port))
    assert result.stderr == f"rag: error: port {busy_port} (--ui-port) on 127.0.0.1 is already in use\n"
    assert result.returncode == 2


def test_index_add_says_replaced_and_info_json_lists_ignored_files(indexed_settings, rag_executable, tmp_path):
    """`--replace` printed "added", and `index info --json` left out the unsupported files the text lists."""
    from tests.test_bad_inputs import RagHome

    home = RagHome(indexed_settings.corpus_dir.parent, rag_executable)
    (indexed_settings.corpus_dir / "notes.docx").write_bytes(b"PK\x03\x04 not a document type rag reads")
    update = tmp_path / "2026-03-06-iran-proxies-iraq.txt"
    update.write_text((indexed_settings.corpus_dir / update.name).read_text(encoding="utf-8")
                      + "\n\nA paragraph added to the article later.\n", encoding="utf-8")
    new = tmp_path / "ferry.txt"
    new.write_text("The ferry runs every hour, the mayor said.\n", encoding="utf-8")
    result = home.run("index", "add", "--replace", str(update), str(new))
    assert result.returncode == 0, result.stderr
    assert f"replaced {update.name}" in result.stdout and "added ferry.txt" in result.stdout
    (indexed_settings.corpus_dir / "archive").mkdir()
    info = json.loads(home.run("index", "info", "--json").stdout)
    assert info["ignored"] == [
        {"id": "notes.docx", "reason": "unsupported file type, not indexed"},
        {"id": "archive", "reason": "subfolder, not indexed: only files directly in the corpus folder are"}]
    text = home.run("index", "info").stdout
    assert "ignored   notes.docx (unsupported file type, not indexed)" in text
    assert "ignored   archive (subfolder, not indexed: only files directly in the corpus folder are)" in text


def test_piped_answers_mark_the_short_answer_unless_the_text_has_its_own_markdown(capsys):
    """A Markdown document's **bold** quoted in an answer mixed with the CLI's **short answer** marks."""
    from types import SimpleNamespace

    from rag.cli import _print_answer

    def printed(text: str, short: str) -> str:
        answer = SimpleNamespace(answer=text, short_answer=short, abstained=False, confidence=0.5,
                                 backend="extractive", prompt_tokens=None, citations=[], warnings=[], checks=[])
        _print_answer(answer)
        return capsys.readouterr().out.splitlines()[0]

    assert printed("Esmail Ghaani replaced him. [1]", "Esmail Ghaani") == "**Esmail Ghaani** replaced him. [1]"
    assert printed("The **Karsten Solar Park** opened. [1]", "Karsten Solar Park") == \
        "The **Karsten Solar Park** opened. [1]"
