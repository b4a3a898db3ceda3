"""Staff UI for knowledge bases and documents (server-rendered, htmx for live parts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib import messages
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts.decorators import org_required
from accounts.permissions import Action
from accounts.selectors import OrgContext
from kb import selectors, services
from kb.exceptions import KnowledgeBaseError
from kb.forms import KnowledgeBaseForm
from kb.models import ACTIVE_STATUSES, DocumentStatus, DocumentVersion, KnowledgeBase, SourceType
from kb.pipeline.ranking import ranking_progress
from kb.precise_ranking import RANKING_MODEL
from kb.storage import open_original
from kb.websites.selectors import web_sources_for_knowledge_base


def _kb_or_404(context: OrgContext, kb_id: int) -> KnowledgeBase:
    kb = selectors.knowledge_base_get(organization=context.organization, pk=kb_id)
    if kb is None:
        raise Http404("No such knowledge base.")
    return kb


@org_required()
def dashboard(request: HttpRequest, context: OrgContext) -> HttpResponse:
    kbs = selectors.knowledge_bases_for_org(organization=context.organization).annotate(
        document_count=Count("documents", filter=Q(documents__deleted_at__isnull=True), distinct=True),
        ready_count=Count(
            "documents",
            filter=Q(documents__live_version__isnull=False, documents__deleted_at__isnull=True),
            distinct=True,
        ),
        chunk_count=Count("chunks", filter=Q(chunks__is_live=True), distinct=True),
    )
    return render(
        request, "kb/dashboard.html", {"knowledge_bases": kbs, "can_edit": context.allows(Action.EDIT_CONTENT)}
    )


@org_required(Action.EDIT_CONTENT)
@require_http_methods(["GET", "POST"])
def knowledge_base_create(request: HttpRequest, context: OrgContext) -> HttpResponse:
    form = KnowledgeBaseForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            kb = services.knowledge_base_create(
                organization=context.organization, created_by=context.user, actor=context, **form.cleaned_data
            )
        except KnowledgeBaseError as exc:
            form.add_error("name", exc.message)
        else:
            messages.success(request, f"Knowledge base “{kb.name}” created. Add documents to it.")
            return redirect("kb:detail", kb_id=kb.pk)
    return render(request, "kb/knowledge_base_form.html", {"form": form})


def _document_rows(context: OrgContext, kb: KnowledgeBase, params: Any = None) -> tuple[list[Any], bool]:
    """The knowledge base's documents, filtered by `status`, `type` and a `q` on the name."""
    qs = selectors.documents_for_org(organization=context.organization).filter(knowledge_base=kb)
    params = params or {}
    if params.get("status"):
        qs = qs.filter(latest_version__status=params["status"])
    if params.get("type"):
        qs = (
            qs.filter(latest_version__file_type=params["type"])
            if params["type"] not in SourceType.values
            else qs.filter(source_type=params["type"])
        )
    if params.get("q"):
        qs = qs.filter(title__icontains=params["q"].strip()[:200])
    documents = list(qs)
    any_active = any(d.latest_version and d.latest_version.status in ACTIVE_STATUSES for d in documents)
    return documents, any_active


@org_required()
def knowledge_base_detail(request: HttpRequest, context: OrgContext, kb_id: int) -> HttpResponse:
    kb = _kb_or_404(context, kb_id)
    documents, any_active = _document_rows(context, kb, request.GET)
    return render(
        request,
        "kb/knowledge_base_detail.html",
        {
            "kb": kb,
            "documents": documents,
            "any_active": any_active,
            "can_edit": context.allows(Action.EDIT_CONTENT),
            "statuses": DocumentStatus.choices,
            "types": _types_in(kb),
            "params": request.GET,
            "filter_query": request.GET.urlencode(),
            "web_sources": web_sources_for_knowledge_base(organization=context.organization, knowledge_base=kb),
            "ranking_progress": ranking_progress(kb),
            "ranking_model": RANKING_MODEL,
        },
    )


