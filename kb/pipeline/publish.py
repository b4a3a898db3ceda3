"""Publish (the stage): make a fully embedded version the live one of its document, atomically.

One short transaction under a lock on the document swaps which chunks are live and moves the BM25
statistics with them, so search sees the old version or the new one, never half of each; the new
live state is numbered as a release (kb.releases). In a review-mode knowledge base a staged version
stops here as READY and waits in the draft.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from kb import releases
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
        if releases.version_is_staged(version_id) or (live is not None and live.number > version.number):
            # Staged: it waits in the review-mode draft. Older: a newer version went live while
            # this one was processing; keep this one as history.
            DocumentVersion.objects.filter(pk=version_id).update(
                status=DocumentStatus.READY, finished_at=timezone.now(), heartbeat_at=timezone.now()
            )
            return
        action = "add" if live is None else ("replace" if live.pk != version_id else "")
        term_stats.remove_live_document(document.pk)
        Chunk.objects.filter(document=document, is_live=True).exclude(version_id=version_id).update(is_live=False)
        Chunk.objects.filter(version_id=version_id).update(is_live=document.enabled)
        term_stats.add_live_version(version_id)
        document.live_version_id = version_id
        document.save(update_fields=["live_version", "updated_at"])
        DocumentVersion.objects.filter(pk=version_id).update(
            status=DocumentStatus.READY, finished_at=timezone.now(), heartbeat_at=timezone.now()
        )
        if action:  # re-indexing the live version changes nothing a release records
            author = version.created_by
            releases.release_record(
                knowledge_base=document.knowledge_base,
                changes=[releases.change_entry(document, action)],
                actor=releases.Actor(user=author, label=author.email if author else "system"),
            )
