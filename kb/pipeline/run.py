"""The ingestion pipeline of one `DocumentVersion`, as a list of stages run in order.

    claim    QUEUED → PARSING with a conditional UPDATE (only one worker wins)     claim.py
    fetch    web pages only: download the page as the version's file              fetch.py
    parse    the file into elements (outside any transaction)                     parse/stage.py
    chunk    sections + chunks stored, not yet live (→ EMBEDDING)                 chunk/stage.py
    index    keyword-search vectors                                               index/__init__.py
    words    a long new document goes live for keyword search already             publish.py
    embed    vectors in batches, re-using identical chunks already embedded       embed.py
    publish  one short transaction makes this version live (→ READY)              publish.py

A new document found by its words while this pool process is still loading its embedding model
(the first seconds after a worker starts) is not embedded here: the run stops before `embed`, the
version waits in EMBEDDING (`claim.EMBED_LATER`) and `version_ingest` says so, for the task to
send `version_embed`, which runs embed and publish. The process takes the next upload meanwhile
instead of waiting for the model: at a fresh `make run`, the demo's documents held both pool
processes until it loaded, and a text uploaded at the first ping was found 8.9-9.3 s later; now
2.3-3.2 s, and all three demo documents are found ~6.5 s after the start instead of ~17 s
(bench/worker_start.py --demo).

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
from kb.pipeline import warm
from kb.pipeline.chunk.stage import chunk
from kb.pipeline.claim import EMBED_LATER, claim, claim_embedding, embedding_leave
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
#: What `version_embed` runs for a version whose embedding was left for later.
EMBED_STAGES: tuple[Stage, ...] = (embed, publish)


# Django's wrappers of psycopg's "the server is gone / the connection is broken" errors.
DATABASE_GONE = (OperationalError, InterfaceError)


def version_ingest(*, version_id: int, worker: str = "") -> bool:
    """Run the whole pipeline for one version. Safe to call twice: a second call finds it claimed.

    Returns True when the version's embedding was left for later: send `version_embed` for it.
    Raises `DatabaseUnavailable` (for the task to retry) when the database goes away mid-run.
    """
    try:
        job = claim(version_id=version_id, worker=worker)
        if job is None:
            return False  # gone, already done, or another worker has it
        return _run(job, STAGES, worker=worker)
    except DATABASE_GONE as exc:
        logger.warning("Database unavailable while ingesting version %s: %s", version_id, exc)
        version_release(version_id=version_id, worker=worker)
        raise DatabaseUnavailable(str(exc).strip() or type(exc).__name__) from exc


def version_embed(*, version_id: int, worker: str = "") -> None:
    """Embed and publish a version `version_ingest` left for later; nothing when it is gone, done
    or taken. Raises `DatabaseUnavailable` like `version_ingest`."""
    try:
        job = claim_embedding(version_id=version_id, worker=worker)
        if job is not None:
            _run(job, EMBED_STAGES, worker=worker, embedding_only=True)
    except DATABASE_GONE as exc:
        logger.warning("Database unavailable while embedding version %s: %s", version_id, exc)
        version_release(version_id=version_id, worker=worker, embed_later=True)
        raise DatabaseUnavailable(str(exc).strip() or type(exc).__name__) from exc


def version_release(*, version_id: int, worker: str, embed_later: bool = False) -> bool:
    """Hand a version this worker had claimed back to QUEUED (or, `embed_later`, back to the embed
    task), on a fresh connection; False when the database is still unreachable (the task's retry,
    or the recovery beat, tries again)."""
    connections.close_all()  # this thread's broken connections: a pooled one goes back and is discarded
    claimed = DocumentVersion.objects.filter(pk=version_id, claimed_by=worker)
    try:
        if embed_later:
            claimed.filter(status=DocumentStatus.EMBEDDING).update(claimed_by=EMBED_LATER, heartbeat_at=timezone.now())
        else:
            claimed.filter(status__in=(DocumentStatus.PARSING, DocumentStatus.EMBEDDING)).update(
                status=DocumentStatus.QUEUED, heartbeat_at=timezone.now()
            )
    except DATABASE_GONE:
        connections.close_all()
        return False
    return True


def _embedding_can_wait(job: Job) -> bool:
    """Its words answer already and this process would only wait for its model: embed it later."""
    return job.words_first and warm.embedder_loading()


def _run(job: Job, stages: tuple[Stage, ...], *, worker: str, embedding_only: bool = False) -> bool:
    """Run `stages` on a claimed job; True when it stopped before `embed`, to embed later (see the
    module docstring). `embedding_only`: the job is such a later run (it never stops there)."""
    version_id = job.version.pk
    try:
        for stage in stages:
            if stage is embed and not embedding_only and _embedding_can_wait(job):
                embedding_leave(version_id=version_id, worker=worker)
                return True
            stage(job)
            # What the stage freed (the parser's page layouts and elements above all) goes back to
            # the system before the next one allocates: a pool process peaks lower (kb.pipeline.memory).
            release_freed_memory()
    except TransientEmbeddingError:
        # Hand it back; the task retries with backoff.
        if embedding_only:
            embedding_leave(version_id=version_id, worker=worker)
        else:
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
        raise  # not the document's fault: the caller hands it back for a retry
    except Exception:
        logger.exception("Unexpected failure ingesting version %s", version_id)
        version_fail(
            version_id,
            "internal_error",
            "Something unexpected went wrong while processing this document. Try re-indexing it; "
            "if it fails again, the server log has the details.",
        )
    return False
