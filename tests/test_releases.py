"""Releases and drafts (kb.releases): review mode, publish, discard, restore, the gate, isolation."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from rest_framework.test import APIClient

from accounts.models import Role
from kb import releases
from kb.models import Document, KnowledgeBase
from kb.selectors import chunk_search
from tests.conftest import wait_for

POLICY_V1 = b"# Returns policy\n\nCustomers may return unworn shoes within 30 days of delivery for a full refund.\n"
POLICY_V2 = b"# Returns policy\n\nCustomers may return unworn shoes within 60 days of delivery for a full refund.\n"
SHIPPING = b"# Shipping\n\nParcels to Austria arrive within four working days; shipping is free above 50 euros.\n"


def _upload(client: APIClient, kb_id: int, name: str, content: bytes) -> dict[str, Any]:
    response = client.post(
        f"/api/v1/knowledge-bases/{kb_id}/documents/", {"file": SimpleUploadedFile(name, content)}, format="multipart"
    )
    assert response.status_code in (200, 201), response.content
    return response.json()


def _replace(client: APIClient, doc_id: int, name: str, content: bytes) -> dict[str, Any]:
    response = client.post(
        f"/api/v1/documents/{doc_id}/versions/", {"file": SimpleUploadedFile(name, content)}, format="multipart"
    )
    assert response.status_code == 201, response.content
    return response.json()


def _live(client: APIClient, doc_id: int, version: int) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        body = client.get(f"/api/v1/documents/{doc_id}/").json()
        return body if body["live_version"] == version and body["status"] == "ready" else None

    return wait_for(check, timeout=90)


def _draft_ready(client: APIClient, kb_id: int) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        body = client.get(f"/api/v1/knowledge-bases/{kb_id}/draft/").json()
        return body if body["changes"] and all(c["status"] == "ready" for c in body["changes"]) else None

    return wait_for(check, timeout=90)


def _search(client: APIClient, kb_id: int, query: str) -> str:
    body = client.post(f"/api/v1/knowledge-bases/{kb_id}/search/", {"query": query, "top_k": 5}, format="json")
    return " ".join(r["text"] for r in body.json()["results"])


@pytest.mark.worker
def test_review_mode_stages_a_replacement_until_published_and_restore_brings_the_old_fact_back(
    make_org, api_client_for, celery_worker
) -> None:  # type: ignore[no-untyped-def]
    client = api_client_for(make_org())
    kb_id = client.post("/api/v1/knowledge-bases/", {"name": "Shop"}, format="json").json()["id"]
    doc = _upload(client, kb_id, "returns.md", POLICY_V1)
    _live(client, doc["id"], 1)
    releases_now = client.get(f"/api/v1/knowledge-bases/{kb_id}/releases/").json()
    assert [r["number"] for r in releases_now] == [1] and "returns" in releases_now[0]["summary"]

    assert client.patch(f"/api/v1/knowledge-bases/{kb_id}/", {"review_changes": True}, format="json").json()[
        "review_changes"
    ]
    _replace(client, doc["id"], "returns.md", POLICY_V2)
    draft = _draft_ready(client, kb_id)
    assert [(c["document_id"], c["action"], c["status"]) for c in draft["changes"]] == [(doc["id"], "replace", "ready")]
    # Staged, not live: customers still get 30 days.
    assert "30 days" in _search(client, kb_id, "how many days to return shoes")
    kb = KnowledgeBase.objects.get(pk=kb_id)
    for mode in ("hybrid", "vector", "keyword"):  # each retriever reads the draft: the live release less V1, plus V2
        draft_text = " ".join(
            h.chunk.text
            for h in chunk_search(
                knowledge_bases=[kb],
                query="how many days to return shoes",
                mode=mode,
                versions=releases.draft_version_ids(kb),
            )
            if h.chunk is not None
        )
        assert "60 days" in draft_text and "30 days" not in draft_text, mode

    published = client.post(f"/api/v1/knowledge-bases/{kb_id}/draft/publish/", {}, format="json")
    assert published.status_code == 200 and published.json() == {"release": 2}
    assert "60 days" in _search(client, kb_id, "how many days to return shoes")
    assert client.get(f"/api/v1/knowledge-bases/{kb_id}/draft/").json()["changes"] == []

    restored = client.post(f"/api/v1/knowledge-bases/{kb_id}/releases/1/restore/", {}, format="json")
    assert restored.status_code == 200 and restored.json() == {"release": 3}
    text = _search(client, kb_id, "how many days to return shoes")
    assert "30 days" in text and "60 days" not in text
    latest = client.get(f"/api/v1/knowledge-bases/{kb_id}/releases/").json()[0]
    assert latest["number"] == 3 and latest["restored_from"] == 1


@pytest.mark.worker
def test_restore_after_a_deletion_brings_the_document_back(make_org, api_client_for, celery_worker) -> None:  # type: ignore[no-untyped-def]
    client = api_client_for(make_org())
    kb_id = client.post("/api/v1/knowledge-bases/", {"name": "Shop"}, format="json").json()["id"]
    doc = _upload(client, kb_id, "shipping.md", SHIPPING)
    _live(client, doc["id"], 1)
    assert client.delete(f"/api/v1/documents/{doc['id']}/").status_code == 204
    assert client.get(f"/api/v1/documents/{doc['id']}/").status_code == 404
    assert "Austria" not in _search(client, kb_id, "shipping to Austria")
    numbers = [r["number"] for r in client.get(f"/api/v1/knowledge-bases/{kb_id}/releases/").json()]
    assert numbers == [2, 1]

    assert client.post(f"/api/v1/knowledge-bases/{kb_id}/releases/1/restore/", {}, format="json").status_code == 200
    assert client.get(f"/api/v1/documents/{doc['id']}/").json()["live_version"] == 1
    assert "Austria" in _search(client, kb_id, "shipping to Austria")


@pytest.mark.worker
def test_discard_drops_staged_uploads_and_deletions(make_org, api_client_for, celery_worker) -> None:  # type: ignore[no-untyped-def]
    client = api_client_for(make_org())
    kb_id = client.post("/api/v1/knowledge-bases/", {"name": "Shop"}, format="json").json()["id"]
    shipping = _upload(client, kb_id, "shipping.md", SHIPPING)
    _live(client, shipping["id"], 1)
    client.patch(f"/api/v1/knowledge-bases/{kb_id}/", {"review_changes": True}, format="json")

    new = _upload(client, kb_id, "returns.md", POLICY_V1)
    assert client.delete(f"/api/v1/documents/{shipping['id']}/").status_code == 204
    assert client.patch(f"/api/v1/documents/{shipping['id']}/", {"enabled": False}, format="json").status_code == 200
    draft = client.get(f"/api/v1/knowledge-bases/{kb_id}/draft/").json()
    assert {c["document_id"]: c["action"] for c in draft["changes"]} == {new["id"]: "add", shipping["id"]: "disable"}
    # Staged deletion (then a staged switch) leaves the live document answering.
    assert "Austria" in _search(client, kb_id, "shipping to Austria")

    assert client.post(f"/api/v1/knowledge-bases/{kb_id}/draft/discard/", {}, format="json").json() == {"discarded": 2}
    assert client.get(f"/api/v1/documents/{new['id']}/").status_code == 404
    assert client.get(f"/api/v1/documents/{shipping['id']}/").json()["enabled"] is True
    assert client.get(f"/api/v1/knowledge-bases/{kb_id}/draft/").json()["changes"] == []
    empty = client.post(f"/api/v1/knowledge-bases/{kb_id}/draft/publish/", {}, format="json")
    assert empty.status_code == 409 and "empty" in empty.json()["detail"]


@pytest.mark.worker
def test_publish_is_atomic_for_a_concurrent_search(make_org, api_client_for, celery_worker) -> None:  # type: ignore[no-untyped-def]
    """A search running while a draft of two replacements is published sees both old or both new."""
    client = api_client_for(make_org())
    kb_id = client.post("/api/v1/knowledge-bases/", {"name": "Shop"}, format="json").json()["id"]
    docs = []
    for n in range(2):
        body = f"# Price list {n}\n\nThe widget model {n} costs OLDPRICE euros in every shop.\n".encode()
        docs.append(_upload(client, kb_id, f"prices{n}.md", body))
    for doc in docs:
        _live(client, doc["id"], 1)
    client.patch(f"/api/v1/knowledge-bases/{kb_id}/", {"review_changes": True}, format="json")
    for n, doc in enumerate(docs):
        body = f"# Price list {n}\n\nThe widget model {n} costs NEWPRICE euros in every shop.\n".encode()
        _replace(client, doc["id"], f"prices{n}.md", body)
    _draft_ready(client, kb_id)

    kb = KnowledgeBase.objects.get(pk=kb_id)
    seen: list[tuple[str, ...]] = []
    stop = threading.Event()

    def search_loop() -> None:
        try:
            while not stop.is_set():
                hits = chunk_search(knowledge_bases=[kb], query="widget model costs euros", limit=10)
                seen.append(tuple(sorted("NEW" if "NEWPRICE" in h.chunk.text else "OLD" for h in hits if h.chunk)))
        finally:
            connection.close()

    searcher = threading.Thread(target=search_loop)
    searcher.start()
    try:
        wait_for(lambda: len(seen) >= 3, timeout=30, interval=0.01)
        assert client.post(f"/api/v1/knowledge-bases/{kb_id}/draft/publish/", {}, format="json").status_code == 200
        count = len(seen)
        wait_for(lambda: len(seen) >= count + 3, timeout=30, interval=0.01)
    finally:
        stop.set()
        searcher.join(timeout=30)
    assert ("OLD", "OLD") in seen and ("NEW", "NEW") in seen
    assert set(seen) <= {("OLD", "OLD"), ("NEW", "NEW")}, sorted(set(seen))


@pytest.mark.worker
def test_gate_blocks_a_draft_below_the_pass_rate_and_an_owner_may_override(
    make_org, api_client_for, celery_worker
) -> None:  # type: ignore[no-untyped-def]
    org = make_org()
    editor = api_client_for(org, role=Role.EDITOR)
    owner = api_client_for(org, role=Role.OWNER)
    kb_id = editor.post("/api/v1/knowledge-bases/", {"name": "Shop"}, format="json").json()["id"]
    editor.patch(
        f"/api/v1/knowledge-bases/{kb_id}/", {"review_changes": True, "publish_min_pass_rate": 0.9}, format="json"
    )
    _upload(editor, kb_id, "returns.md", POLICY_V1)
    _draft_ready(editor, kb_id)

    blocked = editor.post(f"/api/v1/knowledge-bases/{kb_id}/draft/publish/", {}, format="json")
    assert blocked.status_code == 409 and "not been evaluated" in blocked.json()["detail"]
    kb = KnowledgeBase.objects.get(pk=kb_id)
    releases.draft_evaluation_record(knowledge_base=kb, summary={"pass_rate": 0.5, "must_refuse_answered": 0})
    blocked = editor.post(f"/api/v1/knowledge-bases/{kb_id}/draft/publish/", {}, format="json")
    assert blocked.status_code == 409 and "50%" in blocked.json()["detail"]
    gate = editor.get(f"/api/v1/knowledge-bases/{kb_id}/draft/").json()["gate"]
    assert gate["enabled"] and not gate["open"]

    refused = editor.post(f"/api/v1/knowledge-bases/{kb_id}/draft/publish/", {"override": True}, format="json")
    assert refused.status_code == 409 and "owner" in refused.json()["detail"]
    forced = owner.post(f"/api/v1/knowledge-bases/{kb_id}/draft/publish/", {"override": True}, format="json")
    assert forced.status_code == 200
    release = editor.get(f"/api/v1/knowledge-bases/{kb_id}/releases/").json()[0]
    assert release["evaluation"]["override"] is True and release["evaluation"]["pass_rate"] == 0.5
    from accounts.models import AuditEvent

    assert AuditEvent.objects.filter(action="knowledge_base.publish", detail__override=True).exists()


def test_drafts_and_releases_of_another_organisation_are_invisible(make_org, api_client_for) -> None:  # type: ignore[no-untyped-def]
    owner = api_client_for(make_org("Acme"))
    intruder = api_client_for(make_org("Other"))
    kb_id = owner.post("/api/v1/knowledge-bases/", {"name": "Shop"}, format="json").json()["id"]
    for method, path in (
        ("get", f"/api/v1/knowledge-bases/{kb_id}/draft/"),
        ("post", f"/api/v1/knowledge-bases/{kb_id}/draft/publish/"),
        ("post", f"/api/v1/knowledge-bases/{kb_id}/draft/discard/"),
        ("get", f"/api/v1/knowledge-bases/{kb_id}/releases/"),
        ("post", f"/api/v1/knowledge-bases/{kb_id}/releases/1/restore/"),
    ):
        assert getattr(intruder, method)(path, {}, format="json").status_code == 404, path
    assert owner.get(f"/api/v1/knowledge-bases/{kb_id}/draft/").status_code == 200
    assert not Document.objects.exists()


def test_viewer_cannot_publish_or_restore(make_org, api_client_for) -> None:  # type: ignore[no-untyped-def]
    org = make_org()
    admin = api_client_for(org)
    viewer = api_client_for(org, role=Role.VIEWER)
    kb_id = admin.post("/api/v1/knowledge-bases/", {"name": "Shop"}, format="json").json()["id"]
    assert viewer.get(f"/api/v1/knowledge-bases/{kb_id}/draft/").status_code == 200
    assert viewer.post(f"/api/v1/knowledge-bases/{kb_id}/draft/publish/", {}, format="json").status_code == 403
    assert viewer.post(f"/api/v1/knowledge-bases/{kb_id}/releases/1/restore/", {}, format="json").status_code == 403


def test_changes_page_shows_the_draft_and_releases_and_restores_only_in_its_organisation(make_org, make_user) -> None:  # type: ignore[no-untyped-def]
    from django.test import Client

    from kb.services import knowledge_base_create

    org, other = make_org("Acme"), make_org("Other")
    kb = knowledge_base_create(organization=org, name="Shop", created_by=None)
    staff = Client()
    staff.force_login(make_user(org, role=Role.EDITOR))
    page = staff.get(f"/knowledge-bases/{kb.pk}/changes/")
    assert page.status_code == 200 and b"Nothing waiting" in page.content and b"No release yet" in page.content
    assert staff.post(f"/knowledge-bases/{kb.pk}/review-mode/", {"review_changes": "on"}).status_code == 302
    assert KnowledgeBase.objects.get(pk=kb.pk).review_changes

    outsider = Client()
    outsider.force_login(make_user(other, role=Role.OWNER))
    assert outsider.get(f"/knowledge-bases/{kb.pk}/changes/").status_code == 404
    assert outsider.post(f"/knowledge-bases/{kb.pk}/draft/publish/").status_code == 404
    assert outsider.post(f"/knowledge-bases/{kb.pk}/releases/1/restore/").status_code == 404
    assert outsider.get(f"/knowledge-bases/{kb.pk}/releases/1/").status_code == 404
