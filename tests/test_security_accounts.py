"""Accounts hardening: keys of removed members, login throttling, the demo user's password."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from accounts import login_throttle
from accounts.models import ApiKey, Membership, Role, User
from accounts.services import api_key_issue, membership_remove

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_hasher(settings) -> None:  # type: ignore[no-untyped-def]
    # Dozens of sign-ins here; the production hasher's cost would dominate the run.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _key_client(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


def test_api_key_is_revoked_when_its_creator_is_removed(make_org, make_user) -> None:  # type: ignore[no-untyped-def]
    org = make_org()
    make_user(org, role=Role.OWNER)
    admin = make_user(org, role=Role.ADMIN)
    issued = api_key_issue(organization=org, name="ci", created_by=admin)
    client = _key_client(issued.raw_key)
    assert client.get("/api/v1/knowledge-bases/").status_code == 200

    membership_remove(actor_role=Role.OWNER, actor=None, membership=Membership.objects.get(user=admin))
    assert client.get("/api/v1/knowledge-bases/").status_code == 401
    assert ApiKey.objects.get(pk=issued.api_key.pk).revoked_at is not None


def test_api_key_stops_working_when_its_creator_left_by_any_path(make_org, make_user) -> None:  # type: ignore[no-untyped-def]
    org = make_org()
    admin = make_user(org, role=Role.ADMIN)
    issued = api_key_issue(organization=org, name="ci", created_by=admin)
    Membership.objects.filter(user=admin).delete()  # e.g. removed in the Django admin
    assert _key_client(issued.raw_key).get("/api/v1/knowledge-bases/").status_code == 401

    deactivated = make_user(org, role=Role.ADMIN)
    other = api_key_issue(organization=org, name="ci2", created_by=deactivated)
    User.objects.filter(pk=deactivated.pk).update(is_active=False)
    assert _key_client(other.raw_key).get("/api/v1/knowledge-bases/").status_code == 401


def test_keys_without_a_creator_keep_working(make_org, api_client_for) -> None:  # type: ignore[no-untyped-def]
    assert api_client_for(make_org()).get("/api/v1/knowledge-bases/").status_code == 200


def _forget_failures() -> None:
    client = login_throttle.redis_client()
    keys = list(client.scan_iter(f"{login_throttle.KEY_PREFIX}*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def clean_throttle() -> Iterator[None]:
    _forget_failures()
    yield
    _forget_failures()  # the test client's addresses must not stay locked for later tests


def _login(email: str, password: str, ip: str = "198.51.100.7") -> Client:
    client = Client(REMOTE_ADDR=ip)
    client.post("/accounts/login/", {"username": email, "password": password})
    return client


def _signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_login_locks_the_account_after_ten_failures(make_org, make_user, clean_throttle) -> None:  # type: ignore[no-untyped-def]
    make_user(make_org(), email="ana@acme.test")
    for n in range(login_throttle.ACCOUNT_FAILURES):
        assert not _signed_in(_login("ana@acme.test", f"wrong-{n}", ip=f"198.51.100.{n + 1}"))
    client = Client(REMOTE_ADDR="203.0.113.9")
    response = client.post("/accounts/login/", {"username": "ANA@acme.test", "password": "pw-Secret-123"})
    assert response.status_code == 200 and not _signed_in(client)
    assert "Too many failed sign-in attempts" in response.content.decode()
    # The Django admin's sign-in goes through the same backend.
    admin = Client(REMOTE_ADDR="203.0.113.10")
    admin.post("/admin/login/", {"username": "ana@acme.test", "password": "pw-Secret-123"})
    assert not _signed_in(admin)


def test_login_locks_an_address_after_thirty_failures(make_org, make_user, clean_throttle) -> None:  # type: ignore[no-untyped-def]
    make_user(make_org(), email="bo@acme.test")
    for n in range(login_throttle.IP_FAILURES):
        _login(f"nobody{n}@acme.test", "wrong", ip="198.51.100.50")
    assert not _signed_in(_login("bo@acme.test", "pw-Secret-123", ip="198.51.100.50"))
    assert _signed_in(_login("bo@acme.test", "pw-Secret-123", ip="198.51.100.51"))


def test_a_successful_login_clears_the_account_failures(make_org, make_user, clean_throttle) -> None:  # type: ignore[no-untyped-def]
    make_user(make_org(), email="cy@acme.test")
    for _ in range(login_throttle.ACCOUNT_FAILURES - 1):
        _login("cy@acme.test", "wrong")
    assert _signed_in(_login("cy@acme.test", "pw-Secret-123"))
    for _ in range(login_throttle.ACCOUNT_FAILURES - 1):
        _login("cy@acme.test", "wrong", ip="198.51.100.99")
    assert _signed_in(_login("cy@acme.test", "pw-Secret-123", ip="198.51.100.98"))


def test_demo_user_gets_the_published_password_only_on_loopback(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("GROUNDWORK_DEMO_PASSWORD", raising=False)
    monkeypatch.setenv("HOST", "127.0.0.1")
    call_command("kb_seed_demo")
    user = User.objects.get(email="admin@example.com")
    assert user.check_password("groundwork-demo")

    monkeypatch.setenv("HOST", "0.0.0.0")  # noqa: S104 - what an operator sets to expose it
    call_command("kb_seed_demo")
    user.refresh_from_db()
    assert not user.check_password("groundwork-demo")
    out = capsys.readouterr().out
    printed = [line.split()[-1] for line in out.splitlines() if line.strip().startswith("Password")][-1]
    assert len(printed) >= 16 and user.check_password(printed)

    call_command("kb_seed_demo")  # printed once: later runs do not show it again
    assert printed not in capsys.readouterr().out


def test_demo_user_on_a_public_address_never_gets_the_published_password(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("GROUNDWORK_DEMO_PASSWORD", raising=False)
    monkeypatch.setenv("HOST", "::")
    call_command("kb_seed_demo")
    assert not User.objects.get(email="admin@example.com").check_password("groundwork-demo")
    assert "groundwork-demo" not in capsys.readouterr().out


def _invite(org, email: str) -> str:  # type: ignore[no-untyped-def]
    from accounts.services import invitation_create

    issued = invitation_create(
        organization=org, email=email, role=Role.EDITOR, invited_by=None, accept_url_base="http://testserver"
    )
    return f"/accounts/invitations/{issued.token}/"


def test_opening_an_invitation_link_creates_no_user(make_org) -> None:  # type: ignore[no-untyped-def]
    org = make_org()
    path = _invite(org, "new@acme.test")
    page = Client().get(path)
    assert page.status_code == 200 and "Choose a password" in page.content.decode()
    assert not User.objects.filter(email="new@acme.test").exists()
    joined = Client().post(path, {"new_password1": "A-strong-pass-123", "new_password2": "A-strong-pass-123"})
    assert joined.status_code == 302
    assert Membership.objects.get(user__email="new@acme.test", organization=org).role == Role.EDITOR


def test_an_existing_account_joins_only_when_signed_in(make_org, make_user) -> None:  # type: ignore[no-untyped-def]
    org, other = make_org("Acme"), make_org("Other")
    existing = make_user(other, email="ann@acme.test")
    path = _invite(org, "ann@acme.test")
    anonymous = Client()
    assert "Sign in to accept" in anonymous.get(path).content.decode()
    response = anonymous.post(path)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert not Membership.objects.filter(user=existing, organization=org).exists()
    # A password field posted anonymously sets nothing either.
    anonymous.post(path, {"new_password1": "Hijack-pass-123", "new_password2": "Hijack-pass-123"})
    existing.refresh_from_db()
    assert existing.check_password("pw-Secret-123")
    assert not Membership.objects.filter(user=existing, organization=org).exists()

    signed_in = Client()
    signed_in.force_login(existing)
    assert signed_in.post(path).status_code == 302
    assert Membership.objects.filter(user=existing, organization=org).exists()
