"""Prompt templates live as files in ``prompts/``; they are filled with strict templating.

``$name`` placeholders (string.Template) must all be provided, and every value provided must be used,
so a renamed variable fails loudly instead of producing a silently broken prompt.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from string import Template

from rag.settings import PROJECT_ROOT

PROMPTS_DIR = Path(os.environ.get("RAG_PROMPTS_DIR", PROJECT_ROOT / "prompts"))


class PromptError(KeyError):
    pass


@lru_cache(maxsize=32)
def load_template(name: str) -> Template:
    return Template((PROMPTS_DIR / f"{name}.txt").read_text(encoding="utf-8"))


def render(name: str, **values: str) -> str:
    template = load_template(name)
    wanted = {m.group("named") or m.group("braced") for m in template.pattern.finditer(template.template)} - {None}
    missing, unused = wanted - values.keys(), values.keys() - wanted
    if missing or unused:
        raise PromptError(f"prompt '{name}': missing {sorted(missing)}, unused {sorted(unused)}")
    return template.substitute(values)


def fence(text: str) -> str:
    """Neutralise anything in document text that could close our data fence."""
    return re.sub(r"</?passages?>", "", text, flags=re.IGNORECASE)
