"""Prompt templates (``*.txt``) for the LLM answer backends: data, shipped as package data and read by
``rag.answer.prompts`` through importlib.resources."""
