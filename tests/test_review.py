"""Conversation review: filters, transcript, feedback, corrections, export, retention, isolation."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from accounts.models import Role
from chat.models import Channel, Conversation, Message
from chat.services import chatbot_create, conversations_purge_expired
from kb.services import knowledge_base_create
from tests.conftest import read_streaming, wait_for


def _conversation(
    bot: Any, *, question: str, answer: str, channel: str = Channel.WIDGET, **answer_fields: Any
) -> Conversation:
    conversation = Conversation.objects.create(
        organization=bot.organization, chatbot=bot, channel=channel, title=question[:80]
    )
    Message.objects.create(conversation=conversation, role="user", content=question)
    Message.objects.create(conversation=conversation, role="assistant", content=answer, **answer_fields)
    return conversation


SHIPPING = (
    b"# Shipping\n\nStandard delivery takes 2 to 4 business days within the EU.\n"
    b"Express delivery costs 12.50 EUR and arrives the next business day.\n"
)


@pytest.fixture
def seeded(make_org, api_client_for):  # type: ignore[no-untyped-def]
    org = make_org("Shop")
    kb = knowledge_base_create(organization=org, name="KB", created_by=None)
    bot = chatbot_create(organization=org, name="Helper", knowledge_bases=[kb], created_by=None)
    other_bot = chatbot_create(organization=org, name="Sales", knowledge_bases=[kb], created_by=None)
    c_up = _conversation(bot, question="Where is my parcel?", answer="It ships in 2 days [1].", feedback="up")
    c_down = _conversation(
        bot, question="Do you sell kayaks?", answer="We sell tents [1].", feedback="down", grounding_grade=0.2
    )
    c_refused = _conversation(other_bot, question="Who is the CEO?", answer="I don't know.", refused=True)
    c_refused.lead_email = "ana@example.com"
    c_refused.save()
    old = _conversation(bot, question="Old question about boots", answer="Boots [1].", channel=Channel.API)
    Conversation.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40), reviewed=True)
    return {
        "org": org,
        "client": api_client_for(org, role=Role.EDITOR),
        "bot": bot,
        "other_bot": other_bot,
        "up": c_up,
        "down": c_down,
        "refused": c_refused,
        "old": old,
    }


def _ids(client: Any, query: str) -> set[int]:
    response = client.get(f"/api/v1/conversations/?{query}")
    assert response.status_code == 200, response.content
    return {c["id"] for c in response.json()["results"]}


@pytest.mark.django_db
def test_each_filter_of_the_conversation_list(seeded) -> None:  # type: ignore[no-untyped-def]
    s, client = seeded, seeded["client"]
    everything = {s["up"].pk, s["down"].pk, s["refused"].pk, s["old"].pk}
    assert _ids(client, "") == everything
    assert _ids(client, f"chatbot={s['other_bot'].pk}") == {s["refused"].pk}
    assert _ids(client, "feedback=up") == {s["up"].pk}
    assert _ids(client, "feedback=down") == {s["down"].pk}
    assert _ids(client, "feedback=none") == {s["refused"].pk, s["old"].pk}
    assert _ids(client, "refused=true") == {s["refused"].pk}
    assert _ids(client, "refused=false") == everything - {s["refused"].pk}
    assert _ids(client, "reviewed=true") == {s["old"].pk}
    assert _ids(client, "reviewed=false") == everything - {s["old"].pk}
    assert _ids(client, "has_lead=true") == {s["refused"].pk}
    assert _ids(client, "low_grounding=true") == {s["down"].pk}
    assert _ids(client, "channel=api") == {s["old"].pk}
    assert _ids(client, "q=kayaks") == {s["down"].pk}
    assert _ids(client, "q=parcels") == {s["up"].pk}  # stemmed full-text search
    since = (timezone.now() - timedelta(days=1)).date().isoformat()
    assert _ids(client, f"date_from={since}") == everything - {s["old"].pk}
    until = (timezone.now() - timedelta(days=30)).date().isoformat()
    assert _ids(client, f"date_to={until}") == {s["old"].pk}
    assert client.get("/api/v1/conversations/?feedback=maybe").status_code == 400
    assert client.get("/api/v1/conversations/?date_from=yesterday").status_code == 400


@pytest.mark.django_db
def test_transcript_feedback_and_review_actions(seeded) -> None:  # type: ignore[no-untyped-def]
    client, conversation = seeded["client"], seeded["down"]
    body = client.get(f"/api/v1/conversations/{conversation.pk}/").json()
    assert [m["role"] for m in body["messages"]] == ["user", "assistant"]
    answer = body["messages"][1]
    assert answer["feedback"] == "down" and answer["refused"] is False and "citations" in answer

    response = client.post(
        f"/api/v1/messages/{answer['id']}/feedback/", {"value": "up", "comment": "ok now"}, format="json"
    )
    assert response.status_code == 200 and response.json()["feedback"] == "up"
    assert client.post(f"/api/v1/messages/{answer['id']}/feedback/", {"value": "meh"}, format="json").status_code == 400

    patched = client.patch(
        f"/api/v1/conversations/{conversation.pk}/",
        {"reviewed": True, "tags": ["kayak", "missing-product"], "internal_note": "Add kayaks to the catalogue FAQ."},
        format="json",
    ).json()
    assert patched["reviewed"] is True and patched["tags"] == ["kayak", "missing-product"]
    assert patched["internal_note"].startswith("Add kayaks")
    assert client.delete(f"/api/v1/conversations/{conversation.pk}/").status_code == 204
    assert not Conversation.objects.filter(pk=conversation.pk).exists()


_read = read_streaming


# The export runs its query in a worker thread (its own connection): the rows must be committed.
@pytest.mark.django_db(transaction=True)
def test_export_streams_the_filtered_conversations_as_csv_and_jsonl(seeded) -> None:  # type: ignore[no-untyped-def]
    client = seeded["client"]
    response = client.get("/api/v1/conversations/export/?format=csv&feedback=down")
    assert response.status_code == 200 and response.streaming
    text = _read(response).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["conversation_id"] for r in rows} == {str(seeded["down"].pk)}
    assert [r["role"] for r in rows] == ["user", "assistant"]
    assert rows[1]["feedback"] == "down" and rows[1]["content"] == "We sell tents [1]."

    jsonl = client.get("/api/v1/conversations/export/?format=jsonl")
    lines = [json.loads(line) for line in _read(jsonl).decode().splitlines()]
    assert len(lines) == 8 and {line["conversation_id"] for line in lines} == {
        seeded[k].pk for k in ("up", "down", "refused", "old")
    }
    assert client.get("/api/v1/conversations/export/?format=xml").status_code == 400


@pytest.mark.django_db
def test_retention_purges_old_conversations_only_where_configured(seeded, make_org) -> None:  # type: ignore[no-untyped-def]
    org = seeded["org"]
    assert conversations_purge_expired() == 0  # no retention set: keep everything
    org.conversation_retention_days = 30
    org.save()
    assert conversations_purge_expired() == 1
    assert not Conversation.objects.filter(pk=seeded["old"].pk).exists()
    assert Conversation.objects.filter(organization=org).count() == 3


@pytest.mark.django_db(transaction=True)
def test_other_organisations_cannot_read_or_act_on_conversations(seeded, make_org, api_client_for) -> None:  # type: ignore[no-untyped-def]
    intruder = api_client_for(make_org("Intruder"), role=Role.OWNER)
    conversation = seeded["down"]
    message = conversation.messages.get(role="assistant")
    assert intruder.get("/api/v1/conversations/").json()["results"] == []
    assert intruder.get(f"/api/v1/conversations/{conversation.pk}/").status_code == 404
    assert (
        intruder.patch(f"/api/v1/conversations/{conversation.pk}/", {"reviewed": True}, format="json").status_code
        == 404
    )
    assert intruder.delete(f"/api/v1/conversations/{conversation.pk}/").status_code == 404
    assert intruder.post(f"/api/v1/messages/{message.pk}/feedback/", {"value": "up"}, format="json").status_code == 404
    assert (
        intruder.post(f"/api/v1/messages/{message.pk}/correction/", {"answer": "x"}, format="json").status_code == 404
    )
    export = intruder.get("/api/v1/conversations/export/?format=jsonl")
    assert _read(export) == b""


@pytest.mark.worker
def test_correction_makes_the_next_identical_question_get_the_corrected_answer(
    make_org, api_client_for, celery_worker
) -> None:  # type: ignore[no-untyped-def]
    org = make_org("Outdoor")
    client = api_client_for(org, role=Role.EDITOR)
    kb_id = client.post("/api/v1/knowledge-bases/", {"name": "Support"}, format="json").json()["id"]
    doc = client.post(
        f"/api/v1/knowledge-bases/{kb_id}/documents/",
        {
            "file": SimpleUploadedFile(
                "shipping.md",
                SHIPPING,
            )
        },
        format="multipart",
    ).json()
    wait_for(lambda: client.get(f"/api/v1/documents/{doc['id']}/").json()["status"] == "ready", timeout=90)
    bot = client.post("/api/v1/chatbots/", {"name": "Helper", "knowledge_bases": [kb_id]}, format="json").json()
    question = "Can I pick up my order at the Utrecht warehouse?"
    first = client.post(f"/api/v1/chatbots/{bot['id']}/chat/", {"message": question}, format="json").json()
    assert "Utrecht" not in first["answer"]

    response = client.post(
        f"/api/v1/messages/{first['message_id']}/correction/",
        {"answer": "Yes: orders can be picked up at the Utrecht warehouse on weekdays from 9:00 to 17:00."},
        format="json",
    )
    assert response.status_code == 201, response.content
    qa_id = response.json()["document_id"]
    wait_for(lambda: client.get(f"/api/v1/documents/{qa_id}/").json()["status"] == "ready", timeout=60)

    second = client.post(f"/api/v1/chatbots/{bot['id']}/chat/", {"message": question}, format="json").json()
    assert second["refused"] is False
    assert "Utrecht warehouse on weekdays" in second["answer"]
    assert qa_id in {c["document_id"] for c in second["citations"]}
    transcript = client.get(f"/api/v1/conversations/{first['conversation_id']}/").json()
    assert transcript["reviewed"] is True
    assert transcript["messages"][1]["corrections"][0]["document_id"] == qa_id
