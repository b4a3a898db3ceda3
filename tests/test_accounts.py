from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import ApiKey, Membership, Organization, Role
from accounts.services import api_key_revoke

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.django_db
def test_user_signs_in_with_email_and_sees_the_dashboard(make_org, make_user) -> None:  # type: ignore[no-untyped-def]
    org = make_org("Acme")
    make_user(org, email="ana@acme.test")
    client = Client()
    response = client.post("/accounts/login/", {"username": "ana@acme.test", "password": "pw-Secret-123"})
    assert response.status_code == 302
    page = client.get("/")
    assert page.status_code == 200
    assert "Knowledge bases" in page.content.decode()
    assert "Acme" in page.content.decode()


@pytest.mark.django_db
def test_dashboard_requires_sign_in() -> None:
    response = Client().get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.django_db
def test_organisation_switcher_only_switches_to_own_organisations(make_org, make_user) -> None:  # type: ignore[no-untyped-def]
    first, second, foreign = make_org("Alpha"), make_org("Beta"), make_org("Foreign")
    user = make_user(first)
    Membership.objects.create(user=user, organization=second, role=Role.VIEWER)
    client = Client()
    client.force_login(user)
    page = client.get("/").content.decode()
    assert 'id="org-switch"' in page  # shown because the user has two organisations

    client.post("/accounts/organization/switch/", {"organization": second.pk, "next": "/"})
    assert client.session["organization_id"] == second.pk
    client.post("/accounts/organization/switch/", {"organization": foreign.pk, "next": "/"})
    assert client.session["organization_id"] == second.pk  # refused: not a member


@pytest.mark.django_db
def test_password_change(make_org, make_user) -> None:  # type: ignore[no-untyped-def]
    user = make_user(make_org())
    client = Client()
    client.force_login(user)
    response = client.post(
        "/accounts/password/",
        {"old_password": "pw-Secret-123", "new_password1": "Another-pass-456", "new_password2": "Another-pass-456"},
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password("Another-pass-456")


@pytest.mark.django_db
def test_create_api_key_command_creates_org_and_user_and_prints_only_the_key(capsys) -> None:  # type: ignore[no-untyped-def]
    call_command("accounts_create_api_key", "--org", "newco", "--email", "ops@newco.test")
    key = capsys.readouterr().out.strip()
    assert key.startswith("gw_") and "\n" not in key
    org = Organization.objects.get(slug="newco")
    assert org.memberships.get(user__email="ops@newco.test").role == Role.OWNER
    stored = ApiKey.objects.get(organization=org)
    assert key not in (stored.key_hash, stored.prefix)  # only a hash is stored

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get("/api/v1/knowledge-bases/").status_code == 200


@pytest.mark.django_db
def test_api_rejects_missing_wrong_and_revoked_keys(make_org, api_client_for) -> None:  # type: ignore[no-untyped-def]
    assert APIClient().get("/api/v1/knowledge-bases/").status_code == 401
    wrong = APIClient()
    wrong.credentials(HTTP_AUTHORIZATION="Bearer gw_nothing_here")
    assert wrong.get("/api/v1/knowledge-bases/").status_code == 401

    org = make_org()
    client = api_client_for(org)
    assert client.get("/api/v1/knowledge-bases/").status_code == 200
    api_key_revoke(api_key=ApiKey.objects.get(organization=org))
    response = client.get("/api/v1/knowledge-bases/")
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


@pytest.mark.django_db
def test_viewer_key_cannot_create_knowledge_bases(make_org, api_client_for) -> None:  # type: ignore[no-untyped-def]
    client = api_client_for(make_org(), role=Role.VIEWER)
    response = client.post("/api/v1/knowledge-bases/", {"name": "Nope"}, format="json")
    assert response.status_code == 403
    assert client.get("/api/v1/knowledge-bases/").status_code == 200


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("GROUNDWORK_MAX_UPLOAD_MB", "lots", "GROUNDWORK_MAX_UPLOAD_MB='lots' is not a whole number"),
        # Read by the local models at first use, yet a typo must stop start-up, not the first answer.
        ("GROUNDWORK_LOCAL_ANSWER_SLOTS", "two", "GROUNDWORK_LOCAL_ANSWER_SLOTS='two' is not a whole number"),
        ("GROUNDWORK_EMBED_THREADS", "0", "GROUNDWORK_EMBED_THREADS=0 is below the minimum 1"),
    ],
)
def test_bad_setting_stops_start_up_with_a_clear_message(name: str, value: str, message: str) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO,
        env={**__import__("os").environ, name: value},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.django_db
def test_openapi_schema_documents_the_api_and_its_bearer_auth(make_org, api_client_for) -> None:  # type: ignore[no-untyped-def]
    response = api_client_for(make_org()).get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    for path in ("/api/v1/knowledge-bases/", "/api/v1/knowledge-bases/{kb_id}/documents/", "/api/v1/chatbots/"):
        assert path in schema["paths"], path
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
