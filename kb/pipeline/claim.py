"""Claim: take a QUEUED version with a conditional UPDATE, so only one worker ever processes it.

A version whose embedding was left for later (`kb.pipeline.run`: found by its words while the
pool process still loaded its model) waits in EMBEDDING under the `EMBED_LATER` name; the embed
task claims it back the same way.
"""

from __future__ import annotations

from typing import Final

from django.db.models import F
from django.utils import timezone

from kb.models import Chunk, DocumentStatus, DocumentVersion
from kb.pipeline.job import Job

#: `claimed_by` of a version whose chunks are stored and searchable by their words, waiting for the
#: embed task. Never a worker's name (those are "celery@host"), so no restart recovery takes it.
EMBED_LATER: Final = "embed-later"


def claim(*, version_id: int, worker: str) -> Job | None:
    """QUEUED → PARSING under `worker`'s name; None when the version is gone, done, or taken."""
    now = timezone.now()
    claimed = DocumentVersion.objects.filter(pk=version_id, status=DocumentStatus.QUEUED).update(
        status=DocumentStatus.PARSING,
        claimed_by=worker,
        started_at=now,
        heartbeat_at=now,
        attempts=F("attempts") + 1,
        error_code="",
        error_message="",
    )
    if claimed != 1:
        return None  # gone, already done, or another worker has it
    return _job(version_id)


def embedding_leave(*, version_id: int, worker: str) -> None:
    """Hand a version this worker has chunked and indexed to the embed task (`claim_embedding`)."""
    DocumentVersion.objects.filter(pk=version_id, status=DocumentStatus.EMBEDDING, claimed_by=worker).update(
        claimed_by=EMBED_LATER, heartbeat_at=timezone.now()
    )


def claim_embedding(*, version_id: int, worker: str) -> Job | None:
    """A version left for embedding → claimed by `worker`, with its stored chunks on the job; None
    when it is gone, done, or taken (recovered meanwhile, or a duplicate message)."""
    claimed = DocumentVersion.objects.filter(
        pk=version_id, status=DocumentStatus.EMBEDDING, claimed_by=EMBED_LATER
    ).update(claimed_by=worker, heartbeat_at=timezone.now())
    if claimed != 1:
        return None
    job = _job(version_id)
    # Their vectors are still empty (the embed stage reads and fills them); the tsvector is not needed.
    stored = Chunk.objects.filter(version_id=version_id).defer("search_vector", "next_embedding", "ranking_embedding")
    job.chunks = list(stored.order_by("ordinal"))
    job.words_first = True
    return job


def _job(version_id: int) -> Job:
    version = DocumentVersion.objects.select_related("document__knowledge_base").get(pk=version_id)
    return Job(version=version, knowledge_base=version.document.knowledge_base)
