"""Reading documents: plain text and Markdown as stored, main text of HTML, text of PDF.

A document's id is its file name inside the corpus folder. Offsets always index ``Document.text``:
for .txt/.md that is the file decoded as UTF-8, exactly as stored but for a leading byte order mark (U+FEFF,
which editors on Windows write), which is not part of the text.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import re
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from rag.errors import InputFileError
from rag.types import Document

SUPPORTED_SUFFIXES = (".txt", ".md", ".html", ".htm", ".pdf")
# The bundled article (and other exports of the same feed) begins with "date YYYY-MM-DD".
DATE_PREFIX = re.compile(r"^\s*date\s+(\d{4}-\d{2}-\d{2})\b")
log = logging.getLogger("rag")


@dataclass(frozen=True)
class DocumentLimits:
    """What one document may cost besides its size and text length (RAG_MAX_FILE_MB, RAG_MAX_TEXT_CHARS): PDF
    pages, lines in one paragraph (a block of non-blank lines), and wall time to extract its text and, again, to
    split it into sentences. The defaults are the settings' defaults (rag.settings)."""

    max_pages: int = 2000
    max_block_lines: int = 50_000
    max_seconds: float = 120.0

    @classmethod
    def from_settings(cls, settings) -> DocumentLimits:
        return cls(settings.max_pdf_pages, settings.max_block_lines, settings.max_doc_seconds)

    def deadline(self) -> float:
        return time.monotonic() + self.max_seconds


def too_slow(name: str, limits: DocumentLimits, step: str) -> InputFileError:
    return InputFileError(f"{name}: refused: {step} took more than {limits.max_seconds:g} s (RAG_MAX_DOC_SECONDS); "
                          "split it into smaller files")


def _check_blocks(name: str, text: str, max_lines: int) -> None:
    """Refuse a paragraph (run of non-blank lines) longer than ``max_lines`` lines."""
    if text.count("\n") < max_lines:
        return
    run = first = 0
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            if run == 0:
                first = number
            run += 1
            if run > max_lines:
                raise InputFileError(f"{name}: refused: a paragraph of more than {max_lines:,} lines without a blank "
                                     f"line (from line {first:,}; RAG_MAX_BLOCK_LINES)")
        else:
            run = 0


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _looks_binary(data: bytes) -> bool:
    return b"\x00" in data[:8192]


def starts_with_bom(data: bytes) -> bool:
    """True when ``data`` begins with the UTF-8 byte order mark, which ``_decode`` leaves out of the text."""
    return data.startswith(codecs.BOM_UTF8)


def _decode(path: Path, data: bytes) -> str:
    """The file's text: UTF-8, without a leading byte order mark (it would start the first sentence, the title
    and any answer quoting them)."""
    skip = len(codecs.BOM_UTF8) if starts_with_bom(data) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{path.name}: not valid UTF-8 text (byte {exc.start + skip}); save it as UTF-8") from None


