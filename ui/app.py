"""The web app: a thin Gradio layer over ``rag.pipeline.Pipeline``.

``build_app(pipeline)`` only constructs the Blocks (tests build it with the real pipeline);
``start(app, settings)`` serves it with the settings' host, port, login, upload limit and look;
``launch(settings)`` loads the pipeline once per process and does both (``rag serve``).

Why one module of this size: Gradio wires every event handler to components created in the same
``Blocks`` context, so the tabs and their handlers are laid out together here; what is not wiring lives
elsewhere (HTML in ``ui.render``, CSS in ``ui.style``, login in ``ui.login``, the JSON API in ``ui.server``).
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import math
import shutil
import tempfile
import threading
from bisect import bisect_right
from html import escape
from pathlib import Path
from typing import Any

import gradio as gr

from rag.answer import Reading, Rewritten
from rag.errors import RagError, UsageError
from rag.net import free_port
from rag.pipeline import SUPPORTED_SUFFIXES, Pipeline
from rag.settings import Settings
from rag.types import search_json
from ui import render
from ui.login import middleware_for
from ui.style import CSS, theme

log = logging.getLogger("rag.ui")

TITLE = "News QA with verifiable citations"
BUNDLED_ARTICLE = "2026-03-06-iran-proxies-iraq.txt"
# Shown only when the bundled article is indexed: questions about another corpus would mislead.
EXAMPLE_QUESTIONS = [
    "Who replaced Qassem Soleimani?",
    "How many fighters does the Popular Mobilization Forces have?",
    "When did Israel kill Hassan Nasrallah?",
    "According to A.J., which city was the key to coordinating the axis of resistance?",
    "What is the capital of France?",
]
EXAMPLE_CLAIMS = [
    "Esmail Ghaani lacks the stature and authority of Qassem Soleimani.",
    '"Damascus was the key for coordinating the axis of resistance," A.J. said.',
    "Iran's proxies in Iraq launched a mass mobilisation after the war began.",
]
UPLOAD_TYPES = sorted(SUPPORTED_SUFFIXES)

# Handles citation clicks anywhere on the page (chips in chat messages and source cards). The chatbot
# strips data-* attributes, so a chip names its (answer turn, citation) in a class: rag-cite-<turn>-<n>.
# The listener is installed once per page; each (re)mount of the article viewer re-points the callback.
ARTICLE_VIEWER_JS = """
window.__ragShowCitation = (cite) => trigger('cite', {cite: cite});
if (!window.__ragCiteListener) {
  window.__ragCiteListener = true;
  const pick = (event) => {
    const target = event.target.closest ? event.target.closest('[class*="rag-cite-"]') : null;
    if (!target) return;
    const cite = Array.from(target.classList).find((c) => /^rag-cite-\\d+-\\d+$/.test(c));
    if (!cite) return;
    event.preventDefault();
    window.__ragShowCitation(cite);
  };
  document.addEventListener('click', pick);
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' || event.key === ' ') pick(event);
  });
}
const reveal = () => {
  const mark = element.querySelector('#rag-article-mark');
  const box = element.querySelector('.rag-article');
  if (!mark || !box) return;
  // Scroll only the article box (not the page), leaving the mark a third of the way down.
  box.scrollTop = Math.max(0, mark.offsetTop - box.clientHeight / 3);
  // On a narrow screen the panels stack below the chat: bring the article into view, or a click on a
  // citation seems to do nothing.
  const panel = element.querySelector('.rag-article-panel');
  if (panel) {
    const rect = panel.getBoundingClientRect();
    if (rect.top > window.innerHeight - 80 || rect.bottom < 80) panel.scrollIntoView({block: 'start'});
  }
  mark.classList.remove('rag-flash');
  void mark.offsetWidth;
  mark.classList.add('rag-flash');
};
watch('value', reveal);
reveal();
"""

# Keeps the selected source card in view inside the (scrolling) sources panel.
SOURCES_PANEL_JS = """
const reveal = () => {
  const card = element.querySelector('.rag-source-selected');
  const panel = element.querySelector('.rag-panel');
  if (card && panel) panel.scrollTop = Math.max(0, card.offsetTop - 40);
};
watch('value', reveal);
"""


# ---------------------------------------------------------------------------------------------- context


class ParagraphLocator:
    """Finds the paragraph around a span, from the sentence table (sentences of one paragraph share
    ``source`` and ``paragraph``). Rebuilt when the pipeline swaps in a new index after an upload."""

    def __init__(self, pipeline: Pipeline):
        self._pipeline = pipeline
        self._index: Any = None
        self._starts: dict[str, list[int]] = {}
        self._sentences: dict[str, list] = {}
        self._bounds: dict[tuple[str, int], tuple[int, int]] = {}
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        index = self._pipeline.index
        if index is self._index:
            return
        sentences: dict[str, list] = {}
        bounds: dict[tuple[str, int], tuple[int, int]] = {}
        for s in index.sentences:
            sentences.setdefault(s.source, []).append(s)
            key = (s.source, s.paragraph)
            low, high = bounds.get(key, (s.start, s.end))
            bounds[key] = (min(low, s.start), max(high, s.end))
        for rows in sentences.values():
            rows.sort(key=lambda s: s.start)
        self._sentences, self._bounds = sentences, bounds
        self._starts = {source: [s.start for s in rows] for source, rows in sentences.items()}
        self._index = index

    def paragraph(self, source: str, start: int, end: int) -> tuple[int, int]:
        """(start, end) of the paragraph holding offset ``start``; the span itself if it is in none."""
        with self._lock:
            self._refresh()
            rows = self._sentences.get(source, [])
            at = bisect_right(self._starts.get(source, []), start) - 1
            if at < 0:
                return start, end
            low, high = self._bounds[(source, rows[at].paragraph)]
            return min(low, start), max(high, end)


def _document(pipeline: Pipeline, source: str):
    return pipeline.index.documents.get(source)


def cited_passages(pipeline: Pipeline, locator: ParagraphLocator, answer: dict) -> list[render.CitedPassage]:
    passages = []
    for c in answer.get("citations", []):
        doc = _document(pipeline, c["source"])
        if doc is None or doc.text[c["start"] : c["end"]] != c["text"]:
            # The document was replaced or removed since this answer: show the cited text on its own.
            passages.append(render.CitedPassage(c["n"], c["source"], c["source"], None, c["text"], 0,
                                                len(c["text"]), c["verdict"], c["reason"]))
            continue
        low, high = locator.paragraph(c["source"], c["start"], c["end"])
        passages.append(render.CitedPassage(c["n"], c["source"], doc.title, doc.date, doc.text[low:high],
                                            c["start"] - low, c["end"] - low, c["verdict"], c["reason"]))
    return passages


def evidence_passages(pipeline: Pipeline, locator: ParagraphLocator, result: dict) -> list[render.EvidencePassage]:
    passages = []
    for p in result["passages"]:
        doc = _document(pipeline, p["source"])
        if doc is None:
            continue
        low, high = locator.paragraph(p["source"], p["start"], p["end"])
        passages.append(render.EvidencePassage(p["source"], doc.title, doc.text[low:high], p["start"] - low,
                                               p["end"] - low, p["score"]))
    return passages


def documents_table(pipeline: Pipeline) -> list[list[Any]]:
    return [[d["id"], d.get("title") or "", d.get("date") or "", d.get("chunks", 0), d.get("sentences", 0),
             d.get("chars", 0)] for d in pipeline.documents()]


def header_html(pipeline: Pipeline, current: bool = False) -> str:
    """The title and the index's counts; ``current``: as refreshed once the page has loaded (marked, so a test
    can wait for the page-load event to be over)."""
    docs = pipeline.documents()
    chunks = sum(d.get("chunks", 0) for d in docs)
    marker = " data-current" if current else ""
    return (f'<div class="rag-header"{marker}><h1>{escape(TITLE)}</h1>'
            f'<span class="rag-tagline">Answers with sentence-level, checked citations</span>'
            f'<span class="rag-stats">{len(docs)} document{"s" if len(docs) != 1 else ""} · {chunks} chunks · '
            f"backend {escape(pipeline.settings.backend)}</span></div>")


def _message(exc: Exception) -> str:
    """The one-line text for a failed request: a RagError's own message; anything else is logged in full
    on the server and named in one line (as the CLI does)."""
    if isinstance(exc, RagError):
        return str(exc)
    log.error("request failed", exc_info=exc)
    return f"internal error: {type(exc).__name__}: {exc} (details in the server log)"


# ---------------------------------------------------------------------------------------------- API


MAX_TOP_K = next(rule.le for rule in Settings.model_fields["top_k"].metadata if hasattr(rule, "le"))


def api_top_k(k: Any) -> int | None:
    """``k`` from an API caller, held to RAG_TOP_K's own range: a negative k would cut the results from the
    wrong end, a fractional one fails deep inside, and a huge one would rank and verify the whole corpus."""
    if k is None or (isinstance(k, int | float | str) and not isinstance(k, bool) and k in (0, "")):
        return None  # the server's setting
    if (isinstance(k, bool) or not isinstance(k, int | float) or not math.isfinite(k) or k != int(k)
            or not 1 <= k <= MAX_TOP_K):
        shown = repr(k) if isinstance(k, int | float | str) else type(k).__name__
        raise UsageError(f"k must be a whole number from 1 to {MAX_TOP_K} (0: the server's setting), got {shown[:40]}")
    return int(k)


def allowed_backend(pipeline: Pipeline, spec: str | None) -> str | None:
    """The backend a user of the server asked for, if the server allows it (empty: the server's setting)."""
    if spec is not None and not isinstance(spec, str):
        raise UsageError(f"backend must be text (a backend name), got {type(spec).__name__}")
    spec = (spec or "").strip()
    if spec and spec not in pipeline.settings.allowed_backends:
        raise UsageError(f"backend '{spec}' is not enabled on this server; choose one of: "
                         f"{', '.join(pipeline.settings.allowed_backends)} (RAG_SERVER_BACKENDS)")
    return spec or None


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def api_endpoint(fn):
    """An API function whose failures are one-line errors for the caller and one line in the server log: a
    RagError (a bad argument, an unreadable file...) as itself, logged as a warning without a traceback; anything
    else as "internal error" (its traceback logged, see _message). Gradio would otherwise answer
    ``{"error": null}`` and print a traceback for every refusal. A required argument that is missing or None is
    a usage error naming it."""
    required = [name for name, p in inspect.signature(fn).parameters.items() if p.default is inspect.Parameter.empty]

    @functools.wraps(fn)
    def endpoint(*args, **kwargs):
        try:
            bound = inspect.signature(fn).bind_partial(*args, **kwargs).arguments
            for name in required:
                if bound.get(name) is None:
                    raise UsageError(f"{name} is required")
            return fn(*args, **kwargs)
        except RagError as exc:
            log.warning("/%s refused: %s", fn.__name__, _one_line(exc))
            raise gr.Error(str(exc), print_exception=False) from None
        except Exception as exc:  # a bug: one line for the caller, the traceback in the log
            raise gr.Error(_message(exc), print_exception=False) from None

    return endpoint


def _history(history: Any) -> list | None:
    if history is not None and not isinstance(history, list):
        raise UsageError(f"history must be a list of earlier turns, got {type(history).__name__}")
    return history or None


def register_api(pipeline: Pipeline) -> None:
    """Named endpoints for ``gradio_client`` (``/ask``, ``/check``, ``/search``, ``/documents``), separate from
    the UI handlers so the API returns the pipeline's JSON, not HTML. Must be called inside the Blocks; build_app
    then lets callers leave out trailing arguments (``lenient_api_inputs``)."""

    @api_endpoint
    def ask(question: str, backend: str = "", k: int = 0, history: list | None = None) -> dict:
        """Answer a question with cited, verified sentences. Empty backend / k=0 use the server's settings.
        ``history``: earlier turns (``[{"question", "answer"}, ...]``, e.g. earlier /ask results, or
        ``[[question, answer], ...]``); a follow-up is then rewritten into ``standalone_question``, which is what
        is retrieved and answered."""
        return pipeline.ask(question, backend=allowed_backend(pipeline, backend), k=api_top_k(k),
                            history=_history(history)).to_json()

    @api_endpoint
    def check(claim: str, k: int = 0) -> dict:
        """Verdict (supported / partial / unsupported) on a claim or quote, its reason and the best passages."""
        return pipeline.check(claim, k=api_top_k(k)).to_json()

    @api_endpoint
    def search(query: str, k: int = 0) -> dict:
        """Ranked passages for a query (hybrid dense + BM25): ``{query, hits}``, as ``rag search --json``."""
        return search_json(pipeline.clean_query(query), pipeline.search(query, k=api_top_k(k)))

    @api_endpoint
    def documents() -> list[dict]:
        """The indexed documents: id, title, date, characters, sentences and chunks."""
        return pipeline.documents()

    # The API shares the UI's concurrency groups, so RAG_MAX_CONCURRENCY bounds asks from both together.
    for fn, group in ((ask, "ask"), (check, "check"), (search, None), (documents, None)):
        gr.api(fn, api_name=fn.__name__, concurrency_id=group)
        API_DEFAULTS[fn.__name__] = [None if p.default is inspect.Parameter.empty else p.default
                                     for p in inspect.signature(fn).parameters.values()]


# Each API endpoint's argument defaults (None for a required one), for lenient_api_inputs.
API_DEFAULTS: dict[str, list] = {}


def lenient_api_inputs(app: gr.Blocks) -> None:
    """Let API callers leave out trailing arguments (``{"data": ["Who?"]}``): they take their defaults, and a
    missing question is the endpoint's own "question is required". Gradio refuses fewer values than inputs with
    a traceback in the log and ``{"error": null}`` for the caller."""
    validate = app.validate_inputs

    def validate_inputs(block_fn, inputs: list) -> None:
        defaults = API_DEFAULTS.get(block_fn.api_name or "")
        if defaults is not None and isinstance(inputs, list) and len(inputs) < len(defaults):
            inputs.extend(defaults[len(inputs):])
        validate(block_fn, inputs)

    app.validate_inputs = validate_inputs


# ---------------------------------------------------------------------------------------------- the app


def build_app(pipeline: Pipeline) -> gr.Blocks:
    """The Blocks app over a loaded pipeline. Constructs only; serve it with ``start``."""
    settings = pipeline.settings
    locator = ParagraphLocator(pipeline)

    with gr.Blocks(title=TITLE, analytics_enabled=False) as app:
        header = gr.HTML(header_html(pipeline))
        # "wrap": on a phone the tabs that do not fit go to a second row (Gradio's default hid Evaluate and
        # Documents behind a "⋯" menu that testers did not find)
        with gr.Tabs(overflow_behavior="wrap"):
            with gr.Tab("Chat", id="chat"):
                _chat_tab(pipeline, locator, settings)
            with gr.Tab("Check a claim", id="check"):
                _check_tab(pipeline, locator)
            with gr.Tab("Evaluate", id="evaluate"):
                _evaluate_tab(pipeline)
            with gr.Tab("Documents", id="documents"):
                _documents_tab(pipeline, settings, header, app)
        register_api(pipeline)
    lenient_api_inputs(app)
    app.queue(default_concurrency_limit=settings.max_concurrency, max_size=settings.max_queue)
    return app


def _chat_tab(pipeline: Pipeline, locator: ParagraphLocator, settings: Settings) -> None:
    answers = gr.State([])  # this session's answers (JSON), by turn; chips refer to them
    with gr.Row(equal_height=False):
        with gr.Column(scale=5, min_width=420):
            chatbot = gr.Chatbot(
                label="Conversation", show_label=False, height=470, latex_delimiters=[], feedback_options=None, buttons=["copy"],
                placeholder="Ask a question about the indexed news articles. Every sentence of the answer "
                            "cites the passage it comes from; click a citation to read it in the article.",
                elem_id="rag-chat",
            )
            with gr.Row():
                question = gr.Textbox(show_label=False, placeholder="Ask about the news articles…", scale=8,
                                      max_lines=4, autofocus=True, elem_id="rag-question")
                ask_button = gr.Button("Ask", variant="primary", scale=1, min_width=90, elem_id="rag-ask")
            status = gr.HTML(elem_id="rag-chat-status", elem_classes="rag-status-slot")
            if BUNDLED_ARTICLE in pipeline.index.documents:
                gr.Examples([[q] for q in EXAMPLE_QUESTIONS], inputs=[question], label="Example questions")
            with gr.Accordion("Answer settings", open=False):
                backend = gr.Dropdown(settings.allowed_backends, value=settings.backend, label="Backend",
                                      info=Settings.help("backend"))
                top_k = gr.Slider(1, 20, value=settings.top_k, step=1, label="Passages retrieved (top-k)",
                                  info=Settings.help("top_k"))
        with gr.Column(scale=6, min_width=420):
            sources = gr.HTML(render.sources_panel(None, [], 0), js_on_load=SOURCES_PANEL_JS, elem_id="rag-sources")
            article = gr.HTML(render.article_placeholder(), js_on_load=ARTICLE_VIEWER_JS, elem_id="rag-article-view")

    def ask_in_chat(text: str, history: list, answered: list, backend_spec: str, k: float):
        text = (text or "").strip()
        if not text:
            yield (gr.skip(), gr.skip(), gr.skip(), gr.skip(), render.status_line("Type a question first.", "info"),
                   gr.skip(), gr.skip())
            return
        history = [*history, {"role": "user", "content": render.question_message(text)}]
        pending = [*history, {"role": "assistant", "content": render.streaming_message("")}]
        # The box and the button are locked while the answer comes: a second question typed or a second click
        # meanwhile was lost (the box is emptied) or asked twice.
        yield pending, gr.skip(), gr.skip(), gr.skip(), "", gr.update(value="", interactive=False), gr.update(interactive=False)
        streamed, answer = "", None
        try:
            # Earlier turns of this session: a follow-up is rewritten into a standalone question.
            for piece in pipeline.ask_stream(text, backend=allowed_backend(pipeline, backend_spec), k=int(k),
                                             history=answered or None, progress=True):
                if isinstance(piece, Rewritten):
                    history = [*history[:-1], {"role": "user", "content": render.question_message(text, piece.question)}]
                    yield ([*history, {"role": "assistant", "content": render.streaming_message("")}],
                           gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip())
                elif isinstance(piece, Reading):
                    yield ([*history, {"role": "assistant",
                                       "content": render.reading_message(piece.passages, piece.elapsed_s)}],
                           gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip())
                elif isinstance(piece, str):
                    streamed += piece
                    yield ([*history, {"role": "assistant", "content": render.streaming_message(streamed)}],
                           gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip())
                else:
                    answer = piece.to_json()
        except Exception as exc:  # any failure becomes the one-line message, not a stuck chat
            # Keep the question in the box so it can be corrected; the history stays as it was.
            yield (history[:-1], gr.skip(), gr.skip(), gr.skip(), render.status_line(_message(exc)),
                   gr.update(value=text, interactive=True), gr.update(interactive=True))
            return
        if answer is None:
            yield (history[:-1], gr.skip(), gr.skip(), gr.skip(), render.status_line("no answer was produced"),
                   gr.update(value=text, interactive=True), gr.update(interactive=True))
            return
        turn = len(answered)
        answered = [*answered, answer]
        history = [*history, {"role": "assistant", "content": render.answer_message(answer, turn)}]
        panel = render.sources_panel(answer, cited_passages(pipeline, locator, answer), turn)
        yield history, answered, panel, render.article_placeholder(), "", gr.update(interactive=True), gr.update(interactive=True)

    outputs = [chatbot, answers, sources, article, status, question, ask_button]
    for trigger in (question.submit, ask_button.click):
        trigger(ask_in_chat, [question, chatbot, answers, backend, top_k], outputs, api_visibility="private",
                concurrency_id="ask")

    def show_citation(answered: list, event: gr.EventData):
        picked = render.parse_chip_class(getattr(event, "cite", "") or "")
        if picked is None or picked[0] >= len(answered):
            return gr.skip(), gr.skip()
        turn, n = picked
        answer = answered[turn]
        citation = next((c for c in answer["citations"] if c["n"] == n), None)
        if citation is None:
            return gr.skip(), gr.skip()
        panel = render.sources_panel(answer, cited_passages(pipeline, locator, answer), turn, selected=n)
        doc = _document(pipeline, citation["source"])
        if doc is None or doc.text[citation["start"] : citation["end"]] != citation["text"]:
            return render.article_placeholder(f"{citation['source']} changed or was removed after this answer; "
                                              "ask again to cite the current text."), panel
        view = render.article_view(doc.title, doc.date, doc.text, citation["start"], citation["end"],
                                   f"citation [{n}] · characters {citation['start']}–{citation['end']}")
        return view, panel

    article.cite(show_citation, [answers], [article, sources], api_visibility="private", concurrency_limit=None,
                 show_progress="hidden")

    def clear_conversation():
        return [], render.sources_panel(None, [], 0), render.article_placeholder(), ""

    # The chatbot's own clear (bin) button empties the messages; the answers and panels go with them.
    chatbot.clear(clear_conversation, None, [answers, sources, article, status], api_visibility="private")


def _check_tab(pipeline: Pipeline, locator: ParagraphLocator) -> None:
    gr.Markdown("Paste a claim or a quote. The checker finds the passages that best support it and says whether "
                "they do: **supported**, **partial** or **unsupported**, with the reason. It is a fast word-level "
                "reader, right about two times in three (README, *Checking claims*): it catches changed figures, "
                "names and speakers, but can call a reworded false claim supported and a free paraphrase "
                "unsupported. Read the highlighted passage before relying on a verdict.")
    with gr.Row():
        claim = gr.Textbox(label="Claim or quote", lines=3, max_lines=8, scale=8, elem_id="rag-claim")
        check_button = gr.Button("Check", variant="primary", scale=1, min_width=90)
    gr.Examples([[c] for c in EXAMPLE_CLAIMS], inputs=[claim], label="Example claims")
    result = gr.HTML(elem_id="rag-check-result")

    def check_claim(text: str) -> str:
        try:
            outcome = pipeline.check(text).to_json()
        except Exception as exc:  # shown as one line; see _message
            return render.status_line(_message(exc))
        return render.check_result(outcome, evidence_passages(pipeline, locator, outcome))

    for trigger in (claim.submit, check_button.click):
        trigger(check_claim, [claim], [result], api_visibility="private", concurrency_id="check")


def _evaluate_tab(pipeline: Pipeline) -> None:
    from rag.eval.report import SYSTEMS  # cheap: no LangChain, no matplotlib

    eval_systems = [label for _, label in SYSTEMS]  # the metrics table's columns: ours, then the baselines
    gr.Markdown("Run the bundled gold question set (or your own JSONL file in the same format, or a SQuAD 2.0 "
                "JSON file, whose articles are indexed for the run) through the pipeline: retrieval, answer, "
                "citation and calibration metrics, with two baselines: the LangChain tutorial pipeline and the "
                "top-1 cosine sentence.")
    with gr.Row():
        gold_file = gr.File(label="Gold set (.jsonl or SQuAD .json, optional: the bundled set is used without one)",
                            file_types=[".jsonl", ".json"], scale=3, elem_id="rag-gold-upload")
        with gr.Column(scale=2):
            baseline = gr.Checkbox(True, label="Compare with the baselines (LangChain tutorial, top-1 sentence)")
            run_button = gr.Button("Run evaluation", variant="primary")
            status = gr.HTML(elem_classes="rag-status-slot")
    metrics = gr.Dataframe(headers=["section", "metric", *eval_systems], label="Metrics", interactive=False,
                           wrap=True, column_widths=["20%", "38%", "14%", "14%", "14%"], max_height=560,
                           elem_id="rag-eval-metrics")
    with gr.Row():
        # The plots carry their own titles; the label chip would cover them.
        accuracy_plot = gr.Image(label="Accuracy by question type", show_label=False, type="filepath",
                                 interactive=False, buttons=["download", "fullscreen"], elem_id="rag-eval-accuracy")
        latency_plot = gr.Image(label="Latency per question", show_label=False, type="filepath", interactive=False,
                                buttons=["download", "fullscreen"], elem_id="rag-eval-latency")
    # "result" judges the whole answer (a gold alias anywhere in it), so the whole answer is shown beside the
    # short answer: a wrong short answer inside a passing answer read as a wrong "pass".
    results = gr.Dataframe(headers=["id", "type", "result", "question", "short answer", "answer", "latency (ms)"],
                           label="Per question", interactive=False, wrap=True, max_height=480,
                           column_widths=["6%", "8%", "7%", "28%", "13%", "30%", "8%"], show_search="search",
                           elem_id="rag-eval-results")
    report_file = gr.File(label="Report (JSON)", interactive=False, elem_id="rag-eval-report")

    earlier_reports: list[Path] = []

    def run_evaluation(gold: str | None, with_baseline: bool, progress=gr.Progress()):  # noqa: B008 (Gradio's idiom)
        from rag.eval import evaluate, metrics_table  # heavy (LangChain baseline); only when asked

        def advance(done: int, total: int) -> None:
            progress((done, total), desc="Evaluating", unit="questions")

        # The previous run's report folder goes (Gradio served its files from its own copies); every run left one.
        while earlier_reports:
            shutil.rmtree(earlier_reports.pop(), ignore_errors=True)
        report_dir = Path(tempfile.mkdtemp(prefix="rag-eval-"))
        earlier_reports.append(report_dir)
        progress(0, desc="Preparing the gold set and the baseline")
        try:
            report = evaluate(pipeline, gold_path=gold, baseline=with_baseline, report_dir=report_dir,
                              progress_callback=advance)
        except Exception as exc:  # shown as one line; see _message
            message = _message(exc)
            if gold:  # the upload's temporary path would fill the line before the reason: its file name instead
                message = message.replace(str(gold), Path(gold).name)
            # The earlier run's results are cleared: left in place under the new file's name, they read as its own.
            return render.status_line(message), None, None, None, None, None
        report_json = report_dir / "report.json"
        report_json.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
        headers, rows = metrics_table(report["metrics"])
        table = [[*row[:2], *(row[headers.index(s)] if s in headers else "—" for s in eval_systems)] for row in rows]
        per_question = [
            [r["id"], r["type"], "✓ pass" if r["correct"] else "✗ fail", r["question"],
             "" if r["abstained"] else r.get("short_answer") or "",
             "(abstained)" if r["abstained"] else _shorten(r["answer"], 240),
             round(r["latency_ms"], 1)]
            for r in report["results"]
        ]
        passed = sum(r["correct"] for r in report["results"])
        message = render.status_line(f"{passed} of {len(report['results'])} questions passed", "ok")
        return (message, table, _existing(report_dir / "accuracy_by_type.png"), _existing(report_dir / "latency.png"),
                per_question, str(report_json))

    run_button.click(run_evaluation, [gold_file, baseline],
                     [status, metrics, accuracy_plot, latency_plot, results, report_file],
                     api_visibility="private", concurrency_limit=1, concurrency_id="evaluate",
                     show_progress_on=[metrics])


def _shorten(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _existing(path: Path) -> str | None:
    return str(path) if path.exists() else None


def _documents_tab(pipeline: Pipeline, settings: Settings, header: gr.HTML, app: gr.Blocks) -> None:
    from rag.jobs import indexer_for

    indexer = indexer_for(pipeline)  # one indexing job at a time per pipeline, whichever page started it
    headers = ["id", "title", "date", "chunks", "sentences", "characters"]
    table = gr.Dataframe(documents_table(pipeline), headers=headers, label="Indexed documents", interactive=False,
                         wrap=True, column_widths=["26%", "38%", "10%", "8%", "9%", "9%"],
                         elem_id="rag-documents-table")
    with gr.Row():
        uploads = gr.File(label=f"Add documents ({', '.join(UPLOAD_TYPES)}; up to {settings.max_uploads} files of "
                                f"{settings.max_file_mb:g} MB each)", file_count="multiple", file_types=UPLOAD_TYPES,
                          scale=3, elem_id="rag-upload")
        with gr.Column(scale=2):
            replace = gr.Checkbox(False, label="Replace documents with the same file name")
            add_button = gr.Button("Add to index", variant="primary")
            cancel_button = gr.Button("Cancel indexing", variant="stop", visible=False, elem_id="rag-cancel-indexing")
            status = gr.HTML(elem_id="rag-documents-status", elem_classes="rag-status-slot")
    gr.Markdown("Documents are indexed in the background, one upload at a time: questions are answered from the "
                "current index meanwhile, and the new index replaces it in one step once it is built. If any file is "
                "rejected, or you cancel, nothing changes. A document's id is its file name.")
    timer = gr.Timer(1.0, active=False)  # polls the running job's progress

    def job_line(job_status) -> str:
        kind = {"running": "info", "committed": "ok", "cancelled": "info"}.get(job_status.state, "error")
        return render.status_line(job_status.describe(), kind)

    def add_documents(files: list[str] | None, replace_existing: bool):
        try:
            job = indexer.start(_checked_uploads(files, settings), replace_existing)
        except Exception as exc:  # refused before any job started (a job is running, too many files...)
            return render.status_line(_message(exc)), gr.skip(), gr.skip()
        return job_line(job.status()), gr.update(visible=True), gr.Timer(active=True)

    def show_progress():
        """The job's stage while it runs; once it ended, its outcome, the (reloaded) documents, and the poll off."""
        job_status = indexer.status()
        if job_status is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.update(visible=False), gr.Timer(active=False)
        if not job_status.finished:
            return job_line(job_status), gr.skip(), gr.skip(), gr.skip(), gr.update(visible=True), gr.skip()
        cleared = None if job_status.state == "committed" else gr.skip()
        return (job_line(job_status), documents_table(pipeline), header_html(pipeline), cleared,
                gr.update(visible=False), gr.Timer(active=False))

    def cancel_indexing():
        indexer.cancel()
        return show_progress()

    def on_page_load():
        """A page shows the documents indexed now, not those of when the app was built (uploads since then,
        from any page, are in the index); a page opened while a job runs follows it too."""
        current = documents_table(pipeline), header_html(pipeline, current=True)
        job_status = indexer.status()
        if job_status is None or job_status.finished:
            return gr.skip(), gr.skip(), gr.skip(), *current
        return job_line(job_status), gr.update(visible=True), gr.Timer(active=True), *current

    def one_per_name(files: list[str] | None):
        unique = _one_per_name(files)
        return gr.skip() if unique == files else unique

    # Choosing files adds them to what the component holds: choosing a file again (after a refusal, say) would
    # list it twice, and the add would be refused for the name given twice. The list keeps the latest of each name.
    uploads.upload(one_per_name, uploads, uploads, api_visibility="private", concurrency_limit=None,
                   show_progress="hidden")
    progress_outputs = [status, table, header, uploads, cancel_button, timer]
    add_button.click(add_documents, [uploads, replace], [status, cancel_button, timer], api_visibility="private",
                     concurrency_limit=1, concurrency_id="index-write")
    timer.tick(show_progress, None, progress_outputs, api_visibility="private", concurrency_limit=None,
               show_progress="hidden")
    cancel_button.click(cancel_indexing, None, progress_outputs, api_visibility="private", concurrency_limit=None)
    app.load(on_page_load, None, [status, cancel_button, timer, table, header], api_visibility="private",
             concurrency_limit=None, show_progress="hidden")


def _one_per_name(files: list[str] | None) -> list[str] | None:
    """The chosen files with each file name once: a file chosen again under a name replaces the earlier one, in its
    place (a document's id is its file name, so two files of one name could never be added together)."""
    if not files:
        return files
    latest: dict[str, str] = {}
    for file in files:
        latest[Path(file).name] = file  # a dict keeps the first position of a key, and takes its latest value
    return list(latest.values())


def _checked_uploads(files: list[str] | None, settings: Settings) -> list[Path]:
    """The app's own limits (count, size, type), checked before the pipeline reads anything."""
    paths = [Path(f) for f in _one_per_name(files) or []]
    if not paths:
        raise UsageError("choose one or more files to add")
    if len(paths) > settings.max_uploads:
        raise UsageError(f"{len(paths)} files chosen; at most {settings.max_uploads} per upload (RAG_MAX_UPLOADS)")
    for path in paths:
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            raise UsageError(f"{path.name}: unsupported type; use {', '.join(UPLOAD_TYPES)}")
        if path.stat().st_size > settings.max_file_mb * 1_000_000:
            raise UsageError(f"{path.name}: larger than {settings.max_file_mb:g} MB (RAG_MAX_FILE_MB)")
    return paths


# ---------------------------------------------------------------------------------------------- serving

_pipeline: Pipeline | None = None
_pipeline_lock = threading.Lock()


def shared_pipeline(settings: Settings) -> Pipeline:
    """The process's one pipeline: the model and index are loaded once, whatever calls for them."""
    global _pipeline
    with _pipeline_lock:
        if _pipeline is None:
            _pipeline = Pipeline.load(settings)
        return _pipeline


def start(app: gr.Blocks, settings: Settings, *, share: bool = False, block: bool = True, quiet: bool = False):
    """Serve ``app`` on ``settings.host:settings.port`` (port 0: any free port). Returns launch()'s
    (fastapi app, local url, share url); with ``block=False`` it returns at once (tests close it with app.close())."""
    auth = tuple(settings.auth.split(":", 1)) if settings.auth else None
    return app.launch(
        server_name=settings.host,
        server_port=settings.port or free_port(settings.host),
        share=share,
        auth=auth,
        auth_message="Sign in to the news QA app." if auth else None,
        max_file_size=int(settings.max_file_mb * 1_000_000),
        app_kwargs={"middleware": middleware_for(settings)},  # failed logins are rate-limited (ui/login.py)
        prevent_thread_lock=not block,
        quiet=quiet,
        footer_links=["api"],
        ssr_mode=False,  # no Node server: plain Python serving
        theme=theme(),
        css=CSS,
    )


def launch(settings: Settings, share: bool = False) -> None:
    """``rag serve``: load the pipeline once, build the app, serve it until interrupted."""
    start(build_app(shared_pipeline(settings)), settings, share=share)
