"""Fit the span reader (``rag.answer.reader``): LoRA adapters on the bundled MiniLM plus a start/end head.

Data: every answerable question of the document groups of ``rag.answer.training.dataset_files`` (the bundled
article's sets, ``eval/dev``, the SQuAD article in ``../shared/qa``) whose gold evidence holds a sentence with
one of its gold answers: (question, that sentence, where the answer is in it).

    python -m rag.answer.reader_training                      # fit on everything, write rag/answer/data/reader.json
    python -m rag.answer.reader_training --folds 5 --fold 0   # fit without one fifth of the groups, score it

Scored by token F1 of the answer read in the gold sentence (SQuAD's measure, against the best alias). Folds
are document groups assigned round-robin in name order, so a fold's documents are never seen in its fitting.
Deterministic on one machine: fixed seeds, a fixed thread count, torch's deterministic algorithms.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

from rag.settings import PROJECT_ROOT

DEFAULT_OUT = PROJECT_ROOT / "rag" / "answer" / "data" / "reader.json"
RANK = 8  # adapter rank: 330k trained numbers, ~0.9 MB as base64 float16
ALPHA = 16.0
EPOCHS = 3
BATCH = 16
LEARNING_RATE = 5e-4
THREADS = 2
SEED = 0


def documents_and_questions():
    """(group, sentences, questions) per document group of ``rag.answer.training.dataset_files``; the bundled
    article's sets are about data/corpus."""
    from rag.answer.training import dataset_files
    from rag.eval.gold import load_dataset
    from rag.segment import split_sentences

    for group, files in dataset_files():
        documents, questions = [], []
        for path in files:
            docs, qs = load_dataset(path)
            documents += docs
            questions += qs
        if not documents:
            documents = [(p.name, p.read_text(encoding="utf-8"))
                         for p in sorted((PROJECT_ROOT / "data" / "corpus").glob("*.txt"))]
        yield group, [s for _, text in documents for s in split_sentences(text)], questions


def span_examples() -> list[dict]:
    """Answerable questions whose gold evidence holds a sentence with a gold alias: the sentence and where the
    (first found) alias is in it, with the question's document group."""
    out = []
    for group, sentences, questions in documents_and_questions():
        for q in questions:
            if not q.answers:
                continue
            for sentence in sentences:
                if not any(e in sentence or sentence in e for e in q.evidence):
                    continue
                lowered = sentence.lower()
                found = next(((a, lowered.find(a.lower())) for a in q.answers if lowered.find(a.lower()) >= 0), None)
                if found:
                    out.append({"group": group, "id": q.id, "question": q.question, "sentence": sentence,
                                "start": found[1], "end": found[1] + len(found[0]), "answers": list(q.answers)})
                    break
    return out


def _targets(batch: list[dict], encodings) -> tuple[list[int], list[int]]:
    """Word-piece positions of each example's answer start and end (0, [CLS], when truncation cut it off)."""
    starts, ends = [], []
    for e, enc in zip(batch, encodings, strict=True):
        first = last = 0
        for j, (sequence, (a, b)) in enumerate(zip(enc.sequence_ids, enc.offsets, strict=True)):
            if sequence == 1 and b > e["start"] and a < e["end"]:
                first = first or j
                last = j
        starts.append(first)
        ends.append(last)
    return starts, ends


