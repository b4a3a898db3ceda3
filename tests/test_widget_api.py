"""The public widget API: origins, visitor tokens, rate limits, switched-off bots, feedback and leads."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest
from django.test import Client, override_settings
from rest_framework.test import APIClient

from accounts.models import Organization
from chat.models import Chatbot, Conversation, Message, Role
from chat.services import chatbot_create, chatbot_update
from chat.widget import frame_content_security_policy, normalize_origin
from tests.conftest import read_streaming

SITE = "https://shop.example"
EVIL = "https://evil.example"
APP = "http://testserver"  # the test client's own origin


def _bot(organization: Organization, **settings: Any) -> Chatbot:
    settings.setdefault("allowed_origins", [SITE])
    settings.setdefault("lead_capture", True)
    return chatbot_create(organization=organization, name="Shop Bot", knowledge_bases=[], created_by=None, **settings)


@pytest.fixture
def bot(make_org: Any) -> Chatbot:
    return _bot(make_org("Shop"))


def _url(bot: Chatbot, rest: str) -> str:
    return f"/api/widget/{bot.widget_key}/{rest}"


def _start(client: APIClient, bot: Chatbot, origin: str = SITE, **extra: Any) -> dict[str, Any]:
    response = client.post(
        _url(bot, "conversations"), {"visitor_id": "visitor-0001"}, format="json", HTTP_ORIGIN=origin, **extra
    )
    assert response.status_code == 201, response.content
    return response.json()


def _read_stream(response: Any) -> str:
    return read_streaming(response).decode()


def _fresh_window() -> None:
    """Rate windows are per minute: don't start a counting test just before one ends."""
    left = 60 - time.time() % 60
    if left < 5:
        time.sleep(left + 0.1)


def test_config_is_served_to_an_allowed_origin_with_cors(bot: Chatbot) -> None:
    chatbot_update(
        chatbot=bot,
        widget_title="Ask Shop",
        theme_color="#117a3d",
        suggested_questions=["Returns?"],
        widget_position="left",
    )
    response = APIClient().get(_url(bot, "config"), HTTP_ORIGIN=SITE)
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == SITE
    assert "Access-Control-Allow-Credentials" not in response
    assert "Origin" in response["Vary"]
    body = response.json()
    assert body["title"] == "Ask Shop" and body["avatar"] == "A"
    assert body["theme_color"] == "#117a3d" and body["position"] == "left"
    assert body["suggested_questions"] == ["Returns?"] and body["lead_capture"] is True
    assert body["welcome_message"] and body["max_message_chars"] == 1000
    assert "widget_key" not in body and "system_prompt" not in body