@org_required(Action.EDIT_CONTENT)
@require_POST
def knowledge_base_precise_ranking(request: HttpRequest, context: OrgContext, kb_id: int) -> HttpResponse:
    """Turn precise ranking on (its vectors are filled in the background) or off."""
    kb = _kb_or_404(context, kb_id)
    enabled = request.POST.get("precise_ranking") == "on"
    try:
        services.knowledge_base_update(knowledge_base=kb, changes={"precise_ranking": enabled}, actor=context)
    except KnowledgeBaseError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            "Precise ranking is on: every passage gets its e5 vector in the background, and "
            "searches use it as soon as their candidates have one."
            if enabled
            else "Precise ranking is off: searches use the fused order.",
        )
    return redirect("kb:detail", kb_id=kb.pk)


@org_required()
def document_table(request: HttpRequest, context: OrgContext, kb_id: int) -> HttpResponse:
    """The live document table fragment; htmx polls it while anything is still processing."""
    kb = _kb_or_404(context, kb_id)
    documents, any_active = _document_rows(context, kb, request.GET)
    return render(
        request,
        "kb/_document_table.html",
        {
            "kb": kb,
            "documents": documents,
            "any_active": any_active,
            "can_edit": context.allows(Action.EDIT_CONTENT),
            "filter_query": request.GET.urlencode(),
        },
    )


def _types_in(kb: KnowledgeBase) -> list[str]:
    return sorted(
        {
            t
            for t in DocumentVersion.objects.filter(document__knowledge_base=kb).values_list("file_type", flat=True)
            if t
        }
    )


@org_required(Action.EDIT_CONTENT)
@require_POST
def document_upload(request: HttpRequest, context: OrgContext, kb_id: int) -> HttpResponseBase:
    kb = _kb_or_404(context, kb_id)
    files = request.FILES.getlist("files") or request.FILES.getlist("file")
    if not files:
        messages.error(request, "Choose at least one file to upload.")
    for upload in files:
        try:
            result = services.document_upload(
                knowledge_base=kb,
                upload=upload,
                filename=upload.name or "upload",
                uploaded_by=context.user,
                actor=context,
            )
        except KnowledgeBaseError as exc:
            messages.error(request, exc.message)
            continue
        if not result.created:
            messages.info(request, f"“{upload.name}” is already in this knowledge base; nothing to do.")
    if request.htmx:  # type: ignore[attr-defined]
        return document_table(request, kb_id=kb_id)
    return redirect("kb:detail", kb_id=kb.pk)


def _document_or_404(context: OrgContext, doc_id: int) -> Any:
    document = selectors.document_get(organization=context.organization, pk=doc_id)
    if document is None:
        raise Http404("No such document.")
    return document


@org_required()
def document_detail(request: HttpRequest, context: OrgContext, doc_id: int) -> HttpResponse:
    """Metadata, versions, error reason and the live version's chunks (anchored by page)."""
    document = _document_or_404(context, doc_id)
    version = document.live_version or document.latest_version
    chunks = list(version.chunks.without_vectors().order_by("ordinal")) if version else []
    return render(
        request,
        "kb/document_detail.html",
        {
            "document": document,
            "version": version,
            "versions": document.versions.order_by("-number"),
            "chunks": chunks,
            "focus_page": request.GET.get("page"),
            "can_edit": context.allows(Action.EDIT_CONTENT),
        },
    )


