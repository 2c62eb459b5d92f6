"""Issue 14: file names with control characters, a corpus of duplicates (item 13) and the limits on what one
document may cost, reproduced through the real components (the ``rag`` command on private copies of the corpus
and index where the CLI is the point, the library elsewhere)."""

from __future__ import annotations

import pytest

from tests.test_hostile_inputs import home  # noqa: F401 (fixture)

ARTICLE_NAME = "2026-03-06-iran-proxies-iraq.txt"


# ------------------------------------------------------------------ a newline in a file name


@pytest.mark.slow
def test_a_newline_in_a_file_name_is_never_printed_raw(home):  # noqa: F811
    """A file put straight into the corpus folder (``rag index add`` refuses such names): `rag index info`
    lists it escaped, and the stale-index warning and a refusal naming it stay one line each."""
    corpus = home.folder / "corpus"
    (corpus / "evil\nname.txt").write_text("date 2026-01-01\n\nThe mayor of Springfield opened a bridge on Monday.\n",
                                          encoding="utf-8")
    result = home.run("index", "info")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "rag: index 'default' is stale (corpus changed (added: evil\\nname.txt)): rebuilding"]
    assert "  - 'evil\\nname.txt'  date=2026-01-01" in result.stdout
    assert all(line.startswith(("index ", "  ")) for line in result.stdout.splitlines())
    (corpus / "empty\none.txt").write_bytes(b"")
    result = home.run("index", "info")
    assert result.returncode == 3
    assert result.stderr.splitlines()[-1] == "rag: error: empty\\none.txt: file is empty"
    assert all(line.startswith("rag: ") for line in result.stderr.splitlines())
