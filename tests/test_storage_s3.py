"""Originals in S3-compatible object storage (GROUNDWORK_STORAGE=s3), against moto's S3 server.

The storage round trip in this process: an upload lands in the bucket, the real worker parses a
downloaded copy, "Open original" streams the object back with the safe headers, and deleting the
document for good removes the object. The same through separate processes, with password-protected
PostgreSQL and Redis, is tests/test_production_path.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings

from accounts.models import Role
from devtools.instance import free_port
from kb import services
from kb.models import DocumentStatus, DocumentVersion
from kb.releases import document_delete_for_good
from kb.services import knowledge_base_create
from kb.storage import local_copy, open_original
from tests.conftest import wait_for

BUCKET = "groundwork-originals"
BODY = b"Warranty\n\nEvery kettle carries a two-year warranty covering the heating element and the switch.\n"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_storage(moto_endpoint: str) -> Iterator[Any]:
    """STORAGES["default"] as config.settings builds it for GROUNDWORK_STORAGE=s3, on a fresh bucket."""
    import boto3

    client = boto3.client(
        "s3", endpoint_url=moto_endpoint, aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"
    )
    client.create_bucket(Bucket=BUCKET)
    options = {
        "bucket_name": BUCKET,
        "endpoint_url": moto_endpoint,
        "region_name": "us-east-1",
        "access_key": "k",
        "secret_key": "s",
        "addressing_style": "path",
        "location": "tenant-files",
        "file_overwrite": False,
        "default_acl": None,
        "max_memory_size": 1024,
    }
    storages = {
        "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
    }
    with override_settings(STORAGES=storages):
        yield client
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


def _keys(client: Any) -> list[str]:
    return [item["Key"] for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


@pytest.mark.worker
def test_original_in_object_storage_is_ingested_opened_and_deleted(
    s3_storage: Any, celery_worker: Any, make_org: Any, make_user: Any
) -> None:
    org = make_org()
    viewer = make_user(org, role=Role.VIEWER)
    kb = knowledge_base_create(organization=org, name="Support", created_by=None)
    result = services.document_upload(
        knowledge_base=kb, upload=SimpleUploadedFile("warranty.txt", BODY), filename="warranty.txt", uploaded_by=None
    )
    version = result.version
    # Stored under the configured prefix, with our safe name, in the bucket only.
    assert _keys(s3_storage) == [f"tenant-files/{version.file.name}"]
    with pytest.raises(NotImplementedError):
        _ = version.file.path

    wait_for(lambda: DocumentVersion.objects.get(pk=version.pk).status in (DocumentStatus.READY, "failed"), 120)
    version.refresh_from_db()
    assert version.status == DocumentStatus.READY, version.error_message
    assert version.chunks.filter(text__contains="two-year warranty").exists()

    client = Client()
    client.force_login(viewer)
    response = client.get(f"/documents/{result.document.pk}/file/")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == BODY  # type: ignore[attr-defined]
    assert response["Content-Length"] == str(len(BODY))
    assert response["Content-Security-Policy"] == "sandbox"
    assert response["X-Content-Type-Options"] == "nosniff"

    with local_copy(version.file) as path:
        assert path.read_bytes() == BODY
        assert path.suffix == ".txt"
    assert not path.exists()  # the temporary copy is gone

    from django.db import transaction

    with transaction.atomic():
        document_delete_for_good(result.document)
    assert _keys(s3_storage) == []


def test_html_original_from_object_storage_is_a_sandboxed_attachment(
    s3_storage: Any, make_org: Any, make_user: Any
) -> None:
    html = b"<html><script>fetch('/accounts/settings/api-keys/')</script></html>"
    org = make_org()
    viewer = make_user(org, role=Role.VIEWER)
    kb = knowledge_base_create(organization=org, name="Web", created_by=None)
    result = services.document_upload(
        knowledge_base=kb, upload=SimpleUploadedFile("page.html", html), filename="page.html", uploaded_by=None,
        enqueue=False,
    )  # fmt: skip
    stream, size = open_original(result.version.file)
    assert size == len(html)
    stream.close()
    client = Client()
    client.force_login(viewer)
    response = client.get(f"/documents/{result.document.pk}/file/")
    assert response["Content-Disposition"].startswith("attachment")
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Security-Policy"] == "sandbox"
    assert b"".join(response.streaming_content) == html  # type: ignore[attr-defined]
