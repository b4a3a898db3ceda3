"""Bad input gets a 4xx with a reason, never a 500 (issue 11: the unhandled errors found by fuzzing)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core import mail
from django.test import Client, override_settings
from rest_framework.test import APIClient

from accounts.models import ApiKey, Invitation, Membership, Organization, Role
from chat.models import Channel, Chatbot, Conversation, Message
from chat.models import Role as MessageRole
from chat.services import chatbot_create, conversation_start

pytestmark = pytest.mark.django_db

SITE = "https://shop.example"
DEEP = "[" * 100_000


@pytest.fixture
def org(make_org) -> Organization:  # type: ignore[no-untyped-def]
    return make_org("Shop")


@pytest.fixture
def api(org, api_client_for) -> APIClient:  # type: ignore[no-untyped-def]
    return api_client_for(org)


@pytest.fixture
def bot(org: Organization) -> Chatbot:
    return chatbot_create(
        organization=org,
        name="Shop Bot",
        knowledge_bases=[],
        created_by=None,
        allowed_origins=[SITE],
        lead_capture=True,
    )


@pytest.fixture
def staff(org, make_user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(make_user(org, role=Role.OWNER))
    return client


def _raw(client: APIClient, url: str, body: str, **extra: Any) -> Any:
    return client.post(url, body, content_type="application/json", **extra)


# --- JSON bodies -------------------------------------------------------------------------------


def test_deeply_nested_json_is_a_400_everywhere(api: APIClient, bot: Chatbot) -> None:
    for url in ("/api/v1/knowledge-bases/", "/v1/chat/completions", f"/api/v1/chatbots/{bot.pk}/chat/"):
        response = _raw(api, url, DEEP)
        assert response.status_code == 400, (url, response.status_code)
    widget = _raw(APIClient(), f"/api/widget/{bot.widget_key}/chat", DEEP, HTTP_ORIGIN=SITE)
    assert widget.status_code == 400


def test_moderately_nested_json_stops_at_the_parser(api: APIClient, bot: Chatbot) -> None:
    conversation = conversation_start(chatbot=bot, channel=Channel.API)
    note = "[" * 900 + "]" * 900  # parses, but would blow the stack when stored or rendered
    response = api.patch(
        f"/api/v1/conversations/{conversation.pk}/", f'{{"internal_note": {note}}}', content_type="application/json"
    )
    assert response.status_code == 400


@pytest.mark.parametrize("text", ["a\x00b", "\ud800", "ok \udfff"])
def test_nul_and_lone_surrogates_are_rejected(api: APIClient, bot: Chatbot, text: str) -> None:
    # json.dumps escapes them (\\u0000, \\ud800) as a client would send them.
    body = json.dumps({"model": bot.slug, "messages": [{"role": "user", "content": text}]})
    assert _raw(api, "/v1/chat/completions", body).status_code == 400
    assert _raw(api, "/api/v1/knowledge-bases/", json.dumps({"name": text})).status_code == 400
    assert _raw(api, "/api/v1/knowledge-bases/", json.dumps({text: "Support"})).status_code == 400


def test_openai_content_parts_and_conversation_id_of_the_wrong_type(api: APIClient, bot: Chatbot) -> None:
    parts = {"model": bot.slug, "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}
    assert api.post("/v1/chat/completions", parts, format="json").status_code == 400
    for bad in ("abc", 1.5, [1], {"a": 1}, 10**30):
        body = {"model": bot.slug, "messages": [{"role": "user", "content": "hi"}], "conversation_id": bad}
        response = api.post("/v1/chat/completions", body, format="json")
        assert response.status_code in (400, 404), (bad, response.status_code)


def test_conversation_review_fields_are_type_checked(api: APIClient, bot: Chatbot) -> None:
    conversation = conversation_start(chatbot=bot, channel=Channel.API)
    url = f"/api/v1/conversations/{conversation.pk}/"
    assert api.patch(url, {"internal_note": {}}, format="json").status_code == 400
    assert api.patch(url, {"internal_note": 5}, format="json").status_code == 400
    assert api.patch(url, {"reviewed": "false"}, format="json").status_code == 400
    assert api.patch(url, {"reviewed": 1}, format="json").status_code == 400
    conversation.refresh_from_db()
    assert conversation.reviewed is False
    assert api.patch(url, {"reviewed": True, "internal_note": "ok"}, format="json").status_code == 200
    conversation.refresh_from_db()
    assert conversation.reviewed is True and conversation.internal_note == "ok"


def test_renaming_a_knowledge_base_to_a_taken_name_is_a_400(api: APIClient) -> None:
    api.post("/api/v1/knowledge-bases/", {"name": "Support"}, format="json")
    other = api.post("/api/v1/knowledge-bases/", {"name": "Sales"}, format="json").json()["id"]
    for name in ("Support", "support"):
        response = api.patch(f"/api/v1/knowledge-bases/{other}/", {"name": name}, format="json")
        assert response.status_code == 400 and response.json()["error"] == "name_taken"
    assert api.patch(f"/api/v1/knowledge-bases/{other}/", {"name": "Sales"}, format="json").status_code == 200


# --- found by the API fuzz tests (tests/test_fuzz_api_schema.py) ------------------------------


@pytest.mark.parametrize("model", ["no-such-model", "\x84"])
def test_creating_a_knowledge_base_with_an_unusable_embedding_model_is_a_400(api: APIClient, model: str) -> None:
    response = api.post("/api/v1/knowledge-bases/", {"name": "Docs", "embedding_model": model}, format="json")
    assert response.status_code == 400 and response.json()["error"] == "embedding_model_unusable"
    assert not api.get("/api/v1/knowledge-bases/").json()


@pytest.mark.parametrize(
    "url", ["/api/v1/knowledge-bases/abc/", "/api/v1/documents/null%2Cnull/", "/api/v1/nothing-here/", "/v1/models-x"]
)
def test_unmatched_api_urls_answer_json_404(api: APIClient, url: str) -> None:
    response = api.get(url)
    assert response.status_code == 404 and response["Content-Type"].startswith("application/json")
    assert response.json()["error"] == "not_found"
    # Pages outside the API keep the HTML error page.
    assert Client().get("/no-such-page/")["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("body", ["\x00", "{not json", DEEP])
def test_openai_endpoint_answers_unreadable_json_in_openai_error_shape(api: APIClient, body: str) -> None:
    response = _raw(api, "/v1/chat/completions", body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]


def test_openai_endpoint_answers_a_bad_key_in_openai_error_shape() -> None:
    response = APIClient().post(
        "/v1/chat/completions", {"model": "x", "messages": []}, format="json", HTTP_AUTHORIZATION="Bearer gw_wrong"
    )
    assert response.status_code in (401, 403)
    assert response.json()["error"]["type"] == "authentication_error"


# --- widget ----------------------------------------------------------------------------------


def _widget_conversation(bot: Chatbot) -> tuple[Conversation, str, Message]:
    started = APIClient().post(f"/api/widget/{bot.widget_key}/conversations", {}, format="json", HTTP_ORIGIN=SITE)
    body = started.json()
    conversation = Conversation.objects.get(pk=body["conversation_id"])
    answer = Message.objects.create(conversation=conversation, role=MessageRole.ASSISTANT, content="No.")
    return conversation, body["visitor_token"], answer


def test_widget_lead_and_feedback_with_nul_are_400(bot: Chatbot) -> None:
    conversation, token, answer = _widget_conversation(bot)
    client = APIClient()
    lead = client.post(
        f"/api/widget/{bot.widget_key}/lead",
        {"conversation_id": conversation.pk, "visitor_token": token, "email": "a@b.test", "name": "A\x00"},
        format="json",
        HTTP_ORIGIN=SITE,
    )
    assert lead.status_code == 400
    vote = client.post(
        f"/api/widget/{bot.widget_key}/messages/{answer.pk}/feedback",
        {"value": "down", "comment": "bad\x00", "visitor_token": token},
        format="json",
        HTTP_ORIGIN=SITE,
    )
    assert vote.status_code == 400


def test_widget_lead_with_an_overlong_email_is_400(bot: Chatbot) -> None:
    conversation, token, _ = _widget_conversation(bot)
    response = APIClient().post(
        f"/api/widget/{bot.widget_key}/lead",
        {"conversation_id": conversation.pk, "visitor_token": token, "email": "a" * 290 + "@example.com"},
        format="json",
        HTTP_ORIGIN=SITE,
    )
    assert response.status_code == 400 and response.json()["error"] == "bad_email"


# --- staff pages ------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["²", "1" * 20, "-3", "abc", "0"])
def test_bad_retention_is_refused_with_a_message(staff: Client, org: Organization, raw: str) -> None:
    org.conversation_retention_days = 30
    org.save()
    response = staff.post("/accounts/settings/", {"retention": raw}, follow=True)
    assert response.status_code == 200
    assert "whole number of days" in response.content.decode()
    org.refresh_from_db()
    assert org.conversation_retention_days == 30


def test_retention_accepts_days_and_blank_for_forever(staff: Client, org: Organization) -> None:
    staff.post("/accounts/settings/", {"retention": "90"})
    org.refresh_from_db()
    assert org.conversation_retention_days == 90
    staff.post("/accounts/settings/", {"retention": ""})
    org.refresh_from_db()
    assert org.conversation_retention_days is None


def test_non_numeric_ids_in_staff_forms_are_404(staff: Client, org: Organization) -> None:
    assert staff.post("/accounts/team/remove/", {"membership": "abc"}).status_code == 404
    assert staff.post("/accounts/team/role/", {"membership": "1e9", "role": "viewer"}).status_code == 404
    assert staff.post("/accounts/settings/api-keys/", {"revoke": "abc"}).status_code == 404
    assert staff.post("/accounts/settings/api-keys/", {"revoke": "9" * 30}).status_code == 404
    assert Membership.objects.filter(organization=org).count() == 1 and not ApiKey.objects.exists()


@pytest.mark.parametrize(
    "email", ["", "not-an-email", "ann@example.com\nBcc: all@example.com", "a" * 290 + "@example.com"]
)
def test_bad_invitation_addresses_are_refused_and_leave_nothing(staff: Client, email: str) -> None:
    response = staff.post("/accounts/team/invite/", {"email": email, "role": "viewer"}, follow=True)
    assert response.status_code == 200
    assert "valid e-mail address" in response.content.decode()
    assert not Invitation.objects.exists() and not mail.outbox


class _BrokenBackend:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def send_messages(self, messages: Any) -> int:
        raise ConnectionRefusedError("SMTP server down")


def test_invitation_row_does_not_stay_when_the_mail_cannot_be_sent(staff: Client) -> None:
    with override_settings(EMAIL_BACKEND=f"{__name__}._BrokenBackend"):
        response = staff.post("/accounts/team/invite/", {"email": "ann@example.com", "role": "viewer"}, follow=True)
    assert response.status_code == 200
    assert "could not be sent" in response.content.decode()
    assert not Invitation.objects.exists()


# The export reads in a worker thread (its own connection): the rows must be committed.
@pytest.mark.django_db(transaction=True)
def test_csv_export_neutralises_formulas(api: APIClient, bot: Chatbot) -> None:
    import csv
    import io

    from tests.conftest import read_streaming

    conversation = conversation_start(chatbot=bot, channel=Channel.WIDGET)
    hostile = ['=HYPERLINK("https://evil.example","x")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\r=1", "plain"]
    for text in hostile:
        Message.objects.create(conversation=conversation, role=MessageRole.USER, content=text)
    response = api.get("/api/v1/conversations/export/?format=csv")
    rows = list(csv.DictReader(io.StringIO(read_streaming(response).decode())))
    contents = [r["content"] for r in rows]
    assert contents == ["'" + t for t in hostile[:-1]] + ["plain"]


def test_widget_feedback_does_not_tell_unknown_messages_from_foreign_ones(bot: Chatbot) -> None:
    _, token, _ = _widget_conversation(bot)
    _, _, foreign_answer = _widget_conversation(bot)
    client = APIClient()

    def vote(message_id: int) -> Any:
        return client.post(
            f"/api/widget/{bot.widget_key}/messages/{message_id}/feedback",
            {"value": "down", "visitor_token": token},
            format="json",
            HTTP_ORIGIN=SITE,
        )

    unknown, not_yours = vote(foreign_answer.pk + 1000), vote(foreign_answer.pk)
    assert unknown.status_code == not_yours.status_code == 404
    assert unknown.json() == not_yours.json()
