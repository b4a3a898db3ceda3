"""Test sets per chatbot: API create/list/delete, CSV and JSONL import/export, promotion from
review, phrase matching, and organisation isolation and roles (no worker needed)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from accounts.models import Role
from chat.models import Channel, Chatbot, Correction, EvalRun, Message, TestCase
from chat.services import chatbot_create, conversation_start
from chat.testsets.matching import contains_phrase
from chat.testsets.services import case_from_message


@pytest.fixture
def org_bot(make_org, api_client_for) -> tuple[Any, APIClient, Chatbot]:  # type: ignore[no-untyped-def]
    org = make_org("Northwind")
    bot = chatbot_create(organization=org, name="Support", knowledge_bases=[], created_by=None)
    return org, api_client_for(org, Role.EDITOR), bot


def _import(client: APIClient, bot: str | int, name: str, body: str) -> Any:
    upload = SimpleUploadedFile(name, body.encode(), content_type="text/plain")
    return client.post(f"/api/v1/chatbots/{bot}/test-cases/import/", {"file": upload}, format="multipart")


def test_create_list_and_delete_cases_by_id_or_slug(org_bot) -> None:  # type: ignore[no-untyped-def]
    _, client, bot = org_bot
    created = client.post(
        f"/api/v1/chatbots/{bot.slug}/test-cases/",
        {"question": "How long do returns take?", "expected": ["30 days", "thirty days"]},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["expected"] == ["30 days", "thirty days"] and body["must_refuse"] is False
    assert body["source"] == "manual"
    listed = client.get(f"/api/v1/chatbots/{bot.pk}/test-cases/").json()
    assert [c["question"] for c in listed] == ["How long do returns take?"]
    assert client.delete(f"/api/v1/chatbots/{bot.pk}/test-cases/{body['id']}/").status_code == 204
    assert client.get(f"/api/v1/chatbots/{bot.pk}/test-cases/").json() == []


def test_must_refuse_case_cannot_expect_phrases(org_bot) -> None:  # type: ignore[no-untyped-def]
    _, client, bot = org_bot
    response = client.post(
        f"/api/v1/chatbots/{bot.pk}/test-cases/",
        {"question": "Capital of Mongolia?", "expected": ["Ulaanbaatar"], "must_refuse": True},
        format="json",
    )
    assert response.status_code == 400
    assert TestCase.objects.count() == 0


def test_csv_import_rejects_malformed_row_with_line_number_and_imports_nothing(org_bot) -> None:  # type: ignore[no-untyped-def]
    _, client, bot = org_bot
    csv_text = (
        "question,expected,must_refuse,expected_document_ids\n"
        "How long do returns take?,30 days|thirty days,false,\n"
        "Can I return gift cards?,no,false,\n"
        "Capital of Mongolia?,,maybe,\n"
    )
    response = _import(client, bot.pk, "cases.csv", csv_text)
    assert response.status_code == 400, response.content
    assert response.json()["line"] == 4
    assert "Line 4" in response.json()["detail"]
    assert TestCase.objects.count() == 0


def test_csv_import_with_alternatives_then_export_round_trips(org_bot) -> None:  # type: ignore[no-untyped-def]
    _, client, bot = org_bot
    csv_text = (
        "question,expected,must_refuse,expected_document_ids\n"
        "How long do returns take?,30 days|thirty days,false,\n"
        "Capital of Mongolia?,,true,\n"
    )
    response = _import(client, bot.pk, "cases.csv", csv_text)
    assert response.status_code == 201, response.content
    assert response.json() == {"imported": 2}
    cases = list(TestCase.objects.order_by("pk"))
    assert cases[0].expected == ["30 days", "thirty days"] and cases[0].source == "import"
    assert cases[1].must_refuse is True
    exported = client.get(f"/api/v1/chatbots/{bot.pk}/test-cases/export/?format=csv")
    assert exported.status_code == 200
    assert exported.content.decode().splitlines()[1] == "How long do returns take?,30 days|thirty days,false,"
    jsonl = client.get(f"/api/v1/chatbots/{bot.pk}/test-cases/export/?format=jsonl").content.decode()
    assert json.loads(jsonl.splitlines()[1]) == {
        "question": "Capital of Mongolia?",
        "expected": [],
        "must_refuse": True,
        "expected_document_ids": [],
    }


def test_jsonl_import_and_its_line_numbers(org_bot) -> None:  # type: ignore[no-untyped-def]
    _, client, bot = org_bot
    good = '{"question": "How long?", "expected": ["30 days"]}\n\n{"question": "Fuel?", "must_refuse": true}\n'
    assert _import(client, bot.pk, "cases.jsonl", good).status_code == 201
    assert TestCase.objects.count() == 2
    bad = '{"question": "Ok?"}\n{"question": ""}\n'
    response = _import(client, bot.pk, "more.jsonl", bad)
    assert response.status_code == 400 and response.json()["line"] == 2
    assert TestCase.objects.count() == 2


def test_case_from_message_prefills_question_and_correction(org_bot) -> None:  # type: ignore[no-untyped-def]
    _, client, bot = org_bot
    conversation = conversation_start(chatbot=bot, channel=Channel.API)
    Message.objects.create(conversation=conversation, role="user", content="Can I return boots?")
    answer = Message.objects.create(conversation=conversation, role="assistant", content="Yes, any time.")
    Correction.objects.create(message=answer, question="Can I return boots?", answer="Custom-fitted boots cannot")
    case = case_from_message(message=answer, actor=None)
    assert case.question == "Can I return boots?"
    assert (case.expected, case.source) == (["Custom-fitted boots cannot"], "review")
    response = client.post(f"/api/v1/messages/{answer.pk}/test-case/")
    assert response.status_code == 201, response.content
    assert response.json()["message_id"] == answer.pk


def test_phrase_matching_normalises_case_accents_and_numbers() -> None:
    assert contains_phrase("Returns are accepted within thirty days.", "30 days")
    assert contains_phrase("It costs 1,000 euros.", "1000 EUROS")
    assert contains_phrase("Version 5.0 is out", "version 5")
    assert contains_phrase("You get five free returns", "5 free returns")
    assert contains_phrase("Le CAFÉ ferme à 18h", "cafe ferme")
    assert not contains_phrase("within 300 days", "30 days")
    assert not contains_phrase("within 15 days", "5 days")


def test_one_organisation_cannot_see_or_import_into_anothers_test_set(org_bot, make_org, api_client_for) -> None:  # type: ignore[no-untyped-def]
    _, client, bot = org_bot
    client.post(f"/api/v1/chatbots/{bot.pk}/test-cases/", {"question": "Q?"}, format="json")
    case = TestCase.objects.get()
    other = api_client_for(make_org("Globex"))
    assert other.get(f"/api/v1/chatbots/{bot.pk}/test-cases/").status_code == 404
    assert other.post(f"/api/v1/chatbots/{bot.pk}/test-cases/", {"question": "X?"}, format="json").status_code == 404
    assert _import(other, bot.pk, "c.csv", "question\nX?\n").status_code == 404
    assert other.delete(f"/api/v1/chatbots/{bot.pk}/test-cases/{case.pk}/").status_code == 404
    assert other.get(f"/api/v1/chatbots/{bot.pk}/test-cases/export/").status_code == 404
    assert other.post(f"/api/v1/chatbots/{bot.pk}/evaluations/", {"target": "live"}, format="json").status_code == 404
    run = client.post(f"/api/v1/chatbots/{bot.pk}/evaluations/", {"target": "live"}, format="json").json()
    assert other.get(f"/api/v1/evaluations/{run['id']}/").status_code == 404
    assert other.post(f"/api/v1/evaluations/{run['id']}/cancel/").status_code == 404
    assert other.get(f"/api/v1/evaluations/compare/?a={run['id']}&b={run['id']}").status_code == 404
    assert TestCase.objects.count() == 1


def test_viewer_reads_but_cannot_add_import_or_run(org_bot, api_client_for) -> None:  # type: ignore[no-untyped-def]
    org, _, bot = org_bot
    viewer = api_client_for(org, Role.VIEWER)
    assert viewer.get(f"/api/v1/chatbots/{bot.pk}/test-cases/").status_code == 200
    assert viewer.post(f"/api/v1/chatbots/{bot.pk}/test-cases/", {"question": "Q?"}, format="json").status_code == 403
    assert _import(viewer, bot.pk, "c.csv", "question\nX?\n").status_code == 403
    assert viewer.post(f"/api/v1/chatbots/{bot.pk}/evaluations/", {"target": "live"}, format="json").status_code == 403
    assert viewer.get(f"/api/v1/chatbots/{bot.pk}/evaluations/").status_code == 200
    assert EvalRun.objects.count() == 0


def test_queued_run_is_cancelled_at_once(org_bot) -> None:  # type: ignore[no-untyped-def]
    _, client, bot = org_bot
    # Outside a committed transaction the run is never handed to a worker: it stays queued.
    created = client.post(f"/api/v1/chatbots/{bot.pk}/evaluations/", {"target": "draft"}, format="json")
    assert created.status_code == 201, created.content
    run_id = created.json()["id"]
    assert client.get(f"/api/v1/evaluations/{run_id}/").json()["status"] == "queued"
    cancelled = client.post(f"/api/v1/evaluations/{run_id}/cancel/")
    assert cancelled.json()["status"] == "cancelled"


def test_settings_override_is_validated(org_bot) -> None:  # type: ignore[no-untyped-def]
    _, client, bot = org_bot
    bad = client.post(
        f"/api/v1/chatbots/{bot.pk}/evaluations/", {"target": "live", "settings": {"top_k": 99}}, format="json"
    )
    assert bad.status_code == 400
    unknown = client.post(
        f"/api/v1/chatbots/{bot.pk}/evaluations/", {"target": "live", "settings": {"temperature": 1}}, format="json"
    )
    assert unknown.status_code == 400


def test_evaluation_endpoints_are_in_the_openapi_schema(org_bot) -> None:  # type: ignore[no-untyped-def]
    _, client, _ = org_bot
    schema = yaml.safe_load(client.get("/api/schema/").content)
    for path in (
        "/api/v1/chatbots/{bot_id}/test-cases/",
        "/api/v1/chatbots/{bot_id}/test-cases/import/",
        "/api/v1/chatbots/{bot_id}/evaluations/",
        "/api/v1/evaluations/{id}/",
        "/api/v1/evaluations/{id}/cancel/",
        "/api/v1/evaluations/compare/",
        "/api/v1/messages/{id}/test-case/",
    ):
        assert path in schema["paths"], path


def test_staff_tests_page_add_run_progress_and_add_from_transcript(org_bot, make_user, client) -> None:  # type: ignore[no-untyped-def]
    org, _, bot = org_bot
    client.force_login(make_user(org, Role.EDITOR))
    assert client.get(f"/chatbots/{bot.pk}/tests/").status_code == 200
    client.post(f"/chatbots/{bot.pk}/tests/add/", {"question": "How long?", "expected": "30 days | thirty days"})
    assert TestCase.objects.get().expected == ["30 days", "thirty days"]
    page = client.get(f"/chatbots/{bot.pk}/tests/").content.decode()
    assert "How long?" in page and "Run evaluation" in page
    started = client.post(f"/chatbots/{bot.pk}/tests/run/", {"target": "live"})
    run = EvalRun.objects.get()
    assert started["Location"] == f"/evaluations/{run.pk}/"
    fragment = client.get(f"/evaluations/{run.pk}/progress/").content.decode()
    assert 'hx-trigger="every 1s"' in fragment and "Cancel" in fragment
    client.post(f"/evaluations/{run.pk}/cancel/")
    fragment = client.get(f"/evaluations/{run.pk}/progress/").content.decode()
    assert "hx-trigger" not in fragment and "Cancelled" in fragment  # terminal: polling stops
    conversation = conversation_start(chatbot=bot, channel=Channel.API)
    Message.objects.create(conversation=conversation, role="user", content="Do you ship to Norway?")
    answer = Message.objects.create(conversation=conversation, role="assistant", content="Yes.")
    assert "Add to test set" in client.get(f"/conversations/{conversation.pk}/").content.decode()
    client.post(f"/messages/{answer.pk}/add-to-tests/")
    assert TestCase.objects.filter(question="Do you ship to Norway?", source="review").exists()


def test_viewer_sees_tests_page_without_write_controls(org_bot, make_user, client) -> None:  # type: ignore[no-untyped-def]
    org, _, bot = org_bot
    client.force_login(make_user(org, Role.VIEWER))
    page = client.get(f"/chatbots/{bot.pk}/tests/").content.decode()
    assert "Run evaluation" not in page
    assert client.post(f"/chatbots/{bot.pk}/tests/run/", {"target": "live"}).status_code == 403


def test_staff_try_other_settings_then_apply_them(org_bot, make_user, make_org, client) -> None:  # type: ignore[no-untyped-def]
    from chat.models import EvalStatus

    org, _, bot = org_bot
    client.force_login(make_user(org, Role.EDITOR))
    assert "Try other settings first" in client.get(f"/chatbots/{bot.pk}/tests/").content.decode()
    client.post(f"/chatbots/{bot.pk}/tests/run/", {"target": "live", "try_top_k": "abc"})
    assert not EvalRun.objects.exists()  # a bad number runs nothing
    client.post(f"/chatbots/{bot.pk}/tests/run/", {"target": "live", "try_top_k": "3", "try_min_relevance": ""})
    run = EvalRun.objects.get()
    assert run.settings_override == {"top_k": 3}
    EvalRun.objects.filter(pk=run.pk).update(status=EvalStatus.DONE)
    assert "Apply these settings" in client.get(f"/evaluations/{run.pk}/").content.decode()

    outsider = make_user(make_org("Other"), Role.OWNER)
    client.force_login(outsider)
    assert client.post(f"/evaluations/{run.pk}/apply-settings/").status_code == 404
    client.force_login(make_user(org, Role.VIEWER))
    assert client.post(f"/evaluations/{run.pk}/apply-settings/").status_code == 403
    bot.refresh_from_db()
    assert bot.top_k != 3

    client.force_login(make_user(org, Role.EDITOR))
    client.post(f"/evaluations/{run.pk}/apply-settings/")
    bot.refresh_from_db()
    assert bot.top_k == 3
    from accounts.models import AuditEvent

    assert AuditEvent.objects.filter(action="chatbot.update", target_id=str(bot.pk)).exists()
