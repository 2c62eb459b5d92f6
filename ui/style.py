"""Look of the app. Gradio 6 takes the theme and CSS at launch(), so ``ui.app.start`` passes these."""

from __future__ import annotations

import gradio as gr

# System fonts only: the machine serving the app may have no internet, and a web font would stall the page.
_FONT = ["Inter", "ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"]
_MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]


def theme() -> gr.themes.Base:
    return gr.themes.Soft(primary_hue="indigo", secondary_hue="slate", neutral_hue="slate",
                          font=_FONT, font_mono=_MONO, radius_size="md")


CSS = """
.gradio-container { max-width: 1480px !important; }
/* Secondary text that stays readable: the theme's "subdued" grey is 2.45:1 on the panels (WCAG AA asks 4.5:1);
   slate-600 is 7:1 there, slate-300 on the dark theme's panels. */
.gradio-container { --rag-secondary: #475569; }
.dark .gradio-container, .gradio-container.dark { --rag-secondary: #cbd5e1; }

/* header */
.rag-header { display: flex; align-items: center; gap: 14px; padding: 0 2px; }
.rag-header h1 { font-size: 1.3rem; font-weight: 700; margin: 0; letter-spacing: -0.01em; white-space: nowrap; }
.rag-header .rag-tagline { color: var(--rag-secondary); font-size: 0.9rem; white-space: nowrap;
  overflow: hidden; text-overflow: ellipsis; min-width: 0; }
.rag-header .rag-stats { margin-left: auto; font-size: 0.78rem; color: var(--rag-secondary); white-space: nowrap;
  border: 1px solid var(--border-color-primary); border-radius: 999px; padding: 2px 10px; }
/* empty one-line status slots take no room until there is something to say */
.rag-status-slot:not(:has(.rag-status)) { display: none !important; }

/* chat messages */
.rag-msg, .rag-question { line-height: 1.55; }
.rag-confidence-row { margin-bottom: 4px; }
.rag-confidence { font-size: 0.85em; padding: 1px 8px; border-radius: 10px; border: 1px solid; }
.rag-confidence-high { color: #1a7f37; border-color: #1a7f37; }
.rag-confidence-medium { color: #9a6700; border-color: #9a6700; }
.rag-confidence-low { color: #cf222e; border-color: #cf222e; }
.rag-note { font-size: 0.85em; opacity: 0.8; margin: 2px 0 6px; }
.rag-note-first { opacity: 1; color: var(--rag-secondary); margin: 0 0 8px; }
.rag-short { display: flex; align-items: center; gap: 8px; margin-bottom: 6px; font-size: 1.08rem; }
.rag-short-label { font-size: 0.68rem; font-weight: 700; text-transform: uppercase; letter-spacing: 0.06em;
  color: var(--color-accent); background: var(--color-accent-soft); border-radius: 4px; padding: 1px 6px; }
.rag-short strong { font-weight: 700; }
.rag-chip { display: inline-flex; align-items: center; justify-content: center; min-width: 1.35em; height: 1.35em;
  padding: 0 0.3em; margin: 0 1px; border-radius: 999px; font-size: 0.72em; font-weight: 700; line-height: 1;
  vertical-align: 0.35em; cursor: pointer; user-select: none; border: 1px solid transparent;
  transition: transform 0.08s ease, box-shadow 0.08s ease; }
.rag-chip:hover, .rag-chip:focus { transform: translateY(-1px); box-shadow: 0 1px 4px rgba(0,0,0,0.18); outline: none; }
/* Keyboard focus must be seen (chips and source cards open the article on Enter or Space). */
.rag-chip:focus-visible { outline: 2px solid var(--color-accent); outline-offset: 2px; }
.rag-source:focus-visible { outline: 2px solid var(--color-accent); outline-offset: 2px; }
.rag-chip-supported { background: #dcfce7; color: #166534; border-color: #86efac; }
.rag-chip-partial { background: #fef3c7; color: #92400e; border-color: #fcd34d; }
.rag-chip-unsupported { background: #fee2e2; color: #991b1b; border-color: #fca5a5; }
.rag-chip-attributed { border-style: dashed; }
.rag-rewritten { font-size: 0.85em; color: var(--rag-secondary); margin-top: 2px; }
.rag-chip-neutral { background: #e2e8f0; color: #334155; border-color: #cbd5e1; }
.rag-notice { background: #f1f5f9; border: 1px solid #cbd5e1; border-left: 4px solid #64748b; color: #334155;
  border-radius: 6px; padding: 8px 12px; }
.rag-streaming { color: var(--body-text-color-subdued); }
.rag-caret { display: inline-block; width: 7px; height: 1em; margin-left: 2px; vertical-align: -2px;
  background: currentColor; animation: rag-blink 1s steps(2) infinite; }
@keyframes rag-blink { 50% { opacity: 0; } }

/* panels */
.rag-panel { border: 1px solid var(--border-color-primary); border-radius: 10px; background: var(--block-background-fill);
  padding: 12px 14px; }
.rag-panel-title, .rag-subhead { font-size: 0.72rem; font-weight: 700; text-transform: uppercase;
  letter-spacing: 0.07em; color: var(--body-text-color-subdued); margin-bottom: 8px; }
.rag-subhead { margin-top: 12px; }
.rag-empty { color: var(--rag-secondary); font-size: 0.92rem; padding: 6px 0; }
#rag-sources .rag-panel { position: relative; max-height: 300px; overflow-y: auto; }
#rag-sources .rag-panel-title { position: sticky; top: -12px; z-index: 1; margin: -12px 0 8px; padding: 12px 0 6px;
  background: var(--block-background-fill); }
.rag-source { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px 10px; margin-bottom: 8px;
  background: var(--background-fill-primary); }
#rag-sources .rag-source { cursor: pointer; }
#rag-sources .rag-source:hover { border-color: var(--color-accent); }
.rag-source-selected { border-color: var(--color-accent) !important; box-shadow: 0 0 0 2px var(--color-accent-soft); }
.rag-source-head { display: flex; align-items: center; gap: 8px; margin-bottom: 4px; font-size: 0.82rem; }
.rag-source-n { display: inline-flex; align-items: center; justify-content: center; width: 1.5em; height: 1.5em;
  border-radius: 999px; background: var(--color-accent); color: white; font-weight: 700; font-size: 0.78rem; }
.rag-source-title { font-weight: 600; color: var(--rag-secondary); overflow: hidden; text-overflow: ellipsis;
  white-space: nowrap; flex: 1; }
.rag-source-para { font-size: 0.9rem; line-height: 1.5; color: var(--body-text-color); }
.rag-source-para mark.rag-cited, .rag-article mark.rag-cited { background: #fde68a; color: #1f2937;
  border-radius: 3px; padding: 0 2px; }
.rag-source-reason { font-size: 0.76rem; color: var(--rag-secondary); margin-top: 4px; font-style: italic; }
.rag-score { font-size: 0.76rem; color: var(--rag-secondary); }
.rag-checks { list-style: none; padding: 0; margin: 0; }
.rag-checks li { display: flex; flex-wrap: wrap; align-items: baseline; gap: 6px; font-size: 0.84rem; padding: 4px 0;
  border-top: 1px dashed var(--border-color-primary); }
.rag-check-sentence { flex: 1 1 60%; }
.rag-check-cites { font-weight: 600; color: var(--color-accent); }
.rag-check-reason { flex-basis: 100%; font-size: 0.76rem; color: var(--rag-secondary); padding-left: 2px; }
.rag-warning { font-size: 0.8rem; color: #92400e; margin-top: 6px; }

/* verdict badges */
.rag-badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 0.7rem; font-weight: 700;
  text-transform: uppercase; letter-spacing: 0.04em; white-space: nowrap; }
.rag-badge-supported { background: #dcfce7; color: #166534; }
.rag-badge-partial { background: #fef3c7; color: #92400e; }
.rag-badge-unsupported { background: #fee2e2; color: #991b1b; }
.rag-badge-neutral { background: #e2e8f0; color: #334155; }

/* article viewer */
.rag-article-head { display: flex; flex-wrap: wrap; align-items: baseline; gap: 2px 10px; margin-bottom: 8px; }
.rag-article-title { font-weight: 700; }
.rag-article-date, .rag-article-label { font-size: 0.8rem; color: var(--rag-secondary); white-space: nowrap; }
.rag-article-label { margin-left: auto; }
.rag-article { position: relative; max-height: 330px; overflow-y: auto; white-space: pre-wrap; font-family: Georgia,
  "Times New Roman", serif; font-size: 0.98rem; line-height: 1.6; padding-right: 8px; }
.rag-article mark.rag-cited { box-shadow: 0 0 0 2px #f59e0b; }
.rag-flash { animation: rag-flash 1.2s ease-out 1; }
@keyframes rag-flash { 0% { background: #f59e0b; } 100% { background: #fde68a; } }

/* check tab */
.rag-verdict { display: flex; align-items: center; gap: 10px; font-size: 1.02rem; margin-bottom: 4px; }
.rag-verdict .rag-badge { font-size: 0.82rem; padding: 3px 10px; }
.rag-claim { font-weight: 600; overflow-wrap: anywhere; }  /* a pasted URL no longer runs past the panel */
.rag-reason-disputed { border-left: 3px solid #b45309; padding-left: 8px; }
.rag-reason { color: var(--rag-secondary); font-size: 0.9rem; margin-bottom: 4px; }

/* one-line status messages */
.rag-status { font-size: 0.88rem; padding: 6px 10px; border-radius: 6px; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; }
/* an error wraps: its end says what to fix ("… must be an exact substring"), which an ellipsis hid */
.rag-status-error { background: #fee2e2; color: #991b1b; white-space: normal; overflow-wrap: anywhere; }
.rag-status-ok { background: #dcfce7; color: #166534; }
.rag-status-info { background: #f1f5f9; color: #334155; }

/* narrow screens (phones): the header wraps instead of running off the screen, and tables keep readable
   columns and scroll sideways instead of squeezing a date to one character a line */
@media (max-width: 640px) {
  .rag-header { flex-wrap: wrap; gap: 2px 10px; }
  .rag-header h1 { white-space: normal; font-size: 1.1rem; }
  .rag-header .rag-tagline { white-space: normal; }
  .rag-header .rag-stats { margin-left: 0; }
  #rag-documents-table table, #rag-eval-results table, #rag-eval-metrics table { min-width: 640px; }
}
"""
