"""Prompt templates are files in the top-level ``prompts/`` package, shipped inside the wheel as package
data and read through ``importlib.resources`` (``RAG_PROMPTS_DIR`` overrides the folder). They are filled
with strict templating: ``$name`` placeholders (string.Template) must all be provided, and every value
provided must be used, so a renamed variable fails loudly instead of producing a silently broken prompt.

Passages are document text, so they are fenced with a tag that carries a random token chosen per request:
a document cannot close a fence whose name it cannot know.
"""

from __future__ import annotations

import os
import re
import secrets
from functools import lru_cache
from importlib import resources
from pathlib import Path
from string import Template


class PromptError(KeyError):
    pass


def _prompt_text(name: str) -> str:
    override = os.environ.get("RAG_PROMPTS_DIR")
    if override:
        return (Path(override) / f"{name}.txt").read_text(encoding="utf-8")
    return resources.files("prompts").joinpath(f"{name}.txt").read_text(encoding="utf-8")


@lru_cache(maxsize=32)
def load_template(name: str) -> Template:
    return Template(_prompt_text(name))


def render(name: str, **values: str) -> str:
    template = load_template(name)
    wanted = {m.group("named") or m.group("braced") for m in template.pattern.finditer(template.template)} - {None}
    missing, unused = wanted - values.keys(), values.keys() - wanted
    if missing or unused:
        raise PromptError(f"prompt '{name}': missing {sorted(missing)}, unused {sorted(unused)}")
    return template.substitute(values)


def sections(name: str) -> dict[str, str]:
    """A prompt file cut into ``### name`` sections (the worked example: passages, question, answer)."""
    found: dict[str, list[str]] = {}
    current = None
    for line in _prompt_text(name).splitlines():
        heading = re.fullmatch(r"###\s+(\w+)\s*", line)
        if heading:
            current = found.setdefault(heading.group(1), [])
        elif current is not None:
            current.append(line)
    if not found:
        raise PromptError(f"prompt '{name}': no '### section' headings")
    return {key: "\n".join(lines).strip() for key, lines in found.items()}


_FENCE_LIKE = re.compile(r"<\s*/?\s*passages?\b[^<>]*>", re.IGNORECASE)


def fence(text: str) -> str:
    """Remove anything in document text that looks like a passages tag, repeatedly: removing one tag must
    not join its neighbours into another ("<</passages>/passages>")."""
    while True:
        cleaned = _FENCE_LIKE.sub("", text)
        if cleaned == text:
            return cleaned
        text = cleaned


def fence_tag(*texts: str) -> str:
    """A fence name no given text contains: ``passages-<random hex>``."""
    while True:
        tag = f"passages-{secrets.token_hex(6)}"
        if not any(tag in text for text in texts):
            return tag
