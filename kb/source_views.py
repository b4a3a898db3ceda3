"""The cited source for staff: the original at the cited page with the quoted sentence highlighted.

`GET /documents/<id>/source/?version=&page=&chunk=&quote=` is a page of ours (escaped text, static
JS only); for a PDF it shows `…/source/page.png`, the page rendered server-side with the quote's
boxes painted — an image, so nothing of the original ever runs on our origin.
"""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse

from accounts.decorators import org_required
from accounts.selectors import OrgContext
from kb import selectors
from kb.highlight import PageImageError, page_image_for, source_view
from kb.models import Document, DocumentVersion


def int_param(value: str | None) -> int | None:
    """A positive integer query parameter, or None for anything else (never a 500)."""
    if value is None or not value.isdigit() or len(value) > 9:
        return None
    number = int(value)
    return number if number > 0 else None


def _document_and_version(context: OrgContext, doc_id: int, version_id: int | None) -> tuple[Document, DocumentVersion]:
    document = selectors.document_get(organization=context.organization, pk=doc_id)
    if document is None:
        raise Http404("No such document.")
    if version_id is not None:
        version = document.versions.filter(pk=version_id).first()
    else:
        version = document.live_version or document.latest_version
    if version is None:
        raise Http404("No such version.")
    return document, version


def page_image_response(*, version: DocumentVersion, page: int | None, quote: str) -> HttpResponse:
    """The PNG of a cited PDF page; `X-Highlight-Boxes` says how many quote boxes were painted."""
    try:
        image = page_image_for(version=version, page=page or 1, quote=quote)
    except PageImageError as exc:
        raise Http404(str(exc)) from None
    response = HttpResponse(image.png, content_type="image/png")
    response["Content-Security-Policy"] = "sandbox"
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, max-age=300"
    response["X-Highlight-Boxes"] = str(image.boxes)
    return response


@org_required()
def document_source(request: HttpRequest, context: OrgContext, doc_id: int) -> HttpResponse:
    from django.shortcuts import render
    from django.urls import reverse

    document, version = _document_and_version(context, doc_id, int_param(request.GET.get("version")))
    view = source_view(
        version=version,
        page=int_param(request.GET.get("page")),
        quote=request.GET.get("quote", ""),
        chunk_id=int_param(request.GET.get("chunk")),
    )
    image_url = ""
    if view.is_pdf:
        from urllib.parse import urlencode

        query = urlencode({"version": version.pk, "page": view.page, "quote": view.quote})
        image_url = f"{reverse('kb:document_source_page', args=[document.pk])}?{query}"
    return render(
        request,
        "kb/document_source.html",
        {"document": document, "view": view, "image_url": image_url},
    )


@org_required()
def document_source_page(request: HttpRequest, context: OrgContext, doc_id: int) -> HttpResponse:
    _, version = _document_and_version(context, doc_id, int_param(request.GET.get("version")))
    return page_image_response(
        version=version, page=int_param(request.GET.get("page")), quote=request.GET.get("quote", "")
    )