def fit(examples: list[dict], base, log=print):
    """The adapted model fitted on ``examples`` (in place of the fresh adapters of ``adapted_model``)."""
    import torch

    # Process-wide torch settings, put back afterwards (a test fits in the same process as others).
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    try:
        return _fit(examples, base, log)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _fit(examples: list[dict], base, log):
    import torch

    from rag.answer.reader import adapted_model, pair_inputs, tokenizer_for

    model = adapted_model(base.path, rank=RANK, alpha=ALPHA, seed=SEED)
    tokenizer = tokenizer_for(base.path)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(parameters, lr=LEARNING_RATE, weight_decay=0.01)
    order = list(range(len(examples)))
    started = time.perf_counter()
    model.train()
    for epoch in range(EPOCHS):
        random.Random(SEED + epoch).shuffle(order)
        total = 0.0
        for b in range(0, len(order), BATCH):
            batch = [examples[i] for i in order[b:b + BATCH]]
            ids, mask, types, encodings = _pair_batch(tokenizer, batch, pair_inputs)
            starts, ends = _targets(batch, encodings)
            sentence = torch.tensor(np.array([[s == 1 for s in e.sequence_ids] + [False] * (ids.shape[1] - len(e.ids))
                                              for e in encodings]))
            logits = model(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(types))
            logits = logits.masked_fill(~sentence[..., None], -1e4)
            loss = (torch.nn.functional.cross_entropy(logits[..., 0], torch.tensor(starts))
                    + torch.nn.functional.cross_entropy(logits[..., 1], torch.tensor(ends)))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.detach().item() * len(batch)
        log(f"  epoch {epoch + 1}/{EPOCHS}: loss {total / len(order):.3f} ({time.perf_counter() - started:.0f} s)")
    model.eval()
    return model


def _pair_batch(tokenizer, batch: list[dict], pair_inputs):
    """pair_inputs for a batch of examples with different questions."""
    rows = [pair_inputs(tokenizer, e["question"], [e["sentence"]]) for e in batch]
    width = max(r[0].shape[1] for r in rows)
    ids, mask, types = (np.zeros((len(rows), width), dtype=np.int64) for _ in range(3))
    for k, (i, m, t, _) in enumerate(rows):
        ids[k, :i.shape[1]], mask[k, :m.shape[1]], types[k, :t.shape[1]] = i[0], m[0], t[0]
    return ids, mask, types, [r[3][0] for r in rows]


def score(model, examples: list[dict], base) -> list[dict]:
    """Each example's read answer in its gold sentence and its token F1 (float16-rounded weights, as shipped)."""
    import torch

    from rag.answer.reader import adapted_model, pair_inputs, spans_from_logits, tokenizer_for, weights_of
    from rag.eval.metrics import token_f1

    shipped = adapted_model(base.path, weights_of(model, base, {})).eval()
    tokenizer = tokenizer_for(base.path)
    out = []
    with torch.no_grad():
        for e in examples:
            ids, mask, types, encodings = pair_inputs(tokenizer, e["question"], [e["sentence"]])
            logits = shipped(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(types)).numpy()
            span = spans_from_logits(logits, encodings, [e["sentence"]])[0]
            answer = span.text if span else ""
            out.append({"group": e["group"], "id": e["id"], "answer": answer, "f1": token_f1(answer, e["answers"])})
    return out


def read_answers(model, answers: list[dict], base) -> list[dict]:
    """The reader's short answer among each answer's sentences (as ``rag.answer.extractive`` reads it), with its
    token F1 against the question's aliases."""
    import torch

    from rag.answer.reader import (
        adapted_model,
        choose_span,
        pair_inputs,
        spans_from_logits,
        tokenizer_for,
        weights_of,
    )
    from rag.eval.metrics import token_f1

    shipped = adapted_model(base.path, weights_of(model, base, {})).eval()
    tokenizer = tokenizer_for(base.path)
    out = []
    with torch.no_grad():
        for a in answers:
            texts = a["texts"][:2]
            ids, mask, types, encodings = pair_inputs(tokenizer, a["question"], texts)
            logits = shipped(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(types)).numpy()
            answer = choose_span(spans_from_logits(logits, encodings, texts))
            out.append({**{k: a[k] for k in ("group", "id", "corpus", "abstained") if k in a}, "answer": answer,
                        "answerable": bool(a["aliases"]), "f1": token_f1(answer, a["aliases"]) if a["aliases"] else 0.0})
    return out


def folds_of(groups: list[str], folds: int) -> dict[str, int]:
    return {g: i % folds for i, g in enumerate(sorted(set(groups)))}


