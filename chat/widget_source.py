"""A widget visitor's view of a cited source, opened from a signed link (see `chat.source_links`).

Like the widget's other views these authenticate nothing but the widget key and the link's
signature, and never read the session. The page is ours (escaped text, static JS); a PDF's page
arrives as a PNG rendered on the server — the original's bytes are never handed out.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET

from chat import widget_services as ws
from chat.exceptions import ChatError
from chat.models import Citation
from chat.source_links import SourceLinkError, source_link_open
from kb.highlight import source_view
from kb.source_views import page_image_response

SOURCE_PAGE_CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)


def _citation_or_refusal(widget_key: str, token: str) -> Citation | HttpResponse:
    try:
        bot = ws.widget_bot_get(widget_key=widget_key)
        ws.widget_check_enabled(chatbot=bot)
        return source_link_open(chatbot=bot, token=token)
    except (SourceLinkError, ws.WidgetError) as exc:
        return _refusal(exc)


def _refusal(exc: ChatError) -> HttpResponse:
    status = getattr(exc, "status_code", 404)
    body = render_to_string("chat/widget_source.html", {"refusal": exc.message, "title": "Source unavailable"})
    response = HttpResponse(body, status=status)
    response["Content-Security-Policy"] = SOURCE_PAGE_CSP
    response["Cache-Control"] = "no-store"
    return response


@require_GET
def widget_source(request: HttpRequest, widget_key: str, token: str) -> HttpResponse:
    """The cited document at the quoted sentence: a rendered PDF page or the text with a <mark>."""
    found = _citation_or_refusal(widget_key, token)
    if isinstance(found, HttpResponse):
        return found
    citation = found
    assert citation.version is not None  # source_link_open guarantees it
    view = source_view(version=citation.version, page=citation.page, quote=citation.quote, chunk_id=citation.chunk_id)
    image_url = ""
    if view.is_pdf:
        image_url = f"{reverse('widget:source_page', args=[widget_key, token])}?{urlencode({'page': view.page})}"
    body = render_to_string(
        "chat/widget_source.html",
        {"view": view, "image_url": image_url, "title": citation.document_title, "citation": citation},
    )
    response = HttpResponse(body)
    response["Content-Security-Policy"] = SOURCE_PAGE_CSP
    response["Cache-Control"] = "private, no-store"
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex"
    return response


@require_GET
def widget_source_page(request: HttpRequest, widget_key: str, token: str) -> HttpResponse:
    """The cited PDF page as a PNG with the quote boxed (only the page the citation points to)."""
    found = _citation_or_refusal(widget_key, token)
    if isinstance(found, HttpResponse):
        return found
    citation = found
    assert citation.version is not None  # source_link_open guarantees it
    view = source_view(version=citation.version, page=citation.page, quote=citation.quote, chunk_id=citation.chunk_id)
    return page_image_response(version=citation.version, page=view.page, quote=citation.quote)
