"""The Gradio web app over the pipeline (``rag serve``). See ``ui.app``."""

from ui.app import build_app, launch, start

__all__ = ["build_app", "launch", "start"]
