"""`rag index push` and `rag index info` name the PostgreSQL store they describe (a tester's findings: after a
push from a machine whose RAG_STORE is local, info said "at local"; `--json` gave only the local path)."""

from __future__ import annotations

import json
import os
import subprocess

from tests.test_cli import assert_one_line_error
from tests.test_pgstore import pg_url  # noqa: F401 - the session's PostgreSQL server fixture


def test_push_names_the_store_it_pushed_to(tmp_path, pg_url, rag_executable, pipeline):  # noqa: F811
    settings = pipeline.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")} | {"RAG_STORE": "local"}
    where = ["--corpus-dir", str(settings.corpus_dir), "--index-dir", str(settings.index_dir),
             "--index-name", "default"]
    done = subprocess.run([rag_executable, "index", "push", "--store", pg_url, *where], capture_output=True,
                          text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].startswith("index default at postgresql://postgres@127.0.0.1:"), lines[:2]
    assert lines[1].endswith("(schema rag_default)")
    done = subprocess.run([rag_executable, "index", "push", "--store", pg_url, "--json", *where],
                          capture_output=True, text=True, env=env, timeout=180)
    stored = json.loads(done.stdout)["store"]
    assert stored["schema"] == "rag_default" and stored["url"].startswith("postgresql://postgres@127.0.0.1:")
    info = subprocess.run([rag_executable, "index", "info", "--json", *where], capture_output=True, text=True,
                          env={**env, "RAG_STORE": pg_url}, timeout=180)
    assert json.loads(info.stdout)["store"] == stored


def test_push_without_a_local_index_says_how_to_build_one(tmp_path, rag_executable):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")} | {"RAG_STORE": "postgresql://u@127.0.0.1:1/x"}
    result = subprocess.run([rag_executable, "index", "push", "--store", "postgresql://u@127.0.0.1:1/x",
                             "--index-dir", str(tmp_path / "none"), "--corpus-dir", str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert_one_line_error(result, 2, "no local index default at", "`RAG_STORE=local rag index build` first")
