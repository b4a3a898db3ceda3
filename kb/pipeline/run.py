"""The ingestion pipeline of one `DocumentVersion`, as a list of stages run in order.

    claim    QUEUED → PARSING with a conditional UPDATE (only one worker wins)     claim.py
    fetch    web pages only: download the page as the version's file              fetch.py
    parse    the file into elements (outside any transaction)                     parse/stage.py
    chunk    sections + chunks stored, not yet live (→ EMBEDDING)                 chunk/stage.py
    index    keyword-search vectors                                               index/__init__.py
    words    a long new document goes live for keyword search already             publish.py
    embed    vectors in batches, re-using identical chunks already embedded       embed.py
    publish  one short transaction makes this version live (→ READY)              publish.py

`recover.py` finds versions a dead worker left behind (the task module re-sends them) and
`reembed.py` moves a whole knowledge base to a new embedding model.

A failure on the way marks the version FAILED with a code and a sentence a person understands;
only transient errors are retried: model rate limits and timeouts, and a database that went away
mid-run (restart, failover). The version goes back to QUEUED and the task retries with backoff;
a version nobody could hand back is found by the recovery beat task (`recover.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError, connections
from django.utils import timezone

from kb.exceptions import DatabaseUnavailable, EmbeddingError, ParseFailure, TransientEmbeddingError
from kb.models import DocumentStatus, DocumentVersion
from kb.pipeline.chunk.stage import chunk
from kb.pipeline.claim import claim
from kb.pipeline.embed import embed
from kb.pipeline.fetch import fetch
from kb.pipeline.index import index
from kb.pipeline.job import Job
from kb.pipeline.memory import release_freed_memory
from kb.pipeline.parse.stage import parse
from kb.pipeline.publish import publish, publish_words_first, version_fail

logger = logging.getLogger(__name__)

Stage = Callable[[Job], None]

# After `claim`, in this order. Each stage reads what the earlier ones left on the job.
STAGES: tuple[Stage, ...] = (fetch, parse, chunk, index, publish_words_first, embed, publish)


# Django's wrappers of psycopg's "the server is gone / the connection is broken" errors.
DATABASE_GONE = (OperationalError, InterfaceError)


def version_ingest(*, version_id: int, worker: str = "") -> None:
    """Run the whole pipeline for one version. Safe to call twice: a second call finds it claimed.

    Raises `DatabaseUnavailable` (for the task to retry) when the database goes away mid-run.
    """
    try:
        _ingest(version_id=version_id, worker=worker)
    except DATABASE_GONE as exc:
        logger.warning("Database unavailable while ingesting version %s: %s", version_id, exc)
        version_release(version_id=version_id, worker=worker)
        raise DatabaseUnavailable(str(exc).strip() or type(exc).__name__) from exc


def version_release(*, version_id: int, worker: str) -> bool:
    """Hand a version this worker had claimed back to QUEUED, on a fresh connection; False when
    the database is still unreachable (the task's retry, or the recovery beat, tries again)."""
    connections.close_all()  # this thread's broken connections: a pooled one goes back and is discarded
    try:
        DocumentVersion.objects.filter(
            pk=version_id, status__in=(DocumentStatus.PARSING, DocumentStatus.EMBEDDING), claimed_by=worker
        ).update(status=DocumentStatus.QUEUED, heartbeat_at=timezone.now())
    except DATABASE_GONE:
        connections.close_all()
        return False
    return True


def _ingest(*, version_id: int, worker: str) -> None:
    job = claim(version_id=version_id, worker=worker)
    if job is None:
        return  # gone, already done, or another worker has it
    try:
        for stage in STAGES:
            stage(job)
            # What the stage freed (the parser's page layouts and elements above all) goes back to
            # the system before the next one allocates: a pool process peaks lower (kb.pipeline.memory).
            release_freed_memory()
    except TransientEmbeddingError:
        # Hand it back to the queue; the task retries with backoff.
        DocumentVersion.objects.filter(pk=version_id).update(status=DocumentStatus.QUEUED)
        raise
    except ParseFailure as failure:
        version_fail(version_id, failure.code, failure.message)
    except SoftTimeLimitExceeded:
        version_fail(
            version_id,
            "timeout",
            f"Processing took longer than the {settings.GROUNDWORK_INGEST_TIME_LIMIT}-second limit. "
            "Try splitting the file into smaller parts.",
        )
    except EmbeddingError as exc:
        version_fail(version_id, "embedding_failed", f"The embedding model could not process this document: {exc}")
    except DATABASE_GONE:
        raise  # not the document's fault: `version_ingest` hands it back for a retry
    except Exception:
        logger.exception("Unexpected failure ingesting version %s", version_id)
        version_fail(
            version_id,
            "internal_error",
            "Something unexpected went wrong while processing this document. Try re-indexing it; "
            "if it fails again, the server log has the details.",
        )
