"""Indexing jobs: adding documents in a process of its own, with progress, that can be cancelled.

The app's uploads run here instead of in a server thread: ``Indexer.start(paths)`` launches ``python -m rag.jobs``
with the server's settings, which does what ``rag index add`` does (reads and checks the files, stages them in the
corpus, builds the index that includes them and commits it; rag.corpus) and reports each stage on its standard
output as one JSON line. Meanwhile the server keeps answering from the index it has, and its threads and GIL are
never held by a slow or stuck document. Then:

- **committed**: the job's callback (the pipeline's ``reload``) swaps the new index in, and only then does the
  job report ``committed``;
- **cancel()**: the job's process group is killed (SIGKILL: a stuck parser cannot ignore it), and what it left is
  undone under the build lock (its staging folder and its unfinished build folder are removed), so the corpus and
  the index are exactly as before. A kill that lands after the index was swapped in (the job had finished) is
  completed instead, as any interrupted ``rag index add`` is (its files moved in), and reported as committed;
- **a refused document** (any one-line error of ``rag index add``, with its exit code) fails the job: nothing
  changes;
- **the server dies**: the job notices within half a second (its parent is gone) and exits, and a restarted server
  opens the last committed index (what the job left is cleaned as after any killed add).

One job at a time per pipeline: ``Indexer.start`` refuses a second one while the first runs (``IndexingBusy``,
a usage error naming the running job); the build lock would only make it wait. No Gradio here: ``ui/app.py`` shows
``Indexer.status()`` and calls ``cancel()``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import RagError, UsageError
from rag.net import exit_with_parent

if TYPE_CHECKING:
    from rag.pipeline import Pipeline
    from rag.settings import Settings

log = logging.getLogger("rag.jobs")
PARENT_POLL_S = 0.5
STAGES = {  # stage -> how the status line names it
    "starting": "starting",
    "reading": "reading the new documents",
    "loading": "loading the embedding model",
    "building": "reading the corpus and splitting it into sentences",
    "embedding": "embedding new passages",
    "reloading": "loading the new index into the server",
    "done": "done",
}


class IndexingBusy(UsageError):
    """An indexing job is already running."""


@dataclass(frozen=True)
class JobStatus:
    """What a job is doing or how it ended. ``state``: running, committed, failed or cancelled."""

    state: str
    names: tuple[str, ...]
    stage: str = "starting"
    done: int = 0
    total: int = 0
    message: str = ""
    documents: tuple[str, ...] = ()
    exit_code: int | None = None
    stages: tuple[str, ...] = ()  # every stage reported so far, in order
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None

    @property
    def finished(self) -> bool:
        return self.state != "running"

    @property
    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def describe(self) -> str:
        """One line for people: what runs (stage, documents done) or how it ended."""
        if self.finished:
            return self.message
        files = ", ".join(self.names)
        stage = STAGES.get(self.stage, self.stage)
        count = f" {self.done}/{self.total}" if self.total else ""
        return f"Indexing {files}: {stage}{count} · {self.elapsed:.0f} s"


def _embedder_spec(embedder: Any) -> str | None:
    """How the job process makes the pipeline's embedder: None for the real one (from the settings), else
    ``module:Class`` of a stand-in constructed without arguments (the tests' hashing embedder)."""
    from rag.embeddings import Embedder

    if isinstance(embedder, Embedder):
        return None
    kind = type(embedder)
    return f"{kind.__module__}:{kind.__qualname__}"


class IndexJob:
    """One ``rag index add`` run in its own process (see the module's docstring)."""

    def __init__(self, settings: Settings, paths: list[Path], replace_existing: bool = False,
                 embedder: str | None = None, on_commit: Callable[[], None] | None = None):
        self.settings = settings
        self.paths = [Path(p).absolute() for p in paths]
        self.replace = replace_existing
        self.embedder = embedder
        self.on_commit = on_commit
        self._status = JobStatus("running", tuple(p.name for p in self.paths))
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._settle = threading.Lock()  # the job ends once: by its own exit or by cancel(), not both
        self._cancelling = self._settling = False
        self._live_before = self._live_build()
        self._stderr: list[str] = []
        self.process: subprocess.Popen | None = None

    # ------------------------------------------------------------ running

    def start(self) -> IndexJob:
        spec = {"settings": self.settings.model_dump(mode="json"), "paths": [str(p) for p in self.paths],
                "replace": self.replace, "embedder": self.embedder, "parent": os.getpid(), "sys_path": sys.path}
        env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rag.jobs"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, start_new_session=True,  # its own process group: cancel() kills whatever it started too
        )
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(spec).encode("utf-8"))
        self.process.stdin.close()
        threading.Thread(target=self._drain_stderr, name="index job stderr", daemon=True).start()
        threading.Thread(target=self._follow, name="index job", daemon=True).start()
        return self

    def _drain_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self._stderr = [*self._stderr[-19:], line]
                log.warning("indexing job: %s", line if line.isprintable() else repr(line))

    def _update(self, **changes: Any) -> None:
        with self._lock:
            self._status = replace(self._status, **changes)

    def _follow(self) -> None:
        """Read the job's progress lines until it exits, then settle its outcome."""
        assert self.process is not None and self.process.stdout is not None
        final: dict | None = None
        for raw in self.process.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                continue  # not ours (a library printing)
            if not isinstance(event, dict):
                continue
            if "state" in event:
                final = event
            elif not self._cancelling:
                stage = str(event.get("stage", ""))
                stages = self._status.stages if self._status.stages[-1:] == (stage,) else (*self._status.stages, stage)
                self._update(stage=stage, done=int(event.get("done", 0)), total=int(event.get("total", 0)),
                             stages=stages)
        code = self.process.wait()
        with self._settle:
            if self._cancelling:
                return  # cancel() settles it
            self._settling = True
        if final is not None and final.get("state") == "committed":
            self._committed(tuple(final.get("documents", ())))
        elif final is not None:
            self._end("failed", str(final.get("message", "indexing failed")), exit_code=final.get("exit_code"))
        else:  # killed from outside, out of memory...
            self._clean_up()
            if self._live_build() != self._live_before:
                self._committed(tuple(p.name for p in self.paths))
            else:
                how = f"signal {-code}" if code < 0 else f"exit code {code}"
                last = f": {self._stderr[-1]}" if self._stderr else ""
                self._end("failed", f"the indexing process ended unexpectedly ({how}){last}; nothing changed",
                          exit_code=code)

    def _committed(self, documents: tuple[str, ...]) -> None:
        if self.on_commit is not None:
            self._update(stage="reloading", done=0, total=0, stages=(*self._status.stages, "reloading"))
            try:
                self.on_commit()
            except Exception as exc:  # the index is committed on disk; this server could not load it
                log.error("indexing job: the new index could not be loaded", exc_info=exc)
                detail = str(exc) if isinstance(exc, RagError) else f"{type(exc).__name__}: {exc}"
                self._end("failed", f"indexed, but the new index could not be loaded here: {detail}")
                return
        plural = "s" if len(documents) != 1 else ""
        self._end("committed", f"Indexed {len(documents)} document{plural}: {', '.join(documents)}",
                  documents=documents, exit_code=0)

    def _end(self, state: str, message: str, **changes: Any) -> None:
        self._update(state=state, message=" ".join(message.split()), ended=time.monotonic(), stage="done",
                     stages=(*self._status.stages, "done"), **changes)
        self._finished.set()

    # ------------------------------------------------------------ asking, waiting, cancelling

    def status(self) -> JobStatus:
        with self._lock:
            return self._status

    def wait(self, timeout: float | None = None) -> JobStatus:
        self._finished.wait(timeout)
        return self.status()

    def cancel(self) -> JobStatus:
        """Kill the job and undo what it left; the corpus and the index are as before it started (or, if it had
        already swapped its index in, as after it: then it is reported committed)."""
        with self._settle:
            if self.process is None or self._settling or self._cancelling or self._finished.is_set():
                return self.status()  # it ended (or is being settled) on its own
            self._cancelling = True
        with contextlib.suppress(ProcessLookupError):  # it has just exited
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._clean_up()
        if self._live_build() != self._live_before:
            self._committed(tuple(p.name for p in self.paths))
            log.warning("indexing job: cancelled after its index was committed; kept")
        else:
            self._end("cancelled", "Cancelled: nothing was indexed; the corpus and the index are as they were")
        return self.status()

    def _live_build(self) -> Path | None:
        path = self.settings.index_path
        return path.resolve() if path.exists() else None

    def _clean_up(self) -> None:
        """What the dead job left, under the build lock: its staging folder (files moved in only if its index was
        committed: rag.corpus.recover) and its unfinished build folder."""
        from rag import corpus
        from rag.index import build_lock

        assert self.process is not None
        try:  # a few seconds at most: cancel() answers a click (the next build cleans up otherwise)
            with build_lock(self.settings.model_copy(update={"lock_timeout": min(self.settings.lock_timeout, 5.0)})):
                corpus.recover(self.settings.corpus_dir)
                live = self._live_build()
                builds = self.settings.index_dir / ".builds"
                for folder in builds.glob(f"{self.settings.index_name}-*-{self.process.pid}") if builds.is_dir() else ():
                    if folder.resolve() != live:
                        shutil.rmtree(folder, ignore_errors=True)
        except RagError as exc:  # another build holds the lock: it cleans up when it swaps its index in
            log.warning("indexing job: not cleaned up now: %s", exc)