def summary(rows: list[dict]) -> dict:
    squad = [r["f1"] for r in rows if r["group"].startswith("squad")]
    others = [r["f1"] for r in rows if not r["group"].startswith("squad")]
    mean = lambda xs: round(float(np.mean(xs)), 4) if xs else None  # noqa: E731
    return {"examples": len(rows), "f1": mean([r["f1"] for r in rows]), "f1_squad": mean(squad),
            "f1_others": mean(others)}


def main(argv: list[str] | None = None) -> int:
    from rag.model_files import BUNDLED_MODEL, resolve_model
    from rag.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the reader (default: %(default)s)")
    parser.add_argument("--folds", type=int, help="score held-out document groups instead of writing the reader")
    parser.add_argument("--fold", type=int, action="append", help="which fold(s) to hold out (default: all, in turn)")
    parser.add_argument("--report", type=Path, help="with --folds: per-example JSON report")
    parser.add_argument("--fitted", type=Path, help="with --folds: a folder for each fold's fitted reader "
                        "(fold-K.json): read from it when there, written to it when fitted")
    parser.add_argument("--answers", type=Path, help="with --folds: the answerer's chosen sentences per question "
                        "(JSON list of {group, id, question, texts, aliases, abstained}, most probable first); "
                        "each held-out one gets the reader's short answer and its token F1 in the report")
    args = parser.parse_args(argv)

    from rag.answer.reader import adapted_model, read_weights, weights_of

    base = resolve_model(BUNDLED_MODEL, Settings(_env_file=None).model_cache_dir)
    examples = span_examples()
    print(f"{len(examples)} answerable questions with an answer-bearing sentence, "
          f"{len({e['group'] for e in examples})} document groups")
    if args.folds:
        fold_of = folds_of([e["group"] for e in examples], args.folds)
        rows, read = [], []
        answers = json.loads(args.answers.read_text(encoding="utf-8")) if args.answers else []
        for fold in args.fold if args.fold is not None else range(args.folds):
            train = [e for e in examples if fold_of[e["group"]] != fold]
            test = [e for e in examples if fold_of[e["group"]] == fold]
            held = sorted({e["group"] for e in test})
            print(f"fold {fold}: held out {', '.join(held)}; fitting on {len(train)}")
            saved = args.fitted / f"fold-{fold}-of-{args.folds}.json" if args.fitted else None
            if saved is not None and saved.exists():
                model = adapted_model(base.path, read_weights(saved)[0]).eval()
            else:
                model = fit(train, base)
                if saved is not None:
                    saved.parent.mkdir(parents=True, exist_ok=True)
                    saved.write_text(json.dumps(weights_of(model, base, {"fold": fold}).to_json()) + "\n",
                                     encoding="utf-8")
            scored = score(model, test, base)
            rows += scored
            print(f"fold {fold}: {json.dumps(summary(scored))}", flush=True)
            if args.answers:
                held_out = [a for a in answers if fold_of.get(a["group"]) == fold]
                read += read_answers(model, held_out, base)
        print(f"all scored folds: {json.dumps(summary(rows))}")
        if args.report:
            args.report.write_text(json.dumps({"summary": summary(rows), "examples": rows, "answers": read},
                                              indent=1) + "\n", encoding="utf-8")
        return 0

    from rag.answer.training import dataset_files

    model = fit(examples, base)
    data = {}
    for _, files in dataset_files():
        for p in files:
            name = str(p.relative_to(PROJECT_ROOT.parent) if p.is_relative_to(PROJECT_ROOT.parent) else p)
            data[name] = hashlib.sha256(p.read_bytes()).hexdigest()
    meta = {"trained_by": "python -m rag.answer.reader_training (make train)", "examples": len(examples),
            "rank": RANK, "alpha": ALPHA, "epochs": EPOCHS, "batch": BATCH, "learning_rate": LEARNING_RATE,
            "seed": SEED, "data": data}
    weights = weights_of(model, base, meta)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(weights.to_json(), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
