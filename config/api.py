"""API-wide error handling: domain errors become 400s with a code and a readable message; "no database
connection free" becomes 503 busy with Retry-After (`config.busy`)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from chat.exceptions import ChatError
from chat.sse import database_busy
from config.busy import busy_body, busy_headers
from kb.exceptions import KnowledgeBaseError


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, KnowledgeBaseError | ChatError):
        return Response({"error": exc.code, "detail": exc.message}, status=exc.status_code)
    if database_busy(exc):
        return Response(busy_body(), status=503, headers=busy_headers())
    if isinstance(exc, RequestDataTooBig):  # accounts.upload_limits stopped an upload mid-way
        limit_mb = settings.GROUNDWORK_MAX_UPLOAD_BYTES / (1024 * 1024)
        return Response(
            {"error": "too_large", "detail": f"The file is larger than the {limit_mb:g} MB upload limit."}, status=400
        )
    return drf_exception_handler(exc, context)


class LenientContentNegotiation(DefaultContentNegotiation):
    """Answer with JSON instead of 406 when the client asks for a type no renderer produces.

    Streaming clients send `Accept: text/event-stream` to endpoints that reply with server-sent
    events when asked to (`"stream": true`) and with JSON otherwise.
    """

    def select_renderer(self, request: Request, renderers: Any, format_suffix: str | None = None) -> Any:
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except NotAcceptable:
            renderer = next(iter(renderers))
            return renderer, renderer.media_type


API_PREFIXES = ("/api/", "/v1/")


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """404 for URLs no route matches (e.g. `/api/v1/documents/abc/`): JSON under the API prefixes,
    as every API answer is, so a client never has to parse Django's HTML error page."""
    if request.path.startswith(API_PREFIXES):
        return JsonResponse({"error": "not_found", "detail": "No such API endpoint or object."}, status=404)
    return defaults.page_not_found(request, exception)
