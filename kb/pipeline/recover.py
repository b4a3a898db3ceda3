"""Recover: find versions a worker left unfinished, put them back to QUEUED and return their ids.

Nothing here sends a task (the pipeline never imports the task module): the caller, a task in
`kb.tasks`, enqueues the ids it gets back. Re-sending a task for a QUEUED version is harmless: the
claim is a conditional update, so only one run does the work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from kb.models import DocumentStatus, DocumentVersion
from kb.pipeline.claim import EMBED_LATER
from kb.pipeline.job import requeue
from kb.pipeline.publish import version_fail


@dataclass(frozen=True)
class Recovered:
    """What a recovery pass did: `enqueue` are the version ids to send to the ingest task."""

    enqueue: list[int] = field(default_factory=list)
    embed: list[int] = field(default_factory=list)  # version ids to send to the embed task
    requeued: int = 0  # put back to QUEUED
    failed: int = 0  # given up after too many attempts

    @property
    def touched(self) -> int:
        return self.requeued + self.failed


def recover_stuck() -> Recovered:
    """Versions whose worker went silent: re-queue them, or fail them after too many tries.

    A worker killed mid-document leaves its version in PARSING/EMBEDDING with an old heartbeat;
    queued ones whose message was lost stay QUEUED.
    """
    deadline = timezone.now() - timedelta(seconds=settings.GROUNDWORK_STUCK_AFTER_SECONDS)
    stuck = DocumentVersion.objects.filter(
        status__in=(DocumentStatus.QUEUED, DocumentStatus.PARSING, DocumentStatus.EMBEDDING),
        heartbeat_at__lt=deadline,
    )
    enqueue: list[int] = []
    failed = 0
    for version in stuck:
        if version.attempts >= settings.GROUNDWORK_MAX_ATTEMPTS:
            version_fail(
                version.pk,
                "stuck",
                f"Processing stopped responding {version.attempts} times; the file may be too large or complex. "
                "Try splitting it, or re-index to try again.",
            )
            failed += 1
        else:
            requeue(version.pk)
            enqueue.append(version.pk)
    return Recovered(enqueue=enqueue, requeued=len(enqueue), failed=failed)


def recover_after_worker_restart(*, worker: str) -> Recovered:
    """Re-queue what a worker node had claimed before it died, and re-send all queued work.

    Called when a worker node starts: anything still claimed under its name belongs to a previous
    incarnation that was killed. With late acks Redis would redeliver its messages only after the
    visibility timeout (an hour); this brings them back at once.
    """
    orphaned = list(
        DocumentVersion.objects.filter(status__in=(DocumentStatus.PARSING, DocumentStatus.EMBEDDING), claimed_by=worker)
        .exclude(claimed_by="")
        .values_list("pk", flat=True)
    )
    with transaction.atomic():
        for version_id in orphaned:
            requeue(version_id)
    return Recovered(enqueue=queued_version_ids(), embed=embed_later_version_ids(), requeued=len(orphaned))


def queued_version_ids() -> list[int]:
    """Every version waiting in QUEUED, oldest first (to re-send after their messages were lost)."""
    queued = DocumentVersion.objects.filter(status=DocumentStatus.QUEUED).order_by("pk")
    return list(queued.values_list("pk", flat=True))


def embed_later_version_ids() -> list[int]:
    """Every version waiting for the embed task (`kb.pipeline.run`), oldest first: their messages
    are lost with a Redis restarted without persistence, like queued versions'."""
    waiting = DocumentVersion.objects.filter(status=DocumentStatus.EMBEDDING, claimed_by=EMBED_LATER).order_by("pk")
    return list(waiting.values_list("pk", flat=True))
