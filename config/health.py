"""Health endpoints.

- `/healthz` (public): liveness only — the process answers. No versions, host names or checks
  that cost anything, so it is safe to expose and cheap for load balancers to poll.
- `/healthz/ready` (operators only: a staff session, or an API key with the admin or owner role):
  is the database (with pgvector), Redis and at least one Celery worker reachable? 503 if not.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from accounts.models import Role
from accounts.selectors import api_key_get_active


def _check_database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
    return {"ok": row is not None, "pgvector": row[0] if row else None}


def _check_redis() -> dict[str, Any]:
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        return {"ok": bool(client.ping())}
    finally:
        client.close()


def _check_worker() -> dict[str, Any]:
    from config.celery import app

    replies = app.control.ping(timeout=1.0) or []
    return {"ok": bool(replies), "workers": sorted(name for reply in replies for name in reply)}


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the web process is up."""
    return JsonResponse({"status": "ok"})


def _is_operator(request: HttpRequest) -> bool:
    if request.user.is_authenticated and request.user.is_staff:
        return True
    scheme, _, raw_key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not raw_key.strip():
        return False
    key = api_key_get_active(raw_key=raw_key.strip())
    return key is not None and key.role in (Role.ADMIN, Role.OWNER)


@require_GET
def healthz_ready(request: HttpRequest) -> JsonResponse:
    """Readiness, in detail, for operators: database, Redis and workers."""
    if not _is_operator(request):
        return JsonResponse({"detail": "Operators only: sign in as staff or send an admin API key."}, status=403)
    report: dict[str, Any] = {}
    for name, check in (("database", _check_database), ("redis", _check_redis), ("worker", _check_worker)):
        started = time.perf_counter()
        try:
            report[name] = check()
        except Exception as exc:  # a health check reports failures, it does not raise them
            report[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        report[name]["ms"] = round((time.perf_counter() - started) * 1000, 1)
    healthy = all(part["ok"] for part in report.values())
    return JsonResponse({"status": "ok" if healthy else "degraded", **report}, status=200 if healthy else 503)
