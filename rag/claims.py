"""Checking a claim or a quote against the corpus: the passages that best support it, with a verdict and its
reason (the verdicts come from ``rag.verify``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from rag.text import normalize
from rag.types import CheckResult, Evidence
from rag.verify import UNSUPPORTED, Verdict, quotes, rank

if TYPE_CHECKING:
    from rag.index import Index
    from rag.types import Sentence


def check_claim(claim: str, index: Index, candidates: set[int], judge: Callable[[str, str], Verdict]) -> CheckResult:
    """Judge the claim against each candidate sentence (and the sentence with the one before it in its
    paragraph), plus every sentence that holds a quote of the claim verbatim; the best three spans are the
    evidence."""
    candidates = set(candidates)
    for quote in quotes(claim):
        needle = re.sub(r"\W+", " ", normalize(quote).lower()).strip()
        for s in index.sentences:
            if needle and needle in re.sub(r"\W+", " ", normalize(s.text).lower()):
                candidates.add(s.id)
    judged: list[tuple[Verdict, list[Sentence]]] = []
    for sid in sorted(candidates):
        s = index.sentences[sid]
        spans = [[s]]
        prev = index.sentences[sid - 1] if sid > 0 else None
        if prev is not None and prev.source == s.source and prev.paragraph == s.paragraph:
            spans.append([prev, s])
        for group in spans:
            judged.append((judge(claim, " ".join(x.text for x in group)), group))
    if not judged:
        return CheckResult(claim, UNSUPPORTED, "no passage of the corpus relates to this claim", [])
    judged.sort(key=lambda vg: (-rank(vg[0].verdict), -vg[0].score, len(vg[1])))
    best_verdict, best_group = judged[0]
    passages, seen = [], set()
    for verdict, group in judged:
        first, last = group[0], group[-1]
        key = (first.source, first.start, last.end)
        if key in seen:
            continue
        seen.add(key)
        doc = index.documents[first.source]
        passages.append(Evidence(first.source, first.start, last.end, doc.text[first.start : last.end],
                                 round(verdict.score, 4)))
        if len(passages) == 3:
            break
    return CheckResult(claim, best_verdict.verdict, best_verdict.reason, passages)
