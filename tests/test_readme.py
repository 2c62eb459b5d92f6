"""The README's settings table is generated from ``Settings.model_fields``; this keeps the two in step.

Regenerate the table with ``.venv/bin/python tests/test_readme.py`` and paste it under "## Settings".
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _shown_default(value) -> str:
    from rag.settings import PROJECT_ROOT

    if isinstance(value, Path):
        if value.is_relative_to(PROJECT_ROOT):
            return f"`{value.relative_to(PROJECT_ROOT).as_posix()}`"
        if value.is_relative_to(Path.home()):
            return f"`~/{value.relative_to(Path.home()).as_posix()}`"
    return "(none)" if value is None else f"`{value}`"


SECTION_TITLES = {
    "index": "Index: what is indexed, with which model, and how it is cut into passages",
    "answer": "Answering: retrieval, the answer backend, limits on questions",
    "server": "Server: the web app and its API (`rag serve`)",
}


def settings_table() -> str:
    """One table per section of ``Settings.SECTIONS``, each under a bold title."""
    from rag.settings import Settings

    prefix = Settings.model_config["env_prefix"]
    tables = []
    for section, names in Settings.SECTIONS.items():
        rows = [f"**{SECTION_TITLES[section]}**", "",
                "| setting | environment variable | default | what it does |", "|---|---|---|---|"]
        for name in names:
            field = Settings.model_fields[name]
            description = (field.description or "").replace("|", "\\|")
            rows.append(f"| `{name}` | `{prefix}{name.upper()}` | {_shown_default(field.default)} | {description} |")
        tables.append("\n".join(rows))
    return "\n\n".join(tables)


def test_every_setting_is_in_exactly_one_section_in_field_order():
    from rag.settings import Settings

    listed = [name for names in Settings.SECTIONS.values() for name in names]
    assert listed == list(Settings.model_fields)
    assert set(Settings.SECTIONS) == set(SECTION_TITLES)


def test_settings_keep_their_environment_names(monkeypatch):
    """Grouping the settings renamed no RAG_* variable: each field still reads RAG_<NAME>."""
    from rag.settings import Settings

    monkeypatch.setenv("RAG_TOP_K", "7")
    monkeypatch.setenv("RAG_EMBED_BACKEND", "torch")
    monkeypatch.setenv("RAG_MAX_QUEUE", "3")
    monkeypatch.setenv("RAG_CHUNK_SENTENCES", "2")
    settings = Settings(_env_file=None)
    assert (settings.top_k, settings.embed_backend, settings.max_queue, settings.chunk_sentences) == (7, "torch", 3, 2)


def test_readme_settings_table_matches_the_settings():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert settings_table() in readme, (
        "README settings table is out of date; regenerate it with `.venv/bin/python tests/test_readme.py`"
    )


def test_readme_quick_start_is_two_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = quick_start.split("```", 2)[1]
    commands = [line for line in block.splitlines()[1:] if line.strip()]
    assert commands == ["make run", "make test"]


if __name__ == "__main__":
    print(settings_table())
