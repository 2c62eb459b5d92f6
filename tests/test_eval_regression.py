"""End-to-end evaluation with the real pipeline: the full gold set must not regress, the baseline must run,
and ``rag eval --report`` must write its files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from rag.eval import DEFAULT_GOLD, evaluate, format_table

ROOT = Path(__file__).resolve().parent.parent

# Headline metrics of the extractive backend on eval/gold.jsonl, thresholds about one question under each value.
# Since the learned answerer (rag/answer/, commit "Learned extractive answerer"), these are a regression guard
# only: the gold set is among its training data, so its honest figures are the leave-one-document-out ones in
# docs/answerer-lodo.json and the README. The hand-written rules it replaced scored higher here (alias 0.918,
# unanswerable abstained 0.750) and far lower on documents and paraphrases they had not been tuned on.
# The run is deterministic; raise these when the answerer improves.
MINIMUMS = {  # measured 2026-12-01 with rag/answer/data/answerer.json (26 documents, with distractor corpora)
    "hit_at_1": 0.92,  # measured 0.945
    "recall_at_5": 0.93,  # measured 0.952
    "mrr_at_10": 0.95,  # measured 0.964
    "accuracy": 0.66,  # measured 0.674 (alias in answer, or abstained when unanswerable; 0.697 before)
    "answer_contains_alias": 0.765,  # measured 0.781 (57 of 73; one question is 0.0137; 0.794 before)
    "has_ans_f1": 0.47,  # measured 0.488 (0.483 before; 0.521 with the model fitted on 10 documents)
    "citation_recall": 0.97,  # measured 1.000
    "citation_precision": 0.98,  # measured 1.000
    "evidence_cited": 0.75,  # measured 0.767
    "abstained_unanswerable": 0.12,  # measured 0.1875 (3 of 16; one question is 0.0625; 0.25 before)
}
# The model of 2026-12-01's second session (answer-holding labels, distractor corpora, document and span
# features) gets two questions fewer right on this in-sample set (60 of 89 against 62); held out it is level with
# the one before (answer in reply 0.686 against 0.690 over 26 documents, 0.752 against 0.772 on the bundled
# article: 3 of 145 questions; the bundled article's false abstention 0.083 -> 0.124).
MAXIMUMS = {
    # measured 0.082 (6 of 73; 0.055 before): the operating point rose from 0.20 to 0.23 when the models were
    # also fitted on corpora with distractor documents; held out, false abstention fell (0.087 -> 0.085).
    "false_abstention": 0.09,
}


@pytest.fixture
def small_gold(tmp_path):
    """Five gold questions (four answerable, one unanswerable) in a file of their own."""
    lines = [line for line in DEFAULT_GOLD.read_text(encoding="utf-8").splitlines() if line.strip()]
    unanswerable = next(line for line in lines if json.loads(line)["answers"] == [])
    path = tmp_path / "gold-5.jsonl"
    path.write_text("\n".join(lines[:4] + [unanswerable]) + "\n", encoding="utf-8")
    return path


@pytest.mark.slow
def test_full_gold_set_does_not_regress(pipeline):
    report = evaluate(pipeline, backend="extractive", baseline=False)
    metrics = report["metrics"]["ours"]
    assert metrics["questions"] == len(report["results"]) >= 60
    assert report["baseline"] is None and report["metrics"]["baseline"] is None
    assert report["top1_sentence"] is None and report["metrics"]["top1_sentence"] is None
    below = {key: metrics[key] for key, minimum in MINIMUMS.items() if metrics[key] < minimum}
    above = {key: metrics[key] for key, maximum in MAXIMUMS.items() if metrics[key] > maximum}
    assert not below and not above, f"regressed: {below | above}\n{format_table(report['metrics'])}"


REPORT_FILES = ("report.md", "metrics.json", "results.jsonl", "accuracy_by_type.png", "latency.png")


def read_report(report_dir):
    for name in REPORT_FILES:
        assert (report_dir / name).stat().st_size > 0, name
    for png in ("accuracy_by_type.png", "latency.png"):
        assert (report_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((report_dir / "metrics.json").read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in (report_dir / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    return metrics, rows, (report_dir / "report.md").read_text(encoding="utf-8")


@pytest.mark.slow
def test_baseline_runs_on_the_same_questions_with_the_same_metrics(pipeline, small_gold, tmp_path):
    calls = []
    report = evaluate(pipeline, gold_path=small_gold, report_dir=tmp_path / "report",
                      progress_callback=lambda done, total: calls.append((done, total)))
    ours, theirs = report["metrics"]["ours"], report["metrics"]["baseline"]
    assert set(theirs) == set(ours)
    assert theirs["questions"] == ours["questions"] == 5
    baseline_results = report["baseline"]["results"]
    assert [r["id"] for r in baseline_results] == [r["id"] for r in report["results"]]
    assert not any(r["abstained"] for r in baseline_results)  # the tutorial pipeline never abstains
    assert all(len(r["citations"]) == 4 for r in baseline_results)
    assert theirs["abstained_unanswerable"] == 0.0
    top1 = report["metrics"]["top1_sentence"]
    assert set(top1) == set(ours) and top1["questions"] == 5
    top1_results = report["top1_sentence"]["results"]
    assert [r["id"] for r in top1_results] == [r["id"] for r in report["results"]]
    assert not any(r["abstained"] for r in top1_results)
    for r in top1_results:  # one cited sentence, which is the answer
        assert len(r["citations"]) == 1 and r["citations"][0]["text"] == r["answer"]
    assert calls[0] == (0, 15) and calls[-1] == (15, 15) and len(calls) == 16
    table = format_table(report["metrics"])
    assert "LangChain tutorial" in table and "top-1 sentence" in table and "Citation precision" in table

    metrics, rows, report_md = read_report(tmp_path / "report")
    assert metrics == json.loads(json.dumps(report["metrics"]))
    assert Counter(row["system"] for row in rows) == {"ours": 5, "baseline": 5, "top1_sentence": 5}
    assert "NLI model" in report_md and "| metric | ours | LangChain tutorial | top-1 sentence |" in report_md
    assert "## Per question type" in report_md and "## Per document" in report_md and "## Calibration" in report_md


@pytest.mark.slow
def test_cli_report_writes_all_files(pipeline, small_gold, tmp_path, monkeypatch, capsys):
    import rag.cli

    monkeypatch.setattr(rag.cli, "_load_pipeline", lambda args: pipeline)  # reuse the session's loaded model
    report_dir = tmp_path / "report"
    status = rag.cli.main(["eval", "--gold", str(small_gold), "--report", str(report_dir), "--json", "--no-baseline"])
    assert status == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"run", "ours", "baseline", "top1_sentence"}
    assert printed["baseline"] is None and printed["top1_sentence"] is None
    metrics, rows, report_md = read_report(report_dir)
    assert metrics == printed
    gold_ids = [json.loads(line)["id"] for line in small_gold.read_text(encoding="utf-8").splitlines()]
    assert [row["id"] for row in rows] == gold_ids
    assert "| metric | ours |" in report_md


def test_cli_rejects_a_malformed_gold_file(pipeline, tmp_path, monkeypatch, capsys):
    import rag.cli

    monkeypatch.setattr(rag.cli, "_load_pipeline", lambda args: pipeline)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "q1"}\n', encoding="utf-8")
    assert rag.cli.main(["eval", "--gold", str(bad), "--no-baseline"]) == 3
    assert f"{bad}, line 1:" in capsys.readouterr().err


TINY_SQUAD = {
    "version": "v2.0",
    "data": [{
        "title": "Harbour_Bridge",
        "paragraphs": [
            {"context": "The Harbour Bridge opened in 1932. It was designed by John Bradfield, the chief engineer.",
             "qas": [
                 {"id": "h1", "question": "Who designed the Harbour Bridge?", "is_impossible": False,
                  "answers": [{"text": "John Bradfield", "answer_start": 54}]},
                 {"id": "h2", "question": "When did the Harbour Bridge open?", "is_impossible": False,
                  "answers": [{"text": "1932", "answer_start": 29}]},
             ]},
            {"context": "Painting the bridge takes about ten years. The paint is grey.",
             "qas": [
                 {"id": "h3", "question": "Who paid for the grey paint?", "is_impossible": True, "answers": [],
                  "plausible_answers": [{"text": "The paint", "answer_start": 43}]},
             ]},
        ],
    }],
}


@pytest.mark.slow
def test_squad_file_runs_over_its_own_temporary_corpus(pipeline, tmp_path, monkeypatch):
    from rag.pipeline import Pipeline

    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY_SQUAD), encoding="utf-8")
    real_ask = Pipeline.ask

    def ask_with_confidence(self, *args, **kwargs):  # a backend that estimates its confidence
        answer = real_ask(self, *args, **kwargs)
        answer.confidence = 0.3 if answer.abstained else 0.9
        return answer

    monkeypatch.setattr(Pipeline, "ask", ask_with_confidence)
    report = evaluate(pipeline, gold_path=path, baseline="top1_sentence", report_dir=tmp_path / "report")
    run, ours = report["metrics"]["run"], report["metrics"]["ours"]
    assert run["documents"] == ["Harbour_Bridge.txt"] and "temporary corpus" in run["corpus"]
    assert (run["questions"], run["answerable"], run["unanswerable"]) == (3, 2, 1)
    assert report["metrics"]["baseline"] is None and report["metrics"]["top1_sentence"]["questions"] == 3
    assert list(ours["per_document"]) == ["Harbour_Bridge.txt"]
    assert set(ours["per_type"]) == {"who", "when", "unanswerable"}
    assert ours["hit_at_1"] == 1.0  # two short paragraphs: evidence is always retrieved first
    assert ours["calibration"]["available"] and ours["calibration"]["questions"] == 3
    assert report["metrics"]["top1_sentence"]["calibration"]["available"] is False  # it gives no confidence
    for png in ("reliability.png", "accuracy_coverage.png"):
        assert (tmp_path / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(pipeline.index.documents) == ["2026-03-06-iran-proxies-iraq.txt"]  # the session index untouched


def test_cli_rejects_an_unknown_baseline(pipeline, small_gold, monkeypatch, capsys):
    import rag.cli

    monkeypatch.setattr(rag.cli, "_load_pipeline", lambda args: pipeline)
    assert rag.cli.main(["eval", "--gold", str(small_gold), "--baselines", "tutorial,oracle"]) == 2
    assert "unknown baseline oracle" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["--baselines", "tutorial", "--no-baseline"], "--no-baseline and --baselines contradict each other"),
    (["--baselines", ""], "--baselines names no baseline"),  # ran none, silently
    (["--claims", "eval/claims.jsonl", "--backend", "extractive"], "--backend: not used by a --claims run"),
])
def test_cli_refuses_eval_flags_that_would_be_ignored(pipeline, small_gold, monkeypatch, capsys, args, message):
    import rag.cli

    monkeypatch.setattr(rag.cli, "_load_pipeline", lambda args: pipeline)
    gold = [] if "--claims" in args else ["--gold", str(small_gold)]
    assert rag.cli.main(["eval", *gold, *args]) == 2
    assert message in capsys.readouterr().err


# ------------------------------------------------------------------ a --report folder that cannot be written

PROC = Path("/proc/self")

REPORT_FOLDERS = {  # case -> (--report relative to a folder holding the file "afile", the one-line error)
    "a file on its path": ("afile/sub", "--report afile/sub: cannot create the folder, afile is not a folder"),
    "a file deeper on its path": ("afile/a/b", "--report afile/a/b: cannot create the folder, afile is not a folder"),
    "an existing file": ("afile", "--report afile: exists and is not a folder"),
    "a place no folder can be made": ("/proc/nope", "--report /proc/nope: cannot create the folder (No such file or "
                                      "directory)"),
}


@pytest.mark.parametrize("run", [["--gold", str(DEFAULT_GOLD), "--no-baseline"],
                                 ["--claims", str(ROOT / "eval" / "dev" / "enc-glaciers.claims.jsonl")]],
                         ids=["gold", "claims"])
@pytest.mark.parametrize("case", list(REPORT_FOLDERS))
def test_cli_refuses_a_report_folder_it_cannot_write_before_the_run(tmp_path, monkeypatch, capsys, run, case):
    import rag.cli

    folder, message = REPORT_FOLDERS[case]
    if folder.startswith("/proc/") and not PROC.exists():
        pytest.skip("no /proc on this system")

    def no_run(args):
        raise AssertionError("the model was loaded and the run started before --report was checked")

    monkeypatch.setattr(rag.cli, "_load_pipeline", no_run)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a folder\n", encoding="utf-8")
    assert rag.cli.main(["eval", *run, "--report", folder]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"rag: error: {message}\n" and captured.out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_report_writers_turn_any_write_failure_into_a_usage_error(tmp_path):
    from rag.errors import UsageError
    from rag.eval.report import prepare_report_dir, write_claims_report, write_report

    (tmp_path / "afile").write_text("", encoding="utf-8")
    report = {"metrics": {}, "results": []}
    for write in (write_report, write_claims_report):  # library callers (evaluate(report_dir=...)) too
        with pytest.raises(UsageError, match="^--report .*afile/sub: cannot create the folder, .*afile is not a "
                                             "folder$"):
            write(report, tmp_path / "afile" / "sub")
    folder = prepare_report_dir(tmp_path / "new" / "report")  # created with its parents when it can be
    assert folder.is_dir() and list(folder.iterdir()) == []  # the write probe leaves nothing behind
    (folder / "claims-metrics.json").mkdir()  # a folder where a report file goes
    with pytest.raises(UsageError, match=r"^--report .*report: cannot write claims-metrics\.json \(Is a directory\)$"):
        write_claims_report(report, folder)


def test_evaluate_from_python_refuses_an_unwritable_report_folder_before_the_run(pipeline, small_gold, tmp_path,
                                                                                  monkeypatch):
    """`rag eval --report` checked the folder first; `evaluate(report_dir=...)` only after the whole run."""
    from rag.errors import UsageError
    from rag.eval import runner

    (tmp_path / "afile").write_text("x", encoding="utf-8")
    ran = []
    monkeypatch.setattr(runner, "_evaluate", lambda *a, **k: ran.append(1) or {})
    with pytest.raises(UsageError, match="cannot create the folder, .*afile is not a folder"):
        runner.evaluate(pipeline, gold_path=small_gold, baseline=False, report_dir=tmp_path / "afile" / "sub")
    assert not ran
