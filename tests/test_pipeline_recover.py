"""Recovery (kb.pipeline.recover, sent by kb.tasks): stuck versions are re-queued or failed, and a
real prefork worker in a subprocess, killed mid-document, still completes the document."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from io import BytesIO
from pathlib import Path

import pytest
from celery import Celery
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.utils import timezone

from kb import services
from kb.models import DocumentStatus, DocumentVersion, KnowledgeBase
from kb.services import document_upload, knowledge_base_create
from kb.tasks import document_ingest, documents_recover_stuck
from tests.conftest import wait_for
from tests.test_document_lifecycle import V1, V2

REPO = Path(__file__).resolve().parents[1]
QUEUE = "groundwork-recovery-test"
WORDS = (
    "refund warranty shipping parcel invoice customer order return policy delivery tent boot jacket "
    "repair store credit payment window business day carrier tracking support claim defect"
).split()


def _long_text(paragraphs: int = 120) -> bytes:
    rng = random.Random(7)
    parts = [
        f"# Handbook part {i}\n\n" + " ".join(rng.choice(WORDS) for _ in range(170)) + "." for i in range(paragraphs)
    ]
    return "\n\n".join(parts).encode()


def _database_url() -> str:
    db = settings.DATABASES["default"]
    return f"postgresql://{db['USER']}:{db['PASSWORD']}@/{db['NAME']}?host={db['HOST']}&port={db['PORT'] or 5432}"


@pytest.fixture
def start_worker() -> Iterator[object]:
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        # Its own default queue: what it re-sends on start-up stays with it, away from the suite's
        # in-process worker.
        env = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "GROUNDWORK_CELERY_QUEUE": QUEUE,
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-P", "prefork", "-c", "1", "-Q", QUEUE,
             "-n", "recovery@%h", "--without-mingle", "--without-gossip", "-l", "warning"],
            cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@pytest.mark.worker
def test_worker_killed_mid_document_is_recovered_on_restart(transactional_db, make_org, start_worker) -> None:  # type: ignore[no-untyped-def]
    org = make_org()
    kb = knowledge_base_create(organization=org, name="Handbook", created_by=None)
    result = document_upload(
        knowledge_base=kb, upload=BytesIO(_long_text()), filename="handbook.md", uploaded_by=None, enqueue=False
    )
    version_id = result.version.pk
    # Sent through a separate Celery app so this process's own app (and a test worker started from
    # it) never learns about the recovery queue: only the subprocess worker may take this task.
    # Not the current app: later tasks of this process (`.delay()`) must keep going to the suite's worker.
    sender = Celery(broker=settings.CELERY_BROKER_URL, set_as_current=False)
    sender.send_task(document_ingest.name, args=[version_id], queue=QUEUE)

    first = start_worker()  # type: ignore[operator]
    wait_for(
        lambda: DocumentVersion.objects.filter(
            pk=version_id, status=DocumentStatus.EMBEDDING, chunks_embedded__gt=0
        ).exists(),
        timeout=120,
    )
    os.killpg(first.pid, signal.SIGKILL)  # no warm shutdown: the worker dies mid-document
    first.wait(timeout=30)
    version = DocumentVersion.objects.get(pk=version_id)
    assert version.status == DocumentStatus.EMBEDDING
    assert version.chunks_embedded < version.chunks_total

    start_worker()  # type: ignore[operator]
    version = wait_for(
        lambda: DocumentVersion.objects.filter(pk=version_id, status__in=("ready", "failed")).first(), timeout=240
    )
    assert version.status == DocumentStatus.READY, version.error_message
    assert version.attempts == 2
    assert version.chunks_embedded == version.chunks_total > 30
    assert version.chunks.filter(is_live=True, embedding__isnull=False).count() == version.chunks_total


@pytest.mark.worker
@override_settings(GROUNDWORK_STUCK_AFTER_SECONDS=60, GROUNDWORK_MAX_ATTEMPTS=3)
def test_stuck_documents_are_requeued_or_failed_after_too_many_attempts(
    make_org, api_client_for, celery_worker
) -> None:  # type: ignore[no-untyped-def]
    client = api_client_for(make_org())
    kb_id = client.post("/api/v1/knowledge-bases/", {"name": "Loyalty"}, format="json").json()["id"]
    kb = KnowledgeBase.objects.get(pk=kb_id)
    stuck = services.document_upload(
        knowledge_base=kb, upload=SimpleUploadedFile("a.md", V1), filename="a.md", uploaded_by=None, enqueue=False
    ).version
    hopeless = services.document_upload(
        knowledge_base=kb, upload=SimpleUploadedFile("b.md", V2), filename="b.md", uploaded_by=None, enqueue=False
    ).version
    long_ago = timezone.now() - timedelta(minutes=10)
    DocumentVersion.objects.filter(pk=stuck.pk).update(status=DocumentStatus.PARSING, heartbeat_at=long_ago, attempts=1)
    DocumentVersion.objects.filter(pk=hopeless.pk).update(
        status=DocumentStatus.EMBEDDING, heartbeat_at=long_ago, attempts=3
    )

    assert documents_recover_stuck() == 2
    hopeless.refresh_from_db()
    assert hopeless.status == DocumentStatus.FAILED and hopeless.error_code == "stuck"
    assert "stopped responding" in hopeless.error_message
    wait_for(lambda: DocumentVersion.objects.get(pk=stuck.pk).status == DocumentStatus.READY, timeout=60)
    assert DocumentVersion.objects.get(pk=stuck.pk).attempts == 2
