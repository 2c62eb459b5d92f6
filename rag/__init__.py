"""rag: retrieval-augmented question answering over news articles with verifiable citations.

Kept import-light on purpose: heavy libraries (torch, faiss, langchain, gradio) are imported
where they are used so that ``rag --help`` stays instant.
"""

__version__ = "0.1.0"
