"""Versions, replace, delete, enable/disable, stuck-document recovery, and who may change what."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import Role
from kb import services
from kb.models import Document, DocumentStatus, DocumentVersion
from tests.conftest import wait_for

V1 = b"# Loyalty programme\n\nMembers collect 3 points per euro spent. Points expire after 24 months of inactivity.\n"
V2 = b"# Loyalty programme\n\nMembers collect 5 points per euro spent. Points never expire for Gold members.\n"


def _upload(client: APIClient, kb_id: int, name: str, content: bytes) -> dict[str, Any]:
    response = client.post(
        f"/api/v1/knowledge-bases/{kb_id}/documents/", {"file": SimpleUploadedFile(name, content)}, format="multipart"
    )
    assert response.status_code in (200, 201), response.content
    return response.json()


def _ready(client: APIClient, doc_id: int, version: int) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        body = client.get(f"/api/v1/documents/{doc_id}/").json()
        return body if body["live_version"] == version and body["status"] == "ready" else None

    return wait_for(check, timeout=90)


def _texts(client: APIClient, kb_id: int, query: str) -> list[str]:
    results = client.post(f"/api/v1/knowledge-bases/{kb_id}/search/", {"query": query, "top_k": 10}, format="json")
    return [r["text"] for r in results.json()["results"]]


@pytest.mark.worker
def test_replace_switches_search_to_the_new_version_and_delete_removes_it(
    make_org, api_client_for, celery_worker
) -> None:  # type: ignore[no-untyped-def]
    client = api_client_for(make_org())
    kb_id = client.post("/api/v1/knowledge-bases/", {"name": "Loyalty"}, format="json").json()["id"]
    doc = _upload(client, kb_id, "loyalty.md", V1)
    _ready(client, doc["id"], 1)
    assert any("3 points" in t for t in _texts(client, kb_id, "how many points per euro"))

    again = _upload(client, kb_id, "loyalty.md", V2)
    assert again["id"] == doc["id"] and again["version"] == 2
    _ready(client, doc["id"], 2)
    texts = _texts(client, kb_id, "how many points per euro")
    assert any("5 points" in t for t in texts) and not any("3 points" in t for t in texts)
    assert DocumentVersion.objects.filter(document_id=doc["id"]).count() == 2  # the old one is kept as history

    assert client.delete(f"/api/v1/documents/{doc['id']}/").status_code == 204
    assert _texts(client, kb_id, "how many points per euro") == []
    assert client.get(f"/api/v1/documents/{doc['id']}/").status_code == 404


@pytest.mark.worker
def test_old_version_keeps_answering_until_the_new_one_is_ready(make_org, api_client_for, celery_worker) -> None:  # type: ignore[no-untyped-def]
    client = api_client_for(make_org())
    kb_id = client.post("/api/v1/knowledge-bases/", {"name": "Loyalty"}, format="json").json()["id"]
    doc = _upload(client, kb_id, "loyalty.md", V1)
    _ready(client, doc["id"], 1)
    document = Document.objects.get(pk=doc["id"])
    # A new version stored but not processed yet (as if the worker had not reached it).
    result = services.document_upload(
        knowledge_base=document.knowledge_base,
        upload=SimpleUploadedFile("loyalty.md", V2),
        filename="loyalty.md",
        uploaded_by=None,
        enqueue=False,
    )
    assert result.version.number == 2
    texts = _texts(client, kb_id, "points per euro")
    assert any("3 points" in t for t in texts) and not any("5 points" in t for t in texts)


@pytest.mark.worker
def test_disable_hides_a_document_from_search_and_enable_brings_it_back(
    make_org, api_client_for, celery_worker
) -> None:  # type: ignore[no-untyped-def]
    client = api_client_for(make_org())
    kb_id = client.post("/api/v1/knowledge-bases/", {"name": "Loyalty"}, format="json").json()["id"]
    doc = _upload(client, kb_id, "loyalty.md", V1)
    _ready(client, doc["id"], 1)
    document = Document.objects.get(pk=doc["id"])
    services.document_set_enabled(document=document, enabled=False)
    assert _texts(client, kb_id, "points per euro") == []
    services.document_set_enabled(document=document, enabled=True)
    assert any("3 points" in t for t in _texts(client, kb_id, "points per euro"))


@pytest.mark.django_db
def test_viewer_cannot_modify_documents(make_org, make_user, api_client_for) -> None:  # type: ignore[no-untyped-def]
    org = make_org()
    editor = make_user(org, role=Role.EDITOR)
    viewer = make_user(org, role=Role.VIEWER)
    kb = services.knowledge_base_create(organization=org, name="KB", created_by=editor)
    doc = services.document_create_text(
        knowledge_base=kb, title="Note", text="Some text", created_by=editor, enqueue=False
    ).document

    browser = Client()
    browser.force_login(viewer)
    assert browser.get(f"/knowledge-bases/{kb.pk}/").status_code == 200
    assert browser.get(f"/documents/{doc.pk}/").status_code == 200
    upload = browser.post(f"/knowledge-bases/{kb.pk}/documents/upload/", {"files": SimpleUploadedFile("x.md", V1)})
    assert upload.status_code == 403
    for action in ("delete", "disable", "reindex"):
        assert browser.post(f"/documents/{doc.pk}/{action}/").status_code == 403
    assert browser.post(f"/knowledge-bases/{kb.pk}/add/text/", {"title": "t", "text": "x"}).status_code == 403

    api = api_client_for(org, role=Role.VIEWER)
    assert api.get(f"/api/v1/documents/{doc.pk}/").status_code == 200
    assert api.delete(f"/api/v1/documents/{doc.pk}/").status_code == 403
    response = api.post(
        f"/api/v1/knowledge-bases/{kb.pk}/documents/", {"file": SimpleUploadedFile("x.md", V1)}, format="multipart"
    )
    assert response.status_code == 403
    assert api.post(f"/api/v1/knowledge-bases/{kb.pk}/search/", {"query": "text"}, format="json").status_code == 200
    assert Document.objects.filter(pk=doc.pk).exists()


@pytest.mark.django_db
def test_document_table_filters_by_status_type_and_name(make_org, make_user) -> None:  # type: ignore[no-untyped-def]
    org = make_org()
    editor = make_user(org, role=Role.EDITOR)
    kb = services.knowledge_base_create(organization=org, name="KB", created_by=editor)
    failed = services.document_create_text(
        knowledge_base=kb, title="Broken notes", text="x", created_by=editor, enqueue=False
    ).version
    DocumentVersion.objects.filter(pk=failed.pk).update(status=DocumentStatus.FAILED, error_message="Unreadable.")
    services.qa_entry_create(
        knowledge_base=kb, question="Opening hours?", answer="9 to 5.", created_by=editor, enqueue=False
    )
    browser = Client()
    browser.force_login(editor)

    def titles(query: str) -> list[str]:
        html = browser.get(f"/knowledge-bases/{kb.pk}/documents/table/?{query}").content.decode()
        return [t for t in ("Broken notes", "Opening hours?") if t in html]

    assert titles("") == ["Broken notes", "Opening hours?"]
    assert titles("status=failed") == ["Broken notes"]
    assert titles("status=queued") == ["Opening hours?"]
    assert titles("type=qa") == ["Opening hours?"]
    assert titles("q=broken") == ["Broken notes"]


@pytest.mark.worker
def test_text_repeated_across_documents_is_retrieved_once(make_org, api_client_for, celery_worker) -> None:  # type: ignore[no-untyped-def]
    # The same paragraph in two documents must not take two of the few sources an answer gets.
    client = api_client_for(make_org())
    kb = {"name": "Shop", "chunk_size": 200, "chunk_overlap": 0}  # a chunk per section
    kb_id = client.post("/api/v1/knowledge-bases/", kb, format="json").json()["id"]
    returns = (
        "# Returns\n\nUnused items can be returned within 60 days of delivery for a full refund. "
        "Keep the original packaging and the receipt; we inspect every returned item on arrival.\n\n"
    )
    shipping = "# Shipping\n\nWe ship to 40 countries. Parcels leave our warehouse in Utrecht every weekday at 16:00.\n"
    contact = "# Contact\n\nCall us on weekdays between nine and five, or write to the support address.\n"
    first = _upload(client, kb_id, "faq.md", (returns + shipping).encode())
    second = _upload(client, kb_id, "terms.md", (returns + contact).encode())
    _ready(client, first["id"], 1)
    _ready(client, second["id"], 1)
    texts = _texts(client, kb_id, "how long do I have to return unused items")
    assert sum("within 60 days" in t for t in texts) == 1, texts
    assert any("40 countries" in t for t in texts) and any("weekdays" in t for t in texts)
