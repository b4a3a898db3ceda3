"""The OpenAI-compatible endpoint, driven by the official `openai` client against the real ASGI server."""

from __future__ import annotations

import httpx
import openai
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.services import api_key_issue
from tests.conftest import wait_for

POLICY = b"""# Warranty

All tents carry a 5-year warranty against manufacturing defects.
Sleeping bags carry a 3-year warranty.
"""


@pytest.fixture
def bot_and_key(make_org, api_client_for, celery_worker):  # type: ignore[no-untyped-def]
    org = make_org("Outdoor")
    client = api_client_for(org)
    kb_id = client.post("/api/v1/knowledge-bases/", {"name": "Docs"}, format="json").json()["id"]
    doc = client.post(
        f"/api/v1/knowledge-bases/{kb_id}/documents/",
        {"file": SimpleUploadedFile("warranty.md", POLICY)},
        format="multipart",
    ).json()
    wait_for(lambda: client.get(f"/api/v1/documents/{doc['id']}/").json()["status"] == "ready", timeout=90)
    bot = client.post("/api/v1/chatbots/", {"name": "Gear Bot", "knowledge_bases": [kb_id]}, format="json").json()
    key = api_key_issue(organization=org, name="openai client", created_by=None).raw_key
    return bot, key, doc["id"]


@pytest.mark.worker
def test_openai_client_streams_a_cited_answer(bot_and_key, asgi_server) -> None:  # type: ignore[no-untyped-def]
    bot, key, doc_id = bot_and_key
    client = openai.OpenAI(base_url=f"{asgi_server}/v1", api_key=key, max_retries=0)
    stream = client.chat.completions.create(
        model=bot["slug"],
        messages=[{"role": "user", "content": "How long is the warranty on tents?"}],
        stream=True,
    )
    pieces: list[str] = []
    last = None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        last = chunk
    text = "".join(pieces)
    assert len(pieces) > 1, "the answer should arrive in several pieces"
    assert "5-year warranty" in text
    assert last is not None and last.choices[0].finish_reason == "stop"
    extra = last.model_extra or {}
    assert extra["refused"] is False
    assert extra["citations"][0]["document_id"] == doc_id
    assert extra["citations"][0]["quote"]


@pytest.mark.worker
def test_openai_client_non_streaming_with_chatbot_id(bot_and_key, asgi_server) -> None:  # type: ignore[no-untyped-def]
    bot, key, doc_id = bot_and_key
    client = openai.OpenAI(base_url=f"{asgi_server}/v1", api_key=key, max_retries=0)
    completion = client.chat.completions.create(
        model=str(bot["id"]), messages=[{"role": "user", "content": "What warranty do sleeping bags have?"}]
    )
    assert "3-year warranty" in (completion.choices[0].message.content or "")
    extra = completion.model_extra or {}
    assert extra["refused"] is False and extra["citations"][0]["document_id"] == doc_id

    refused = client.chat.completions.create(
        model=bot["slug"], messages=[{"role": "user", "content": "Who won the 1998 football world cup?"}]
    )
    assert (refused.model_extra or {})["refused"] is True

    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-bot", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{asgi_server}/v1", api_key="gw_bad_key", max_retries=0).chat.completions.create(
            model=bot["slug"], messages=[{"role": "user", "content": "hi"}]
        )


@pytest.mark.worker
def test_chat_api_streams_server_sent_events(bot_and_key, asgi_server) -> None:  # type: ignore[no-untyped-def]
    bot, key, _ = bot_and_key
    events: list[str] = []
    with httpx.stream(
        "POST",
        f"{asgi_server}/api/v1/chatbots/{bot['id']}/chat/",
        json={"message": "How long is the warranty on tents?", "stream": True},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line[len("event: ") :] for line in response.iter_lines() if line.startswith("event: ")]
    assert events[0] == "start" and events[-1] == "final"
    assert events.count("delta") > 1
