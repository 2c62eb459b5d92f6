"""Adding files to the corpus folder, which changes only together with the index that includes them.

``rag index add`` (and the app's uploads) copy the new files into a hidden staging folder of the corpus
(``.staging-<pid>-<random>``, ignored by the corpus scan), build the index from the corpus plus the staged
files, and move them into the corpus only once that index is committed (swapped in). Between the two steps the
staging folder holds a journal, ``COMMIT``, naming the build: a process killed after the swap has its files moved
in by the next build (the index already includes them); killed before, its staging folder is simply removed, and
the corpus and the index are as they were. Stale staging folders (their process is gone) are cleaned by every
build and, when the index is not being built, by the next command that opens it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rag.documents import DocumentLimits, Skipped, read_corpus, read_document
from rag.errors import InputFileError, UsageError
from rag.types import Document

STAGING_PREFIX = ".staging-"
_COMMIT = "COMMIT"
log = logging.getLogger("rag")


def checked_names(paths: list[Path]) -> list[str]:
    """The document ids the files would get (their names), or an InputFileError naming the first bad one."""
    if not paths:
        raise UsageError("no files given")
    names = [Path(p).name for p in paths]
    for name in names:
        if name.startswith("."):
            raise InputFileError(f"{name}: a file name starting with '.' is hidden and would never be indexed; "
                                 "rename it")
        if any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in name):
            raise InputFileError(f"{name!r}: file name contains control characters; rename it")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            given = ", ".join(str(p) for p in paths if Path(p).name == name)
            raise InputFileError(f"{name}: more than one file of this name given ({given}); a document's id is its "
                                 "file name, so each name can be added once")
        seen.add(name)
    return names


def read_new_documents(paths: list[Path], max_bytes: int | None, max_chars: int | None = None,
                       limits: DocumentLimits | None = None) -> list[Document]:
    """Check the names, then read every file (nothing is copied yet): the first problem is an InputFileError."""
    checked_names(paths)
    return [read_document(Path(p), max_bytes=max_bytes, max_chars=max_chars, limits=limits) for p in paths]


def _already_there(name: str) -> InputFileError:
    return InputFileError(f"{name}: already in the corpus (to update it, replace it: `rag index add --replace`, "
                          "or the app's replace option)")


@dataclass
class Staged:
    """Files copied into a staging folder of the corpus, waiting for the index that includes them."""

    corpus_dir: Path
    folder: Path
    names: list[str]
    replace: bool
    max_bytes: int | None = None
    max_chars: int | None = None
    limits: DocumentLimits | None = None
    # Files of the corpus folder that cannot be read (rag.documents.read_corpus), set by documents().
    skipped: list[Skipped] = field(default_factory=list)

    def documents(self) -> list[Document]:
        """The corpus as it will be once the staged files are moved in, sorted by id (as a full build sorts it);
        files of the corpus that cannot be read are skipped (``self.skipped``), the staged ones never are.

        Called with the index's build lock held, so the existence check cannot race another add."""
        if not self.replace:
            for name in self.names:
                if (self.corpus_dir / name).exists():
                    raise _already_there(name)
        current, self.skipped = read_corpus(self.corpus_dir, self.max_bytes, self.max_chars, allow_empty=True,
                                            limits=self.limits, exclude=self.names)
        staged = [read_document(self.folder / name, max_bytes=self.max_bytes, max_chars=self.max_chars,
                                limits=self.limits)
                  for name in self.names]
        return sorted(current + staged, key=lambda d: d.id)

    def mark_committed(self, build: Path, link: Path) -> None:
        """Journal, before the swap, that the build at ``build`` includes the staged files."""
        tmp = self.folder / f"{_COMMIT}.tmp"
        tmp.write_text(json.dumps({"build": str(build.resolve()), "link": str(link.absolute()), "names": self.names}),
                       encoding="utf-8")
        os.replace(tmp, self.folder / _COMMIT)

    def move_in(self) -> None:
        """Once the index is swapped in: move the staged files into the corpus (replacing older versions)."""
        _move_in(self.folder, self.corpus_dir, self.names)


def _move_in(folder: Path, corpus_dir: Path, names: list[str]) -> None:
    for name in names:
        staged = folder / name
        if staged.exists():
            os.replace(staged, corpus_dir / name)
    shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def staged_files(corpus_dir: Path, paths: list[Path], replace: bool, max_bytes: int | None = None,
                 max_chars: int | None = None, limits: DocumentLimits | None = None) -> Iterator[Staged]:
    """Copy the files into a new staging folder; it is removed on leaving (its files moved in or not)."""
    names = checked_names(paths)
    if not replace:
        for name in names:
            if (corpus_dir / name).exists():
                raise _already_there(name)
    corpus_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=corpus_dir))
    try:
        for src, name in zip(paths, names, strict=True):
            shutil.copyfile(src, folder / name)
        yield Staged(corpus_dir, folder, names, replace, max_bytes, max_chars, limits)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- recovery


def _owner_alive(folder: Path) -> bool:
    try:
        pid = int(folder.name[len(STAGING_PREFIX):].split("-", 1)[0])
    except ValueError:
        return False  # not one of ours (or an older rag's): nobody is using it
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _exited(pid)


def _exited(pid: int) -> bool:
    """A process that has exited but is not reaped (a zombie): an add whose parent died (an app's indexing job,
    rag.jobs) is re-parented to init, and the init of a container may never reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False  # no /proc (macOS): os.kill's answer stands
    return stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]


def stale_staging(corpus_dir: Path) -> list[Path]:
    """Staging folders whose process is gone."""
    try:
        entries = list(corpus_dir.iterdir())
    except OSError:
        return []
    return [p for p in entries if p.name.startswith(STAGING_PREFIX) and p.is_dir() and not _owner_alive(p)]


def recover(corpus_dir: Path) -> None:
    """Finish or undo what killed adds left: move their files in if their index was committed, else drop them.

    Run with the index's build lock held."""
    for folder in stale_staging(corpus_dir):
        try:
            journal = json.loads((folder / _COMMIT).read_text(encoding="utf-8"))
            committed = Path(journal["link"]).resolve() == Path(journal["build"])
            names = [str(n) for n in journal["names"]]
        except (OSError, ValueError, KeyError, TypeError):
            committed, names = False, []
        if committed:
            log.warning("completing an interrupted `rag index add` (its index was committed): %s",
                        ", ".join(names))
            _move_in(folder, corpus_dir, names)
        else:
            shutil.rmtree(folder, ignore_errors=True)
