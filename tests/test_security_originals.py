"""Stored originals ("Open original") never render active content on the app's origin."""

from __future__ import annotations

import os
import warnings
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import AsyncClient, Client

from accounts.models import Role
from kb import services
from kb.services import knowledge_base_create
from tests.conftest import run_async

HTML = b"<html><body><script>fetch('/accounts/api-keys/')</script>Refunds take 5 days.</body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>'


def _stored_original(make_org, make_user, name: str, content: bytes):  # type: ignore[no-untyped-def]
    """A viewer of an organisation and a document of theirs whose original is `content`."""
    org = make_org()
    viewer = make_user(org, role=Role.VIEWER)
    kb = knowledge_base_create(organization=org, name="Support", created_by=None)
    result = services.document_upload(
        knowledge_base=kb, upload=SimpleUploadedFile(name, content), filename=name, uploaded_by=None, enqueue=False
    )
    return viewer, result.document


def _open_original(make_org, make_user, name: str, content: bytes):  # type: ignore[no-untyped-def]
    viewer, document = _stored_original(make_org, make_user, name, content)
    client = Client()
    client.force_login(viewer)
    return client.get(f"/documents/{document.pk}/file/")


@pytest.mark.parametrize(("name", "content"), [("page.html", HTML), ("logo.svg", SVG), ("page.htm", HTML)])
def test_active_originals_are_served_as_sandboxed_attachments(make_org, make_user, name, content) -> None:  # type: ignore[no-untyped-def]
    response = _open_original(make_org, make_user, name, content)
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment")
    assert response["Content-Security-Policy"] == "sandbox"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "html" not in response["Content-Type"] and "svg" not in response["Content-Type"]
    assert b"".join(response.streaming_content) == content
    response.close()  # the stored file (the test client does not close responses)


def test_pdf_original_opens_inline_but_sandboxed(make_org, make_user) -> None:  # type: ignore[no-untyped-def]
    response = _open_original(make_org, make_user, "terms.pdf", b"%PDF-1.4\n%\xe2\xe3\n1 0 obj<<>>endobj\n")
    assert response["Content-Disposition"].startswith("inline")
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Security-Policy"] == "sandbox"
    assert response["X-Content-Type-Options"] == "nosniff"
    response.close()


def test_plain_text_original_opens_inline_as_text(make_org, make_user) -> None:  # type: ignore[no-untyped-def]
    response = _open_original(make_org, make_user, "notes.txt", b"<script>alert(1)</script>")
    assert response["Content-Disposition"].startswith("inline")
    assert response["Content-Type"].startswith("text/plain")
    assert response["Content-Security-Policy"] == "sandbox"
    response.close()


@pytest.mark.django_db(transaction=True)  # the request runs on a connection of its own
def test_an_original_is_sent_block_by_block_when_served_through_asgi(make_org, make_user) -> None:  # type: ignore[no-untyped-def]
    # make run and compose serve the app through uvicorn (ASGI). Given a plain file object,
    # Django's ASGI handler reads it whole into memory before sending its first byte.
    content = os.urandom(2 * 1024 * 1024 + 17)  # a little over two blocks
    viewer, document = _stored_original(make_org, make_user, "scan.bin", content)

    async def download() -> tuple[Any, list[bytes]]:
        client = AsyncClient()
        await client.aforce_login(viewer)
        response: Any = await client.get(f"/documents/{document.pk}/file/")
        return response, [block async for block in response.streaming_content]

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "StreamingHttpResponse must consume synchronous iterators"
        response, blocks = run_async(download)
    assert response.status_code == 200 and response.is_async
    assert len(blocks) == 3 and b"".join(blocks) == content
    assert response["Content-Length"] == str(len(content))
    assert response["Content-Disposition"] == 'attachment; filename="scan.bin"'
    assert response["Content-Security-Policy"] == "sandbox"
