"""Claim: take a QUEUED version with a conditional UPDATE, so only one worker ever processes it."""

from __future__ import annotations

from django.db.models import F
from django.utils import timezone

from kb.models import DocumentStatus, DocumentVersion
from kb.pipeline.job import Job


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
    version = DocumentVersion.objects.select_related("document__knowledge_base").get(pk=version_id)
    return Job(version=version, knowledge_base=version.document.knowledge_base)
