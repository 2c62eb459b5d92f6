"""Settings read from the environment and .env: a RAG_* variable that names no setting (a misspelled one) is
reported with the setting it probably meant, and never refused. Through ``rag`` itself: tests/test_cli.py."""

from __future__ import annotations

import argparse

import pytest

import rag.cli
from rag.cli import build_parser, make_settings
from rag.settings import OTHER_VARIABLES, Settings, unknown_settings


def test_a_misspelled_variable_is_named_with_the_setting_it_probably_meant(tmp_path):
    environ = {"RAG_TOPK": "3", "RAG_EMBEDMODEL": "x", "RAG_LLM_TIMOUT": "9", "PATH": "/bin", "RAGE": "1"}
    assert unknown_settings(environ, env_file=tmp_path / ".env") == [
        "unknown setting RAG_EMBEDMODEL (did you mean RAG_EMBED_MODEL?)",
        "unknown setting RAG_LLM_TIMOUT (did you mean RAG_LLM_TIMEOUT?)",
        "unknown setting RAG_TOPK (did you mean RAG_TOP_K?)",
    ]


def test_an_unknown_variable_far_from_every_setting_is_named_alone():
    assert unknown_settings({"RAG_HOME": "/opt/other-tool"}, env_file=None) == ["unknown setting RAG_HOME"]


def test_settings_and_the_projects_other_variables_are_known_whatever_their_case(tmp_path):
    environ = {f"RAG_{name.upper()}": "x" for name in Settings.model_fields} | dict.fromkeys(OTHER_VARIABLES, "1")
    environ |= {"rag_top_k": "3", "Rag_Backend": "extractive"}  # pydantic-settings ignores the case of names
    (tmp_path / ".env").write_text("RAG_TOP_K=3\nrag_index_name=x\nOPENAI_API_KEY=sk-test\n", encoding="utf-8")
    assert unknown_settings(environ, env_file=tmp_path / ".env") == []


def test_the_env_file_is_checked_and_named(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("# comment\nexport RAG_BAKEND=ollama:llama3.1\nRAG_TOP_K=4\nRAG_TOPK=3\n", encoding="utf-8")
    assert unknown_settings({"RAG_TOPK": "2"}, env_file=env_file) == [  # named once, from the environment first
        "unknown setting RAG_TOPK (did you mean RAG_TOP_K?)",
        f"unknown setting RAG_BAKEND in {env_file} (did you mean RAG_BACKEND?)",
    ]


def test_an_unreadable_env_file_is_left_to_the_settings_to_report(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_bytes(b"RAG_TOPK=3\nRAG_BACKEND=caf\xe9\n")
    assert unknown_settings({}, env_file=env_file) == []  # Settings() then names the file (exit 2)


def test_rag_warns_once_per_process_and_keeps_going(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(rag.cli, "_warned", set())
    monkeypatch.setenv("RAG_TOPK", "3")
    args: argparse.Namespace = build_parser().parse_args(["search", "Ghaani"])
    first, second = make_settings(args), make_settings(args)
    assert first.top_k == second.top_k == Settings.model_fields["top_k"].default  # a warning, not an error
    assert capsys.readouterr().err == "rag: warning: unknown setting RAG_TOPK (did you mean RAG_TOP_K?)\n"


def test_the_warning_comes_before_an_invalid_setting_error(tmp_path, monkeypatch, capsys):
    from rag.errors import UsageError

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(rag.cli, "_warned", set())
    monkeypatch.setenv("RAG_TOPK", "3")
    monkeypatch.setenv("RAG_TOP_K", "zero")
    with pytest.raises(UsageError, match="^invalid setting top_k"):
        make_settings(build_parser().parse_args(["search", "Ghaani"]))
    assert capsys.readouterr().err == "rag: warning: unknown setting RAG_TOPK (did you mean RAG_TOP_K?)\n"
