"""Publish (the stage): make a fully embedded version the live one of its document, atomically.

One short transaction under a lock on the document swaps which chunks are live and moves the BM25
statistics with them, so search sees the old version or the new one, never half of each.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from kb.models import Chunk, Document, DocumentStatus, DocumentVersion
from kb.pipeline.index import term_stats
from kb.pipeline.job import Job


def publish(job: Job) -> None:
    version_publish(version_id=job.version.pk)


def version_publish(*, version_id: int) -> None:
    """Make a fully embedded version the live one of its document, atomically."""
    with transaction.atomic():
        version = DocumentVersion.objects.select_related("document").get(pk=version_id)
        document = Document.objects.select_for_update().get(pk=version.document_id)
        live = document.live_version
        if live is not None and live.number > version.number:
            # A newer version went live while this one was processing; keep this one as history.
            DocumentVersion.objects.filter(pk=version_id).update(
                status=DocumentStatus.READY, finished_at=timezone.now()
            )
            return
        term_stats.remove_live_document(document.pk)
        Chunk.objects.filter(document=document, is_live=True).exclude(version_id=version_id).update(is_live=False)
        Chunk.objects.filter(version_id=version_id).update(is_live=document.enabled)
        term_stats.add_live_version(version_id)
        document.live_version_id = version_id
        document.save(update_fields=["live_version", "updated_at"])
        DocumentVersion.objects.filter(pk=version_id).update(
            status=DocumentStatus.READY, finished_at=timezone.now(), heartbeat_at=timezone.now()
        )
