"""Grounded chat: cited answers, honest refusals, audit trail, tenant isolation."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from chat.models import Citation, Message
from chat.rag import generate
from tests.conftest import wait_for

REFUNDS = b"""# Refund policy

## Returns window
Unused items can be returned within 30 days of delivery for a full refund.
Keep the original packaging and the receipt; we inspect every returned item on arrival.
Returns are handled by our warehouse team in Utrecht, who confirm each one by e-mail.
Refunds are paid to the original payment method within 5 business days.

## Exceptions
Gift cards and opened camping fuel canisters cannot be returned.
Custom-fitted boots are made for one customer only, so they cannot be returned either.
Items damaged by misuse are not refunded, but our workshop can often repair them.
"""

REFUNDS_V2 = b"""# Refund policy

## Returns window
Unused items can be returned within 60 days of delivery for a full refund.
Keep the original packaging and the receipt; we inspect every returned item on arrival.
Returns are handled by our warehouse team in Utrecht, who confirm each one by e-mail.
Refunds are paid to the original payment method within 5 business days.
"""


def _kb_with_document(client: APIClient, content: bytes = REFUNDS, name: str = "refunds.md") -> tuple[int, int]:
    kb_id = client.post("/api/v1/knowledge-bases/", {"name": "Support"}, format="json").json()["id"]
    doc = _upload(client, kb_id, name, content)
    return kb_id, doc["id"]


def _upload(client: APIClient, kb_id: int, name: str, content: bytes) -> dict[str, Any]:
    response = client.post(
        f"/api/v1/knowledge-bases/{kb_id}/documents/", {"file": SimpleUploadedFile(name, content)}, format="multipart"
    )
    assert response.status_code == 201, response.content
    doc = response.json()
    wait_for(lambda: client.get(f"/api/v1/documents/{doc['id']}/").json()["status"] == "ready", timeout=90)
    return doc


def _bot(client: APIClient, kb_ids: list[int], **settings: Any) -> dict[str, Any]:
    response = client.post(
        "/api/v1/chatbots/", {"name": "Helper", "knowledge_bases": kb_ids, **settings}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()


@pytest.mark.worker
def test_answer_cites_the_document_and_keeps_an_audit_trail(make_org, api_client_for, celery_worker) -> None:  # type: ignore[no-untyped-def]
    client = api_client_for(make_org())
    kb_id, doc_id = _kb_with_document(client)
    bot = _bot(client, [kb_id])
    assert bot["slug"] == "helper" and bot["widget_key"].startswith("wk_")

    response = client.post(
        f"/api/v1/chatbots/{bot['id']}/chat/", {"message": "How many days do I have to return an item?"}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["refused"] is False
    assert "30 days" in body["answer"]
    assert "[1]" in body["answer"] or "[2]" in body["answer"]
    citation = body["citations"][0]
    assert citation["document_id"] == doc_id and citation["version"] == 1
    assert citation["document_title"] == "refunds.md"
    assert citation["section"].endswith("Returns window")
    assert citation["quote"] and citation["quote"] in "".join(
        c["text"]
        for c in client.post(
            f"/api/v1/knowledge-bases/{kb_id}/search/", {"query": "return days"}, format="json"
        ).json()["results"]
    )

    stored = Message.objects.get(pk=body["message_id"])
    assert stored.model == "local/extractive"
    assert stored.retrieval_ms is not None and stored.total_ms is not None and stored.first_token_ms is not None
    assert stored.retrieval_trace["candidates"] and stored.retrieval_trace["query"].startswith("How many days")
    assert stored.grounding_label and stored.grounding["sentences"]
    assert stored.prompt_tokens and stored.completion_tokens

    # A follow-up in the same conversation.
    follow = client.post(
        f"/api/v1/chatbots/{bot['slug']}/chat/",
        {"message": "Can I return gift cards?", "conversation_id": body["conversation_id"]},
        format="json",
    ).json()
    assert follow["conversation_id"] == body["conversation_id"]
    assert Message.objects.filter(conversation_id=body["conversation_id"]).count() == 4


@pytest.mark.worker
def test_question_without_relevant_sources_gets_the_fallback_and_no_model_call(
    make_org, api_client_for, celery_worker, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    client = api_client_for(make_org())
    kb_id, _ = _kb_with_document(client)
    bot = _bot(client, [kb_id], fallback_message="Sorry, I don't know that.")

    def no_model_call(**_: Any) -> None:
        raise AssertionError("the model must not be called when nothing relevant was retrieved")

    monkeypatch.setattr(generate, "stream_completion", no_model_call)
    body = client.post(
        f"/api/v1/chatbots/{bot['id']}/chat/", {"message": "Who painted the Mona Lisa?"}, format="json"
    ).json()
    assert body["refused"] is True
    assert body["answer"] == "Sorry, I don't know that."
    assert body["citations"] == []
    assert Message.objects.get(pk=body["message_id"]).model == ""


@pytest.mark.worker
def test_local_answerer_refuses_when_sources_are_related_but_silent(make_org, api_client_for, celery_worker) -> None:  # type: ignore[no-untyped-def]
    client = api_client_for(make_org())
    kb_id, _ = _kb_with_document(client)
    bot = _bot(client, [kb_id], fallback_message="I don't know.")
    body = client.post(
        f"/api/v1/chatbots/{bot['id']}/chat/",
        {"message": "What is the refund policy for items bought on Mars in 1850?"},
        format="json",
    ).json()
    # The sources are related, so the refusal may point to them (chat.rag.answer.refuse); it stays a refusal.
    assert body["refused"] is True and body["answer"].startswith("I don't know.")


@pytest.mark.worker
def test_old_answers_keep_their_citations_after_the_document_is_replaced(
    make_org, api_client_for, celery_worker
) -> None:  # type: ignore[no-untyped-def]
    client = api_client_for(make_org())
    kb_id, doc_id = _kb_with_document(client)
    bot = _bot(client, [kb_id])
    first = client.post(
        f"/api/v1/chatbots/{bot['id']}/chat/", {"message": "How many days do I have to return an item?"}, format="json"
    ).json()
    assert "30 days" in first["answer"]

    replaced = _upload(client, kb_id, "refunds.md", REFUNDS_V2)
    assert replaced["id"] == doc_id  # same name: a new version of the same document
    second = client.post(
        f"/api/v1/chatbots/{bot['id']}/chat/", {"message": "How many days do I have to return an item?"}, format="json"
    ).json()
    assert "60 days" in second["answer"] and "30 days" not in second["answer"]
    assert second["citations"][0]["version"] == 2

    old = Citation.objects.filter(message_id=first["message_id"]).first()
    assert old is not None
    assert old.version_number == 1 and "30 days" in old.quote
    conversation = client.get(f"/api/v1/documents/{doc_id}/").json()
    assert conversation["version"] == 2 and conversation["live_version"] == 2


@pytest.mark.worker
def test_a_bot_cannot_use_or_reach_another_organisations_knowledge(make_org, api_client_for, celery_worker) -> None:  # type: ignore[no-untyped-def]
    victim = api_client_for(make_org("Victim"))
    attacker = api_client_for(make_org("Attacker"))
    victim_kb, _ = _kb_with_document(victim)
    response = attacker.post("/api/v1/chatbots/", {"name": "Spy", "knowledge_bases": [victim_kb]}, format="json")
    assert response.status_code == 400

    own_kb = attacker.post("/api/v1/knowledge-bases/", {"name": "Own"}, format="json").json()["id"]
    spy = _bot(attacker, [own_kb])
    body = attacker.post(
        f"/api/v1/chatbots/{spy['id']}/chat/", {"message": "Can I return gift cards?"}, format="json"
    ).json()
    assert body["refused"] is True and body["citations"] == []

    victim_bot = _bot(victim, [victim_kb])
    assert (
        attacker.post(f"/api/v1/chatbots/{victim_bot['id']}/chat/", {"message": "hi"}, format="json").status_code == 404
    )
    assert attacker.get(f"/api/v1/chatbots/{victim_bot['id']}/").status_code == 404
    assert attacker.patch(f"/api/v1/chatbots/{victim_bot['id']}/", {"name": "x"}, format="json").status_code == 404


def test_finish_answer_strips_citations_to_missing_sources() -> None:
    from chat.models import Chatbot
    from chat.rag.answer import finish_answer
    from chat.rag.retrieve import Retrieval
    from inference.extractive import Source

    retrieval = Retrieval(
        hits=[],
        sources=[Source(number=1, text="Unused items can be returned within 30 days of delivery.")],
        trace={},
        elapsed_ms=1.0,
        relevant=True,
    )
    message = Message()
    finish_answer(message, "Items can be returned within 30 days [1]. Shipping is free [4].", retrieval, Chatbot())
    assert "[4]" not in message.content and "[1]" in message.content
    assert message.grounding["removed_citations"] == [4]
    verdicts = {s["text"]: s["verdict"] for s in message.grounding["sentences"]}
    assert any(v == "supported" for v in verdicts.values())


@pytest.mark.worker
def test_hits_of_a_small_section_are_widened_to_the_section_and_not_repeated(make_org, celery_worker) -> None:  # type: ignore[no-untyped-def]
    from kb.models import Chunk
    from kb.selectors import chunk_search, hits_to_passages
    from kb.services import document_create_text, knowledge_base_create

    org = make_org()
    kb = knowledge_base_create(organization=org, name="Small chunks", created_by=None, chunk_size=300, chunk_overlap=30)
    text = (
        "## Returns\n\n"
        "Unused items can be returned within 30 days of delivery for a full refund of the price paid. "
        "Keep the original packaging, the receipt and all the labels attached to the item. "
        "Our warehouse team in Utrecht inspects every returned item on the day it arrives. "
        "Refunds are paid to the original payment method within five business days after the inspection. "
        "Store credit can be issued at once instead if the customer prefers it.\n\n"
        "## Exceptions\n\nGift cards cannot be returned. Opened camping fuel canisters cannot be returned either."
    )
    doc = document_create_text(knowledge_base=kb, title="Policy", text=text, created_by=None).document
    wait_for(lambda: Chunk.objects.filter(document=doc, is_live=True).count() >= 3, timeout=60)
    hits = chunk_search(knowledge_bases=[kb], query="returns refund inspection warehouse packaging", limit=5)
    returns_hits = [h for h in hits if h.chunk is not None and h.chunk.section_path[-1:] == ["Returns"]]
    assert len(returns_hits) >= 2, "the Returns section should be split into several chunks"
    passages = hits_to_passages(hits, max_chars=1000)
    widened = [p for p in passages if p.widened]
    assert len(widened) == 1 and "30 days" in widened[0].text and "Store credit" in widened[0].text
    assert sum(1 for p in passages if p.hit.chunk is not None and p.hit.chunk.section_path[-1:] == ["Returns"]) == 1
