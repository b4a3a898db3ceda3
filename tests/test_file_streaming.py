"""Served through ASGI (uvicorn: make run, compose), static files are sent block by block, not read
whole into the web process first (config.streaming; stored originals: test_security_originals)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from django.conf import settings
from django.test import AsyncClient, Client

from tests.conftest import run_async

WIDGET_JS = Path(settings.BASE_DIR) / "static" / "widget" / "widget.js"


def test_a_static_file_is_sent_asynchronously_through_asgi() -> None:
    async def fetch() -> tuple[Any, bytes]:
        response: Any = await AsyncClient().get("/static/widget/widget.js")
        return response, b"".join([block async for block in response.streaming_content])

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "StreamingHttpResponse must consume synchronous iterators"
        response, body = run_async(fetch)
    assert response.status_code == 200 and response.is_async
    assert body == WIDGET_JS.read_bytes()
    assert "javascript" in response["Content-Type"]


def test_under_wsgi_the_server_still_reads_the_file_itself() -> None:
    response: Any = Client().get("/static/widget/widget.js")
    assert response.status_code == 200 and not response.is_async
    assert b"".join(response.streaming_content) == WIDGET_JS.read_bytes()
    response.close()
