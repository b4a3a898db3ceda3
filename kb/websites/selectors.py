"""Reads of website sources, always scoped to an organisation."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from accounts.models import Organization
from kb.models import ACTIVE_STATUSES, KnowledgeBase, WebPage, WebSource


def web_sources_for_knowledge_base(*, organization: Organization, knowledge_base: KnowledgeBase) -> QuerySet[WebSource]:
    return WebSource.objects.filter(organization=organization, knowledge_base=knowledge_base)


def web_source_get(*, organization: Organization, knowledge_base: KnowledgeBase, pk: int) -> WebSource | None:
    return (
        web_sources_for_knowledge_base(organization=organization, knowledge_base=knowledge_base).filter(pk=pk).first()
    )


def web_pages(*, source: WebSource) -> list[WebPage]:
    """The source's pages with their documents' latest versions (for status and progress)."""
    return list(
        WebPage.objects.filter(source=source).select_related("document", "document__latest_version").order_by("url")
    )


def web_page_status(page: WebPage) -> str:
    """What a person wants to know about one page: its document's processing status, or the
    sync's outcome when there is no document (failed, removed, found but not fetched yet)."""
    document = page.document
    if page.result in ("failed", "removed", "found") or document is None or document.deleted_at is not None:
        return page.result
    version = document.latest_version
    return version.status if version is not None else page.result


def web_source_progress(*, source: WebSource, pages: list[WebPage]) -> dict[str, Any]:
    """Counts by status and whether anything is still moving (the UI polls while it is)."""
    counts: dict[str, int] = {}
    for page in pages:
        status = web_page_status(page)
        counts[status] = counts.get(status, 0) + 1
    busy = source.is_busy or any(
        web_page_status(page) in (*[s.value for s in ACTIVE_STATUSES], "found") for page in pages
    )
    return {"counts": counts, "busy": busy}
