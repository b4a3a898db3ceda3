"""Network-facing hardening: SSRF address forms, proxies, health endpoints, model providers, headers."""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, RequestFactory, override_settings
from rest_framework.test import APIClient

from accounts.client_ip import client_ip
from accounts.models import Role
from accounts.services import api_key_issue
from chat.exceptions import ChatError
from chat.services import chat_model_check, chatbot_create
from kb.exceptions import ParseFailure
from kb.models import DocumentVersion
from kb.pipeline.fetch import address_is_public, check_url_allowed

REPO = Path(__file__).resolve().parents[1]
SITE = "https://shop.example"


# --- SSRF --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://[::127.0.0.1]/",
        "http://[64:ff9b::7f00:1]/",
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",  # 169.254.169.254 through NAT64
        "http://[::ffff:127.0.0.1]/",
        "http://[2002:7f00:1::1]/",  # 6to4 of 127.0.0.1
        "http://[::10.0.0.1]/",
    ],
)
def test_ipv6_forms_of_private_ipv4_addresses_are_refused(url: str) -> None:
    with pytest.raises(ParseFailure) as refused:
        check_url_allowed(url)
    assert refused.value.code == "url_private"


def test_public_addresses_stay_allowed() -> None:
    for address in ("8.8.8.8", "2001:4860:4860::8888", "64:ff9b::808:808"):
        assert address_is_public(ipaddress.ip_address(address)), address


# --- client address behind proxies -------------------------------------------------------------


def _request(peer: str, forwarded: str | None = None) -> Any:
    extra: dict[str, Any] = {"REMOTE_ADDR": peer}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **extra)


def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() -> None:
    assert client_ip(_request("203.0.113.5", "1.2.3.4")) == "203.0.113.5"
    with override_settings(GROUNDWORK_TRUSTED_PROXIES=[ipaddress.ip_network("10.0.0.0/8")]):
        assert client_ip(_request("203.0.113.5", "1.2.3.4")) == "203.0.113.5"  # spoofed, direct
        assert client_ip(_request("10.0.0.2", "198.51.100.7")) == "198.51.100.7"
        # A client's own X-Forwarded-For is further left: the proxy's appended hop wins.
        assert client_ip(_request("10.0.0.2", "6.6.6.6, 198.51.100.7")) == "198.51.100.7"
        assert client_ip(_request("10.0.0.2", "198.51.100.7, 10.0.0.9")) == "198.51.100.7"  # two proxies
        assert client_ip(_request("10.0.0.2", "garbage")) == "10.0.0.2"
        assert client_ip(_request("10.0.0.2")) == "10.0.0.2"


@pytest.mark.django_db
@override_settings(
    GROUNDWORK_WIDGET_RATE_PER_MINUTE=2,
    GROUNDWORK_WIDGET_BOT_RATE_PER_MINUTE=1000,
    GROUNDWORK_TRUSTED_PROXIES=[ipaddress.ip_network("10.9.0.1/32")],
)
def test_widget_rate_limit_keys_on_the_client_behind_a_trusted_proxy(make_org) -> None:  # type: ignore[no-untyped-def]
    if 60 - time.time() % 60 < 5:  # don't start counting just before a window ends
        time.sleep(60 - time.time() % 60 + 0.1)
    bot = chatbot_create(
        organization=make_org(), name="Shop Bot", knowledge_bases=[], created_by=None, allowed_origins=[SITE]
    )
    client = APIClient()

    def start(forwarded: str) -> int:
        return client.post(
            f"/api/widget/{bot.widget_key}/conversations",
            {},
            format="json",
            HTTP_ORIGIN=SITE,
            REMOTE_ADDR="10.9.0.1",
            HTTP_X_FORWARDED_FOR=forwarded,
        ).status_code

    assert [start("198.51.100.1") for _ in range(3)] == [201, 201, 429]
    assert start("198.51.100.2") == 201  # another visitor behind the same proxy has their own budget


# --- health ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_public_healthz_is_liveness_only() -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readiness_is_for_operators_only(make_org, make_user) -> None:  # type: ignore[no-untyped-def]
    org = make_org()
    assert Client().get("/healthz/ready").status_code == 403
    member = Client()
    member.force_login(make_user(org, role=Role.OWNER))
    assert member.get("/healthz/ready").status_code == 403  # an organisation's owner is not an operator
    viewer_key = api_key_issue(organization=org, name="v", created_by=None, role=Role.VIEWER).raw_key
    assert Client().get("/healthz/ready", HTTP_AUTHORIZATION=f"Bearer {viewer_key}").status_code == 403
    admin_key = api_key_issue(organization=org, name="a", created_by=None, role=Role.ADMIN).raw_key
    ready = Client().get("/healthz/ready", HTTP_AUTHORIZATION=f"Bearer {admin_key}")
    assert ready.status_code in (200, 503) and {"database", "redis", "worker"} <= set(ready.json())


