"""The ingestion pipeline of one `DocumentVersion`, as a list of stages run in order.

    claim    QUEUED → PARSING with a conditional UPDATE (only one worker wins)     claim.py
    fetch    web pages only: download the page as the version's file              fetch.py
    parse    the file into elements (outside any transaction)                     parse/stage.py
    chunk    sections + chunks stored, not yet live (→ EMBEDDING)                 chunk/stage.py
    embed    vectors in batches, re-using identical chunks already embedded       embed.py
    index    keyword-search vectors                                               index/__init__.py
    publish  one short transaction makes this version live (→ READY)              publish.py

`recover.py` finds versions a dead worker left behind (the task module re-sends them) and
`reembed.py` moves a whole knowledge base to a new embedding model.

A failure on the way marks the version FAILED with a code and a sentence a person understands;
only transient model errors are retried (the version goes back to QUEUED and the task retries).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from kb.exceptions import EmbeddingError, ParseFailure, TransientEmbeddingError
from kb.models import DocumentStatus, DocumentVersion
from kb.pipeline.chunk.stage import chunk
from kb.pipeline.claim import claim
from kb.pipeline.embed import embed
from kb.pipeline.fetch import fetch
from kb.pipeline.index import index
from kb.pipeline.job import Job, fail
from kb.pipeline.parse.stage import parse
from kb.pipeline.publish import publish

logger = logging.getLogger(__name__)

Stage = Callable[[Job], None]

# After `claim`, in this order. Each stage reads what the earlier ones left on the job.
STAGES: tuple[Stage, ...] = (fetch, parse, chunk, embed, index, publish)


def version_ingest(*, version_id: int, worker: str = "") -> None:
    """Run the whole pipeline for one version. Safe to call twice: a second call finds it claimed."""
    job = claim(version_id=version_id, worker=worker)
    if job is None:
        return  # gone, already done, or another worker has it
    try:
        for stage in STAGES:
            stage(job)
    except TransientEmbeddingError:
        # Hand it back to the queue; the task retries with backoff.
        DocumentVersion.objects.filter(pk=version_id).update(status=DocumentStatus.QUEUED)
        raise
    except ParseFailure as failure:
        fail(version_id, failure.code, failure.message)
    except SoftTimeLimitExceeded:
        fail(
            version_id,
            "timeout",
            f"Processing took longer than the {settings.GROUNDWORK_INGEST_TIME_LIMIT}-second limit. "
            "Try splitting the file into smaller parts.",
        )
    except EmbeddingError as exc:
        fail(version_id, "embedding_failed", f"The embedding model could not process this document: {exc}")
    except Exception:
        logger.exception("Unexpected failure ingesting version %s", version_id)
        fail(
            version_id,
            "internal_error",
            "Something unexpected went wrong while processing this document. Try re-indexing it; "
            "if it fails again, the server log has the details.",
        )
