"""Typed text, Q&A pairs and web pages as knowledge sources (API → real worker → search)."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from tests.conftest import wait_for


def _terminal(client: APIClient, doc_id: int) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body = client.get(f"/api/v1/documents/{doc_id}/").json()
        return body if body["status"] in ("ready", "failed") else None

    return wait_for(done, timeout=90)


def _search(client: APIClient, kb_id: int, query: str) -> list[dict[str, Any]]:
    response = client.post(f"/api/v1/knowledge-bases/{kb_id}/search/", {"query": query, "top_k": 5}, format="json")
    return response.json()["results"]


@pytest.fixture
def kb(make_org, api_client_for, celery_worker) -> tuple[APIClient, int]:  # type: ignore[no-untyped-def]
    client = api_client_for(make_org())
    return client, client.post("/api/v1/knowledge-bases/", {"name": "Sources"}, format="json").json()["id"]


@pytest.mark.worker
def test_typed_text_and_qa_pair_become_searchable(kb) -> None:  # type: ignore[no-untyped-def]
    client, kb_id = kb
    text = client.post(
        f"/api/v1/knowledge-bases/{kb_id}/texts/",
        {"title": "Opening hours", "text": "The Utrecht shop opens at 9:00 and closes at 18:00, Monday to Saturday."},
        format="json",
    )
    assert text.status_code == 201 and text.json()["source_type"] == "text"
    qa = client.post(
        f"/api/v1/knowledge-bases/{kb_id}/qa/",
        {"question": "Do you ship to Norway?", "answer": "Yes, we ship to Norway in 5 to 7 business days."},
        format="json",
    )
    assert qa.status_code == 201 and qa.json()["title"] == "Do you ship to Norway?"
    assert _terminal(client, text.json()["id"])["status"] == "ready"
    assert _terminal(client, qa.json()["id"])["status"] == "ready"
    assert "closes at 18:00" in _search(client, kb_id, "when does the shop close")[0]["text"]
    assert "5 to 7 business days" in _search(client, kb_id, "shipping to Norway")[0]["text"]

    empty = client.post(f"/api/v1/knowledge-bases/{kb_id}/qa/", {"question": "Why?", "answer": " "}, format="json")
    assert empty.status_code == 400


@pytest.mark.worker
def test_private_addresses_are_refused(kb) -> None:  # type: ignore[no-untyped-def]
    client, kb_id = kb
    for url in ("http://127.0.0.1:8000/admin/", "http://169.254.169.254/latest/meta-data/", "http://localhost/"):
        response = client.post(f"/api/v1/knowledge-bases/{kb_id}/urls/", {"url": url}, format="json")
        assert response.status_code == 400, url
        assert response.json()["error"] == "url_private"
        assert "private or local network" in response.json()["detail"]
    bad = client.post(f"/api/v1/knowledge-bases/{kb_id}/urls/", {"url": "file:///etc/passwd"}, format="json")
    assert bad.status_code == 400 and bad.json()["error"] == "url_invalid"


class _Site(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/returns")
            self.end_headers()
        elif self.path == "/returns":
            body = (
                b"<html><head><title>Returns | Northwind</title></head><body><h1>Returns</h1>"
                b"<p>Bring unused items back within 45 days for a full refund.</p></body></html>"
            )
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/logo.png":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(b"\x89PNG\r\n\x1a\n")
        elif self.path == "/slow":
            time.sleep(3)
            self.send_response(200)
            self.end_headers()
        else:
            self.send_response(404)
            self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.worker
@override_settings(GROUNDWORK_FETCH_ALLOW_PRIVATE=True, GROUNDWORK_FETCH_TIMEOUT=1.0)
def test_web_page_is_fetched_through_redirects_and_cited_by_url(kb, site) -> None:  # type: ignore[no-untyped-def]
    client, kb_id = kb
    created = client.post(f"/api/v1/knowledge-bases/{kb_id}/urls/", {"url": f"{site}/moved"}, format="json")
    assert created.status_code == 201
    page = _terminal(client, created.json()["id"])
    assert page["status"] == "ready", page["error"]
    assert page["title"] == "Returns | Northwind"
    assert page["source_url"] == f"{site}/moved"
    assert "45 days" in _search(client, kb_id, "how long to return items")[0]["text"]

    image = client.post(f"/api/v1/knowledge-bases/{kb_id}/urls/", {"url": f"{site}/logo.png"}, format="json").json()
    failed = _terminal(client, image["id"])
    assert failed["status"] == "failed" and "image/png" in failed["error"]

    slow = client.post(f"/api/v1/knowledge-bases/{kb_id}/urls/", {"url": f"{site}/slow"}, format="json").json()
    timed_out = _terminal(client, slow["id"])
    assert timed_out["status"] == "failed" and timed_out["error_code"] == "url_timeout"

    missing = client.post(f"/api/v1/knowledge-bases/{kb_id}/urls/", {"url": f"{site}/nope"}, format="json").json()
    assert "HTTP 404" in _terminal(client, missing["id"])["error"]
