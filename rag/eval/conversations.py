"""Conversations: follow-up questions answered with the earlier turns as history.

``eval/conversations.jsonl`` holds one conversation per line: ``{"id", "turns": [{"question", "answers"}]}``,
where ``answers`` are aliases (as in the gold sets) and every turn after the first leans on the ones before
("What does he lack?"). Each turn is asked with the system's *own* earlier answers as history (as a user
would see them), and is correct when its answer contains an alias. A follow-up may also say what it points
back to (``"refers_to"``: aliases of the entity, ``"referent_kind"``: person, organisation, place, thing or
event): its referent is named when the question asked (the rewrite, else the question as typed) holds one.
A conversation may name its ``"document"``: with ``--documents DIR`` the conversations are asked of a
temporary corpus of those files of DIR (``eval/conversations-other.jsonl``: 72 conversations over 18 documents
of ``eval/dev``, written by a session that had not seen the rewriting code).

    .venv/bin/python -m rag.eval.conversations [--conversations FILE] [--documents DIR] [--backend SPEC]
                                               [--no-rewrite] [--json]

also prints, for LLM backends, the figures the README reports: markers the model wrote per answer, attributed
citations, unsupported sentences, prompt tokens, time to first token and latency.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from rag.eval.metrics import contains_alias

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "eval" / "conversations.jsonl"


def load_conversations(path: str | Path = DEFAULT_PATH) -> list[dict]:
    conversations = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        record = json.loads(line)
        turns = record.get("turns")
        if not isinstance(turns, list) or not turns or not all(
            isinstance(t, dict) and isinstance(t.get("question"), str) and isinstance(t.get("answers"), list)
            for t in turns
        ):
            raise ValueError(f"{path}:{number}: expected {{id, turns: [{{question, answers}}]}}")
        conversations.append(record)
    return conversations


def answer_figures(answer) -> dict[str, Any]:
    """What an answer says about how its citations came about."""
    origin = {c.n: c.origin for c in answer.citations}
    model_markers = sum(1 for check in answer.checks for n in check.cited if origin.get(n) == "model")
    return {
        "sentences": len(answer.checks),
        "model_markers": model_markers,
        "sentences_with_model_marker": sum(any(origin.get(n) == "model" for n in c.cited) for c in answer.checks),
        "attributed_citations": sum(1 for c in answer.citations if c.origin == "attributed"),
        "model_citations": sum(1 for c in answer.citations if c.origin == "model"),
        # the model's own citations that, alone, back the sentence citing them at least partly
        "model_citations_supporting": sum(1 for c in answer.citations
                                          if c.origin == "model" and c.verdict != "unsupported"),
        "unsupported_sentences": sum(c.verdict == "unsupported" for c in answer.checks),
        "supported_sentences": sum(c.verdict == "supported" for c in answer.checks),
    }


def run_conversations(pipeline, conversations: list[dict], backend: str | None = None, k: int | None = None,
                      rewrite: bool = True, log=None) -> dict[str, Any]:
    """Ask every turn (follow-ups with the earlier turns as history unless ``rewrite`` is False)."""
    results = []
    for conversation in conversations:
        history: list[dict] = []
        for number, turn in enumerate(conversation["turns"], 1):
            answer = pipeline.ask(turn["question"], backend=backend, k=k, history=history if rewrite else None)
            if turn["answers"]:
                correct = (not answer.abstained) and contains_alias(answer.answer, turn["answers"])
            else:  # unanswerable: abstaining is right
                correct = answer.abstained
            asked = answer.standalone_question or turn["question"]
            record = {
                "id": conversation["id"], "turn": number, "question": turn["question"],
                "standalone_question": answer.standalone_question, "answer": answer.answer,
                "referent_kind": turn.get("referent_kind"),
                "referent_named": (any(alias.lower() in asked.lower() for alias in turn["refers_to"])
                                   if turn.get("refers_to") else None),
                "abstained": answer.abstained, "correct": correct, "latency_ms": round(answer.latency_ms, 1),
                "first_token_ms": round(answer.timings_ms.get("first_token", 0.0), 1) or None,
                "rewrite_ms": round(answer.timings_ms.get("rewrite", 0.0), 1) or None,
                "prompt_tokens": answer.prompt_tokens, **answer_figures(answer),
            }
            results.append(record)
            if log is not None:
                log(record)
            history.append({"question": answer.standalone_question or answer.question, "answer": answer.answer,
                            "short_answer": answer.short_answer})
    return {"metrics": summarize(results), "results": results}


def summarize(results: list[dict]) -> dict[str, Any]:
    def share(rows: list[dict]) -> float | None:
        return round(sum(r["correct"] for r in rows) / len(rows), 4) if rows else None

    def mean(key: str, rows: list[dict] = results) -> float | None:
        values = [r[key] for r in rows if r.get(key) is not None]
        return round(statistics.mean(values), 2) if values else None

    answered = [r for r in results if not r["abstained"]]
    followups = [r for r in results if r["turn"] > 1]
    labelled = [r for r in followups if r.get("referent_named") is not None]
    kinds = sorted({r["referent_kind"] for r in labelled if r.get("referent_kind")})
    return {
        "turns": len(results),
        "followups": len(followups),
        "accuracy_first_turns": share([r for r in results if r["turn"] == 1]),
        "accuracy_followups": share(followups),
        "accuracy_all": share(results),
        "rewritten_followups": sum(bool(r["standalone_question"]) for r in followups),
        # follow-ups that say what they point back to, and how many of the questions asked name it
        "followups_with_referent": len(labelled),
        "referent_named": sum(r["referent_named"] for r in labelled),
        **{f"referent_named_{kind}": f"{sum(r['referent_named'] for r in labelled if r['referent_kind'] == kind)}"
                                     f"/{sum(r['referent_kind'] == kind for r in labelled)}" for kind in kinds},
        "abstained": len(results) - len(answered),
        "model_markers_per_answer": mean("model_markers", answered),
        "sentences_with_model_marker": round(sum(r["sentences_with_model_marker"] for r in answered)
                                             / max(1, sum(r["sentences"] for r in answered)), 4),
        "attributed_citations_per_answer": mean("attributed_citations", answered),
        "answers_with_attributed_citations": sum(r["attributed_citations"] > 0 for r in answered),
        "model_citations_supporting_share": round(sum(r["model_citations_supporting"] for r in answered)
                                                  / max(1, sum(r["model_citations"] for r in answered)), 4),
        "unsupported_sentences_per_answer": mean("unsupported_sentences", answered),
        "supported_sentence_share": round(sum(r["supported_sentences"] for r in answered)
                                          / max(1, sum(r["sentences"] for r in answered)), 4),
        "prompt_tokens_mean": mean("prompt_tokens"),
        "first_token_ms_mean": mean("first_token_ms"),
        "rewrite_ms_mean": mean("rewrite_ms", followups),
        "latency_ms_mean": mean("latency_ms"),
        "latency_ms_p50": statistics.median([r["latency_ms"] for r in results]) if results else None,
    }


def as_conversations(gold_path: str | Path, limit: int | None = None) -> list[dict]:
    """Gold questions (JSONL: id, question, answers) as one-turn conversations, to measure single answers with
    the same figures; an unanswerable question (no aliases) counts as correct when the answer abstains."""
    rows = [json.loads(line) for line in Path(gold_path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [{"id": r["id"], "turns": [{"question": r["question"], "answers": r["answers"]}]} for r in rows[:limit]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rag.eval.conversations", description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--backend")
    parser.add_argument("--k", type=int)
    parser.add_argument("--no-rewrite", action="store_true", help="ask follow-ups without history (baseline)")
    parser.add_argument("--gold", type=Path, help="ask the single questions of a gold JSONL file instead")
    parser.add_argument("--limit", type=int, help="only the first N questions of --gold")
    parser.add_argument("--documents", type=Path,
                        help="ask the conversations of a temporary corpus of their 'document' files from this folder")
    parser.add_argument("--json", action="store_true", help="print the metrics and results as one JSON object")
    args = parser.parse_args(argv)
    conversations = as_conversations(args.gold, args.limit) if args.gold else load_conversations(args.conversations)
    if args.documents is None:
        return _run(args, conversations, None)
    import shutil
    import tempfile

    names = sorted({c["document"] for c in conversations if c.get("document")})
    missing = [n for n in names if not (args.documents / n).is_file()]
    if not names or missing:
        print(f"error: {args.documents}: " + (f"no such documents: {', '.join(missing)}" if missing else
                                              "the conversations name no 'document'"), file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="rag-conversations-") as tmp:
        (Path(tmp) / "corpus").mkdir()
        for name in names:
            shutil.copy(args.documents / name, Path(tmp) / "corpus" / name)
        return _run(args, conversations, Path(tmp))


def _run(args, conversations: list[dict], folder: Path | None) -> int:
    from rag.pipeline import Pipeline
    from rag.settings import Settings

    pipeline = (Pipeline.load() if folder is None else
                Pipeline.load(Settings(corpus_dir=folder / "corpus", index_dir=folder / "index")))

    def log(r: dict) -> None:
        mark = "✓" if r["correct"] else "✗"
        asked = f" -> {r['standalone_question']}" if r["standalone_question"] else ""
        print(f"{mark} {r['id']}.{r['turn']} {r['question']}{asked}\n    {r['answer'][:200]}", file=sys.stderr)

    report = run_conversations(pipeline, conversations, backend=args.backend, k=args.k,
                               rewrite=not args.no_rewrite, log=log)
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        for key, value in report["metrics"].items():
            print(f"{key:36} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
