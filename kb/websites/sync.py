"""Syncing a website source: find its pages, fetch each (conditionally), keep what changed.

One sync, run by the `kb.web_source_sync` task:

1. claim the source (QUEUED → SYNCING by a conditional UPDATE: one worker wins);
2. read robots.txt, then list the pages — from the sitemap, or by following links from the start
   URL breadth-first — inside the bounds (host, path prefix, depth, page count);
3. fetch every page through the SSRF-guarded `fetch_url`, sending the ETag / Last-Modified kept
   from the last sync; a 304, or a body whose visible text hashes as before, is *unchanged*; a new
   or changed page gets a new `DocumentVersion` holding the fetched body (the pipeline's fetch
   stage then leaves it alone), staged in the draft when the knowledge base is in review mode,
   and its ingestion is enqueued at once, so pages turn ready while the crawl goes on;
4. pages that disappeared (not found again, or 404/410) are removed like a deleted document
   (soft-deleted from the live release, or staged for deletion in the draft);
5. the counts and changed URLs become `last_report`; the source goes back to IDLE.

Every row is written as soon as it is known, so the source page can show per-page progress.
This module does not import `kb.services` (which imports the tasks): the task passes the
ingestion enqueuer in.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter, deque
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from kb import releases
from kb.models import (
    Document,
    DocumentVersion,
    DraftChange,
    KnowledgeBase,
    SourceType,
    WebPage,
    WebPageResult,
    WebSource,
    WebSourceMode,
    WebSourceSchedule,
    WebSourceStatus,
)
from kb.pipeline.fetch import FetchedPage, FetchRefused, fetch_url, html_title
from kb.storage import safe_storage_name
from kb.websites.discover import Bounds, Robots, html_links, robots_read, sitemap_location, sitemap_urls
from kb.websites.discover import text_fingerprint as fingerprint_of

logger = logging.getLogger(__name__)

Enqueue = Callable[[int], None]
REPORT_URLS = 200  # changed URLs listed in a report; the counts are always complete
SCHEDULE_EVERY = {WebSourceSchedule.DAILY: timedelta(days=1), WebSourceSchedule.WEEKLY: timedelta(days=7)}


def web_source_sync(*, source_id: int, enqueue: Enqueue) -> dict[str, Any] | None:
    """Run one sync of a QUEUED source; None when it was not queued (already taken, or gone)."""
    now = timezone.now()
    claimed = WebSource.objects.filter(pk=source_id, status=WebSourceStatus.QUEUED).update(
        status=WebSourceStatus.SYNCING, sync_started_at=now, error_message=""
    )
    if claimed != 1:
        return None
    source = WebSource.objects.select_related("knowledge_base").get(pk=source_id)
    try:
        report = _sync(source, enqueue)
    except FetchRefused as exc:
        WebSource.objects.filter(pk=source_id).update(
            status=WebSourceStatus.FAILED, error_message=exc.message, last_synced_at=timezone.now()
        )
        return None
    WebSource.objects.filter(pk=source_id).update(
        status=WebSourceStatus.IDLE, last_synced_at=timezone.now(), last_report=report
    )
    return report


def web_sources_claim_due() -> list[int]:
    """Sources whose schedule says they are due (or whose sync was left stuck by a dead worker),
    moved to QUEUED; the caller enqueues their sync."""
    now = timezone.now()
    due = Q()
    for schedule, every in SCHEDULE_EVERY.items():
        due |= Q(schedule=schedule, status__in=(WebSourceStatus.IDLE, WebSourceStatus.FAILED)) & (
            Q(last_synced_at__isnull=True) | Q(last_synced_at__lt=now - every)
        )
    stuck = Q(
        status__in=(WebSourceStatus.QUEUED, WebSourceStatus.SYNCING),
        sync_started_at__lt=now - timedelta(seconds=settings.GROUNDWORK_STUCK_AFTER_SECONDS),
    )
    ids = []
    for source_id in WebSource.objects.filter(due | stuck).values_list("pk", flat=True):
        # Conditional, so a source someone queued meanwhile is not sent twice.
        if WebSource.objects.filter(Q(pk=source_id) & (due | stuck)).update(
            status=WebSourceStatus.QUEUED, sync_started_at=now
        ):
            ids.append(source_id)
    return ids


# --- one sync ----------------------------------------------------------------------------------


class _Sync:
    def __init__(self, source: WebSource, enqueue: Enqueue) -> None:
        self.source = source
        self.enqueue = enqueue
        self.bounds = Bounds.of(source.url, source.path_prefix)
        self.known = {page.url: page for page in source.pages.select_related("document")}
        self.seen: set[str] = set()
        self.gone: list[WebPage] = []
        self.counts: Counter[str] = Counter()
        self.listed: list[dict[str, str]] = []

    def page_row(self, url: str, depth: int) -> WebPage:
        page = self.known.get(url)
        if page is None:
            page, _ = WebPage.objects.get_or_create(source=self.source, url=url, defaults={"depth": depth})
            self.known[url] = page
        page.depth = min(page.depth, depth) if page.pk else depth
        return page

    def visit(self, page: WebPage) -> FetchedPage | None:
        """Fetch one page and record the outcome; the fetched page (for its links), or None."""
        self.seen.add(page.url)
        alive = page.document is not None and page.document.deleted_at is None
        try:
            fetched = fetch_url(
                page.url,
                etag=page.etag if alive else "",
                last_modified=page.last_modified if alive else "",
            )
        except FetchRefused as exc:
            if exc.http_status in (404, 410):
                self.gone.append(page)
                return None
            self.record(page, WebPageResult.FAILED, error=exc.message)
            return None
        if fetched.not_modified:
            self.record(page, WebPageResult.UNCHANGED, fetched=fetched)
            return _stored_body(page)
        if not self.bounds.contains(fetched.url):
            self.record(page, WebPageResult.FAILED, error=f"It redirects outside the source ({fetched.url}).")
            return None
        fingerprint = fingerprint_of(fetched.body, fetched.extension)
        if alive and fingerprint == page.text_sha256:
            self.record(page, WebPageResult.UNCHANGED, fetched=fetched)
            return fetched
        result = WebPageResult.CHANGED if alive else WebPageResult.ADDED
        self.store(page, fetched, fingerprint)
        self.record(page, result, fetched=fetched)
        return fetched

    def record(self, page: WebPage, result: str, *, fetched: FetchedPage | None = None, error: str = "") -> None:
        page.result = result
        page.error_message = error
        page.seen_at = timezone.now()
        if fetched is not None:
            page.etag, page.last_modified = fetched.etag, fetched.last_modified
        page.save()
        self.counts[result] += 1
        if result != WebPageResult.UNCHANGED:
            self.listed.append({"url": page.url, "result": str(result)})

    def store(self, page: WebPage, fetched: FetchedPage, fingerprint: str) -> None:
        """A new document (or a new version of the page's document) holding the fetched body."""
        source = self.source
        kb = source.knowledge_base
        name = f"page.{fetched.extension}"
        with transaction.atomic():
            document = page.document if page.document is not None and page.document.deleted_at is None else None
            if document is None:
                document = Document.objects.create(
                    organization_id=source.organization_id,
                    knowledge_base=kb,
                    title=(html_title(fetched.body) if fetched.extension == "html" else "") or page.url[:500],
                    source_type=SourceType.URL,
                    source_url=page.url,
                    created_by=source.created_by,
                )
            Document.objects.select_for_update().filter(pk=document.pk).first()
            number = (document.versions.order_by("-number").values_list("number", flat=True).first() or 0) + 1
            version = DocumentVersion(
                document=document,
                number=number,
                original_filename=name,
                size_bytes=len(fetched.body),
                sha256=hashlib.sha256(fetched.body).hexdigest(),
                created_by=source.created_by,
                heartbeat_at=timezone.now(),
            )
            version.file.save(safe_storage_name(source.organization_id, name), ContentFile(fetched.body), save=False)
            version.save()
            Document.objects.filter(pk=document.pk).update(latest_version=version, updated_at=timezone.now())
            if KnowledgeBase.objects.filter(pk=kb.pk, review_changes=True).exists():
                releases.draft_stage_version(version=version, created_by=source.created_by)
            page.document = document
            page.text_sha256 = fingerprint
            page.save(update_fields=["document", "text_sha256"])
            transaction.on_commit(lambda: self.enqueue(version.pk))

    def remove_missing(self) -> None:
        """Pages not found again (or answering 404/410) leave the knowledge base, all in one release."""
        missing = [p for url, p in self.known.items() if url not in self.seen and p.result != WebPageResult.REMOVED]
        removed = []
        for page in [*self.gone, *missing]:
            if page.document is None or page.document.deleted_at is not None:
                if page.result != WebPageResult.REMOVED:  # a dead link never imported: forget it
                    WebPage.objects.filter(pk=page.pk).delete()
                continue
            self.record(page, WebPageResult.REMOVED)
            removed.append(page)
        ids = [p.document_id for p in removed if p.document_id is not None]
        if ids:
            _documents_remove(self.source.knowledge_base, ids, self.source)


def _sync(source: WebSource, enqueue: Enqueue) -> dict[str, Any]:
    sync = _Sync(source, enqueue)
    robots = robots_read(source.url)
    blocked: list[str] = []
    if source.mode == WebSourceMode.SITEMAP:
        urls, blocked = sitemap_urls(
            sitemap_location(source.url, robots), robots=robots, bounds=sync.bounds, limit=source.max_pages
        )
        pages = [sync.page_row(url, 0) for url in urls]  # listed first: the UI shows what is coming
        WebPage.objects.filter(pk__in=[p.pk for p in pages]).update(result=WebPageResult.FOUND, error_message="")
        for page in pages:
            sync.visit(page)
    else:
        blocked = _crawl(sync, robots)
    sync.remove_missing()
    counts = sync.counts
    return {
        "pages": len(sync.seen) - len(sync.gone),
        "added": counts[WebPageResult.ADDED],
        "changed": counts[WebPageResult.CHANGED],
        "unchanged": counts[WebPageResult.UNCHANGED],
        "removed": counts[WebPageResult.REMOVED],
        "failed": counts[WebPageResult.FAILED],
        "blocked_by_robots": len(blocked),
        "changes": sync.listed[:REPORT_URLS],
        "blocked": blocked[:REPORT_URLS],
    }


def _crawl(sync: _Sync, robots: Robots) -> list[str]:
    """Breadth-first from the start URL: links in bounds, allowed by robots.txt, up to the depth and
    page limits. Returns the URLs robots.txt kept us out of."""
    source = sync.source
    start = sync.page_row(source.url, 0)
    queue: deque[tuple[str, int]] = deque([(start.url, 0)])
    queued, blocked = {start.url}, []
    visited = 0
    while queue and visited < source.max_pages:
        url, depth = queue.popleft()
        if not robots.allows(url):
            blocked.append(url)
            continue
        visited += 1
        fetched = sync.visit(sync.page_row(url, depth))
        if url == start.url and sync.known[url].result == WebPageResult.FAILED:
            # Without the start page nothing else can be found: stop before "removing" the whole site.
            raise FetchRefused("site_unreachable", f"The start page could not be read: {sync.known[url].error_message}")
        if fetched is None or fetched.extension != "html" or depth >= source.max_depth:
            continue
        for link in html_links(fetched.body, fetched.url):
            if link not in queued and sync.bounds.contains(link):
                queued.add(link)
                queue.append((link, depth + 1))
    return blocked


def _stored_body(page: WebPage) -> FetchedPage | None:
    """The body kept from the page's last fetch (a 304 sends none, but a crawl needs its links)."""
    version = page.document.latest_version if page.document is not None else None
    if version is None or not version.file:
        return None
    with version.file.open("rb") as handle:
        body = handle.read()
    extension = version.original_filename.rsplit(".", 1)[-1]
    return FetchedPage(url=page.url, content_type="", extension=extension, body=body)


def _documents_remove(knowledge_base: KnowledgeBase, document_ids: list[int], source: WebSource) -> None:
    """Remove the documents of vanished pages as `kb.services.document_delete` does — soft-deleted
    from the live release (restorable with an earlier one), or staged in the draft in review mode —
    but in one release for the whole sync rather than one per page."""
    with transaction.atomic():
        kb = KnowledgeBase.objects.select_for_update().get(pk=knowledge_base.pk)
        live: list[Document] = []
        for document in Document.objects.select_for_update().filter(pk__in=document_ids).order_by("pk"):
            if document.live_version_id is None:
                DraftChange.objects.filter(document=document).delete()
                releases.document_delete_for_good(document)
            elif kb.review_changes:
                releases.draft_stage_delete(document=document, created_by=source.created_by)
            else:
                live.append(document)
        if live:
            DraftChange.objects.filter(document__in=live).delete()
            target = releases.live_manifest(kb)
            for document in live:
                target.pop(document.pk, None)
            changes = releases.manifest_apply(kb, target)
            releases.release_record(
                knowledge_base=kb, changes=changes, summary=f"Website sync: {len(live)} page(s) removed"
            )
