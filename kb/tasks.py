"""Celery tasks of the kb app: thin wrappers around the pipeline, arguments are IDs only.

`kb.services` enqueues through `enqueue_ingest` / `enqueue_reembed` (on commit); the tasks call
`kb.pipeline` and send what the recover stage hands back. Every task is idempotent: the claim is a
conditional update, so a version sent twice is processed once.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import shared_task
from celery.signals import worker_init, worker_process_init, worker_ready
from django.conf import settings
from kombu.exceptions import OperationalError as KombuOperationalError

from kb.exceptions import DatabaseUnavailable, TransientEmbeddingError
from kb.pipeline import memory, ranking, recover, reembed, run, warm
from kb.websites import sync as website_sync

logger = logging.getLogger(__name__)

# Publishing a task failed because the broker is unreachable (kombu wraps most; redis-py's own
# errors can surface from the Redis transport's connection setup).
BROKER_ERRORS = (KombuOperationalError, redis.RedisError, ConnectionError, OSError)


# The ingest task's and the embed task's: retried on transient errors only (a model rate limit or
# timeout, a database restarted or failed over mid-run), within the ingest time limit.
_INGEST_TASK_OPTIONS: dict[str, Any] = {
    "autoretry_for": (TransientEmbeddingError, DatabaseUnavailable),
    "retry_backoff": settings.GROUNDWORK_INGEST_RETRY_BACKOFF,
    "retry_backoff_max": 300,
    "max_retries": settings.GROUNDWORK_INGEST_MAX_RETRIES,
    "soft_time_limit": settings.GROUNDWORK_INGEST_TIME_LIMIT,
    "time_limit": settings.GROUNDWORK_INGEST_TIME_LIMIT + 60,
}


@shared_task(bind=True, name="kb.document_ingest", **_INGEST_TASK_OPTIONS)
def document_ingest(self: Any, version_id: int) -> None:
    # No waiting for the warm-up here: each stage waits for what it needs (kb.pipeline.warm).
    worker = self.request.hostname or ""
    if self.request.retries:
        # A run that lost the database could not always hand its version back: do it now.
        run.version_release(version_id=version_id, worker=worker)
    if run.version_ingest(version_id=version_id, worker=worker):
        # Found by its words while this process loads its model: the vectors follow in their own
        # task, or here after all when it cannot be sent.
        if enqueue_embed(version_id):
            return
        run.version_embed(version_id=version_id, worker=worker)
    _fill_ranking_vectors(version_id)


@shared_task(bind=True, name="kb.version_embed", **_INGEST_TASK_OPTIONS)
def version_embed(self: Any, version_id: int) -> None:
    """The vectors of a version `document_ingest` left for later, then its publish."""
    worker = self.request.hostname or ""
    if self.request.retries:
        run.version_release(version_id=version_id, worker=worker, embed_later=True)
    run.version_embed(version_id=version_id, worker=worker)
    _fill_ranking_vectors(version_id)


def _fill_ranking_vectors(version_id: int) -> None:
    # Precise ranking: the document is live already; its e5 ranking vectors follow in their own task.
    needing_vectors = ranking.knowledge_base_needing_vectors(version_id=version_id)
    if needing_vectors is not None:
        enqueue_ranking_fill(needing_vectors)


@shared_task(
    name="kb.knowledge_base_reembed",
    autoretry_for=(TransientEmbeddingError,),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=10,
)
def knowledge_base_reembed(knowledge_base_id: int) -> None:
    warm.wait_for_embedder()
    reembed.knowledge_base_reembed(knowledge_base_id=knowledge_base_id)


@shared_task(
    name="kb.knowledge_base_fill_ranking_vectors",
    autoretry_for=(TransientEmbeddingError,),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=10,
)
def knowledge_base_fill_ranking_vectors(knowledge_base_id: int) -> int:
    warm.wait_for_embedder()
    return ranking.fill_ranking_vectors(knowledge_base_id=knowledge_base_id)


@shared_task(name="kb.documents_recover_stuck")
def documents_recover_stuck() -> int:
    """Re-send versions whose worker went silent; returns how many were re-queued or failed."""
    recovered = recover.recover_stuck()
    for version_id in recovered.enqueue:
        enqueue_ingest(version_id)
    return recovered.touched


@shared_task(name="kb.web_source_sync", soft_time_limit=3300, time_limit=3400)
def web_source_sync(source_id: int) -> None:
    """One sync of a website source; its new page versions are enqueued for ingestion as found."""
    website_sync.web_source_sync(source_id=source_id, enqueue=enqueue_ingest)


@shared_task(name="kb.web_sources_sync_due")
def web_sources_sync_due() -> int:
    """Beat: queue the website sources whose daily or weekly schedule is due."""
    due = website_sync.web_sources_claim_due()
    for source_id in due:
        enqueue_web_source_sync(source_id)
    return len(due)


def enqueue_web_source_sync(source_id: int) -> None:
    web_source_sync.delay(source_id)


def enqueue_ingest(version_id: int) -> None:
    """Send the ingest task. With the broker down the version stays QUEUED (the upload still
    succeeds): workers re-send queued versions when their broker connection comes back
    (`documents_requeue`), and the recovery beat task does after GROUNDWORK_STUCK_AFTER_SECONDS."""
    try:
        document_ingest.delay(version_id)
    except BROKER_ERRORS as exc:
        logger.warning("Could not queue version %s (broker unavailable, it is sent later): %s", version_id, exc)


def documents_requeue() -> int:
    """Re-send every QUEUED version, and every version waiting for its embed task: called when a
    worker's broker connection comes back, since a Redis restarted without persistence lost the
    messages. Duplicates are harmless (the claims)."""
    queued = recover.queued_version_ids()
    for version_id in queued:
        enqueue_ingest(version_id)
    waiting = recover.embed_later_version_ids()
    for version_id in waiting:
        enqueue_embed(version_id)
    return len(queued) + len(waiting)


def enqueue_embed(version_id: int) -> bool:
    """Send the embed task; False with the broker down (the version waits, searchable by its
    words, until `documents_requeue` or the recovery beat task sends it)."""
    try:
        version_embed.delay(version_id)
    except BROKER_ERRORS as exc:
        logger.warning("Could not queue the vectors of version %s: %s", version_id, exc)
        return False
    return True


def enqueue_reembed(knowledge_base_id: int) -> None:
    knowledge_base_reembed.delay(knowledge_base_id)


def enqueue_ranking_fill(knowledge_base_id: int) -> None:
    """Send the ranking-vector fill; with the broker down it is sent again with the next document
    or the next time precise ranking is turned on (search keeps the fused order meanwhile)."""
    try:
        knowledge_base_fill_ranking_vectors.delay(knowledge_base_id)
    except BROKER_ERRORS as exc:
        logger.warning("Could not queue the ranking vectors of knowledge base %s: %s", knowledge_base_id, exc)


@worker_init.connect
def _tune_allocator(**_: Any) -> None:
    """In the worker's main process, before the pool forks: see `kb.pipeline.memory`."""
    memory.configure_allocator(arena_max=settings.GROUNDWORK_WORKER_MALLOC_ARENAS)


@worker_process_init.connect
def _warm_up_child(**_: Any) -> None:
    """Load the parsers and the embedding model in a background thread of each pool process, so the
    worker answers pings and takes tasks at once instead of after ~10-20 s of imports; each
    document waits for what its next stage needs (`kb.pipeline.warm`). Not in the parent: a model
    loaded before forking saves memory only while nothing touches its pages, and onnxruntime's
    thread pool does not survive fork."""
    warm.start_in_background()


@worker_ready.connect
def _recover_after_restart(sender: Any = None, **_: Any) -> None:
    """A worker node that starts again picks up what its killed predecessor left half-done."""
    hostname = getattr(sender, "hostname", "") or ""
    try:
        recovered = recover.recover_after_worker_restart(worker=hostname)
        for version_id in recovered.enqueue:
            enqueue_ingest(version_id)
        for version_id in recovered.embed:
            enqueue_embed(version_id)
    except Exception:  # recovery must never stop a worker from starting
        logger.exception("Recovering documents after a worker restart failed")
        return
    if recovered.requeued:
        logger.info("Re-queued %s document(s) left unfinished by a previous run of %s", recovered.requeued, hostname)
