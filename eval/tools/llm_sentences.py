"""Collect a real LLM's answers and judge their sentences with the rules and with the learned checker.

For each gold file given, a few questions (answerable ones of each style, and unanswerable ones, where a small
model tends to invent) are asked of an LLM backend over a temporary corpus of the file's document; the raw answer
text and the passages it read are kept, and every answer sentence is verified twice from the same raw text:
by the rules of rag.verify and by the learned claim checker (rag.claims.LearnedJudge). The answer check is off
(it withdraws answers, and what is measured here is the sentences). Writes one JSON line per answer; each
sentence gets a ``label`` field left empty, to be filled by a reader who sees only the document (supported /
partial / unsupported), after which ``--score FILE`` compares the two verifiers against the labels.

Usage:
    .venv/bin/python eval/tools/llm_sentences.py --backend openai-compatible:http://127.0.0.1:8011/v1 \\
        --out eval/llm_sentences.jsonl --per-file 6 eval/gold.jsonl eval/dev/enc-glaciers.jsonl ...
    .venv/bin/python eval/tools/llm_sentences.py --rejudge eval/llm_sentences.jsonl --backend SPEC --nli LOCATION
    .venv/bin/python eval/tools/llm_sentences.py --score eval/llm_sentences.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
logging.disable(logging.WARNING)

STYLES = ("direct", "paraphrase", "two_step", "unanswerable")


def _records(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def pick(questions, per_file: int):
    """Round-robin over the styles (questions without a style count as direct), in file order."""
    by_style: dict[str, list] = {s: [] for s in STYLES}
    for q in questions:
        style = q.style or ("unanswerable" if not q.answers else "direct")
        by_style.setdefault(style, []).append(q)
    chosen = []
    while len(chosen) < per_file and any(by_style.values()):
        for style in STYLES:
            if by_style.get(style) and len(chosen) < per_file:
                chosen.append(by_style[style].pop(0))
    return chosen


def collect(args) -> None:
    from rag.answer.citations import assemble
    from rag.eval.gold import load_dataset
    from rag.eval.runner import corpus_pipeline
    from rag.pipeline import Pipeline
    from rag.settings import Settings

    base = Pipeline.load(Settings(backend=args.backend, llm_answer_check=False, llm_unsupported="flag",
                                  llm_verifier="learned"))
    with open(args.out, "a", encoding="utf-8") as out:
        for path in args.files:
            documents, questions = load_dataset(path)
            with corpus_pipeline(base, documents) as pipeline:
                backend = pipeline.backend(args.backend)
                judge = pipeline.sentence_judge(pipeline.index)
                for q in pick(questions, args.per_file):
                    request = pipeline.prepare(q.question, backend)
                    raw = "".join(p for p in backend.execute(request) if isinstance(p, str))
                    encode = pipeline.embedder.encode_query
                    verdicts = {}
                    for name, check in (("rules", None), ("learned", judge)):
                        answer = assemble(q.question, raw, request.passages, backend.name, pipeline.index, encode,
                                          sentence_judge=check)
                        verdicts[name] = [(c.sentence, c.verdict, c.reason) for c in answer.checks]
                    sentences = [{"sentence": s, "rules": v, "rules_reason": r, "label": ""}
                                 for s, v, r in verdicts["rules"]]
                    for sentence, (_, v, r) in zip(sentences, verdicts["learned"], strict=False):
                        sentence.update(learned=v, learned_reason=r)
                    record = {"file": str(path), "id": q.id, "question": q.question, "style": q.style,
                              "answerable": bool(q.answers), "raw": raw,
                              "passages": [p.text for p in request.passages], "sentences": sentences}
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                    out.flush()
                    print(f"{path} {q.id}: {len(sentences)} sentences", file=sys.stderr)


def rejudge(path: str, backend_spec: str, nli: str, nli_label: int | None) -> None:
    """Judge the stored answers again from their raw text, over the passages the LLM was given (retrieval is
    deterministic; checked), with the learned checker and an NLI model: adds ``learned_nli`` to every sentence.
    The LLM itself is not called."""
    from rag.answer.citations import assemble
    from rag.eval.gold import load_dataset
    from rag.eval.runner import corpus_pipeline
    from rag.pipeline import Pipeline
    from rag.settings import Settings

    rows = _records(path)
    base = Pipeline.load(Settings(backend=backend_spec, nli_model=nli, nli_entailment_label=nli_label,
                                  llm_verifier="learned"))
    for file in dict.fromkeys(r["file"] for r in rows):
        documents, _ = load_dataset(file)
        with corpus_pipeline(base, documents) as pipeline:
            backend = pipeline.backend(backend_spec)
            judge = pipeline.sentence_judge(pipeline.index)
            for r in (r for r in rows if r["file"] == file):
                request = pipeline.prepare(r["question"], backend)
                assert [p.text for p in request.passages] == r["passages"], r["id"]
                answer = assemble(r["question"], r["raw"], request.passages, backend.name, pipeline.index,
                                  pipeline.embedder.encode_query, sentence_judge=judge)
                for sentence, check in zip(r["sentences"], answer.checks, strict=True):
                    sentence.update(learned_nli=check.verdict, learned_nli_reason=check.reason)
    Path(path).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def score(path: str) -> None:
    rows = _records(path)
    sentences = [s for r in rows for s in r["sentences"] if s.get("label") and "learned" in s]
    print(f"{len(rows)} answers, {len(sentences)} labelled sentences")
    for label in ("supported", "partial", "unsupported"):
        group = [s for s in sentences if s["label"] == label]
        if not group:
            continue
        for name in ("rules", "learned", "learned_nli"):
            if not all(name in s for s in group):
                continue
            said = [s[name] for s in group]
            print(f"  gold {label:11s} ({len(group):3d}) {name:8s} supported {said.count('supported'):3d}  "
                  f"partial {said.count('partial'):3d}  unsupported {said.count('unsupported'):3d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*")
    parser.add_argument("--backend")
    parser.add_argument("--out")
    parser.add_argument("--per-file", type=int, default=6)
    parser.add_argument("--score")
    parser.add_argument("--rejudge", help="add the verdicts with an NLI model (--nli) to a collected file")
    parser.add_argument("--nli")
    parser.add_argument("--nli-label", type=int)
    args = parser.parse_args()
    if args.rejudge:
        rejudge(args.rejudge, args.backend, args.nli, args.nli_label)
    elif args.score:
        score(args.score)
    else:
        collect(args)


if __name__ == "__main__":
    main()
