"""Every staff view and API endpoint, for every role: allowed or refused as `accounts.permissions` says."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import ROLE_RANK, Role
from accounts.services import api_key_issue
from chat.models import Conversation, Message
from chat.services import chatbot_create
from kb.services import document_create_text, knowledge_base_create

ROLES = [Role.VIEWER, Role.EDITOR, Role.ADMIN, Role.OWNER]


@dataclass
class Route:
    method: str
    path: str
    minimum: str  # lowest role that may do it
    data: dict[str, Any] | None = None


@pytest.fixture
def world(make_org, make_user):  # type: ignore[no-untyped-def]
    org = make_org("Acme")
    users = {role: make_user(org, role=role, email=f"{role}@acme.test") for role in ROLES}
    kb = knowledge_base_create(organization=org, name="KB", created_by=users[Role.OWNER])
    doc = document_create_text(knowledge_base=kb, title="Note", text="Text", created_by=None, enqueue=False).document
    bot = chatbot_create(organization=org, name="Bot", knowledge_bases=[kb], created_by=None)
    conversation = Conversation.objects.create(organization=org, chatbot=bot, channel="api", title="Q")
    Message.objects.create(conversation=conversation, role="user", content="Q?")
    answer = Message.objects.create(conversation=conversation, role="assistant", content="A [1].")
    return {"org": org, "users": users, "kb": kb, "doc": doc, "bot": bot, "conv": conversation, "answer": answer}


def staff_routes(w: dict[str, Any]) -> list[Route]:
    kb, doc, bot, conv, answer = w["kb"].pk, w["doc"].pk, w["bot"].pk, w["conv"].pk, w["answer"].pk
    return [
        Route("get", "/", Role.VIEWER),
        Route("get", f"/knowledge-bases/{kb}/", Role.VIEWER),
        Route("get", f"/knowledge-bases/{kb}/documents/table/", Role.VIEWER),
        Route("get", f"/documents/{doc}/", Role.VIEWER),
        Route("get", "/chatbots/", Role.VIEWER),
        Route("get", f"/chatbots/{bot}/", Role.VIEWER),
        Route("get", f"/chatbots/{bot}/playground/", Role.VIEWER),
        Route("get", f"/chatbots/{bot}/gaps/", Role.VIEWER),
        Route("post", f"/chatbots/{bot}/playground/retrieval/", Role.VIEWER, {"message": "text"}),
        Route("get", "/conversations/", Role.VIEWER),
        Route("get", f"/conversations/{conv}/", Role.VIEWER),
        Route("get", "/analytics/", Role.VIEWER),
        Route("get", "/accounts/team/", Role.VIEWER),
        Route("get", f"/documents/{doc}/source/?quote=Text", Role.VIEWER),
        Route("get", "/first-run/", Role.VIEWER),
        Route("get", f"/chatbots/{bot}/widget-demo/", Role.VIEWER),
        Route("post", "/chatbots/model-check/", Role.EDITOR, {"chat_model": "local/extractive"}),
        Route("get", "/knowledge-bases/new/", Role.EDITOR),
        Route("post", f"/knowledge-bases/{kb}/add/text/", Role.EDITOR, {"title": "t", "text": "x"}),
        Route("post", f"/documents/{doc}/disable/", Role.EDITOR),
        Route("get", "/chatbots/new/", Role.EDITOR),
        Route("post", f"/chatbots/{bot}/", Role.EDITOR, {"name": "Bot"}),
        Route("post", f"/conversations/{conv}/review/", Role.EDITOR, {"reviewed": "1"}),
        Route("post", f"/conversations/{conv}/correct/", Role.EDITOR, {"message_id": answer, "answer": "Right."}),
        Route("post", "/accounts/team/invite/", Role.ADMIN, {"email": "new@acme.test", "role": "viewer"}),
        Route("get", "/accounts/settings/api-keys/", Role.ADMIN),
        Route("get", "/accounts/settings/", Role.ADMIN),
        Route("get", "/accounts/settings/audit/", Role.ADMIN),
    ]


def api_routes(w: dict[str, Any]) -> list[Route]:
    kb, doc, bot, conv, answer = w["kb"].pk, w["doc"].pk, w["bot"].pk, w["conv"].pk, w["answer"].pk
    return [
        Route("get", "/api/v1/knowledge-bases/", Role.VIEWER),
        Route("get", f"/api/v1/knowledge-bases/{kb}/", Role.VIEWER),
        Route("get", f"/api/v1/knowledge-bases/{kb}/documents/", Role.VIEWER),
        Route("get", f"/api/v1/documents/{doc}/", Role.VIEWER),
        Route("post", f"/api/v1/knowledge-bases/{kb}/search/", Role.VIEWER, {"query": "text"}),
        Route("get", "/api/v1/chatbots/", Role.VIEWER),
        Route("get", f"/api/v1/chatbots/{bot}/", Role.VIEWER),
        Route("get", f"/api/v1/chatbots/{bot}/gaps/", Role.VIEWER),
        Route("get", "/api/v1/conversations/", Role.VIEWER),
        Route("get", f"/api/v1/conversations/{conv}/", Role.VIEWER),
        Route("post", f"/api/v1/messages/{answer}/feedback/", Role.VIEWER, {"value": "up"}),
        Route("post", "/api/v1/knowledge-bases/", Role.EDITOR, {"name": "Another"}),
        Route("post", f"/api/v1/knowledge-bases/{kb}/texts/", Role.EDITOR, {"title": "t", "text": "x"}),
        Route("post", f"/api/v1/knowledge-bases/{kb}/qa/", Role.EDITOR, {"question": "q?", "answer": "a"}),
        Route("post", "/api/v1/chatbots/", Role.EDITOR, {"name": "B2", "knowledge_bases": [kb]}),
        Route("patch", f"/api/v1/chatbots/{bot}/", Role.EDITOR, {"name": "Renamed"}),
        Route("patch", f"/api/v1/conversations/{conv}/", Role.EDITOR, {"reviewed": True}),
        Route("post", f"/api/v1/messages/{answer}/correction/", Role.EDITOR, {"answer": "Right."}),
    ]


def _allowed(role: str, minimum: str) -> bool:
    return ROLE_RANK[role] >= ROLE_RANK[minimum]


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_every_staff_view_enforces_the_role(world, role) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(world["users"][role])
    for route in staff_routes(world):
        response = getattr(client, route.method)(route.path, route.data or {})
        if _allowed(role, route.minimum):
            assert response.status_code in (200, 302), f"{role} {route.method} {route.path}: {response.status_code}"
        else:
            assert response.status_code == 403, f"{role} {route.method} {route.path}: {response.status_code}"


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_every_api_endpoint_enforces_the_role(world, role) -> None:  # type: ignore[no-untyped-def]
    client = APIClient()
    key = api_key_issue(organization=world["org"], name=role, created_by=None, role=role).raw_key
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    for route in api_routes(world):
        response = getattr(client, route.method)(route.path, route.data, format="json")
        if _allowed(role, route.minimum):
            assert response.status_code in (200, 201), f"{role} {route.method} {route.path}: {response.content!r}"
        else:
            assert response.status_code == 403, f"{role} {route.method} {route.path}: {response.status_code}"


@pytest.mark.django_db
def test_owner_cannot_be_removed_by_an_admin_and_admins_cannot_make_owners(world) -> None:  # type: ignore[no-untyped-def]
    from accounts.models import Membership

    admin = Client()
    admin.force_login(world["users"][Role.ADMIN])
    owner_membership = Membership.objects.get(user=world["users"][Role.OWNER])
    admin.post("/accounts/team/remove/", {"membership": owner_membership.pk})
    assert Membership.objects.filter(pk=owner_membership.pk).exists()
    viewer_membership = Membership.objects.get(user=world["users"][Role.VIEWER])
    admin.post("/accounts/team/role/", {"membership": viewer_membership.pk, "role": "owner"})
    viewer_membership.refresh_from_db()
    assert viewer_membership.role == Role.VIEWER
    admin.post("/accounts/team/role/", {"membership": viewer_membership.pk, "role": "editor"})
    viewer_membership.refresh_from_db()
    assert viewer_membership.role == Role.EDITOR


@pytest.mark.django_db
def test_invitation_email_link_adds_the_member_with_the_role(world, mailoutbox) -> None:  # type: ignore[no-untyped-def]
    from accounts.models import Membership

    admin = Client()
    admin.force_login(world["users"][Role.ADMIN])
    admin.post("/accounts/team/invite/", {"email": "newbie@acme.test", "role": "editor"})
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["newbie@acme.test"]
    link = re.search(r"https?://\S+/accounts/invitations/\S+/", mailoutbox[0].body)
    assert link is not None
    path = "/" + link.group(0).split("/", 3)[3]
    newcomer = Client()
    response = newcomer.post(path, {"new_password1": "A-strong-pass-123", "new_password2": "A-strong-pass-123"})
    assert response.status_code == 302
    membership = Membership.objects.get(user__email="newbie@acme.test", organization=world["org"])
    assert membership.role == Role.EDITOR
    assert newcomer.get("/").status_code == 200
    assert newcomer.post(path).status_code == 404  # used once only


@pytest.mark.django_db
def test_api_key_page_shows_a_new_key_once_and_actions_are_audited(world) -> None:  # type: ignore[no-untyped-def]
    from accounts.models import ApiKey, AuditEvent

    admin = Client()
    admin.force_login(world["users"][Role.ADMIN])
    page = admin.post("/accounts/settings/api-keys/", {"name": "Website", "role": "viewer"}).content.decode()
    key = ApiKey.objects.get(name="Website")
    raw = re.search(r'id="new-key"[^>]*>(gw_[^<]+)<', page)
    assert raw is not None and raw.group(1).startswith(f"gw_{key.prefix}_")
    assert raw.group(1) not in admin.get("/accounts/settings/api-keys/").content.decode()
    admin.post("/accounts/settings/api-keys/", {"revoke": key.pk})
    key.refresh_from_db()
    assert key.revoked_at is not None
    actions = list(AuditEvent.objects.filter(organization=world["org"]).values_list("action", flat=True))
    assert "api_key.create" in actions and "api_key.revoke" in actions
