"""Staff UI for website sources: add a site, watch its pages arrive, sync again, set the schedule."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.decorators import org_required
from accounts.permissions import Action
from accounts.selectors import OrgContext
from kb import selectors
from kb.exceptions import KnowledgeBaseError
from kb.models import KnowledgeBase, WebSource, WebSourceMode, WebSourceSchedule
from kb.websites import selectors as website_selectors
from kb.websites import services as website_services


def _kb_or_404(context: OrgContext, kb_id: int) -> KnowledgeBase:
    kb = selectors.knowledge_base_get(organization=context.organization, pk=kb_id)
    if kb is None:
        raise Http404("No such knowledge base.")
    return kb


def _source_or_404(context: OrgContext, kb_id: int, source_id: int) -> WebSource:
    kb = _kb_or_404(context, kb_id)
    source = website_selectors.web_source_get(organization=context.organization, knowledge_base=kb, pk=source_id)
    if source is None:
        raise Http404("No such website source.")
    return source


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value else default
    except ValueError:
        raise KnowledgeBaseError("invalid_bounds", "Page limit and link depth must be whole numbers.") from None


@org_required(Action.EDIT_CONTENT)
@require_POST
def web_source_create(request: HttpRequest, context: OrgContext, kb_id: int) -> HttpResponseBase:
    kb = _kb_or_404(context, kb_id)
    try:
        source = website_services.web_source_create(
            knowledge_base=kb,
            url=request.POST.get("url", ""),
            mode=request.POST.get("mode", WebSourceMode.SITEMAP),
            path_prefix=request.POST.get("path_prefix", "/") or "/",
            max_depth=_int(request.POST.get("max_depth"), 3),
            max_pages=_int(request.POST.get("max_pages"), 100),
            schedule=request.POST.get("schedule", WebSourceSchedule.WEEKLY),
            created_by=context.user,
            actor=context,
        )
    except KnowledgeBaseError as exc:
        messages.error(request, exc.message)
        return redirect("kb:detail", kb_id=kb.pk)
    messages.success(request, f"Importing {source.url}: pages appear below as they are found.")
    return redirect("kb:web_source", kb_id=kb.pk, source_id=source.pk)


def _page_context(context: OrgContext, source: WebSource) -> dict[str, object]:
    pages = website_selectors.web_pages(source=source)
    rows = [(page, website_selectors.web_page_status(page)) for page in pages]
    progress = website_selectors.web_source_progress(source=source, pages=pages)
    return {
        "kb": source.knowledge_base,
        "source": source,
        "rows": rows,
        "progress": progress,
        "can_edit": context.allows(Action.EDIT_CONTENT),
        "schedules": WebSourceSchedule.choices,
    }


@org_required()
def web_source_detail(request: HttpRequest, context: OrgContext, kb_id: int, source_id: int) -> HttpResponse:
    source = _source_or_404(context, kb_id, source_id)
    return render(request, "kb/web_source_detail.html", _page_context(context, source))


@org_required()
def web_source_pages(request: HttpRequest, context: OrgContext, kb_id: int, source_id: int) -> HttpResponse:
    """The live page list fragment; htmx polls it while the sync or any page is still processing."""
    source = _source_or_404(context, kb_id, source_id)
    return render(request, "kb/_web_pages.html", _page_context(context, source))


@org_required(Action.EDIT_CONTENT)
@require_POST
def web_source_sync(request: HttpRequest, context: OrgContext, kb_id: int, source_id: int) -> HttpResponseBase:
    source = _source_or_404(context, kb_id, source_id)
    if website_services.web_source_sync_request(source=source, actor=context):
        messages.success(request, "Sync queued: every page is fetched again and only changed pages get a new version.")
    else:
        messages.info(request, "A sync of this site is already running.")
    return redirect("kb:web_source", kb_id=kb_id, source_id=source.pk)


@org_required(Action.EDIT_CONTENT)
@require_POST
def web_source_schedule(request: HttpRequest, context: OrgContext, kb_id: int, source_id: int) -> HttpResponseBase:
    source = _source_or_404(context, kb_id, source_id)
    try:
        website_services.web_source_set_schedule(
            source=source, schedule=request.POST.get("schedule", ""), actor=context
        )
    except KnowledgeBaseError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Schedule set to {source.get_schedule_display().lower()}.")
    return redirect("kb:web_source", kb_id=kb_id, source_id=source.pk)
