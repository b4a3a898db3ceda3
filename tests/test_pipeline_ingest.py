"""The walking skeleton: upload through the API → real worker → search, scoped per organisation."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from tests.conftest import wait_for

REFUNDS = b"""# Refund policy

## Returns window
Unused items can be returned within 30 days of delivery for a full refund.
Keep the original packaging and the receipt; we inspect every returned item on arrival.
Returns are handled by our warehouse team in Utrecht, who confirm each one by e-mail.

## Exceptions
Gift cards and opened camping fuel canisters cannot be returned.
Custom-fitted boots are made for one customer only, so they cannot be returned either.
Items damaged by misuse are not refunded, but our workshop can often repair them.
"""

PLANTS = b"""Watering guide

Water cacti once every three weeks in summer and hardly at all in winter.
Ferns like moist soil and a humid room.
"""


def _upload(client: APIClient, kb_id: int, name: str, content: bytes) -> dict[str, Any]:
    response = client.post(
        f"/api/v1/knowledge-bases/{kb_id}/documents/",
        {"file": SimpleUploadedFile(name, content, content_type="text/plain")},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    return response.json()


def _wait_ready(client: APIClient, doc_id: int) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        body = client.get(f"/api/v1/documents/{doc_id}/").json()
        assert body["status"] != "failed", body
        return body if body["status"] == "ready" else None

    return wait_for(ready, timeout=90)


@pytest.mark.worker
def test_uploaded_text_becomes_searchable_through_the_worker(make_org, api_client_for, celery_worker) -> None:  # type: ignore[no-untyped-def]
    client = api_client_for(make_org("Northwind"))
    kb = client.post("/api/v1/knowledge-bases/", {"name": "Support"}, format="json")
    assert kb.status_code == 201
    kb_id = kb.json()["id"]

    created = _upload(client, kb_id, "refunds.md", REFUNDS)
    assert created["status"] == "queued"
    _upload(client, kb_id, "plants.txt", PLANTS)
    document = _wait_ready(client, created["id"])
    assert document["chunks"] >= 1 and document["error"] is None

    response = client.post(
        f"/api/v1/knowledge-bases/{kb_id}/search/", {"query": "can I return a gift card?", "top_k": 3}, format="json"
    )
    assert response.status_code == 200
    results = response.json()["results"]
    assert results, "search returned nothing"
    best = results[0]
    assert best["document_id"] == created["id"]
    assert "Gift cards" in best["text"]
    assert best["section"].endswith("Exceptions")
    assert set(best) >= {"text", "document_id", "page", "section", "score"}


@pytest.mark.worker
def test_another_organisation_cannot_see_or_search_documents(make_org, api_client_for, celery_worker) -> None:  # type: ignore[no-untyped-def]
    owner = api_client_for(make_org("Owner"))
    intruder = api_client_for(make_org("Intruder"))
    kb_id = owner.post("/api/v1/knowledge-bases/", {"name": "Private"}, format="json").json()["id"]
    doc = _upload(owner, kb_id, "refunds.md", REFUNDS)
    _wait_ready(owner, doc["id"])

    assert intruder.get(f"/api/v1/knowledge-bases/{kb_id}/").status_code == 404
    assert intruder.get(f"/api/v1/documents/{doc['id']}/").status_code == 404
    assert intruder.delete(f"/api/v1/documents/{doc['id']}/").status_code == 404
    search = intruder.post(f"/api/v1/knowledge-bases/{kb_id}/search/", {"query": "refund"}, format="json")
    assert search.status_code == 404
    upload = intruder.post(
        f"/api/v1/knowledge-bases/{kb_id}/documents/",
        {"file": SimpleUploadedFile("x.txt", b"hello")},
        format="multipart",
    )
    assert upload.status_code == 404
    assert intruder.get("/api/v1/knowledge-bases/").json() == []

    # The intruder's own knowledge base with the same words finds only its own text.
    own_kb = intruder.post("/api/v1/knowledge-bases/", {"name": "Mine"}, format="json").json()["id"]
    own_doc = _upload(intruder, own_kb, "mine.txt", b"Our refund rules: no refunds on gift cards, ever.")
    _wait_ready(intruder, own_doc["id"])
    results = intruder.post(
        f"/api/v1/knowledge-bases/{own_kb}/search/", {"query": "gift card refund", "top_k": 10}, format="json"
    ).json()["results"]
    assert {r["document_id"] for r in results} == {own_doc["id"]}


@pytest.mark.worker
def test_empty_upload_is_refused_with_a_reason(make_org, api_client_for, celery_worker) -> None:  # type: ignore[no-untyped-def]
    client = api_client_for(make_org())
    kb_id = client.post("/api/v1/knowledge-bases/", {"name": "KB"}, format="json").json()["id"]
    response = client.post(
        f"/api/v1/knowledge-bases/{kb_id}/documents/",
        {"file": SimpleUploadedFile("empty.txt", b"")},
        format="multipart",
    )
    assert response.status_code == 400
    assert response.json()["error"] == "empty_file"
    assert "empty" in response.json()["detail"]


@pytest.mark.worker
def test_identical_upload_is_recognised_and_not_processed_twice(make_org, api_client_for, celery_worker) -> None:  # type: ignore[no-untyped-def]
    client = api_client_for(make_org())
    kb_id = client.post("/api/v1/knowledge-bases/", {"name": "KB"}, format="json").json()["id"]
    first = _upload(client, kb_id, "refunds.md", REFUNDS)
    again = client.post(
        f"/api/v1/knowledge-bases/{kb_id}/documents/",
        {"file": SimpleUploadedFile("copy-of-refunds.md", REFUNDS)},
        format="multipart",
    )
    assert again.status_code == 200
    assert again.json()["id"] == first["id"] and again.json()["duplicate"] is True
    assert again.json()["version"] == 1


@pytest.mark.worker
def test_health_reports_database_redis_and_worker(client, make_user, celery_worker) -> None:  # type: ignore[no-untyped-def]
    operator = make_user()
    operator.is_staff = True
    operator.save()
    client.force_login(operator)
    response = client.get("/healthz/ready")
    body = response.json()
    assert response.status_code == 200, body
    assert body["database"]["ok"] and body["database"]["pgvector"].startswith("0.8")
    assert body["redis"]["ok"]
    assert body["worker"]["ok"] and body["worker"]["workers"]
