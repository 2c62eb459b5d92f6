"""The app in a real browser: Debian's Chromium driven by Python Playwright (never `playwright install`).

In CI (CI=true) these tests must run: a missing browser is a failure there, and a skip elsewhere.
The first test leaves docs/screenshot.png, the README's picture of the app.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from ui.app import build_app, start

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # a real Chromium: not part of the fast suite

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "screenshot.png"
# Chromium's own network traffic is refused on a closed machine; these flags keep it quiet.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic"]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
WAIT_MS = 60_000


def choose_files(page, paths: list[Path]) -> None:
    """Choose files in the Documents tab's upload box and wait until it lists every one. On a timeout the failure
    says what the box showed and what the browser logged and requested meanwhile: twice (both in full CI runs
    beside other heavy jobs on this 2-core machine) a chosen file never appeared within WAIT_MS, with nothing to
    say why — Gradio's upload (POST /upload, then the component's own upload event) or the app's handler."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    # The page-load event (it refreshes the header and the documents table) must be over first: in a CI run its
    # event stream closed just as the upload's event joined the queue, and the upload's result never came back.
    page.wait_for_selector(".rag-header[data-current]")
    seen: list[str] = []
    page.on("console", lambda m: seen.append(f"console {m.type}: {m.text}"))
    page.on("requestfailed", lambda r: seen.append(f"failed {r.method} {r.url}: {r.failure}"))
    page.on("response", lambda r: seen.append(f"{r.status} {r.request.method} {r.url}")
            if r.status >= 400 or "upload" in r.url or "queue" in r.url else None)
    page.set_input_files("#rag-upload input[type=file]", [str(p) for p in paths])
    try:
        for path in paths:
            page.wait_for_selector(f"#rag-upload :text('{path.name}')")
    except PlaywrightTimeoutError:
        box = page.locator("#rag-upload").inner_html()[:1500]
        raise AssertionError(f"chosen file(s) {[p.name for p in paths]} not listed within {WAIT_MS} ms; the upload "
                             f"box holds: {box!r}; the browser meanwhile: {seen[-40:]}") from None


