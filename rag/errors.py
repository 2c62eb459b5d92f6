"""Error types with the CLI exit code each one maps to.

Every error a user can cause is a ``RagError``: the CLI prints its message on one line
(no traceback) and exits with its ``exit_code``.
"""

from __future__ import annotations


class RagError(Exception):
    """Base class for errors shown to the user as one line."""

    exit_code = 1


class UsageError(RagError):
    """Bad command-line usage or an invalid argument value (empty question, unknown backend...)."""

    exit_code = 2


class InputFileError(RagError):
    """A document or gold file that cannot be read: missing, a directory, empty, binary, unsupported."""

    exit_code = 3


class IndexCorruptError(RagError):
    """A persisted index that cannot be loaded; the message names the file and how to rebuild."""

    exit_code = 4


class IndexLockedError(RagError):
    """Another process is building the same index."""

    exit_code = 5


class ModelError(RagError):
    """A model is missing, unreadable or malformed: the embedding model (or its checksum fails), or the answer or
    claim model file."""

    exit_code = 6


class BackendError(RagError):
    """An answer backend failed (LLM endpoint unreachable, timed out, misconfigured)."""

    exit_code = 7
