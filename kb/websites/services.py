"""Writes on website sources: add a site to a knowledge base, ask for a sync. Audited here.

The sync itself is `kb.websites.sync`, run by the `kb.web_source_sync` task once the write commits.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from accounts.selectors import OrgContext
from accounts.services import audit_record
from kb.exceptions import KnowledgeBaseError
from kb.models import KnowledgeBase, WebSource, WebSourceMode, WebSourceSchedule, WebSourceStatus
from kb.pipeline.fetch import check_url_allowed
from kb.tasks import enqueue_web_source_sync

MAX_PAGES_LIMIT = 5000
MAX_DEPTH_LIMIT = 20


def web_source_create(
    *,
    knowledge_base: KnowledgeBase,
    url: str,
    created_by: User | None,
    mode: str = WebSourceMode.SITEMAP,
    path_prefix: str = "/",
    max_depth: int = 3,
    max_pages: int = 100,
    schedule: str = WebSourceSchedule.WEEKLY,
    actor: OrgContext | None = None,
) -> WebSource:
    """Add a website to a knowledge base and queue its first sync.

    The address passes the same check as a single web page (public addresses only, unless the
    deployment allows private ones); the worker checks every request again.
    """
    url = check_url_allowed(url)
    if mode not in WebSourceMode.values:
        raise KnowledgeBaseError("invalid_mode", "Choose how to find the pages: “sitemap” or “crawl”.")
    if schedule not in WebSourceSchedule.values:
        raise KnowledgeBaseError("invalid_schedule", "Choose a schedule: “daily”, “weekly” or “off”.")
    if not 1 <= max_pages <= MAX_PAGES_LIMIT:
        raise KnowledgeBaseError("invalid_bounds", f"The page limit must be between 1 and {MAX_PAGES_LIMIT}.")
    if not 0 <= max_depth <= MAX_DEPTH_LIMIT:
        raise KnowledgeBaseError("invalid_bounds", f"The link depth must be between 0 and {MAX_DEPTH_LIMIT}.")
    prefix = "/" + path_prefix.strip().lstrip("/")
    with transaction.atomic():
        source = WebSource.objects.create(
            organization_id=knowledge_base.organization_id,
            knowledge_base=knowledge_base,
            url=url,
            mode=mode,
            path_prefix=prefix[:500],
            max_depth=max_depth,
            max_pages=max_pages,
            schedule=schedule,
            status=WebSourceStatus.QUEUED,
            sync_started_at=timezone.now(),  # a lost message is re-sent by the beat after the stuck deadline
            created_by=created_by,
        )
        transaction.on_commit(lambda: enqueue_web_source_sync(source.pk))
    if actor is not None:
        audit_record(
            context=actor,
            action="web_source.create",
            target=source,
            detail={"mode": mode, "max_pages": max_pages, "max_depth": max_depth, "path_prefix": prefix},
        )
    return source


def web_source_sync_request(*, source: WebSource, actor: OrgContext | None = None) -> bool:
    """Queue a sync now; False when one is already queued or running (nothing more to do)."""
    with transaction.atomic():
        queued = WebSource.objects.filter(
            pk=source.pk, status__in=(WebSourceStatus.IDLE, WebSourceStatus.FAILED)
        ).update(status=WebSourceStatus.QUEUED, sync_started_at=timezone.now())
        if queued:
            transaction.on_commit(lambda: enqueue_web_source_sync(source.pk))
    if actor is not None:
        audit_record(context=actor, action="web_source.sync", target=source, detail={"queued": bool(queued)})
    source.refresh_from_db()
    return bool(queued)


def web_source_set_schedule(*, source: WebSource, schedule: str, actor: OrgContext | None = None) -> WebSource:
    """How often the site is re-synced by itself: daily, weekly, or off."""
    if schedule not in WebSourceSchedule.values:
        raise KnowledgeBaseError("invalid_schedule", "Choose a schedule: “daily”, “weekly” or “off”.")
    WebSource.objects.filter(pk=source.pk).update(schedule=schedule)
    source.schedule = schedule
    if actor is not None:
        audit_record(context=actor, action="web_source.schedule", target=source, detail={"schedule": schedule})
    return source
