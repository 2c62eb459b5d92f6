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


def settings_table() -> str:
    from rag.settings import Settings

    prefix = Settings.model_config["env_prefix"]
    rows = ["| setting | environment variable | default | what it does |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{name}` | `{prefix}{name.upper()}` | {_shown_default(field.default)} | {description} |")
    return "\n".join(rows)


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