@org_required()
def document_file(request: HttpRequest, context: OrgContext, doc_id: int) -> HttpResponseBase:
    """The stored original of the live (or latest) version, for signed-in members only.

    Originals are untrusted (anyone who can upload or import a URL chose their bytes): only PDF,
    raster images and plain text open inline, with a type we choose; everything else (HTML, SVG,
    office files) is a download. Either way `CSP: sandbox` and `nosniff` keep a script in the file
    from running on our origin.
    """
    from django.http import FileResponse

    document = _document_or_404(context, doc_id)
    version = document.live_version or document.latest_version
    if version is None or not version.file:
        raise Http404("No stored file.")
    suffix = Path(version.original_filename).suffix.lower()
    inline_type = _INLINE_ORIGINAL_TYPES.get(suffix)
    stream, size = open_original(version.file)
    response = FileResponse(stream, filename=version.original_filename, as_attachment=inline_type is None)
    if size is not None and not response.has_header("Content-Length"):
        response["Content-Length"] = str(size)
    response["Content-Type"] = inline_type or "application/octet-stream"
    response["Content-Security-Policy"] = "sandbox"
    response["X-Content-Type-Options"] = "nosniff"
    return response


# The only originals a browser may show inline: formats that cannot run script on our origin.
_INLINE_ORIGINAL_TYPES = {
    ".pdf": "application/pdf",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
    ".csv": "text/plain; charset=utf-8",
}


@org_required(Action.EDIT_CONTENT)
@require_POST
def document_action(request: HttpRequest, context: OrgContext, doc_id: int, action: str) -> HttpResponse:
    document = _document_or_404(context, doc_id)
    if action == "disable" or action == "enable":
        services.document_set_enabled(document=document, enabled=action == "enable", actor=context)
        messages.success(request, f"“{document.title}” {'enabled' if action == 'enable' else 'disabled'}.")
    elif action == "reindex" and document.latest_version is not None:
        services.version_requeue(version=document.latest_version, actor=context)
        messages.success(request, f"“{document.title}” is queued for re-indexing.")
    elif action == "delete":
        kb_id = document.knowledge_base_id
        services.document_delete(document=document, actor=context)
        messages.success(request, f"“{document.title}” deleted.")
        return redirect("kb:detail", kb_id=kb_id)
    elif action == "replace":
        upload = request.FILES.get("file")
        if upload is None:
            messages.error(request, "Choose the new file first.")
        else:
            try:
                result = services.document_upload(
                    knowledge_base=document.knowledge_base,
                    upload=upload,
                    filename=upload.name or document.title,
                    uploaded_by=context.user,
                    replace_document=document,
                    actor=context,
                )
            except KnowledgeBaseError as exc:
                messages.error(request, exc.message)
            else:
                if result.created:
                    live = document.live_version
                    messages.success(
                        request,
                        f"Version {result.version.number} is processing"
                        + (f"; v{live.number} keeps answering until it is ready." if live else "."),
                    )
                else:
                    messages.info(request, "That file is identical to the current version; nothing to do.")
    else:
        raise Http404("Unknown action.")
    return redirect("kb:document", doc_id=document.pk)


@org_required(Action.EDIT_CONTENT)
@require_POST
def source_add(request: HttpRequest, context: OrgContext, kb_id: int, kind: str) -> HttpResponseBase:
    """Add a web page, a typed text or a Q&A pair to the knowledge base."""
    kb = _kb_or_404(context, kb_id)
    try:
        if kind == "url":
            result = services.document_add_url(
                knowledge_base=kb, url=request.POST.get("url", ""), created_by=context.user, actor=context
            )
        elif kind == "text":
            result = services.document_create_text(
                knowledge_base=kb,
                title=request.POST.get("title", ""),
                text=request.POST.get("text", ""),
                created_by=context.user,
                actor=context,
            )
        elif kind == "qa":
            result = services.qa_entry_create(
                knowledge_base=kb,
                question=request.POST.get("question", ""),
                answer=request.POST.get("answer", ""),
                created_by=context.user,
                actor=context,
            )
        else:
            raise Http404("Unknown source.")
    except KnowledgeBaseError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"“{result.document.title}” added; it will be searchable in a few seconds.")
    return redirect("kb:detail", kb_id=kb.pk)
