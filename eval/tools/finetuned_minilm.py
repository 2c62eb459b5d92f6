"""Would fine-tuning MiniLM itself on our question sets help the answerer? Two probes, each fitted on four fifths of
the document groups and measured on the fifth (the groups of `rag.answer.training.dataset_files`, assigned to
folds round-robin in name order; `--fold` picks the held-out fifth):

- ``span``: a reader, MiniLM-L6 encoding question and answer sentence together with a start/end head (SQuAD
  style), fine-tuned (or, with ``--frozen``, only the head fitted), asked for the short answer inside the gold
  answer-bearing sentence; prints the token F1 against the gold aliases;
- ``relevance``: a cross-encoder, the same encoder with one output on [CLS], fine-tuned on (question, sentence)
  pairs (the answer-bearing sentence against up to four of the ten sentences nearest the question by MiniLM
  cosine), then asked to rank those ten: evidence at rank 1 against the cosine order, and the ROC AUC of its best
  score for "the question has an answer" (answerable against unanswerable questions).

Measured 2026-12-07 (fold 0: six documents, SQuAD article among them; docs/answerer.md, "Tried and left out").
Takes 10-20 minutes per probe on 2 cores. Usage: .venv/bin/python eval/tools/finetuned_minilm.py span|relevance
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rag.answer.reader_training import documents_and_questions, span_examples  # noqa: E402
from rag.eval.answers import normalize_answer  # noqa: E402
from rag.eval.metrics import contains_alias  # noqa: E402
from rag.settings import Settings  # noqa: E402


def token_f1(prediction: str, aliases: list[str]) -> float:
    best, predicted = 0.0, normalize_answer(prediction).split()
    for alias in aliases:
        gold = normalize_answer(alias).split()
        common = sum(min(predicted.count(w), gold.count(w)) for w in set(predicted))
        if common and predicted and gold:
            precision, recall = common / len(predicted), common / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def relevance_examples(embedder, candidates: int = 10) -> list[dict]:
    out = []
    for name, sentences, questions in documents_and_questions():
        vectors = embedder.encode(sentences, progress=False)
        for q, v in zip(questions, embedder.encode([q.question for q in questions], progress=False), strict=True):
            nearest = [sentences[i] for i in np.argsort(-(vectors @ v))[:candidates]]
            evidence = [any(e in c or c in e for e in q.evidence) for c in nearest]
            labels = [bool(e and q.answers and contains_alias(c, tuple(q.answers))) for e, c in zip(evidence, nearest,
                                                                                                    strict=True)]
            out.append({"group": name, "question": q.question, "candidates": nearest,
                        "labels": labels if any(labels) else evidence, "evidence": evidence,
                        "answerable": bool(q.answers)})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probe", choices=("span", "relevance"))
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=None, help="default: 3 (span), 2 (relevance)")
    parser.add_argument("--frozen", action="store_true", help="span: fit the head only, the encoder frozen")
    args = parser.parse_args()

    import torch
    from transformers import AutoModel, AutoTokenizer

    from rag.embeddings import Embedder
    from rag.model_files import resolve_model

    torch.manual_seed(0)
    random.seed(0)
    settings = Settings()
    path = str(resolve_model(settings.embed_model, settings.model_cache_dir).path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    examples = span_examples() if args.probe == "span" else relevance_examples(Embedder.from_settings(settings))
    groups = sorted({e["group"] for e in examples})
    fold_of = {g: i % args.folds for i, g in enumerate(groups)}
    train = [e for e in examples if fold_of[e["group"]] != args.fold]
    test = [e for e in examples if fold_of[e["group"]] == args.fold]
    print(f"held out: {', '.join(g for g in groups if fold_of[g] == args.fold)}; {len(train)} training examples")

    encoder = AutoModel.from_pretrained(path)
    head = torch.nn.Linear(encoder.config.hidden_size, 2 if args.probe == "span" else 1)
    if args.frozen:
        encoder.requires_grad_(False)
    parameters = [p for p in [*encoder.parameters(), *head.parameters()] if p.requires_grad]
    optimiser = torch.optim.AdamW(parameters, lr=1e-2 if args.frozen else 5e-5 if args.probe == "span" else 3e-5,
                                  weight_decay=0.01)

    def span_batch(batch):
        enc = tokenizer([e["question"] for e in batch], [e["sentence"] for e in batch], truncation="only_second",
                        max_length=160, padding=True, return_offsets_mapping=True, return_tensors="pt")
        offsets = enc.pop("offset_mapping")
        mask = torch.zeros(enc["input_ids"].shape, dtype=torch.bool)
        starts, ends = torch.zeros(len(batch), dtype=torch.long), torch.zeros(len(batch), dtype=torch.long)
        for i, e in enumerate(batch):
            for j, sequence in enumerate(enc.sequence_ids(i)):
                if sequence != 1:
                    continue
                mask[i, j] = True
                a, b = offsets[i, j].tolist()
                if b > e["start"] and a < e["end"]:  # a token of the answer
                    starts[i] = starts[i] or j
                    ends[i] = j
        return enc, mask, starts, ends, offsets

    epochs = args.epochs or (3 if args.probe == "span" else 2)
    started = time.perf_counter()
    if args.probe == "span":
        for epoch in range(epochs):
            random.Random(epoch).shuffle(train)
            for b in range(0, len(train), 16):
                enc, mask, starts, ends, _ = span_batch(train[b:b + 16])
                logits = head(encoder(**enc).last_hidden_state).masked_fill(~mask[..., None], -1e4)
                loss = (torch.nn.functional.cross_entropy(logits[..., 0], starts)
                        + torch.nn.functional.cross_entropy(logits[..., 1], ends))
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            print(f"epoch {epoch}: {time.perf_counter() - started:.0f} s")
        scores = []
        with torch.no_grad():
            for b in range(0, len(test), 32):
                batch = test[b:b + 32]
                enc, mask, _, _, offsets = span_batch(batch)
                logits = head(encoder(**enc).last_hidden_state)
                for i, e in enumerate(batch):
                    s = logits[i, :, 0].masked_fill(~mask[i], -1e9)
                    t = logits[i, :, 1].masked_fill(~mask[i], -1e9)
                    pair = s[:, None] + t[None, :]
                    n = len(s)
                    allowed = torch.triu(torch.ones(n, n, dtype=torch.bool)) & ~torch.triu(
                        torch.ones(n, n, dtype=torch.bool), diagonal=12)
                    start, end = divmod(int(pair.masked_fill(~allowed, -1e9).argmax()), n)
                    answer = e["sentence"][int(offsets[i, start, 0]):int(offsets[i, end, 1])]
                    scores.append((e["group"].startswith("squad"), token_f1(answer, e["answers"])))
        print(f"short-answer F1 in the gold sentence: {np.mean([f for _, f in scores]):.3f} ({len(scores)}); "
              f"SQuAD article {np.mean([f for s, f in scores if s]):.3f}, "
              f"others {np.mean([f for s, f in scores if not s]):.3f}")
        return 0

    from sklearn.metrics import roc_auc_score

    def relevance(questions, sentences):
        enc = tokenizer(questions, sentences, truncation="only_second", max_length=128, padding=True,
                        return_tensors="pt")
        return head(encoder(**enc).last_hidden_state[:, 0]).squeeze(-1)

    pairs = []
    for e in train:
        positives = [c for c, label in zip(e["candidates"], e["labels"], strict=True) if label][:2]
        negatives = [c for c, label in zip(e["candidates"], e["labels"], strict=True) if not label][:4]
        pairs += [(e["question"], c, 1.0) for c in positives] + [(e["question"], c, 0.0) for c in negatives]
    for epoch in range(epochs):
        random.Random(epoch).shuffle(pairs)
        for b in range(0, len(pairs), 16):
            batch = pairs[b:b + 16]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                relevance([p[0] for p in batch], [p[1] for p in batch]), torch.tensor([p[2] for p in batch]))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        print(f"epoch {epoch}: {time.perf_counter() - started:.0f} s, {len(pairs)} pairs")
    at_1, cosine_at_1, best, answerable = [], [], [], []
    with torch.no_grad():
        for e in test:
            scores = relevance([e["question"]] * len(e["candidates"]), e["candidates"]).numpy()
            if e["answerable"] and any(e["evidence"]):
                at_1.append(e["evidence"][int(np.argmax(scores))])
                cosine_at_1.append(e["evidence"][0])
            best.append(float(scores.max()))
            answerable.append(e["answerable"])
    print(f"evidence at 1 among the 10 nearest: cross-encoder {np.mean(at_1):.3f}, cosine {np.mean(cosine_at_1):.3f} "
          f"({len(at_1)}); ROC AUC of the best score for 'has an answer': {roc_auc_score(answerable, best):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