def test_other_origins_are_refused_with_a_clear_message(bot: Chatbot) -> None:
    client = APIClient()
    for response in (
        client.get(_url(bot, "config"), HTTP_ORIGIN=EVIL),
        client.post(_url(bot, "conversations"), {}, format="json", HTTP_ORIGIN=EVIL),
        client.post(_url(bot, "chat"), {"message": "hi"}, format="json", HTTP_ORIGIN=EVIL),
        client.options(_url(bot, "chat"), HTTP_ORIGIN=EVIL, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"),
    ):
        assert response.status_code == 403
        assert response.json()["error"] == "origin_not_allowed"
        assert EVIL in response.json()["detail"]
        assert "Access-Control-Allow-Origin" not in response
    assert not Conversation.objects.filter(chatbot=bot).exists()


def test_preflight_is_answered_for_allowed_origins(bot: Chatbot) -> None:
    response = APIClient().options(
        _url(bot, "chat"),
        HTTP_ORIGIN=SITE,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type",
    )
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == SITE
    assert "POST" in response["Access-Control-Allow-Methods"]
    assert "Content-Type" in response["Access-Control-Allow-Headers"]


def test_empty_allowed_origins_allow_only_the_apps_own_origin(make_org: Any) -> None:
    bot = _bot(make_org(), allowed_origins=[])
    client = APIClient()
    assert client.get(_url(bot, "config"), HTTP_ORIGIN=SITE).status_code == 403
    assert client.get(_url(bot, "config"), HTTP_ORIGIN=APP).status_code == 200
    # The iframe's own GETs are same-origin and carry no Origin header, only Sec-Fetch-Site.
    assert client.get(_url(bot, "config"), HTTP_SEC_FETCH_SITE="same-origin").status_code == 200
    no_origin = client.get(_url(bot, "config"))
    assert no_origin.status_code == 403 and no_origin.json()["error"] == "origin_not_allowed"
    # The staff preview: the app framing itself.
    assert _start(client, bot, origin=APP)["visitor_token"]


def test_iframe_requests_are_checked_against_the_website_that_embeds_them(bot: Chatbot) -> None:
    client = APIClient()
    refused = client.post(_url(bot, "conversations"), {}, format="json", HTTP_ORIGIN=APP, HTTP_X_GROUNDWORK_HOST=EVIL)
    assert refused.status_code == 403 and refused.json()["error"] == "origin_not_allowed"
    started = _start(client, bot, origin=APP, HTTP_X_GROUNDWORK_HOST=SITE)
    conversation = Conversation.objects.get(pk=started["conversation_id"])
    assert conversation.origin == SITE and conversation.channel == "widget"
    assert conversation.visitor_id == "visitor-0001"


def test_frame_page_can_be_framed_only_by_allowed_origins(bot: Chatbot) -> None:
    client = Client()
    page = client.get(f"/widget/{bot.widget_key}/", {"origin": SITE})
    assert page.status_code == 200
    assert "X-Frame-Options" not in page
    csp = page["Content-Security-Policy"]
    assert "frame-ancestors 'self' https://shop.example" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert not page.cookies  # no session, no CSRF cookie
    html = page.content.decode()
    assert 'id="gw-config"' in html and bot.widget_key in html and "gw-input" in html

    refused = client.get(f"/widget/{bot.widget_key}/", {"origin": EVIL})
    assert refused.status_code == 403
    assert "not enabled on https://evil.example" in refused.content.decode()
    assert "frame-ancestors *" in refused["Content-Security-Policy"]
    assert "gw-input" not in refused.content.decode()

    assert client.get("/widget/wk_nope/", {"origin": SITE}).status_code == 404


def test_visitor_token_opens_only_its_own_conversation(bot: Chatbot) -> None:
    client = APIClient()
    alice, bob = _start(client, bot), _start(client, bot)
    assert alice["visitor_token"] != bob["visitor_token"]
    conversation = Conversation.objects.get(pk=alice["conversation_id"])
    # Only the SHA-256 of the token is stored.
    assert conversation.visitor_token_hash == hashlib.sha256(alice["visitor_token"].encode()).hexdigest()
    assert alice["visitor_token"] not in json.dumps(list(Conversation.objects.values()), default=str)
    answer = Message.objects.create(conversation=conversation, role=Role.ASSISTANT, content="Within **30 days**.")

    own = client.get(
        _url(bot, f"conversations/{alice['conversation_id']}"), {"token": alice["visitor_token"]}, HTTP_ORIGIN=SITE
    )
    assert own.status_code == 200
    assert own.json()["messages"][0]["content"] == "Within **30 days**."
    assert "model" not in own.json()["messages"][0]

    stolen = client.get(
        _url(bot, f"conversations/{alice['conversation_id']}"), {"token": bob["visitor_token"]}, HTTP_ORIGIN=SITE
    )
    assert stolen.status_code == 404 and stolen.json()["error"] == "conversation_not_found"
    post_into = client.post(
        _url(bot, "chat"),
        {"message": "hi", "conversation_id": alice["conversation_id"], "visitor_token": bob["visitor_token"]},
        format="json",
        HTTP_ORIGIN=SITE,
    )
    assert post_into.status_code == 404
    vote = client.post(
        _url(bot, f"messages/{answer.pk}/feedback"),
        {"value": "down", "visitor_token": bob["visitor_token"]},
        format="json",
        HTTP_ORIGIN=SITE,
    )
    assert vote.status_code == 404
    lead = client.post(
        _url(bot, "lead"),
        {"conversation_id": alice["conversation_id"], "visitor_token": bob["visitor_token"], "email": "b@x.test"},
        format="json",
        HTTP_ORIGIN=SITE,
    )
    assert lead.status_code == 404
    assert Message.objects.filter(conversation=conversation).count() == 1
    conversation.refresh_from_db()
    assert conversation.lead_email == ""
    answer.refresh_from_db()
    assert answer.feedback == ""

    # Another bot's key does not open it either, even with the right token.
    other = _bot(bot.organization)
    assert (
        client.get(
            _url(other, f"conversations/{alice['conversation_id']}"),
            {"token": alice["visitor_token"]},
            HTTP_ORIGIN=SITE,
        ).status_code
        == 404
    )


@override_settings(GROUNDWORK_WIDGET_RATE_PER_MINUTE=3, GROUNDWORK_WIDGET_BOT_RATE_PER_MINUTE=1000)
def test_visitor_over_the_rate_limit_gets_429_with_a_clear_message(bot: Chatbot) -> None:
    _fresh_window()
    client = APIClient()
    for _ in range(3):
        _start(client, bot)
    response = client.post(_url(bot, "conversations"), {}, format="json", HTTP_ORIGIN=SITE)
    assert response.status_code == 429
    body = response.json()
    assert body["error"] == "rate_limited" and "too quickly" in body["detail"]
    assert 1 <= int(response["Retry-After"]) <= 60 and body["retry_after"] == int(response["Retry-After"])
    assert response["Access-Control-Allow-Origin"] == SITE  # the website can read why
    # Another visitor (another address) is not affected by the first one's budget.
    assert (
        client.post(_url(bot, "conversations"), {}, format="json", HTTP_ORIGIN=SITE, REMOTE_ADDR="10.0.0.2").status_code
        == 201
    )


@override_settings(GROUNDWORK_WIDGET_RATE_PER_MINUTE=100, GROUNDWORK_WIDGET_BOT_RATE_PER_MINUTE=4)
def test_bot_over_its_rate_limit_gets_429(bot: Chatbot) -> None:
    _fresh_window()
    client = APIClient()
    for n in range(4):
        _start(client, bot, REMOTE_ADDR=f"10.0.1.{n}")
    response = client.post(_url(bot, "conversations"), {}, format="json", HTTP_ORIGIN=SITE, REMOTE_ADDR="10.0.1.9")
    assert response.status_code == 429 and "busy" in response.json()["detail"]


def test_disabled_bot_stops_answering_at_once(bot: Chatbot) -> None:
    client = APIClient()
    started = _start(client, bot)
    chatbot_update(chatbot=bot, enabled=False)
    for response in (
        client.get(_url(bot, "config"), HTTP_ORIGIN=SITE),
        client.post(
            _url(bot, "chat"),
            {"message": "hi", "conversation_id": started["conversation_id"], "visitor_token": started["visitor_token"]},
            format="json",
            HTTP_ORIGIN=SITE,
        ),
        client.post(_url(bot, "conversations"), {}, format="json", HTTP_ORIGIN=SITE),
    ):
        assert response.status_code == 403
        assert response.json() == {"error": "bot_disabled", "detail": "This chat is switched off at the moment."}
    page = Client().get(f"/widget/{bot.widget_key}/", {"origin": SITE})
    assert page.status_code == 403 and "switched off" in page.content.decode()


def test_messages_over_1000_characters_are_refused(bot: Chatbot) -> None:
    client = APIClient()
    started = _start(client, bot)
    payload = {"conversation_id": started["conversation_id"], "visitor_token": started["visitor_token"]}
    response = client.post(_url(bot, "chat"), {**payload, "message": "x" * 1001}, format="json", HTTP_ORIGIN=SITE)
    assert response.status_code == 400
    assert response.json()["error"] == "message_too_long" and "1000 characters" in response.json()["detail"]
    empty = client.post(_url(bot, "chat"), {**payload, "message": "   "}, format="json", HTTP_ORIGIN=SITE)
    assert empty.status_code == 400 and empty.json()["error"] == "empty_message"
    assert not Message.objects.filter(conversation_id=started["conversation_id"]).exists()


def test_feedback_and_lead_are_stored_on_the_visitors_conversation(bot: Chatbot) -> None:
    client = APIClient()
    started = _start(client, bot)
    token = started["visitor_token"]
    conversation = Conversation.objects.get(pk=started["conversation_id"])
    question = Message.objects.create(conversation=conversation, role=Role.USER, content="Can I return boots?")
    answer = Message.objects.create(conversation=conversation, role=Role.ASSISTANT, content="No.")

    vote = client.post(
        _url(bot, f"messages/{answer.pk}/feedback"),
        {"value": "down", "comment": "Too short", "visitor_token": token},
        format="json",
        HTTP_ORIGIN=SITE,
    )
    assert vote.status_code == 200 and vote.json()["feedback"] == "down"
    answer.refresh_from_db()
    assert answer.feedback == "down" and answer.feedback_comment == "Too short" and answer.feedback_at
    bad = client.post(
        _url(bot, f"messages/{answer.pk}/feedback"),
        {"value": "meh", "visitor_token": token},
        format="json",
        HTTP_ORIGIN=SITE,
    )
    assert bad.status_code == 400 and bad.json()["error"] == "bad_feedback"
    on_question = client.post(
        _url(bot, f"messages/{question.pk}/feedback"),
        {"value": "up", "visitor_token": token},
        format="json",
        HTTP_ORIGIN=SITE,
    )
    assert on_question.status_code == 404

    lead = {"conversation_id": conversation.pk, "visitor_token": token, "name": "Ann", "message": "Call me"}
    invalid = client.post(_url(bot, "lead"), {**lead, "email": "not-an-email"}, format="json", HTTP_ORIGIN=SITE)
    assert invalid.status_code == 400 and invalid.json()["error"] == "bad_email"
    stored = client.post(_url(bot, "lead"), {**lead, "email": "ann@example.com"}, format="json", HTTP_ORIGIN=SITE)
    assert stored.status_code == 200
    conversation.refresh_from_db()
    assert (conversation.lead_email, conversation.lead_name, conversation.lead_message) == (
        "ann@example.com",
        "Ann",
        "Call me",
    )
    assert conversation.lead_at is not None
    restored = client.get(_url(bot, f"conversations/{conversation.pk}"), {"token": token}, HTTP_ORIGIN=SITE).json()
    assert restored["lead_captured"] is True
    assert restored["messages"][1]["feedback"] == "down"

    chatbot_update(chatbot=bot, lead_capture=False)
    off = client.post(_url(bot, "lead"), {**lead, "email": "ann@example.com"}, format="json", HTTP_ORIGIN=SITE)
    assert off.status_code == 403 and off.json()["error"] == "lead_capture_off"


def test_a_staff_session_grants_nothing(bot: Chatbot, make_user: Any) -> None:
    client = APIClient()
    client.force_login(make_user(bot.organization))
    response = client.post(_url(bot, "conversations"), {}, format="json")  # cookies, but no Origin
    assert response.status_code == 403 and response.json()["error"] == "origin_not_allowed"
    assert client.get(_url(bot, "config")).status_code == 403


def test_unknown_widget_key_is_a_404(db: None) -> None:
    response = APIClient().get("/api/widget/wk_missing/config", HTTP_ORIGIN=SITE)
    assert response.status_code == 404 and response.json()["error"] == "unknown_widget"


@pytest.mark.django_db(transaction=True)
def test_chat_streams_server_sent_events_and_offers_the_lead_form_on_refusal(make_org: Any) -> None:
    bot = _bot(make_org(), fallback_message="Sorry, I don't know that.")  # no knowledge base: it refuses
    client = APIClient()
    started = _start(client, bot)
    response = client.post(
        _url(bot, "chat"),
        {
            "message": "Can I talk to a human?",
            "conversation_id": started["conversation_id"],
            "visitor_token": started["visitor_token"],
        },
        format="json",
        HTTP_ORIGIN=SITE,
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/event-stream")
    assert response["Access-Control-Allow-Origin"] == SITE
    raw = _read_stream(response)
    events = [line[len("event: ") :] for line in raw.splitlines() if line.startswith("event: ")]
    assert events == ["typing", "start", "final"]
    final = json.loads(raw.split("event: final\ndata: ", 1)[1].split("\n", 1)[0])
    assert final["message"]["refused"] is True and final["message"]["content"] == "Sorry, I don't know that."
    assert final["offer_lead"] is True
    assert "retrieval_trace" not in final["message"] and "model" not in final["message"]
    conversation = Conversation.objects.get(pk=started["conversation_id"])
    assert conversation.title == "Can I talk to a human?"
    assert list(conversation.messages.values_list("role", flat=True)) == ["user", "assistant"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://Shop.Example", "https://shop.example"),
        ("https://shop.example:443/", "https://shop.example"),
        ("http://localhost:8000", "http://localhost:8000"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("https://bücher.example", "https://xn--bcher-kva.example"),
        ("https://shop.example/path", None),
        ("https://a.example;script-src *", None),
        ("javascript:alert(1)", None),
        ("null", None),
        ("https://a.example:99999", None),
    ],
)
def test_normalize_origin(raw: str, expected: str | None) -> None:
    assert normalize_origin(raw) == expected


def test_frame_csp_drops_anything_that_is_not_an_origin() -> None:
    csp = frame_content_security_policy(frame_ancestors=["https://ok.example", "https://x.example; script-src *"])
    assert csp.endswith("frame-ancestors 'self' https://ok.example")


def test_a_queued_widget_chat_is_told_typing_before_any_answer_thread_is_free(monkeypatch: Any) -> None:
    """With every answer thread busy, a new chat still gets its first event (typing) at once."""
    import asyncio
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from chat import sse as sse_module

    release = threading.Event()
    executor = ThreadPoolExecutor(max_workers=1)
    executor.submit(release.wait)  # the only answer thread is taken
    monkeypatch.setattr(sse_module, "_executor", executor)

    def answer() -> Any:
        yield {"type": "start", "conversation_id": 7, "user_message_id": 8}

    async def first_and_rest() -> tuple[str, list[str]]:
        stream = sse_module.answer_sse(answer, sse_module.WidgetFormat(bot_id=1, conversation_id=7))
        first = await stream.__anext__()
        release.set()  # now the queued answer may run
        return first, [line async for line in stream]

    try:
        with ThreadPoolExecutor(1) as runner:  # a browser test may keep an event loop in this thread
            first, rest = runner.submit(asyncio.run, asyncio.wait_for(first_and_rest(), timeout=60)).result()
    finally:
        release.set()
        executor.shutdown()
    assert first.startswith("event: typing\n") and '"conversation_id": 7' in first
    assert rest and rest[0].startswith("event: start\n")
