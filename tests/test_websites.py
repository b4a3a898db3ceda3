"""Whole websites as sources: sitemap and crawl imports of a local site, re-syncs, bounds, robots.txt,
the SSRF guard and organisation scoping (API → real worker → database)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.models import AuditEvent, Role
from kb.models import Document, DocumentVersion, DraftChange, KnowledgeBase, WebSource
from kb.services import knowledge_base_create
from kb.websites.services import web_source_create
from kb.websites.sync import web_source_sync
from tests.conftest import wait_for
from tests.local_site import PAGES, LocalSite, help_path, serve_site


@pytest.fixture
def site() -> Iterator[LocalSite]:
    with serve_site() as served, override_settings(GROUNDWORK_FETCH_ALLOW_PRIVATE=True, GROUNDWORK_FETCH_TIMEOUT=5.0):
        yield served


@pytest.fixture
def kb(make_org, api_client_for, celery_worker) -> tuple[APIClient, int]:  # type: ignore[no-untyped-def]
    client = api_client_for(make_org())
    return client, client.post("/api/v1/knowledge-bases/", {"name": "Help centre"}, format="json").json()["id"]


def _synced(client: APIClient, kb_id: int, source_id: int, timeout: float = 120) -> dict[str, Any]:
    """The source once its sync finished (idle or failed)."""

    def done() -> dict[str, Any] | None:
        body = client.get(f"/api/v1/knowledge-bases/{kb_id}/web-sources/{source_id}/").json()
        return body if body["status"] in ("idle", "failed") else None

    return wait_for(done, timeout=timeout)


def _all_ready(client: APIClient, kb_id: int, source_id: int, count: int) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body = client.get(f"/api/v1/knowledge-bases/{kb_id}/web-sources/{source_id}/").json()
        statuses = [p["status"] for p in body["pages"]]
        assert "failed" not in statuses, body["pages"]
        return body if body["status"] == "idle" and statuses.count("ready") == count else None

    return wait_for(done, timeout=240, interval=0.5)


def _versions(source_id: int) -> dict[str, int]:
    source = WebSource.objects.get(pk=source_id)
    return {
        page.url: DocumentVersion.objects.filter(document_id=page.document_id).count()
        for page in source.pages.all()
        if page.document_id
    }


@pytest.mark.worker
@pytest.mark.timeout(900)  # 30 pages ingested on a shared 2-core machine, then three syncs
def test_sitemap_import_then_resync_adds_one_version_for_one_changed_page_and_removes_a_vanished_one(kb, site) -> None:  # type: ignore[no-untyped-def]
    client, kb_id = kb
    created = client.post(
        f"/api/v1/knowledge-bases/{kb_id}/web-sources/", {"url": f"{site.base}/", "schedule": "daily"}, format="json"
    )
    assert created.status_code == 201, created.content
    source_id = created.json()["id"]
    body = _all_ready(client, kb_id, source_id, PAGES)
    report = body["last_report"]
    assert (report["added"], report["changed"], report["removed"], report["blocked_by_robots"]) == (PAGES, 0, 0, 1)
    assert {p["url"] for p in body["pages"]} == {site.base + help_path(n) for n in range(1, PAGES + 1)}
    assert site.requests["/private/secret"] == 0  # robots.txt: listed in the sitemap, never fetched
    assert Document.objects.get(source_url=site.base + help_path(7)).title == "Help 7 | Northwind"

    # One page changes: one new version, 29 pages answered 304 to the conditional request.
    site.texts[help_path(7)] = "Help topic 7. Parcel option 7 now costs 12 euros and arrives tomorrow."
    assert client.post(f"/api/v1/knowledge-bases/{kb_id}/web-sources/{source_id}/sync/").status_code == 202
    report = _synced(client, kb_id, source_id)["last_report"]
    assert (report["added"], report["changed"], report["unchanged"], report["removed"]) == (0, 1, PAGES - 1, 0)
    assert report["changes"] == [{"url": site.base + help_path(7), "result": "changed"}]
    versions = _versions(source_id)
    assert versions.pop(site.base + help_path(7)) == 2
    assert set(versions.values()) == {1}
    assert sum(site.not_modified.values()) == PAGES - 1
    _all_ready(client, kb_id, source_id, PAGES)
    hits = client.post(
        f"/api/v1/knowledge-bases/{kb_id}/search/", {"query": "parcel option 7 costs", "top_k": 1}, format="json"
    ).json()["results"]
    assert "now costs 12 euros" in hits[0]["text"]

    # A page disappears from the site (and its sitemap): its document leaves the knowledge base.
    del site.texts[help_path(30)]
    client.post(f"/api/v1/knowledge-bases/{kb_id}/web-sources/{source_id}/sync/")
    report = _synced(client, kb_id, source_id)["last_report"]
    assert (report["changed"], report["unchanged"], report["removed"]) == (0, PAGES - 1, 1)
    gone = Document.all_objects.get(source_url=site.base + help_path(30))
    assert gone.deleted_at is not None
    listed = client.get(f"/api/v1/knowledge-bases/{kb_id}/documents/").json()
    assert len(listed) == PAGES - 1 and gone.pk not in {d["id"] for d in listed}
    actions = set(AuditEvent.objects.filter(target_type="websource").values_list("action", flat=True))
    assert actions == {"web_source.create", "web_source.sync"}


@pytest.mark.worker
def test_crawl_follows_links_only_within_depth_prefix_page_limit_host_and_robots(kb, site) -> None:  # type: ignore[no-untyped-def]
    client, kb_id = kb
    shallow = client.post(
        f"/api/v1/knowledge-bases/{kb_id}/web-sources/",
        {"url": f"{site.base}/", "mode": "crawl", "max_depth": 2, "schedule": "off"},
        format="json",
    ).json()
    body = _synced(client, kb_id, shallow["id"])
    assert body["status"] == "idle", body["error_message"]
    # depth 0: home; 1: page-01 and /blog/news (/private/ is disallowed, example.invalid another host); 2: page-02
    expected = {f"{site.base}/", site.base + help_path(1), f"{site.base}/blog/news", site.base + help_path(2)}
    assert {p["url"] for p in body["pages"]} == expected
    assert body["last_report"]["blocked"] == [f"{site.base}/private/secret"]
    assert site.requests["/private/secret"] == 0

    limited = client.post(
        f"/api/v1/knowledge-bases/{kb_id}/web-sources/",
        {"url": site.base + help_path(1), "mode": "crawl", "path_prefix": "/help/", "max_depth": 20, "max_pages": 5},
        format="json",
    ).json()
    body = _synced(client, kb_id, limited["id"])
    assert {p["url"] for p in body["pages"]} == {site.base + help_path(n) for n in range(1, 6)}
    assert body["last_report"]["added"] == 5


@pytest.mark.worker
def test_review_mode_sync_changes_wait_in_the_draft(kb, site) -> None:  # type: ignore[no-untyped-def]
    client, kb_id = kb
    client.patch(f"/api/v1/knowledge-bases/{kb_id}/", {"review_changes": True}, format="json")
    source = client.post(
        f"/api/v1/knowledge-bases/{kb_id}/web-sources/",
        {"url": site.base + help_path(1), "mode": "crawl", "path_prefix": "/help/", "max_pages": 3},
        format="json",
    ).json()
    _all_ready(client, kb_id, source["id"], 3)
    assert DraftChange.objects.filter(knowledge_base_id=kb_id).count() == 3
    assert not Document.objects.filter(knowledge_base_id=kb_id, live_version__isnull=False).exists()
    published = client.post(f"/api/v1/knowledge-bases/{kb_id}/draft/publish/", {}, format="json")
    assert published.status_code == 200, published.content
    live_before = dict(Document.objects.filter(knowledge_base_id=kb_id).values_list("source_url", "live_version_id"))

    site.texts[help_path(2)] = "Help topic 2 was rewritten: parcels now travel by bike."
    site.texts.pop(help_path(3))
    client.post(f"/api/v1/knowledge-bases/{kb_id}/web-sources/{source['id']}/sync/")
    report = _synced(client, kb_id, source["id"])["last_report"]
    assert (report["changed"], report["removed"], report["unchanged"]) == (1, 1, 1)
    draft = {c.document.source_url: c.action for c in DraftChange.objects.filter(knowledge_base_id=kb_id)}
    assert draft == {site.base + help_path(2): "replace", site.base + help_path(3): "delete"}
    live_after = dict(Document.objects.filter(knowledge_base_id=kb_id).values_list("source_url", "live_version_id"))
    assert live_after == live_before  # nothing changed for visitors until the draft is published


def test_private_addresses_are_refused_without_the_test_allowance(make_org, api_client_for) -> None:  # type: ignore[no-untyped-def]
    org = make_org()
    client = api_client_for(org)
    kb_id = client.post("/api/v1/knowledge-bases/", {"name": "Help"}, format="json").json()["id"]
    for url in ("http://127.0.0.1:8000/", "http://169.254.169.254/latest/", "http://localhost/sitemap.xml"):
        response = client.post(f"/api/v1/knowledge-bases/{kb_id}/web-sources/", {"url": url}, format="json")
        assert response.status_code == 400 and response.json()["error"] == "url_private", url
    assert not WebSource.objects.exists()

    # A source accepted while private addresses were allowed is refused by the worker once they are not.
    with serve_site() as served:
        with override_settings(GROUNDWORK_FETCH_ALLOW_PRIVATE=True):
            source = web_source_create(
                knowledge_base=KnowledgeBase.objects.get(pk=kb_id), url=served.base, created_by=None
            )
        assert web_source_sync(source_id=source.pk, enqueue=lambda _: None) is None
        source.refresh_from_db()
        assert source.status == "failed" and "private or local network" in source.error_message
        assert sum(served.requests.values()) == 0


def test_another_organisation_cannot_see_or_sync_a_web_source(make_org, make_user, api_client_for, client) -> None:  # type: ignore[no-untyped-def]
    owner, other = make_org("Northwind"), make_org("Contoso")
    kb = knowledge_base_create(organization=owner, name="Help", created_by=None)
    with override_settings(GROUNDWORK_FETCH_ALLOW_PRIVATE=True):
        source = web_source_create(knowledge_base=kb, url="http://127.0.0.1:9/", created_by=None)
    WebSource.objects.filter(pk=source.pk).update(status="idle")
    outsider = api_client_for(other)
    other_kb = outsider.post("/api/v1/knowledge-bases/", {"name": "Theirs"}, format="json").json()["id"]
    for kb_id in (kb.pk, other_kb):
        base = f"/api/v1/knowledge-bases/{kb_id}/web-sources/"
        assert outsider.get(f"{base}{source.pk}/").status_code == 404
        assert outsider.post(f"{base}{source.pk}/sync/").status_code == 404
        assert outsider.patch(f"{base}{source.pk}/", {"schedule": "off"}, format="json").status_code == 404
    assert outsider.get(f"/api/v1/knowledge-bases/{kb.pk}/web-sources/").status_code == 404
    assert outsider.get(f"/api/v1/knowledge-bases/{other_kb}/web-sources/").json() == []
    client.force_login(make_user(other, role=Role.ADMIN))
    assert client.get(f"/knowledge-bases/{kb.pk}/web-sources/{source.pk}/").status_code == 404
    assert client.post(f"/knowledge-bases/{kb.pk}/web-sources/{source.pk}/sync/").status_code == 404
    source.refresh_from_db()
    assert (source.status, source.schedule) == ("idle", "weekly")

    viewer = api_client_for(owner, role=Role.VIEWER)
    assert viewer.get(f"/api/v1/knowledge-bases/{kb.pk}/web-sources/{source.pk}/").status_code == 200
    assert viewer.post(f"/api/v1/knowledge-bases/{kb.pk}/web-sources/{source.pk}/sync/").status_code == 403


def test_without_conditional_requests_only_a_change_of_visible_text_makes_a_new_version(
    make_org, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    kb = knowledge_base_create(organization=make_org(), name="Help", created_by=None)
    with serve_site() as site, override_settings(GROUNDWORK_FETCH_ALLOW_PRIVATE=True):
        site.etags = False
        source = web_source_create(
            knowledge_base=kb,
            url=site.base + help_path(1),
            mode="crawl",
            path_prefix="/help/",
            max_pages=4,
            created_by=None,
        )
        enqueued: list[int] = []

        def sync() -> dict[str, Any]:
            WebSource.objects.filter(pk=source.pk).update(status="queued")
            with django_capture_on_commit_callbacks(execute=True):
                report = web_source_sync(source_id=source.pk, enqueue=enqueued.append)
            assert report is not None
            return report

        assert sync()["added"] == 4
        site.script = "2"  # new markup, same text
        assert (sync()["unchanged"], sum(site.not_modified.values())) == (4, 0)
        site.texts[help_path(3)] = "Help topic 3 changed its wording."
        report = sync()
        assert (report["changed"], report["unchanged"]) == (1, 3)
        assert len(enqueued) == 5  # 4 first versions and one new version, nothing else sent to ingestion
        assert sorted(_versions(source.pk).values()) == [1, 1, 1, 2]


def test_beat_queues_only_sources_whose_schedule_is_due_or_whose_sync_was_left_stuck(make_org) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from django.utils import timezone

    from kb.websites.sync import web_sources_claim_due

    kb = knowledge_base_create(organization=make_org(), name="Help", created_by=None)
    now = timezone.now()

    def source(schedule: str, status: str, synced_days_ago: float | None, started_hours_ago: float = 0) -> int:
        return WebSource.objects.create(
            organization=kb.organization,
            knowledge_base=kb,
            url="https://www.example.com/",
            schedule=schedule,
            status=status,
            last_synced_at=None if synced_days_ago is None else now - timedelta(days=synced_days_ago),
            sync_started_at=now - timedelta(hours=started_hours_ago),
        ).pk

    due = {
        source("daily", "idle", 2),
        source("weekly", "failed", 8),
        source("weekly", "syncing", 8, started_hours_ago=5),  # its worker died
    }
    source("daily", "idle", 0.5)
    source("weekly", "idle", 2)
    source("off", "idle", 30)
    source("daily", "syncing", 2, started_hours_ago=0.1)  # running now
    assert set(web_sources_claim_due()) == due
    assert set(WebSource.objects.filter(pk__in=due).values_list("status", flat=True)) == {"queued"}
    assert web_sources_claim_due() == []  # claimed once
