"""Sentence splitting time against document length: whole blocks given to pysbd (how rag split before issue 14)
versus rag.segment (pysbd on at most ``WINDOW`` characters at a time). A plain script, never part of the tests:

    .venv/bin/python bench/segment_scaling.py              # lines up to 1,000,000 (about a minute)
    .venv/bin/python bench/segment_scaling.py --max 64000

The input is the probe's: one block of short lines, ``''.join(f'w{i % 97}\\n' for i in range(n))`` (one million
lines is 3.9 MB). The old way stops being measured once one run takes longer than ``--old-limit`` seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag import segment  # noqa: E402
from rag.types import Document  # noqa: E402


def whole_block(text: str) -> int:
    """The old way: every block handed to pysbd whole."""
    return sum(len(segment._pysbd_spans(text, s, e)) for s, e, _ in segment.paragraphs(_doc(text)))


def _doc(text: str) -> Document:
    return Document("lines.txt", text, "lines", None, "-", "txt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max", type=int, default=1_000_000, help="most lines")
    parser.add_argument("--old-limit", type=float, default=30.0, help="stop timing the old way beyond this (s)")
    args = parser.parse_args()
    sizes = [2000]
    while sizes[-1] * 2 < args.max:
        sizes.append(sizes[-1] * 2)
    sizes.append(args.max)
    old_done = False
    print(f"{'lines':>9} {'chars':>11} {'whole block (old)':>18} {'windowed (now)':>15} {'sentences':>10}")
    for n in sizes:
        text = "".join(f"w{i % 97}\n" for i in range(n))
        old = "-"
        if not old_done:
            started = time.perf_counter()
            whole_block(text)
            seconds = time.perf_counter() - started
            old, old_done = f"{seconds:.2f} s", seconds > args.old_limit
        started = time.perf_counter()
        sentences, _ = segment.segment_document(_doc(text), 0, 3, 1)
        now = time.perf_counter() - started
        print(f"{n:>9,} {len(text):>11,} {old:>18} {now:>13.2f} s {len(sentences):>10,}", flush=True)

if __name__ == "__main__":
    main()