# --- chat model providers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "model", ["ollama/llama3", "ollama_chat/llama3", "openai_like/x", "hosted_vllm/x", "not-a-model-anyone-knows"]
)
def test_chat_models_outside_the_allowed_providers_are_refused(model: str) -> None:
    with pytest.raises(ChatError) as refused:
        chat_model_check(model)
    assert refused.value.code == "model_not_allowed"


@pytest.mark.parametrize("model", ["", "local/extractive", "openai/gpt-4o-mini", "gpt-4o-mini", "anthropic/claude-3"])
def test_chat_models_of_allowed_providers_pass(model: str) -> None:
    chat_model_check(model)


@pytest.mark.django_db
def test_api_and_operator_setting_decide_the_providers(make_org, api_client_for) -> None:  # type: ignore[no-untyped-def]
    client = api_client_for(make_org())
    body = {"name": "Bot", "knowledge_bases": [], "chat_model": "ollama/llama3"}
    refused = client.post("/api/v1/chatbots/", body, format="json")
    assert refused.status_code == 400 and refused.json()["error"] == "model_not_allowed"
    with override_settings(GROUNDWORK_ALLOWED_MODEL_PROVIDERS=["local", "ollama"]):
        assert client.post("/api/v1/chatbots/", body, format="json").status_code == 201


# --- uploads -----------------------------------------------------------------------------------


@pytest.mark.django_db
@override_settings(GROUNDWORK_MAX_UPLOAD_BYTES=64 * 1024)
def test_an_oversized_upload_stops_while_it_arrives(make_org, api_client_for, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from django.core.files.uploadhandler import MemoryFileUploadHandler, TemporaryFileUploadHandler

    passed_on = {"bytes": 0}
    for handler in (MemoryFileUploadHandler, TemporaryFileUploadHandler):
        original = handler.receive_data_chunk

        def counting(self, raw_data, start, _original=original):  # type: ignore[no-untyped-def]
            passed_on["bytes"] += len(raw_data)
            return _original(self, raw_data, start)

        monkeypatch.setattr(handler, "receive_data_chunk", counting)
    client = api_client_for(make_org())
    kb_id = client.post("/api/v1/knowledge-bases/", {"name": "Docs"}, format="json").json()["id"]
    big = SimpleUploadedFile("big.txt", b"x" * (4 * 1024 * 1024))
    response = client.post(f"/api/v1/knowledge-bases/{kb_id}/documents/", {"file": big}, format="multipart")
    assert response.status_code == 400
    assert passed_on["bytes"] <= 64 * 1024 + 64 * 1024  # at most one chunk past the limit, not 4 MB
    assert not DocumentVersion.objects.exists()


# --- headers and cookies ---------------------------------------------------------------------


@pytest.mark.django_db
def test_staff_pages_carry_a_csp_without_inline_script(make_org, make_user) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(make_user(make_org(), role=Role.OWNER))
    for path in ("/", "/accounts/team/", "/accounts/login/"):
        response = client.get(path, follow=True)
        csp = response["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
        assert "frame-ancestors 'self'" in csp
        html = response.content.decode()
        assert " onsubmit=" not in html and " onchange=" not in html and " onclick=" not in html


@pytest.mark.django_db
@override_settings(SECURE_HSTS_SECONDS=31536000, SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"))
def test_hsts_and_the_proxy_https_header_when_opted_in() -> None:
    secure = Client().get("/healthz", HTTP_X_FORWARDED_PROTO="https")
    assert secure["Strict-Transport-Security"].startswith("max-age=31536000")
    assert "Strict-Transport-Security" not in Client().get("/healthz")


def test_security_settings_are_opt_in_and_strict(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='config.settings'; from django.conf import settings;"
        "print(settings.SECURE_PROXY_SSL_HEADER, settings.SECURE_HSTS_SECONDS, settings.GROUNDWORK_TRUSTED_PROXIES)"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "GROUNDWORK_DATA_DIR": str(REPO / ".data" / "test"),
        "GROUNDWORK_TRUST_X_FORWARDED_PROTO": "true",
        "GROUNDWORK_HSTS_SECONDS": "600",
        "GROUNDWORK_TRUSTED_PROXIES": "10.0.0.0/8, ::1",
    }
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert "('HTTP_X_FORWARDED_PROTO', 'https') 600" in out.stdout and "10.0.0.0/8" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**env, "GROUNDWORK_TRUSTED_PROXIES": "not-an-ip"},
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "GROUNDWORK_TRUSTED_PROXIES" in bad.stderr


def test_compose_sends_cookies_over_https_only() -> None:
    compose = (REPO / "compose.yaml").read_text()
    assert "GROUNDWORK_SECURE_COOKIES: ${GROUNDWORK_SECURE_COOKIES:-true}" in compose
