"""The "busy, retry" answer: what a request gets when no database connection comes free in time.

The connection pool (settings `GROUNDWORK_DB_POOL_*`) lets requests queue for a connection for
`GROUNDWORK_DB_POOL_TIMEOUT` seconds. One that waits longer is answered 503 with `Retry-After`,
never a 500: the DRF APIs through `config.api.exception_handler`, other views through
`BusyMiddleware`, and answer streams with a `busy` event (`chat.sse.answer_sse`).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.deprecation import MiddlewareMixin

from chat.sse import BUSY_DETAIL, database_busy

logger = logging.getLogger(__name__)


def busy_body() -> dict[str, object]:
    return {"error": "busy", "detail": BUSY_DETAIL, "retry_after": settings.GROUNDWORK_BUSY_RETRY_AFTER}


def busy_headers() -> dict[str, str]:
    return {"Retry-After": str(settings.GROUNDWORK_BUSY_RETRY_AFTER), "Cache-Control": "no-store"}


class BusyMiddleware(MiddlewareMixin):
    """Turns a view's "no database connection free" into 503 + Retry-After (JSON for API clients)."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not database_busy(exception):
            return None
        logger.warning("Busy: %s %s waited too long for a database connection", request.method, request.path)
        accept = request.headers.get("Accept", "")
        if request.path.startswith(("/api/", "/v1/")) or "json" in accept or "event-stream" in accept:
            response: HttpResponse = JsonResponse(busy_body(), status=503)
        else:
            response = HttpResponse(BUSY_DETAIL, status=503, content_type="text/plain; charset=utf-8")
        for name, value in busy_headers().items():
            response[name] = value
        return response
