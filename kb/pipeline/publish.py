"""Publish (the stage): make a fully embedded version the live one of its document, atomically.

One short transaction under a lock on the document swaps which chunks are live and moves the BM25
statistics with them, so search sees the old version or the new one, never half of each; the new
live state is numbered as a release (kb.releases). In a review-mode knowledge base a staged version
stops here as READY and waits in the draft.

Words first: a long *new* document (no version of it live yet, in an instant-mode knowledge base)
goes live for keyword search as soon as it is chunked and indexed, before its vectors exist
(`publish_words_first`). On 2 cores a 100-page PDF spends about as long embedding as parsing, and
nothing else answers for it meanwhile, so waiting for the vectors doubled the time before anyone
could ask about it. Vector search skips its chunks until they have vectors (they have no
`embedding_dims`). The document's `live_version` and its release wait for the full publish, so
releases only ever record fully embedded versions; a version that fails on the way is withdrawn
(`version_fail`). Replacing a live version keeps the old one answering until the new one is whole.
The same holds for a new document of any length while the worker is still loading its embedding
model after a start (`kb.pipeline.warm`), and its vectors then follow in a task of their own
(`kb.pipeline.run`): a small text uploaded as the worker answers its first ping is found by its
words ~0.3 s later when a pool process is free, and 2.3-3.2 s later behind a fresh `make run`'s
three demo documents (9 s when each run waited for the model; bench/worker_start.py --demo).
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from kb import releases
from kb.models import Chunk, Document, DocumentStatus, DocumentVersion
from kb.pipeline import warm
from kb.pipeline.index import term_stats
from kb.pipeline.job import Job, fail


def publish_words_first(job: Job) -> None:
    """A long new document becomes searchable by its words now, while its vectors are computed
    (or while the embedding model is still loading); GROUNDWORK_WORDS_FIRST_CHUNKS=0 turns it off."""
    threshold = settings.GROUNDWORK_WORDS_FIRST_CHUNKS
    worth_it = len(job.chunks) >= threshold or warm.embedder_loading()
    if threshold and worth_it and not job.knowledge_base.review_changes:
        job.words_first = version_publish_words(version_id=job.version.pk)


def version_publish_words(*, version_id: int) -> bool:
    """Make a version's chunks live for keyword search when its document has nothing live yet;
    False (nothing done) otherwise."""
    with transaction.atomic():
        version = DocumentVersion.objects.get(pk=version_id)
        document = Document.objects.select_for_update().filter(pk=version.document_id).first()
        if (
            document is None  # deleted meanwhile
            or document.live_version_id is not None  # a replacement: the live version answers until this one is whole
            or not document.enabled
            or releases.version_is_staged(version_id)
            or Chunk.objects.filter(document=document, is_live=True).exists()  # another version went first
        ):
            return False
        Chunk.objects.filter(version_id=version_id).update(is_live=True)
        term_stats.add_live_version(version_id)
        DocumentVersion.objects.filter(pk=version_id).update(searchable_at=timezone.now())
    return True


def version_withdraw(*, version_id: int) -> None:
    """Take the chunks of a version that is not its document's live version out of search
    (published words first, then failed or given up)."""
    with transaction.atomic():
        version = DocumentVersion.objects.filter(pk=version_id).first()
        if version is None:
            return  # deleted with its document
        document = Document.all_objects.select_for_update().filter(pk=version.document_id).first()
        if document is None or document.live_version_id == version_id:
            return  # its live version stays live (a failed re-index keeps what was there)
        if Chunk.objects.filter(version_id=version_id, is_live=True).exists():
            term_stats.remove_live_version(version_id)
            Chunk.objects.filter(version_id=version_id).update(is_live=False)
            DocumentVersion.objects.filter(pk=version_id).update(searchable_at=None)


def version_fail(version_id: int, code: str, message: str) -> None:
    """Mark a version FAILED (kb.pipeline.job.fail) and take whatever of it went live early out of search."""
    with transaction.atomic():
        fail(version_id, code, message)
        version_withdraw(version_id=version_id)


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
        now = timezone.now()
        DocumentVersion.objects.filter(pk=version_id).update(
            status=DocumentStatus.READY, finished_at=now, heartbeat_at=now
        )
        DocumentVersion.objects.filter(pk=version_id, searchable_at__isnull=True).update(searchable_at=now)
        if action:  # re-indexing the live version changes nothing a release records
            author = version.created_by
            releases.release_record(
                knowledge_base=document.knowledge_base,
                changes=[releases.change_entry(document, action)],
                actor=releases.Actor(user=author, label=author.email if author else "system"),
            )
