"""The chat model fails: retries with backoff, then the bot's fallback models, then plain words.

The provider is a stand-in OpenAI-compatible server in this test (`json_server`), reached through
LiteLLM's real `openai/` provider and Router with the organisation's stored key and address, the
path a hosted model takes. It answers 429, 500, hangs, or answers, as each test needs. Backoff is
milliseconds here (GROUNDWORK_LLM_RETRY_DELAY=0.01 in pyproject's test env).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import Organization, Role
from chat.models import Chatbot, Message
from chat.services import chatbot_create, provider_key_set
from kb import services as kb_services
from kb.pipeline.run import version_ingest
from tests.conftest import Reply, chat_reply, json_server, read_streaming

SITE = "https://shop.example"
ANSWER = "Tents carry a five year warranty on the poles [1]."
PROVIDER_SECRET = "sk-provider-internal-7731 at upstream-eu-3.internal"

pytestmark = pytest.mark.django_db


@contextmanager
def provider(organization: Organization, respond: Callable[[dict[str, Any]], Any]) -> Iterator[list[str]]:
    """The stand-in provider, stored as the organisation's `openai` key and address; yields the
    model names it was asked for, one per request."""
    calls: list[str] = []

    def record(body: dict[str, Any]) -> Any:
        calls.append(body["model"])
        return respond(body)

    with json_server(record) as url:
        provider_key_set(organization=organization, provider="openai", api_key="sk-test-local", api_base=f"{url}/v1")
        yield calls


def _bot(organization: Organization, **settings: Any) -> Chatbot:
    kb = kb_services.knowledge_base_create(organization=organization, name="Gear", created_by=None)
    created = kb_services.document_create_text(
        knowledge_base=kb,
        title="Warranty",
        text="# Warranty\n\nOur tents carry a five year warranty on the poles and a two year warranty on the fabric.",
        created_by=None,
        enqueue=False,
    )
    version_ingest(version_id=created.version.pk)
    settings.setdefault("allowed_origins", [SITE])
    return chatbot_create(organization=organization, name="Gear bot", knowledge_bases=[kb], created_by=None, **settings)


def _ask(client: APIClient, bot: Chatbot) -> dict[str, Any]:
    response = client.post(f"/api/v1/chatbots/{bot.pk}/chat/", {"message": "How long is the tent warranty?"})
    assert response.status_code == 200, response.content
    return dict(response.json())


def _widget_events(bot: Chatbot) -> list[tuple[str, dict[str, Any]]]:
    client = APIClient()
    started = client.post(
        f"/api/widget/{bot.widget_key}/conversations", {"visitor_id": "visitor-0001"}, format="json", HTTP_ORIGIN=SITE
    ).json()
    response = client.post(
        f"/api/widget/{bot.widget_key}/chat",
        {
            "message": "How long is the tent warranty?",
            "conversation_id": started["conversation_id"],
            "visitor_token": started["visitor_token"],
        },
        format="json",
        HTTP_ORIGIN=SITE,
    )
    assert response.status_code == 200
    events = []
    for block in read_streaming(response).decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_rate_limited_model_is_retried_with_backoff_then_answers(make_org: Any, api_client_for: Any) -> None:
    org = make_org()
    bot = _bot(org, chat_model="openai/flaky")
    replies = [Reply({"error": {"message": "slow down"}}, status=429)] * 2

    with provider(org, lambda body: replies.pop(0) if replies else chat_reply(ANSWER, body["model"])) as calls:
        answer = _ask(api_client_for(org), bot)

    assert calls == ["flaky"] * 3  # two 429s, then the answer
    assert "five year warranty" in answer["answer"] and "error" not in answer
    trace = Message.objects.get(pk=answer["message_id"]).retrieval_trace["generation"]
    assert trace["answered_by"] == "openai/flaky" and trace["retries"] == 2


@pytest.mark.django_db(transaction=True)  # the widget streams from a thread with its own connection
def test_model_down_tells_the_visitor_plainly_after_bounded_retries_and_staff_see_why(
    make_org: Any, make_user: Any, settings: Any
) -> None:
    settings.GROUNDWORK_LLM_NUM_RETRIES = 2
    org = make_org()
    bot = _bot(org, chat_model="openai/down")
    failure = Reply({"error": {"message": f"Internal error {PROVIDER_SECRET}", "type": "server_error"}}, status=500)

    with provider(org, lambda body: failure) as calls:
        events = _widget_events(bot)

    assert calls == ["down"] * 3  # the first try and two retries: bounded
    assert [name for name, _ in events] == ["typing", "start", "error"]
    error = events[-1][1]
    assert error == {
        "error": "model_unavailable",
        "detail": "The assistant cannot answer right now. Please try again later.",
        "retriable": True,
    }
    stored = Message.objects.get(conversation__chatbot=bot, role="assistant")
    assert "could not answer" in stored.error and stored.retrieval_trace["generation"]["error"]["code"] == (
        "model_unavailable"
    )

    staff = Client()
    staff.force_login(make_user(org, role=Role.VIEWER))
    page = staff.get(f"/conversations/{stored.conversation_id}/").content.decode()
    assert "The model failed" in page and "openai/down" in page


def test_model_timeout_is_retried_then_reported(make_org: Any, api_client_for: Any, settings: Any) -> None:
    settings.GROUNDWORK_MODEL_TIMEOUT = 0.5
    settings.GROUNDWORK_LLM_NUM_RETRIES = 1
    org = make_org()
    bot = _bot(org, chat_model="openai/hangs")
    never = threading.Event()  # the provider holds every request until the test ends

    try:
        with provider(org, lambda body: Reply(chat_reply(ANSWER), hold=never)) as calls:
            answer = _ask(api_client_for(org), bot)
    finally:
        never.set()

    assert calls == ["hangs"] * 2
    assert answer["refused"] is True and "did not answer in time" in answer["error"]
    trace = Message.objects.get(pk=answer["message_id"]).retrieval_trace["generation"]
    assert trace["error"]["code"] == "model_timeout"


def test_fallback_model_answers_when_the_first_provider_fails(make_org: Any, api_client_for: Any) -> None:
    org = make_org()
    bot = _bot(org, chat_model="openai/primary", fallback_models=["openai/backup"])

    def respond(body: dict[str, Any]) -> Any:
        if body["model"] == "primary":
            return Reply({"error": {"message": "overloaded"}}, status=503)
        return chat_reply(ANSWER, body["model"])

    with provider(org, respond) as calls:
        answer = _ask(api_client_for(org), bot)

    assert calls[0] == "primary" and calls[-1] == "backup"
    assert "five year warranty" in answer["answer"] and answer["model"] == "openai/backup"
    trace = Message.objects.get(pk=answer["message_id"]).retrieval_trace["generation"]
    assert trace["model"] == "openai/primary" and trace["answered_by"] == "openai/backup"
    assert trace["fallbacks_tried"] == 1


def test_fallback_models_are_checked_against_the_provider_allow_list(make_org: Any, api_client_for: Any) -> None:
    org = make_org()
    client = api_client_for(org)
    created = client.post(
        "/api/v1/chatbots/",
        {"name": "Bot", "knowledge_bases": [], "fallback_models": ["openai/gpt-4o-mini", "local/extractive"]},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["fallback_models"] == ["openai/gpt-4o-mini", "local/extractive"]

    refused = client.patch(
        f"/api/v1/chatbots/{created.json()['id']}/", {"fallback_models": ["ollama/llama3"]}, format="json"
    )
    assert refused.status_code == 400 and refused.json()["error"] == "model_not_allowed"
    assert Chatbot.objects.get(pk=created.json()["id"]).fallback_models == ["openai/gpt-4o-mini", "local/extractive"]


def test_fallback_models_are_edited_in_the_bot_settings_form(make_org: Any, make_user: Any) -> None:
    org = make_org()
    bot = chatbot_create(organization=org, name="Bot", knowledge_bases=[], created_by=None)
    staff = Client()
    staff.force_login(make_user(org, role=Role.ADMIN))
    form = staff.get(f"/chatbots/{bot.pk}/")
    assert 'name="fallback_models_text"' in form.content.decode()
