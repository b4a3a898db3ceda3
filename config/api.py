"""API-wide error handling: domain errors become 400s with a code and a readable message."""

from __future__ import annotations

from typing import Any

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from chat.exceptions import ChatError
from kb.exceptions import KnowledgeBaseError


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, KnowledgeBaseError | ChatError):
        return Response({"error": exc.code, "detail": exc.message}, status=exc.status_code)
    return drf_exception_handler(exc, context)
