"""PostgreSQL or Redis restarted under a running system: nothing is lost, nothing stays stuck.

These tests restart the session's own embedded servers (the ones `devtools.pytest_plugin` started
for `.data/test`), through the same devtools helpers `make run` uses, and always leave them
running. The ingestion goes through the real Celery worker of the session.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import InterfaceError, OperationalError, connections
from rest_framework.test import APIClient

from accounts.models import Organization
from chat.models import Chatbot
from chat.services import chatbot_create
from devtools.postgres import start_postgres_if_needed, stop_postgres
from devtools.redis import start_redis_if_needed, stop_redis
from kb.models import DocumentVersion
from tests.conftest import json_server, read_streaming, wait_for

pytestmark = pytest.mark.worker

DIMS = 32
DOC = b"# Tents\n\nOur tents carry a five year warranty on the poles.\n\n## Fabric\n\nThe fabric has two years.\n"


def _data_dir() -> Path:
    return Path(settings.DATA_DIR)


def _hashed(text: str) -> list[float]:
    vector = [0.0] * DIMS
    for word in re.findall(r"\w+", text.lower()):
        vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % DIMS] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def _embeddings(body: dict[str, Any]) -> dict[str, Any]:
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    return {
        "object": "list",
        "model": body["model"],
        "data": [{"object": "embedding", "index": i, "embedding": _hashed(t)} for i, t in enumerate(inputs)],
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
    }


def _status(client: APIClient, doc_id: int) -> str | None:
    """The document's status, or None while this thread's connection is one the restart broke."""
    try:
        return str(client.get(f"/api/v1/documents/{doc_id}/").json()["status"])
    except (OperationalError, InterfaceError):
        connections.close_all()  # the next request takes a fresh connection
        return None


@pytest.fixture
def postgres_restart_on_embed(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """A stand-in embedding provider that, once armed, restarts PostgreSQL inside the first worker
    request it gets (so after the chunks were stored, before their vectors are), then answers.
    Yields the arming event; the restart has happened once `.restarted` is set."""
    armed, restarted = threading.Event(), threading.Event()
    url_before, _ = start_postgres_if_needed(_data_dir())

    def respond(body: dict[str, Any]) -> dict[str, Any]:
        if armed.is_set() and not restarted.is_set():
            assert stop_postgres(_data_dir())
            url_after, started = start_postgres_if_needed(_data_dir())
            assert started and url_after == url_before
            restarted.set()
        return _embeddings(body)

    with json_server(respond) as url:
        monkeypatch.setenv("OPENAI_API_BASE", f"{url}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-local")
        armed.restarted = restarted  # type: ignore[attr-defined]
        try:
            yield armed
        finally:
            start_postgres_if_needed(_data_dir())  # never leave the session without its database
            connections.close_all()


def test_postgres_restarted_mid_ingest_the_document_still_becomes_ready(
    make_org: Any, api_client_for: Any, celery_worker: Any, postgres_restart_on_embed: threading.Event
) -> None:
    client = api_client_for(make_org())
    kb = client.post("/api/v1/knowledge-bases/", {"name": "Gear", "embedding_model": "openai/hash-32"}, format="json")
    assert kb.status_code == 201, kb.content
    postgres_restart_on_embed.set()
    doc = client.post(
        f"/api/v1/knowledge-bases/{kb.json()['id']}/documents/",
        {"file": SimpleUploadedFile("tents.md", DOC)},
        format="multipart",
    ).json()

    wait_for(postgres_restart_on_embed.restarted.is_set, timeout=90)  # type: ignore[attr-defined]
    status = wait_for(lambda: (s := _status(client, doc["id"])) in ("ready", "failed") and s, timeout=90)

    assert status == "ready"
    version = DocumentVersion.objects.get(document_id=doc["id"])
    assert version.attempts == 2  # the run that lost its database, then the retry
    body = client.post(f"/api/v1/knowledge-bases/{kb.json()['id']}/search/", {"query": "tent warranty"}, format="json")
    assert body.status_code == 200 and "five year warranty" in json.dumps(body.json())


def _widget_chat(bot: Chatbot, message: str, started: dict[str, Any]) -> tuple[int, str]:
    response = APIClient().post(
        f"/api/widget/{bot.widget_key}/chat",
        {"message": message, "conversation_id": started["conversation_id"], "visitor_token": started["visitor_token"]},
        format="json",
        HTTP_ORIGIN="https://shop.example",
    )
    return response.status_code, read_streaming(response).decode() if response.status_code == 200 else ""


@pytest.fixture
def redis_stopped() -> Iterator[None]:
    """Redis is down for the body of the test (restarted by it, or here at the end)."""
    assert stop_redis(_data_dir())
    try:
        yield
    finally:
        start_redis_if_needed(_data_dir())


def test_redis_restarted_chats_keep_answering_and_queued_documents_complete(
    make_org: Any, api_client_for: Any, celery_worker: Any, settings: Any, redis_stopped: None
) -> None:
    settings.GROUNDWORK_WIDGET_RATE_PER_MINUTE = 1  # were the limiter working, the 2nd message would be refused
    org: Organization = make_org()
    client = api_client_for(org)
    kb_id = client.post("/api/v1/knowledge-bases/", {"name": "Gear"}, format="json").json()["id"]
    bot = chatbot_create(
        organization=org, name="Bot", knowledge_bases=[], created_by=None, allowed_origins=["https://shop.example"]
    )
    started = (
        APIClient()
        .post(
            f"/api/widget/{bot.widget_key}/conversations",
            {"visitor_id": "visitor-0001"},
            format="json",
            HTTP_ORIGIN="https://shop.example",
        )
        .json()
    )

    # Redis is down: the web answers (the rate limiter fails open) and uploads are accepted.
    for message in ("Hello?", "Anyone there?"):
        status, events = _widget_chat(bot, message, started)
        assert status == 200 and "event: final" in events
    upload = client.post(
        f"/api/v1/knowledge-bases/{kb_id}/documents/", {"file": SimpleUploadedFile("tents.md", DOC)}, format="multipart"
    )
    assert upload.status_code == 201, upload.content
    doc_id = upload.json()["id"]
    assert _status(client, doc_id) == "queued"

    # Redis comes back empty (the embedded one keeps nothing on disk): the worker reconnects and
    # re-sends what was queued.
    start_redis_if_needed(_data_dir())
    assert wait_for(
        lambda: _status(client, doc_id) in ("ready", "failed") and _status(client, doc_id), timeout=120
    ) == ("ready")
