"""Could the learned claim checker verify an LLM's answer sentences? Each labelled claim that names its evidence is
judged against that evidence (the passage it "cites"), by the rules of rag.verify, by the learned checker, and,
with --nli, by the learned checker with that NLI model; the learned models are fitted without the claim's document
(rag.claims_training.fit). Prints the three-verdict accuracy and what matters for answer sentences: how many true
sentences would be flagged UNSUPPORTED (warned about, or dropped with RAG_LLM_UNSUPPORTED=drop) and how many false
ones would be caught. These are the checker's own verdicts, as for a pasted claim: the measurement that showed
it flags too many true sentences; the operating point answer sentences now get (ClaimModel.flag_below) is fitted
and measured by `make train` (docs/claims.md, "Answer sentences").

Usage: .venv/bin/python eval/tools/claims_given_passage.py [--nli LOCATION [--nli-label N]]
"""

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
logging.disable(logging.WARNING)

from rag.claims_training import Entailments, claim_files, collect, fit  # noqa: E402
from rag.verify import SUPPORTED, UNSUPPORTED  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nli")
    parser.add_argument("--nli-label", type=int)
    args = parser.parse_args()
    entailments = None
    if args.nli:
        from rag.nli import load_entailment_model

        entailments = Entailments(load_entailment_model(args.nli, args.nli_label))
    examples = collect(claim_files(), log=lambda *a: None)
    given = [e for e in examples if e.evidence]  # collect() found the sentences each claim's evidence overlaps
    documents = list(dict.fromkeys(e.document for e in examples))
    rows = []
    for d in documents:
        others = [x for x in documents if x != d]
        models = {"learned": (fit(examples, others), None)}
        if entailments:
            models["learned + NLI"] = (fit(examples, others, entailments), entailments)
        for e in (e for e in given if e.document == d):
            verdicts = {"rules": e.evidence_rule_verdict}
            row = e.featurizer.features_many(e.claim.claim, [e.evidence])[0]
            for name, (model, scores) in models.items():
                probability = float(model.passage.predict(row[None, :])[0])
                verdicts[name] = model.verdict(row, probability, scores(e, e.evidence) if scores else None)
            rows.append((e.claim.label, e.claim.kind, verdicts))
    print(f"{len(rows)} claims judged against their evidence passage, LODO")
    for name in rows[0][2]:
        said = np.array([v[name] for _, _, v in rows])
        gold = np.array([label for label, _, _ in rows])
        kinds = np.array([kind for _, kind, _ in rows])
        true, false = gold == SUPPORTED, gold == UNSUPPORTED
        print(f"{name:14s} right verdict {np.mean(said == gold):.3f} | true sentences flagged unsupported "
              f"{np.mean(said[true] == UNSUPPORTED):.3f} (paraphrases "
              f"{np.mean(said[true & (kinds == 'paraphrase')] == UNSUPPORTED):.3f}), called supported "
              f"{np.mean(said[true] == SUPPORTED):.3f} | false ones caught {np.mean(said[false] == UNSUPPORTED):.3f},"
              f" called supported {np.mean(said[false] == SUPPORTED):.3f}")


if __name__ == "__main__":
    main()
