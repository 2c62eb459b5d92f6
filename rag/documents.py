"""Reading documents: plain text and Markdown as stored, main text of HTML, text of PDF.

A document's id is its file name inside the corpus folder. Offsets always index ``Document.text``:
for .txt/.md that is the file decoded as UTF-8, exactly as stored.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from rag.errors import InputFileError
from rag.types import Document

SUPPORTED_SUFFIXES = (".txt", ".md", ".html", ".htm", ".pdf")
# The bundled article (and other exports of the same feed) begins with "date YYYY-MM-DD".
DATE_PREFIX = re.compile(r"^\s*date\s+(\d{4}-\d{2}-\d{2})\b")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _looks_binary(data: bytes) -> bool:
    return b"\x00" in data[:8192]


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{path.name}: not valid UTF-8 text (byte {exc.start}); save it as UTF-8") from None


def _html_text(path: Path, data: bytes) -> tuple[str, str | None]:
    import logging

    import trafilatura

    # trafilatura and htmldate log their parse problems, at ERROR ("empty HTML tree"); a page without main text
    # is reported by the one-line InputFileError below instead.
    for noisy in ("trafilatura", "htmldate"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    html = _decode(path, data)
    if "<" not in html:
        raise InputFileError(f"{path.name}: does not look like HTML")
    text = trafilatura.extract(html, include_comments=False, include_tables=True, favor_recall=True)
    meta = trafilatura.extract_metadata(html)
    title = meta.title if meta is not None and meta.title else None
    if not text or not text.strip():
        raise InputFileError(f"{path.name}: no readable main text found in the HTML")
    # trafilatura puts each block element (heading, paragraph, list item) on one line; a blank line between
    # them makes each its own paragraph, so an <h1>/<h2> becomes a section heading instead of being glued
    # onto the first sentence that follows it.
    text = "\n\n".join(line.strip() for line in text.splitlines() if line.strip())
    return text, title


def _pdf_text(path: Path, data: bytes) -> str:
    import io
    import logging

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    if not data.startswith(b"%PDF"):
        raise InputFileError(f"{path.name}: not a PDF file (missing %PDF header)")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise InputFileError(f"{path.name}: damaged or truncated PDF ({type(exc).__name__})") from None
    return "\n\n".join(p.strip() for p in pages if p.strip())


def _megabytes(size: int) -> str:
    # Three significant digits, so a small limit reads "0.01 MB", not "0.0 MB".
    megabytes = size / 1e6
    return f"{megabytes:.3g} MB" if megabytes < 100 else f"{megabytes:,.0f} MB"


def read_document(path: Path, max_bytes: int | None = None, doc_id: str | None = None) -> Document:
    """Read one file into a Document, or raise InputFileError naming the file and the problem."""
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    if path.is_dir():
        raise InputFileError(f"{path}: is a directory, not a document")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise InputFileError(
            f"{path.name}: unsupported file type '{suffix or '(none)'}'; supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise InputFileError(
            f"{path.name}: {_megabytes(size)} exceeds the {_megabytes(max_bytes)} limit (RAG_MAX_FILE_MB)"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"{path.name}: cannot be read ({exc.strerror})") from None
    if not data.strip():
        raise InputFileError(f"{path.name}: file is empty")
    title = None
    if suffix == ".pdf":
        text, fmt = _pdf_text(path, data), "pdf"
    else:
        if _looks_binary(data):
            raise InputFileError(f"{path.name}: looks binary, not text")
        if suffix in (".html", ".htm"):
            (text, title), fmt = _html_text(path, data), "html"
        else:
            text, fmt = _decode(path, data), suffix.lstrip(".")
    if not text.strip():
        raise InputFileError(f"{path.name}: no text could be extracted")
    match = DATE_PREFIX.match(text)
    date = match.group(1) if match else None
    return Document(
        id=doc_id or path.name,
        text=text,
        title=title or _title_from_text(text, path),
        date=date,
        sha256=sha256_bytes(data),
        fmt=fmt,
    )


def _title_from_text(text: str, path: Path) -> str:
    body = DATE_PREFIX.sub("", text, count=1).strip()
    first = body.split("\n", 1)[0].strip().lstrip("# ").strip()
    if 0 < len(first) <= 120:
        return first
    return path.stem


def corpus_files(corpus_dir: Path) -> list[Path]:
    """Documents of the corpus folder, sorted by name; hidden files are ignored."""
    if not corpus_dir.is_dir():
        raise InputFileError(f"{corpus_dir}: corpus folder does not exist")
    return sorted(
        p for p in corpus_dir.iterdir() if p.is_file() and not p.name.startswith(".")
    )


def load_corpus(corpus_dir: Path, max_bytes: int | None = None) -> list[Document]:
    files = corpus_files(corpus_dir)
    if not files:
        raise InputFileError(f"{corpus_dir}: corpus folder has no documents")
    return [read_document(p, max_bytes=max_bytes) for p in files]
