"""Reading documents: plain text and Markdown as stored, main text of HTML, text of PDF.

A document's id is its file name inside the corpus folder. Offsets always index ``Document.text``:
for .txt/.md that is the file decoded as UTF-8, exactly as stored but for a leading byte order mark (U+FEFF,
which editors on Windows write), which is not part of the text. A file that begins with the byte order mark
of UTF-16 or UTF-32 (Notepad's and PowerShell's "Unicode") is decoded as that, the mark left out likewise; an
HTML page without one is decoded with the charset it declares (``<meta charset>``, ``http-equiv``
Content-Type, an XML declaration), else as UTF-8. Nothing else is guessed.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import os
import re
import stat
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


BINARY_SNIFF = 8192  # a NUL in this many first bytes (characters, for UTF-16/32) means a binary file
CHARSET_SNIFF = 4096  # an HTML page's charset declaration is looked for in this many first bytes

# Byte order marks, the codec each announces and its name in messages. UTF-32 LE's mark begins with UTF-16
# LE's, so it is looked for first.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le", "UTF-32 LE"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "UTF-32 BE"),
    (codecs.BOM_UTF8, "utf-8", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16 LE"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16 BE"),
)
_XML_ENCODING = re.compile(rb"""\A\s*<\?xml\s[^>]*?\bencoding\s*=\s*["']([A-Za-z0-9._:-]+)""", re.IGNORECASE)
# <meta charset="..."> and <meta http-equiv="Content-Type" content="text/html; charset=...">, attributes in
# any order.
_META_CHARSET = re.compile(rb"""<meta\b[^>]*?\bcharset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
_COMMENT = re.compile(rb"<!--.*?(?:-->|\Z)", re.DOTALL)
# A declaration can only be read if the page's encoding writes markup as ASCII does: a UTF-16 or EBCDIC
# "declaration" readable as ASCII is wrong, so it is not followed (as browsers do). UTF-7 never is (it can
# smuggle markup).
_MARKUP_PROBE = b"<meta charset=\"'/> abcxyz ABCXYZ 0189 -_.:;"
# windows-1252 as browsers decode it, and also pages that declare ISO-8859-1 or US-ASCII (WHATWG Encoding):
# C1 bytes are its curly quotes, dashes and euro sign, and the five it leaves unassigned stay C1 controls
# (Python's cp1252 refuses them).
_WINDOWS_1252 = {b: bytes([b]).decode("cp1252") for b in range(0x80, 0xA0)
                 if b not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)}
_AS_WINDOWS_1252 = ("ascii", "iso8859-1", "cp1252")


def _byte_order_mark(data: bytes) -> tuple[str, str, int] | None:
    """The codec, its name and the length of the byte order mark ``data`` begins with; None without one."""
    for mark, codec, name in _BOMS:
        if data.startswith(mark):
            return codec, name, len(mark)
    return None


def _looks_binary(data: bytes) -> bool:
    """A NUL byte near the start, except in UTF-16/32 text announced by its byte order mark, where NUL bytes
    are halves of characters (``_decode`` looks for a NUL character in its text instead)."""
    bom = _byte_order_mark(data)
    if bom is not None and bom[0] != "utf-8":
        return False
    return b"\x00" in data[:BINARY_SNIFF]


def starts_with_bom(data: bytes) -> bool:
    """True when ``data`` begins with the UTF-8 byte order mark, which ``_decode`` leaves out of the text."""
    return data.startswith(codecs.BOM_UTF8)


def declared_charset(data: bytes) -> str | None:
    """The charset an HTML page declares in its first ``CHARSET_SNIFF`` bytes (an XML declaration's encoding,
    else the first ``<meta>`` charset outside comments), as written; None without one."""
    head = data[:CHARSET_SNIFF]
    match = _XML_ENCODING.match(head) or _META_CHARSET.search(_COMMENT.sub(b"", head))
    return match.group(1).decode("ascii") if match else None


def _declared_codec(label: str) -> str | None:
    """The Python codec to decode a page declaring ``label`` with; None for UTF-8 (the default anyway), an
    unknown charset, or one a declaration readable as ASCII cannot be right about."""
    try:
        codec = codecs.lookup(label).name
        ascii_markup = _MARKUP_PROBE.decode(codec) == _MARKUP_PROBE.decode("ascii")
        if codec in ("utf-8", "utf-8-sig", "utf-7") or not ascii_markup:
            return None
    except (LookupError, UnicodeError):  # unknown, not a text encoding (rot13, base64), UTF-32's odd length
        return None
    return codec


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _decode(path: Path, data: bytes, declared: str | None = None) -> str:
    """The file's text, without a leading byte order mark (it would start the first sentence, the title and
    any answer quoting them): as its byte order mark says (UTF-8, UTF-16 or UTF-32), else as UTF-8 when it is
    valid UTF-8, else with the ``declared`` charset (of an HTML page) when Python knows it, else UTF-8."""
    bom = _byte_order_mark(data)
    note = ""
    if bom is not None:
        codec, name, skip = bom
    elif declared and (codec := _declared_codec(declared)) is not None and not _valid_utf8(data):
        # Bytes that are valid UTF-8 are read as UTF-8 whatever the page declares: a page re-saved as UTF-8
        # often keeps its old declaration, and Latin-1 text with any accent is almost never valid UTF-8.
        if codec in _AS_WINDOWS_1252:
            return data.decode("latin-1").translate(_WINDOWS_1252)  # every byte is a character: never fails
        name, skip, note = declared, 0, "; the charset the page declares"
    else:
        codec, name, skip = "utf-8", "UTF-8", 0
    try:
        text = data[skip:].decode(codec)
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{path.name}: not valid {name} text (byte {exc.start + skip}{note}); save it "
                             "as UTF-8") from None
    if codec.startswith(("utf-16", "utf-32")) and "\x00" in text[:BINARY_SNIFF]:
        raise InputFileError(f"{path.name}: looks binary, not text")
    return text


def _html_text(path: Path, data: bytes, limits: DocumentLimits | None = None) -> tuple[str, str | None]:
    import logging

    import trafilatura

    # trafilatura and htmldate log their parse problems, at ERROR ("empty HTML tree"); a page without main text
    # is reported by the one-line InputFileError below instead.
    for noisy in ("trafilatura", "htmldate"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    html = _decode(path, data, declared_charset(data))
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


def _entries(corpus_dir: Path) -> list[Path]:
    if not corpus_dir.is_dir():
        raise InputFileError(f"{corpus_dir}: corpus folder does not exist")
    # Hidden entries are ignored, silently: dot files, the staging folders of `rag index add` (rag.corpus).
    return sorted(p for p in corpus_dir.iterdir() if not p.name.startswith("."))


def _listing(corpus_dir: Path) -> list[Path]:
    return [p for p in _entries(corpus_dir) if p.is_file()]


def corpus_files(corpus_dir: Path) -> list[Path]:
    """Documents of the corpus folder, sorted by name: its files of a supported type (see ignored_files)."""
    return [p for p in _listing(corpus_dir) if p.suffix.lower() in SUPPORTED_SUFFIXES]


def ignored_files(corpus_dir: Path) -> list[Path]:
    """Files of the corpus folder that are not documents (another type, e.g. notes.docx): never indexed."""
    return [p for p in _listing(corpus_dir) if p.suffix.lower() not in SUPPORTED_SUFFIXES]


_SPECIAL = ((stat.S_ISFIFO, "named pipe"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "device"),
            (stat.S_ISBLK, "device"))


def _shown(text: str) -> str:
    return text if text.isprintable() else repr(text)


def _broken_link(path: Path) -> str:
    try:
        target = f" {_shown(os.readlink(path))}"
    except OSError:
        target = ""
    try:
        path.stat()
    except FileNotFoundError:
        return f"broken link, not indexed: its target{target} does not exist"
    except OSError as exc:  # a loop of links, a folder on the way that cannot be searched
        return f"broken link, not indexed: its target{target} cannot be reached ({exc.strerror})"
    return "broken link, not indexed"  # mended since it was listed


def ignored_entries(corpus_dir: Path) -> list[tuple[Path, str]]:
    """Entries of the corpus folder that are not files, with why they are not indexed: subfolders (and links
    to folders), broken links, named pipes and the like. Never indexed, like ``ignored_files``; hidden ones
    (the staging folders of `rag index add`) are left out."""
    found = []
    for path in _entries(corpus_dir):
        if path.is_file():
            continue
        if path.is_dir():
            reason = "subfolder, not indexed: only files directly in the corpus folder are"
        elif path.is_symlink() and not path.exists():
            reason = _broken_link(path)
        else:
            try:
                mode = path.stat().st_mode
            except OSError:
                mode = 0
            kind = next((name for test, name in _SPECIAL if test(mode)), "special file")
            reason = f"{kind}, not indexed: only files are"
        found.append((path, reason))
    return found


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
    log.warning("%s: skipped, not indexed: %s", _shown(file_name), reason)
    return Skipped(file_name, sha256, reason)


def _skip(path: Path, exc: InputFileError) -> Skipped:
    name = _shown(path.name)
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
                              f"{', '.join(_shown(s.id) for s in skipped)})")
    return InputFileError(f"{corpus_dir}: corpus folder has no documents")


def read_corpus(corpus_dir: Path, max_bytes: int | None = None, max_chars: int | None = None,
                allow_empty: bool = False, limits: DocumentLimits | None = None, exclude: Collection[str] = (),
                ) -> tuple[list[Document], list[Skipped]]:
    """The documents of the corpus folder, and its files that cannot be read as documents.

    A file of another type is skipped with a warning (``ignored_files``), and so are a subfolder, a broken
    link or another entry that is not a file (``ignored_entries``; neither is listed in the manifest, as they
    never make the index stale), and a file of a supported type that ``read_document`` refuses (one line
    naming it and the reason): one bad file dropped into the folder by hand does not stop the rest from being
    indexed. ``rag index add`` refuses such files before they get there.
    A file read fine that yields no sentence (only a heading, a line of dashes, a menu) is found only when the
    build splits it: the build skips it the same way (rag.index.segment_corpus, ``found``).
    Files named in ``exclude`` (about to be replaced) are not read."""
    files = [p for p in corpus_files(corpus_dir) if p.name not in exclude]
    for ignored in ignored_files(corpus_dir):
        log.warning("%s: skipped: unsupported file type '%s' in the corpus folder (supported: %s)",
                    _shown(ignored.name), ignored.suffix or "(none)", ", ".join(SUPPORTED_SUFFIXES))
    for entry, reason in ignored_entries(corpus_dir):
        log.warning("%s: skipped: %s", _shown(entry.name), reason)
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
