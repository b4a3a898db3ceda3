"""Celery tasks of the kb app: thin wrappers around services, arguments are IDs only."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.signals import worker_init, worker_process_init, worker_ready
from django.conf import settings

from kb import services
from kb.exceptions import TransientEmbeddingError

logger = logging.getLogger(__name__)


@shared_task(
    bind=True,
    name="kb.document_ingest",
    autoretry_for=(TransientEmbeddingError,),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=5,
    soft_time_limit=settings.GROUNDWORK_INGEST_TIME_LIMIT,
    time_limit=settings.GROUNDWORK_INGEST_TIME_LIMIT + 60,
)
def document_ingest(self: Any, version_id: int) -> None:
    services.version_ingest(version_id=version_id, worker=self.request.hostname or "")


@shared_task(
    name="kb.knowledge_base_reembed",
    autoretry_for=(TransientEmbeddingError,),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=10,
)
def knowledge_base_reembed(knowledge_base_id: int) -> None:
    services.knowledge_base_reembed(knowledge_base_id=knowledge_base_id)


@shared_task(name="kb.documents_recover_stuck")
def documents_recover_stuck() -> int:
    return services.documents_recover_stuck()


@worker_init.connect
def _warm_up_parent(**_: Any) -> None:
    """Import the parsers and load spaCy before forking, so children share them (copy-on-write)
    and a missing model fails loudly at start rather than on the first document."""
    from kb import ingestion

    ingestion.warm_up_parsers()


@worker_process_init.connect
def _warm_up_child(**_: Any) -> None:
    """Load the ONNX embedding model in each pool process, never in the parent: onnxruntime's
    thread pool does not survive fork (a session created before forking deadlocks the child)."""
    from kb import ingestion

    ingestion.warm_up_models()


@worker_ready.connect
def _recover_after_restart(sender: Any = None, **_: Any) -> None:
    """A worker node that starts again picks up what its killed predecessor left half-done."""
    hostname = getattr(sender, "hostname", "") or ""
    try:
        recovered = services.documents_recover_after_worker_restart(worker=hostname)
    except Exception:  # recovery must never stop a worker from starting
        logger.exception("Recovering documents after a worker restart failed")
        return
    if recovered:
        logger.info("Re-queued %s document(s) left unfinished by a previous run of %s", recovered, hostname)
