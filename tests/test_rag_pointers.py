"""Refusal with pointers (chat.rag.answer.refuse): a refused answer may list up to three related
passages as citations, quoted verbatim from their chunks, never an invented answer."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from chat.models import Message
from chat.rag.cite import POINTERS_LEAD
from kb.models import Chunk
from tests.conftest import read_streaming
from tests.test_chat import _bot, _kb_with_document

FALLBACK = "I don't know."
# Related to the refund policy (boots, returns), but nothing in it says whether boots can be exchanged.
RELATED = "Can I exchange boots for a different size?"
UNRELATED = "Who painted the Mona Lisa?"
SITE = "https://shop.example"


def _ask(client: APIClient, bot_id: int, question: str) -> dict[str, Any]:
    response = client.post(f"/api/v1/chatbots/{bot_id}/chat/", {"message": question}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.worker
def test_a_refusal_points_to_related_passages_with_verbatim_quotes_unless_switched_off(
    make_org, api_client_for, celery_worker
) -> None:  # type: ignore[no-untyped-def]
    client = api_client_for(make_org())
    kb_id, doc_id = _kb_with_document(client)
    bot = _bot(client, [kb_id], fallback_message=FALLBACK, allowed_origins=[SITE])
    assert bot["refusal_pointers"] is True  # on by default

    body = _ask(client, bot["id"], RELATED)
    assert body["refused"] is True
    assert body["answer"].startswith(FALLBACK) and POINTERS_LEAD in body["answer"]
    assert 1 <= len(body["citations"]) <= 3, body
    for citation in body["citations"]:
        chunk = Chunk.objects.get(pk=citation["chunk_id"])
        assert citation["quote"] and citation["quote"] in chunk.text
        assert citation["document_id"] == doc_id
        assert f"[{citation['number']}]" in body["answer"]
    message = Message.objects.get(pk=body["message_id"])
    assert message.refused and message.model  # the model was asked, and it refused
    scores = {c["chunk_id"]: c["vector_score"] for c in message.retrieval_trace["candidates"]}
    assert all(scores[c["chunk_id"]] >= bot["min_relevance"] for c in body["citations"])
    # Nothing but the fallback, the lead sentence and "- title › section [n]" lines: no invented text.
    extra = body["answer"].removeprefix(FALLBACK).strip().splitlines()
    assert extra[0] == POINTERS_LEAD and all(line.startswith("- refunds.md") for line in extra[1:])

    # The public widget shows them as the refused message's citations too.
    widget, base = APIClient(), f"/api/widget/{bot['widget_key']}"
    started = widget.post(f"{base}/conversations", {"visitor_id": "v-0001"}, format="json", HTTP_ORIGIN=SITE).json()
    answered = widget.post(
        f"{base}/chat",
        {"message": RELATED, "conversation_id": started["conversation_id"], "visitor_token": started["visitor_token"]},
        format="json",
        HTTP_ORIGIN=SITE,
    )
    assert answered.status_code == 200
    read_streaming(answered)
    history = widget.get(
        f"{base}/conversations/{started['conversation_id']}",
        {"token": started["visitor_token"]},
        HTTP_ORIGIN=SITE,
    ).json()
    reply = history["messages"][-1]
    assert reply["refused"] is True and 1 <= len(reply["citations"]) <= 3

    switched = client.patch(f"/api/v1/chatbots/{bot['id']}/", {"refusal_pointers": False}, format="json")
    assert switched.status_code == 200 and switched.json()["refusal_pointers"] is False
    off = _ask(client, bot["id"], RELATED)
    assert off["refused"] is True and off["answer"] == FALLBACK and off["citations"] == []


@pytest.mark.worker
def test_a_question_with_nothing_related_gets_no_pointers(make_org, api_client_for, celery_worker) -> None:  # type: ignore[no-untyped-def]
    client = api_client_for(make_org())
    kb_id, _ = _kb_with_document(client)
    bot = _bot(client, [kb_id], fallback_message=FALLBACK)
    body = _ask(client, bot["id"], UNRELATED)
    assert body["refused"] is True and body["answer"] == FALLBACK and body["citations"] == []
