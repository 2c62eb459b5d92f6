"""The extractive answerer's leave-one-document-out replies, sentence by sentence, for measuring a short-answer
reader on them (``python -m rag.answer.reader_training --folds 5 --answers FILE``).

Runs the protocol of ``rag.answer.training.leave_one_document_out`` (same examples, same fitted models, so the
same rows as docs/answerer-lodo.json) and writes, per question and corpus: the answer's sentences most probable
first, whether it abstained, and the gold aliases. About 10 minutes on 2 cores.

Usage: .venv/bin/python eval/tools/lodo_replies.py OUT.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rag.answer import training  # noqa: E402
from rag.answer.extractive import choose  # noqa: E402
from rag.pipeline import limit_blas_threads  # noqa: E402


def main() -> int:
    out = Path(sys.argv[1])
    limit_blas_threads(training.FIT_BLAS_THREADS)
    examples = training.collect(training.dataset_files(), log=lambda *a: None)
    documents = list(dict.fromkeys(e.document for e in examples))
    replies = []
    for d in documents:
        others = [x for x in documents if x != d]
        confidence_model, threshold = training.fit_confidence(training.out_of_document_outcomes(examples, others))
        own = [e for e in examples if e.borrowed_from is None]
        sentence_model = training.fit_sentence_model(training._without(own, d))
        for e in (e for e in own if e.document == d):
            outcome = training.answer_with(e, sentence_model)
            confidence = float(confidence_model.predict(outcome.features[None, :])[0])
            probabilities = sentence_model.predict(e.candidates.matrix)
            chosen = choose(e.candidates, probabilities, training.SECOND_SENTENCE)
            ranked = sorted(chosen, key=lambda i: -probabilities[i])
            replies.append({
                "group": e.document, "id": e.qid, "question": e.question,
                "corpus": training.CORPUS_WITH_OTHERS if e.companions else training.CORPUS_ALONE,
                "texts": [e.candidates.sentences[i].text for i in ranked], "aliases": list(e.aliases),
                "abstained": bool(confidence < threshold), "confidence": round(confidence, 4),
            })
        print(f"  {d}: {sum(r['group'] == d for r in replies)} replies", flush=True)
    out.write_text(json.dumps(replies, indent=0) + "\n", encoding="utf-8")
    print(f"wrote {out} ({len(replies)} replies; {np.mean([r['abstained'] for r in replies]):.3f} abstained)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