def _html_text(path: Path, data: bytes, limits: DocumentLimits | None = None) -> tuple[str, str | None]:
    import logging

    import trafilatura

    # trafilatura and htmldate log their parse problems, at ERROR ("empty HTML tree"); a page without main text
    # is reported by the one-line InputFileError below instead.
    for noisy in ("trafilatura", "htmldate"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    html = _decode(path, data)
    if "<" not in html:
        raise InputFileError(f"{path.name}: does not look like HTML")
    limits = limits or DocumentLimits()

    def extract() -> tuple[str | None, str | None]:
        text = trafilatura.extract(html, include_comments=False, include_tables=True, favor_recall=True)
        meta = trafilatura.extract_metadata(html)
        return text, (meta.title if meta is not None and meta.title else None)

    text, title = _within(extract, limits, path.name)
    if not text or not text.strip():
        raise InputFileError(f"{path.name}: no readable main text found in the HTML")
    # trafilatura puts each block element (heading, paragraph, list item) on one line; a blank line between
    # them makes each its own paragraph, so an <h1>/<h2> becomes a section heading instead of being glued
    # onto the first sentence that follows it.
    text = "\n\n".join(line.strip() for line in text.splitlines() if line.strip())
    return text, title


def _within(work, limits: DocumentLimits, name: str):
    """``work()``'s result, or the RAG_MAX_DOC_SECONDS refusal once it has run longer than the limit.

    For extractors that cannot stop midway (trafilatura parses and scores the whole page in one call): it runs in a
    daemon thread that is left to finish on its own, its result unused; the caller is refused at the deadline. In the
    app, documents are read in an indexing job's own process (rag.jobs), which ends with the refusal."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, name=f"extract {name}", daemon=True)
    worker.start()
    worker.join(limits.max_seconds)
    if worker.is_alive():
        raise too_slow(name, limits, "extracting its text")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _too_long(path: Path, max_chars: int) -> InputFileError:
    return InputFileError(f"{path.name}: its text is longer than the {max_chars:,}-character limit "
                          "(RAG_MAX_TEXT_CHARS)")


def _pdf_text(path: Path, data: bytes, max_chars: int | None = None, limits: DocumentLimits | None = None) -> str:
    import io
    import logging

    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    if not data.startswith(b"%PDF"):
        raise InputFileError(f"{path.name}: not a PDF file (missing %PDF header)")
    limits = limits or DocumentLimits()
    deadline = limits.deadline()
    pages: list[str] = []
    total = 0
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if len(reader.pages) > limits.max_pages:
            raise InputFileError(f"{path.name}: refused: {len(reader.pages):,} pages; the limit is "
                                 f"{limits.max_pages:,} (RAG_MAX_PDF_PAGES)")
        for page in reader.pages:  # page by page, so a PDF whose pages expand to huge text stops early
            if time.monotonic() > deadline:
                raise too_slow(path.name, limits, "extracting its text")
            text = (page.extract_text() or "").strip()
            total += len(text)
            if max_chars is not None and total > max_chars:
                raise _too_long(path, max_chars)
            if text:
                pages.append(text)
    except InputFileError:
        raise
    except LimitReachedError as exc:  # decompression bombs, sizes declared far beyond the file, cycles
        detail = " ".join(str(exc).split())[:200]
        raise InputFileError(f"{path.name}: refused: the PDF exceeds a safety limit of pypdf ({detail})") from None
    except RecursionError:
        raise InputFileError(f"{path.name}: damaged PDF (objects nested too deeply)") from None
    except Exception as exc:  # pypdf raises many types on malformed files; any of them means a damaged file
        raise InputFileError(f"{path.name}: damaged or truncated PDF ({type(exc).__name__})") from None
    return "\n\n".join(pages)


def _megabytes(size: int) -> str:
    # Three significant digits, so a small limit reads "0.01 MB", not "0.0 MB".
    megabytes = size / 1e6
    return f"{megabytes:.3g} MB" if megabytes < 100 else f"{megabytes:,.0f} MB"


def read_document(path: Path, max_bytes: int | None = None, doc_id: str | None = None,
                  max_chars: int | None = None, limits: DocumentLimits | None = None) -> Document:
    """Read one file into a Document, or raise InputFileError naming the file and the problem.

    ``max_bytes`` bounds the file, ``max_chars`` the text extracted from it (a small PDF can hold a lot),
    ``limits`` its pages, paragraph lines and extraction time (default: the settings' defaults)."""
    limits = limits or DocumentLimits()
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
        text, fmt = _pdf_text(path, data, max_chars, limits), "pdf"
    else:
        if _looks_binary(data):
            raise InputFileError(f"{path.name}: looks binary, not text")
        if suffix in (".html", ".htm"):
            (text, title), fmt = _html_text(path, data, limits), "html"
        else:
            text, fmt = _decode(path, data), suffix.lstrip(".")
    if max_chars is not None and len(text) > max_chars:
        raise _too_long(path, max_chars)
    if not text.strip():
        raise InputFileError(f"{path.name}: no text could be extracted")
    _check_blocks(path.name, text, limits.max_block_lines)
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


def _listing(corpus_dir: Path) -> list[Path]:
    if not corpus_dir.is_dir():
        raise InputFileError(f"{corpus_dir}: corpus folder does not exist")
    # Hidden entries are ignored: dot files, and the staging folders of `rag index add` (rag.corpus).
    return sorted(p for p in corpus_dir.iterdir() if not p.name.startswith(".") and p.is_file())


def corpus_files(corpus_dir: Path) -> list[Path]:
    """Documents of the corpus folder, sorted by name: its files of a supported type (see ignored_files)."""
    return [p for p in _listing(corpus_dir) if p.suffix.lower() in SUPPORTED_SUFFIXES]


def ignored_files(corpus_dir: Path) -> list[Path]:
    """Files of the corpus folder that are not documents (another type, e.g. notes.docx): never indexed."""
    return [p for p in _listing(corpus_dir) if p.suffix.lower() not in SUPPORTED_SUFFIXES]


@dataclass(frozen=True)
class Skipped:
    """A file of the corpus folder that could not be read as a document (binary, not UTF-8, empty, too large, a
    damaged PDF...), or that was read but yields no sentence (rag.index.segment_corpus): left out of the index,
    with the reason. ``sha256`` is of its bytes as they were (None when they could not be read), so the index
    knows it is the same file and is not stale because of it."""

    id: str
    sha256: str | None
    reason: str


def skip_file(file_name: str, sha256: str | None, reason: str) -> Skipped:
    """Record a file of the corpus folder as left out, warning in one line naming it (escaped when it is not
    printable) and the reason."""
    name = file_name if file_name.isprintable() else repr(file_name)
    log.warning("%s: skipped, not indexed: %s", name, reason)
    return Skipped(file_name, sha256, reason)


def _skip(path: Path, exc: InputFileError) -> Skipped:
    name = path.name if path.name.isprintable() else repr(path.name)
    message = str(exc)
    reason = message.split(": ", 1)[1] if message.startswith((f"{path.name}: ", f"{path}: ", f"{name}: ")) else message
    try:
        sha = sha256_bytes(path.read_bytes())
    except OSError:
        sha = None
    return skip_file(path.name, sha, reason)


def no_documents(corpus_dir: Path, skipped: list[Skipped]) -> InputFileError:
    """The error for a corpus folder that leaves nothing to index, naming the files skipped."""
    if skipped:
        return InputFileError(f"{corpus_dir}: corpus folder has no readable documents (skipped: "
                              f"{', '.join(s.id if s.id.isprintable() else repr(s.id) for s in skipped)})")
    return InputFileError(f"{corpus_dir}: corpus folder has no documents")


def read_corpus(corpus_dir: Path, max_bytes: int | None = None, max_chars: int | None = None,
                allow_empty: bool = False, limits: DocumentLimits | None = None, exclude: Collection[str] = (),
                ) -> tuple[list[Document], list[Skipped]]:
    """The documents of the corpus folder, and its files that cannot be read as documents.

    A file of another type is skipped with a warning (``ignored_files``), and so is a file of a supported type
    that ``read_document`` refuses (one line naming it and the reason): one bad file dropped into the folder by
    hand does not stop the rest from being indexed. ``rag index add`` refuses such files before they get there.
    A file read fine that yields no sentence (only a heading, a line of dashes, a menu) is found only when the
    build splits it: the build skips it the same way (rag.index.segment_corpus, ``found``).
    Files named in ``exclude`` (about to be replaced) are not read."""
    files = [p for p in corpus_files(corpus_dir) if p.name not in exclude]
    for ignored in ignored_files(corpus_dir):
        name = ignored.name if ignored.name.isprintable() else repr(ignored.name)
        log.warning("%s: skipped: unsupported file type '%s' in the corpus folder (supported: %s)",
                    name, ignored.suffix or "(none)", ", ".join(SUPPORTED_SUFFIXES))
    documents: list[Document] = []
    skipped: list[Skipped] = []
    for path in files:
        try:
            documents.append(read_document(path, max_bytes=max_bytes, max_chars=max_chars, limits=limits))
        except InputFileError as exc:
            skipped.append(_skip(path, exc))
    if not documents and not allow_empty:
        raise no_documents(corpus_dir, skipped)
    return documents, skipped


def load_corpus(corpus_dir: Path, max_bytes: int | None = None, max_chars: int | None = None,
                allow_empty: bool = False, limits: DocumentLimits | None = None) -> list[Document]:
    """The readable documents of the corpus folder (``read_corpus`` without the skipped files)."""
    return read_corpus(corpus_dir, max_bytes, max_chars, allow_empty, limits)[0]