class Indexer:
    """The indexing jobs of one pipeline: one at a time; the last one's status stays readable."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline
        self._job: IndexJob | None = None
        self._lock = threading.Lock()

    def start(self, paths: list[Path], replace_existing: bool = False) -> IndexJob:
        """Start a job adding ``paths`` (IndexingBusy while another runs). The files are read by the job: a refused
        one ends it ``failed`` with the message ``rag index add`` would print."""
        with self._lock:
            running = self._job
            if running is not None and not running.status().finished:
                status = running.status()
                raise IndexingBusy(f"another upload is being indexed ({', '.join(status.names)}: "
                                   f"{STAGES.get(status.stage, status.stage)}, {status.elapsed:.0f} s); wait for it "
                                   "to finish or cancel it")
            self._job = IndexJob(self.pipeline.settings, paths, replace_existing,
                                 embedder=_embedder_spec(self.pipeline.embedder), on_commit=self.pipeline.reload)
            return self._job.start()

    def job(self) -> IndexJob | None:
        return self._job

    def status(self) -> JobStatus | None:
        job = self._job
        return job.status() if job is not None else None

    def cancel(self) -> JobStatus | None:
        job = self._job
        return job.cancel() if job is not None else None


_indexers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_indexers_lock = threading.Lock()


def indexer_for(pipeline: Pipeline) -> Indexer:
    """The one Indexer of ``pipeline`` (every app built over it shares it, so one job runs at a time)."""
    with _indexers_lock:
        found = _indexers.get(pipeline)
        if found is None:
            found = _indexers[pipeline] = Indexer(pipeline)
        return found


# ---------------------------------------------------------------- the job process


def _emit(**event: Any) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


class _ReportingEmbedder:
    """The embedder, reporting how many of the texts it is asked to embed (only those the index has not seen) are
    done, batch by batch."""

    BATCH = 256

    def __init__(self, embedder: Any):
        self._embedder = embedder
        if hasattr(embedder, "encode_with_tokens"):  # the index build embeds sentences with their word pieces
            self.encode_with_tokens = self._encode_with_tokens

    def __getattr__(self, name: str) -> Any:
        return getattr(self._embedder, name)

    def encode(self, texts: list[str], *args: Any, **kwargs: Any):
        import numpy as np

        parts = self._in_batches(self._embedder.encode, texts, *args, **kwargs)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _encode_with_tokens(self, texts: list[str], *args: Any, **kwargs: Any):
        import numpy as np

        parts = self._in_batches(self._embedder.encode_with_tokens, texts, *args, **kwargs)
        if len(parts) == 1:
            return parts[0]
        return np.concatenate([vectors for vectors, _ in parts]), [rows for _, tokens in parts for rows in tokens]

    def _in_batches(self, encode: Any, texts: list[str], *args: Any, **kwargs: Any) -> list:
        """``encode`` over ``texts`` BATCH at a time (once for an empty list), reporting before each batch."""
        parts = []
        for start in range(0, max(len(texts), 1), self.BATCH):
            _emit(stage="embedding", done=start, total=len(texts))
            parts.append(encode(texts[start : start + self.BATCH], *args, **kwargs))
        return parts


def _make_embedder(spec: str | None, settings: Settings, sys_path: list[str]) -> Any:
    if spec is None:
        from rag.embeddings import Embedder

        return Embedder.from_settings(settings)
    for entry in sys_path:  # where the server found the stand-in's module
        if entry not in sys.path:
            sys.path.append(entry)
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)()


def run(spec: dict) -> list[str]:
    """Add the spec's files as ``rag index add`` does, reporting progress; the ids of the added documents."""
    from rag import corpus
    from rag.documents import DocumentLimits, read_document
    from rag.settings import Settings
    from rag.stores import build_index

    settings = Settings(**spec["settings"])
    paths = [Path(p) for p in spec["paths"]]
    max_bytes, max_chars = int(settings.max_file_mb * 1e6), settings.max_text_chars
    limits = DocumentLimits.from_settings(settings)
    corpus.checked_names(paths)
    for done, path in enumerate(paths):
        _emit(stage="reading", done=done, total=len(paths))
        read_document(path, max_bytes=max_bytes, max_chars=max_chars, limits=limits)
    _emit(stage="loading", done=0, total=0)
    embedder = _ReportingEmbedder(_make_embedder(spec.get("embedder"), settings, spec.get("sys_path", [])))
    with corpus.staged_files(settings.corpus_dir, paths, bool(spec.get("replace")), max_bytes, max_chars,
                             limits) as staged:
        _emit(stage="building", done=0, total=0)
        index = build_index(settings, embedder, staged=staged)
    return [p.name for p in paths if p.name in index.documents]


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    spec = json.loads(sys.stdin.read())
    # A job whose server is gone ends (it would otherwise commit behind the back of a restarted server). Killed
    # before the commit, nothing changes; after it, the next command completes it.
    exit_with_parent(int(spec["parent"]), PARENT_POLL_S)
    try:
        documents = run(spec)
    except RagError as exc:
        _emit(state="failed", message=str(exc), exit_code=exc.exit_code)
        return exc.exit_code
    except Exception as exc:  # a bug: one line for the app, the traceback in the server's log
        log.error("indexing job failed", exc_info=exc)
        _emit(state="failed", message=f"internal error: {type(exc).__name__}: {exc} (details in the server log)",
              exit_code=70)
        return 70
    _emit(state="committed", documents=documents)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # No interpreter shutdown: an extraction refused at RAG_MAX_DOC_SECONDS may still run in its thread
    # (rag.documents._within), and the job is over once its outcome is written.
    os._exit(code)