def _need(condition: bool, reason: str) -> None:
    if not condition:
        if IN_CI:
            pytest.fail(f"{reason} (CI must run the browser tests; .ci/run installs chromium)")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    _need(CHROMIUM.exists(), f"{CHROMIUM} not found: apt-get install -y chromium chromium-driver")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need(False, "the playwright Python package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def _serve(pipeline):
    settings = pipeline.settings.model_copy(update={"host": "127.0.0.1", "port": 0, "auth": None})
    app = build_app(pipeline)
    _, url, _ = start(app, settings, block=False, quiet=True)
    return app, url


@pytest.fixture(scope="module")
def server(pipeline):
    app, url = _serve(pipeline)
    yield url
    app.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    yield page
    context.close()


ANSWERS = "#rag-chat .rag-msg:not(.rag-streaming), #rag-chat .rag-notice"


def _ask(page, question: str, expect_answer: bool = True):
    """Ask through the page; returns the new assistant message (an answer, or an abstention notice)."""
    answers_before = page.locator(ANSWERS).count()
    page.fill("#rag-question textarea", question)
    page.click("#rag-ask")
    page.wait_for_function(f"document.querySelectorAll({ANSWERS!r}).length > {answers_before}")
    message = page.locator(ANSWERS).last
    if expect_answer:
        assert "rag-msg" in (message.get_attribute("class") or ""), f"no answer to {question!r}: {message.inner_text()}"
    return message


def test_ask_click_a_citation_and_see_it_highlighted_in_the_article(page, server, article_text):
    page.goto(server)
    page.wait_for_selector("#rag-question textarea")
    first = _ask(page, "Who replaced Qassem Soleimani?")
    assert "Esmail Ghaani" in first.locator(".rag-short").inner_text()
    assert first.locator(".rag-chip").count() >= 1

    question = "How much money does the Iraqi government give the Popular Mobilization Forces each year?"
    answer = _ask(page, question)
    assert "$3 billion" in answer.locator(".rag-short").inner_text()
    chips = answer.locator(".rag-chip")
    assert chips.count() >= 2, "the answer should cite more than one sentence"
    # The sources panel lists every cited passage with its verdict and the cited sentence highlighted.
    sources = page.locator("#rag-sources")
    assert sources.locator(".rag-source").count() == chips.count()
    assert sources.locator(".rag-badge-supported").count() >= 1
    assert "$3 billion" in sources.locator("mark.rag-cited").last.inner_text()

    chips.last.click()
    mark = page.locator("#rag-article-view #rag-article-mark")
    mark.wait_for()
    cited = mark.inner_text()
    assert "$3 billion" in cited and cited in article_text
    assert page.locator("#rag-sources .rag-source-selected").count() == 1
    # Scrolled into view: the mark is inside the visible part of the article box.
    page.wait_for_timeout(1300)  # let the highlight's flash settle before measuring and photographing
    box = page.locator("#rag-article-view .rag-article").bounding_box()
    spot = mark.bounding_box()
    assert box["y"] <= spot["y"] and spot["y"] + spot["height"] <= box["y"] + box["height"]
    assert spot["y"] + spot["height"] <= 900, "the highlighted passage should be on screen"

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 20_000


def test_the_question_box_and_ask_button_are_locked_while_an_answer_comes(page, server):
    """A second click or a second question typed while an answer came was asked twice or lost (the first
    update empties the box): both are locked until the answer is in."""
    page.goto(server)
    page.wait_for_selector("#rag-question textarea")
    page.wait_for_selector("#rag-ask")
    page.evaluate("""() => {
        window.__locked = false;
        const button = document.querySelector('#rag-ask');
        new MutationObserver(() => { if (button.disabled) window.__locked = true; })
            .observe(button, {attributes: true});
    }""")
    _ask(page, "Who replaced Qassem Soleimani?")
    assert page.evaluate("() => window.__locked"), "the Ask button was never disabled while answering"
    page.wait_for_function("!document.querySelector('#rag-ask').disabled")
    assert page.locator("#rag-question textarea").is_editable()
    assert page.input_value("#rag-question textarea") == ""


def test_a_phone_screen_shows_the_whole_header(browser, server):
    """At 390 px the header ran off the screen (title cut, document count unseen)."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1)
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(server)
        page.wait_for_selector(".rag-header .rag-stats")
        right_edges = page.evaluate("""() => ['.rag-header h1', '.rag-header .rag-stats'].map(
            (s) => document.querySelector(s).getBoundingClientRect().right)""")
        assert max(right_edges) <= 390, right_edges
        # Every tab is a visible button on the page, none behind Gradio's "⋯" overflow menu.
        for name in ("Chat", "Check a claim", "Evaluate", "Documents"):
            tab = page.get_by_role("tab", name=name)
            assert tab.is_visible(), name
            box = tab.bounding_box()
            assert box is not None and box["x"] + box["width"] <= 390, (name, box)
        page.get_by_role("tab", name="Documents").click()
        page.wait_for_selector("#rag-documents-table")
    finally:
        context.close()


def test_abstention_is_shown_as_a_notice(page, server):
    page.goto(server)
    page.wait_for_selector("#rag-question textarea")
    notice = _ask(page, "What is the capital of France?", expect_answer=False)
    assert "No answer in the indexed articles" in notice.inner_text()
    assert page.locator("#rag-chat-status .rag-status-error").count() == 0
    assert "abstained" in page.locator("#rag-sources").inner_text()


def test_pipeline_errors_are_one_line_messages_in_the_page(page, server):
    page.goto(server)
    page.wait_for_selector("#rag-question textarea")
    page.fill("#rag-question textarea", "Why? " * 500)
    page.click("#rag-ask")
    error = page.locator("#rag-chat-status .rag-status-error")
    error.wait_for()
    assert "the limit is 2,000" in error.inner_text()
    assert page.locator("#rag-chat .rag-msg, #rag-chat .rag-notice").count() == 0
    assert page.input_value("#rag-question textarea").startswith("Why?"), "the question stays, to be corrected"


def test_check_tab_shows_verdict_reason_and_highlighted_passages(page, server):
    page.goto(server)
    page.get_by_role("tab", name="Check a claim").click()
    page.fill("#rag-claim textarea", "Soleimani's replacement, Esmail Ghaani, lacks the same stature and authority.")
    page.get_by_role("button", name="Check", exact=True).click()
    result = page.locator("#rag-check-result")
    result.locator(".rag-verdict").wait_for()
    assert result.locator(".rag-badge-supported").count() >= 1
    assert result.locator(".rag-reason").inner_text().strip()
    assert "Ghaani" in result.locator("mark.rag-cited").first.inner_text()


def test_evaluate_tab_runs_the_gold_set_with_metrics_plots_and_report(page, server, tmp_path):
    page.goto(server)
    page.get_by_role("tab", name="Evaluate").click()
    page.get_by_label("Compare with the baselines").uncheck()  # ours only: seconds, not a minute
    page.get_by_role("button", name="Run evaluation").click()
    done = page.locator(".rag-status-ok", has_text="questions passed")
    done.wait_for(timeout=300_000)
    passed, total = (int(n) for n in re.findall(r"\d+", done.inner_text())[:2])
    assert total == 89 and passed > total // 2
    assert "Hit@1" in page.locator("#rag-eval-metrics").inner_text()
    results = page.locator("#rag-eval-results").inner_text()
    assert "q001" in results and "pass" in results
    # "pass" judges the whole answer, so the whole answer is shown, beside the short answer.
    assert "short answer" in results
    for plot in ("#rag-eval-accuracy img", "#rag-eval-latency img"):
        page.locator(plot).wait_for()
        assert page.locator(plot).evaluate("img => img.complete && img.naturalWidth > 200")
    link = page.locator("#rag-eval-report a[href*='report.json']").first
    report = page.request.get(link.get_attribute("href")).json()
    assert set(report) == {"metrics", "results", "baseline", "top1_sentence"} and len(report["results"]) == total

    # A failed run clears the earlier results (left in place under the new file's name they read as its own),
    # and its error wraps onto lines of its own, whole (an ellipsis hid what to fix).
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x1", "question": "Who?", "type": "who", "answers": ["Ada"], "evidence": ["text that '
                   'is not in the article at all, nowhere, not a word of it"]}\n', encoding="utf-8")
    page.set_input_files("#rag-gold-upload input[type=file]", str(bad))
    page.locator("#rag-gold-upload", has_text="bad.jsonl").wait_for()
    page.get_by_role("button", name="Run evaluation").click()
    error = page.locator(".rag-status-error", has_text="not in the article at all")
    error.wait_for(timeout=120_000)
    assert error.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), "the error is cut off"
    assert "q001" not in page.locator("#rag-eval-results").inner_text()
    assert page.locator("#rag-eval-report a[href*='report.json']").count() == 0
    assert page.locator("#rag-eval-accuracy img").count() == 0


def test_uploaded_markup_is_shown_as_text_never_run(browser, tmp_path, fresh_settings, embedder):
    """A private pipeline (its own corpus copy), so the upload does not change the session's index."""
    from rag.index import open_index
    from rag.pipeline import Pipeline

    private = Pipeline(fresh_settings, embedder, open_index(fresh_settings, embedder))
    upload = tmp_path / "ferry-note.txt"
    upload.write_text(
        "The mayor of Springfield said <script>window.__pwned = 1</script> the ferry will run every hour.\n\n"
        '<img src=x onerror="window.__pwned = 2"> Officials said the ferry ticket costs 3 dollars.\n',
        encoding="utf-8",
    )
    app, url = _serve(private)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(url)
        page.get_by_role("tab", name="Documents").click()
        choose_files(page, [upload])
        page.get_by_role("button", name="Add to index").click()
        # Indexed by a background job (rag.jobs): the status shows its progress, then the committed result.
        status = page.locator("#rag-documents-status .rag-status-ok")
        status.wait_for()
        assert "Indexed 1 document: ferry-note.txt" in status.inner_text()
        assert "ferry-note.txt" in private.index.documents
        # A page opened afterwards lists the documents indexed now, not those of when the app was built (it
        # showed the bundled article alone, and re-adding the "missing" file was refused as already there).
        later = context.new_page()
        later.set_default_timeout(WAIT_MS)
        later.goto(url)
        later.wait_for_function("document.querySelector('.rag-header')?.innerText.includes('2 documents')")
        later.get_by_role("tab", name="Documents").click()
        later.wait_for_selector("#rag-documents-table :text('ferry-note.txt')")
        later.close()

        page.get_by_role("tab", name="Chat").click()
        answer = _ask(page, "What did the mayor of Springfield say about the ferry?")
        answer.locator(".rag-chip").last.click()
        mark = page.locator("#rag-article-view #rag-article-mark")
        mark.wait_for()
        assert "<script>" in mark.inner_text(), "the markup is part of the text, shown as text"
        assert "<img" in page.locator("#rag-article-view .rag-article").inner_text()
        assert page.evaluate("() => window.__pwned") is None
        assert page.locator("#rag-article-view script, #rag-chat script, #rag-sources script").count() == 0
    finally:
        context.close()
        app.close()
