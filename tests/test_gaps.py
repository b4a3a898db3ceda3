"""The knowledge-gap inbox (chat.gaps): grouping by meaning, ranking, the three actions, isolation."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import Organization, Role
from chat.gaps import clustering
from chat.gaps.services import gaps_refresh
from chat.gaps.tasks import gaps_refresh as gaps_refresh_task
from chat.models import Chatbot, Message, TestCase
from chat.models.gaps import GapStatus, KnowledgeGap, KnowledgeGapQuestion
from chat.rag.answer import chat_answer
from chat.services import chatbot_create, message_feedback_set
from tests.conftest import wait_for
from tests.test_chat import _bot, _kb_with_document

PAYPAL = ["Can I pay with PayPal?", "Do you accept PayPal payments?", "Is PayPal a payment option?"]
CANADA = "Do you ship to Canada?"
ANSWER = "Yes, we accept PayPal payments at checkout."


def _ask(client: APIClient, bot_id: int, question: str) -> dict[str, Any]:
    response = client.post(f"/api/v1/chatbots/{bot_id}/chat/", {"message": question}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def _gaps(client: APIClient, bot_id: int | str) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/chatbots/{bot_id}/gaps/")
    assert response.status_code == 200, response.content
    return response.json()


def _bot_without_knowledge(org: Organization) -> Chatbot:
    """A bot with no knowledge base refuses everything, with no model call: gaps without a worker."""
    return chatbot_create(organization=org, name="Shop bot", knowledge_bases=[], created_by=None)


def _refuse(bot: Chatbot, *questions: str) -> None:
    for question in questions:
        assert chat_answer(chatbot=bot, question=question)["message"]["refused"]


# --- grouping and ranking ------------------------------------------------------------------------


def test_leader_clustering_joins_the_most_similar_group_above_the_threshold() -> None:
    clusters: list[clustering.Cluster[str]] = [clustering.Cluster(centroid=[1.0, 0.0], weight=2, key="a")]
    clustering.assign(clusters, [clustering.unit([0.9, 0.1]), [0.0, 1.0], clustering.unit([0.1, 0.95])])
    assert [c.key for c in clusters] == ["a", None]
    assert clusters[0].added == [0] and clusters[0].weight == 3
    assert clusters[1].added == [1, 2]  # the third joined the group the second started
    members = [("x", [1.0, 0.0]), ("y", clustering.unit([0.6, 0.8]))]
    assert clustering.most_central([0.9, 0.2], members) == "x"


@pytest.mark.worker
def test_paraphrased_refusals_form_one_group_ranked_first_and_a_disliked_answer_its_own(
    make_org, api_client_for, celery_worker
) -> None:  # type: ignore[no-untyped-def]
    client = api_client_for(make_org())
    kb_id, _ = _kb_with_document(client)
    bot = _bot(client, [kb_id])
    disliked = _ask(client, bot["id"], "How many days do I have to return an item?")
    assert not disliked["refused"]
    message_feedback_set(message=Message.objects.get(pk=disliked["message_id"]), value="down")
    for question in PAYPAL:
        assert _ask(client, bot["id"], question)["refused"]
    assert _ask(client, bot["id"], CANADA)["refused"]

    gaps = _gaps(client, bot["slug"])  # id or slug, like every chatbot endpoint
    assert [g["count"] for g in gaps] == [3, 1, 1], gaps
    paypal, canada, returns = gaps
    assert sorted(paypal["questions"]) == sorted(PAYPAL) and paypal["label"] in PAYPAL
    # Equal counts: the most recently asked first.
    assert canada["questions"] == [CANADA] and canada["label"] == CANADA
    assert returns["questions"] == ["How many days do I have to return an item?"]
    assert set(paypal) >= {"id", "label", "count", "questions", "last_seen"}
    assert canada["last_seen"] > returns["last_seen"]

    # Nothing new: the same groups, nothing grouped twice.
    assert _gaps(client, bot["id"]) == gaps
    assert KnowledgeGapQuestion.objects.count() == 5

    detail = client.get(f"/api/v1/gaps/{returns['id']}/").json()
    (item,) = detail["items"]
    assert item["reason"] == "thumbs_down" and "30 days" in item["answer"]
    assert item["citations"] and item["retrieved"][0]["document_title"] == "refunds.md"
    assert item["retrieved"][0]["excerpt"]

    # A later paraphrase joins the open group.
    assert _ask(client, bot["id"], "Can I pay by PayPal at checkout?")["refused"]
    assert _gaps(client, bot["id"])[0]["count"] == 4


# --- actions ---------------------------------------------------------------------------------------


@pytest.mark.worker
def test_writing_the_answer_adds_a_qa_entry_and_test_cases_and_the_bot_then_answers(
    make_org, api_client_for, celery_worker
) -> None:  # type: ignore[no-untyped-def]
    client = api_client_for(make_org())
    kb_id, _ = _kb_with_document(client)
    bot = _bot(client, [kb_id])
    for question in PAYPAL:
        assert _ask(client, bot["id"], question)["refused"]
    (gap,) = _gaps(client, bot["id"])

    response = client.post(f"/api/v1/gaps/{gap['id']}/answer/", {"answer": ANSWER}, format="json")
    assert response.status_code == 201, response.content
    document = response.json()
    assert document["source_type"] == "qa" and document["knowledge_base"] == kb_id
    assert document["title"] == gap["label"]
    assert _gaps(client, bot["id"]) == []  # answered: it left the inbox
    cases = client.get(f"/api/v1/chatbots/{bot['id']}/test-cases/").json()
    assert sorted(c["question"] for c in cases) == sorted(PAYPAL)
    assert all(c["expected"] == [ANSWER] and c["source"] == "gap" and not c["must_refuse"] for c in cases)
    assert KnowledgeGap.objects.get(pk=gap["id"]).answer_document_id == document["id"]

    wait_for(lambda: client.get(f"/api/v1/documents/{document['id']}/").json()["status"] == "ready", timeout=90)
    answered = _ask(client, bot["id"], "Do you accept PayPal payments?")
    assert not answered["refused"] and "PayPal" in answered["answer"], answered
    assert client.post(f"/api/v1/gaps/{gap['id']}/answer/", {"answer": ANSWER}, format="json").status_code == 409


def test_out_of_scope_adds_must_refuse_cases_and_dismiss_only_closes(make_org, api_client_for) -> None:  # type: ignore[no-untyped-def]
    org = make_org()
    client = api_client_for(org)
    bot = _bot_without_knowledge(org)
    _refuse(bot, *PAYPAL, CANADA)
    paypal, canada = _gaps(client, bot.pk)

    out = client.post(f"/api/v1/gaps/{paypal['id']}/out-of-scope/")
    assert out.status_code == 200 and out.json()["status"] == "out_of_scope" and out.json()["cases"] == 3
    cases = TestCase.objects.filter(chatbot=bot)
    assert sorted(c.question for c in cases) == sorted(PAYPAL)
    assert all(c.must_refuse and c.source == "gap" and c.expected == [] for c in cases)

    dismissed = client.post(f"/api/v1/gaps/{canada['id']}/dismiss/")
    assert dismissed.status_code == 200 and dismissed.json()["status"] == "dismissed"
    assert TestCase.objects.filter(chatbot=bot).count() == 3
    assert _gaps(client, bot.pk) == []
    assert client.post(f"/api/v1/gaps/{canada['id']}/out-of-scope/").status_code == 409

    # Asked again after it was closed: a new group, not the dismissed one.
    _refuse(bot, CANADA)
    (again,) = _gaps(client, bot.pk)
    assert again["id"] != canada["id"] and again["questions"] == [CANADA] and again["count"] == 1
    assert KnowledgeGap.objects.get(pk=canada["id"]).status == GapStatus.DISMISSED


def test_answer_needs_text_and_a_knowledge_base(make_org, api_client_for) -> None:  # type: ignore[no-untyped-def]
    org = make_org()
    client = api_client_for(org)
    bot = _bot_without_knowledge(org)
    _refuse(bot, CANADA)
    (gap,) = _gaps(client, bot.pk)
    assert client.post(f"/api/v1/gaps/{gap['id']}/answer/", {"answer": ""}, format="json").status_code == 400
    no_kb = client.post(f"/api/v1/gaps/{gap['id']}/answer/", {"answer": "Yes."}, format="json")
    assert no_kb.status_code == 400 and no_kb.json()["error"] == "no_knowledge_base"
    assert KnowledgeGap.objects.get(pk=gap["id"]).status == GapStatus.OPEN  # nothing half-done


def test_in_review_mode_the_answer_waits_in_the_draft(make_org, api_client_for) -> None:  # type: ignore[no-untyped-def]
    from kb.services import knowledge_base_create

    org = make_org()
    client = api_client_for(org)
    kb = knowledge_base_create(organization=org, name="Policies", created_by=None)
    assert client.patch(f"/api/v1/knowledge-bases/{kb.pk}/", {"review_changes": True}, format="json").status_code == 200
    bot = chatbot_create(organization=org, name="Shop bot", knowledge_bases=[kb], created_by=None)
    _refuse(bot, CANADA)  # an empty knowledge base: refused without a model call
    (gap,) = _gaps(client, bot.pk)
    document = client.post(f"/api/v1/gaps/{gap['id']}/answer/", {"answer": "Yes, in 5 days."}, format="json").json()
    assert document["live_version"] is None  # not live: staged
    draft = client.get(f"/api/v1/knowledge-bases/{kb.pk}/draft/").json()
    assert [c["document_id"] for c in draft["changes"]] == [document["id"]]


# --- isolation and roles ---------------------------------------------------------------------------


def test_another_organisation_gets_404_for_every_gap_endpoint(make_org, api_client_for) -> None:  # type: ignore[no-untyped-def]
    org = make_org("Acme")
    owner, intruder = api_client_for(org), api_client_for(make_org("Other"))
    bot = _bot_without_knowledge(org)
    _refuse(bot, CANADA)
    (gap,) = _gaps(owner, bot.pk)
    assert intruder.get(f"/api/v1/chatbots/{bot.pk}/gaps/").status_code == 404
    assert intruder.get(f"/api/v1/chatbots/{bot.slug}/gaps/").status_code == 404
    assert intruder.get(f"/api/v1/gaps/{gap['id']}/").status_code == 404
    assert intruder.post(f"/api/v1/gaps/{gap['id']}/answer/", {"answer": "x"}, format="json").status_code == 404
    assert intruder.post(f"/api/v1/gaps/{gap['id']}/out-of-scope/").status_code == 404
    assert intruder.post(f"/api/v1/gaps/{gap['id']}/dismiss/").status_code == 404
    assert KnowledgeGap.objects.get(pk=gap["id"]).status == GapStatus.OPEN
    assert TestCase.objects.count() == 0


def test_a_viewer_reads_gaps_but_cannot_act(make_org, api_client_for, make_user) -> None:  # type: ignore[no-untyped-def]
    org = make_org()
    viewer = api_client_for(org, role=Role.VIEWER)
    bot = _bot_without_knowledge(org)
    _refuse(bot, CANADA)
    (gap,) = _gaps(viewer, bot.pk)
    assert viewer.get(f"/api/v1/gaps/{gap['id']}/").status_code == 200
    assert viewer.post(f"/api/v1/gaps/{gap['id']}/answer/", {"answer": "x"}, format="json").status_code == 403
    assert viewer.post(f"/api/v1/gaps/{gap['id']}/out-of-scope/").status_code == 403
    assert viewer.post(f"/api/v1/gaps/{gap['id']}/dismiss/").status_code == 403

    staff = Client()
    staff.force_login(make_user(org, role=Role.VIEWER))
    page = staff.get(f"/chatbots/{bot.pk}/gaps/")
    assert page.status_code == 200 and CANADA in page.content.decode()
    assert "Write the answer" not in page.content.decode()
    assert staff.post(f"/gaps/{gap['id']}/dismiss/").status_code == 403
    assert KnowledgeGap.objects.get(pk=gap["id"]).status == GapStatus.OPEN


# --- staff pages -------------------------------------------------------------------------------------


def test_gaps_page_acts_through_forms_and_the_dashboard_counts_open_gaps(make_org, make_user) -> None:  # type: ignore[no-untyped-def]
    org = make_org()
    bot = _bot_without_knowledge(org)
    _refuse(bot, *PAYPAL, CANADA)
    staff = Client()
    staff.force_login(make_user(org, role=Role.EDITOR))
    assert f"/chatbots/{bot.pk}/gaps/" in staff.get("/chatbots/").content.decode()

    html = staff.get(f"/chatbots/{bot.pk}/gaps/").content.decode()
    assert html.index("PayPal") < html.index(CANADA)  # the bigger group first
    assert "3×" in html and "Out of scope" in html and "Dismiss" in html
    dashboard = staff.get(f"/analytics/?chatbot={bot.pk}").content.decode()
    assert "Open knowledge gaps" in dashboard and f"{bot.name}: 2" in dashboard

    canada = KnowledgeGap.objects.get(label=CANADA)
    response = staff.post(f"/gaps/{canada.pk}/dismiss/")
    assert response.status_code == 302 and response["Location"] == f"/chatbots/{bot.pk}/gaps/"
    assert staff.get(f"/chatbots/{bot.pk}/gaps/").content.decode().count(CANADA) == 0
    assert f"{bot.name}: 1" in staff.get("/analytics/").content.decode()


def test_refresh_is_cheap_and_idempotent_and_purged_questions_leave_their_group(make_org) -> None:  # type: ignore[no-untyped-def]
    org = make_org()
    bot = _bot_without_knowledge(org)
    _refuse(bot, *PAYPAL)
    assert gaps_refresh_task() == 3  # the periodic task refreshes every bot
    assert gaps_refresh(chatbot=bot) == 0
    assert settings.CELERY_BEAT_SCHEDULE["chat-refresh-knowledge-gaps"]["task"] == "chat.gaps_refresh"
    gap = KnowledgeGap.objects.get(chatbot=bot)
    Message.objects.filter(gap_question__gap=gap).delete()  # e.g. the retention purge
    assert not KnowledgeGap.objects.filter(pk=gap.pk, questions__isnull=False).exists()
    from chat.gaps.selectors import gaps_open_for_chatbot

    assert list(gaps_open_for_chatbot(chatbot=bot)) == []


def test_gap_endpoints_are_in_the_openapi_schema(make_org, api_client_for) -> None:  # type: ignore[no-untyped-def]
    schema = api_client_for(make_org()).get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    for path in ("/api/v1/chatbots/{bot_id}/gaps/", "/api/v1/gaps/{id}/answer/", "/api/v1/gaps/{id}/out-of-scope/"):
        assert path in schema["paths"], sorted(p for p in schema["paths"] if "gap" in p)
    listed = schema["paths"]["/api/v1/chatbots/{bot_id}/gaps/"]["get"]["responses"]["200"]["content"]
    assert listed["application/json"]["schema"]["items"]["$ref"].endswith("/GapOut")


# --- in a real browser -------------------------------------------------------------------------------

BOOTS = ["Can I exchange boots for a different size?", "Can I swap my boots for a bigger size?"]


@pytest.mark.browser
@pytest.mark.worker
def test_staff_expands_a_gap_sees_what_retrieval_found_and_answers_it(page, make_org, make_user, celery_worker) -> None:  # type: ignore[no-untyped-def]
    from kb.models import DocumentStatus, DocumentVersion
    from kb.services import document_create_text, knowledge_base_create
    from tests.conftest import login, screenshot
    from tests.test_chat import REFUNDS

    org = make_org("Northwind")
    editor = make_user(org, role=Role.EDITOR, email="editor@northwind.test")
    kb = knowledge_base_create(organization=org, name="Support", created_by=editor)
    doc = document_create_text(knowledge_base=kb, title="Refund policy", text=REFUNDS.decode(), created_by=editor)
    version_id = doc.document.latest_version_id
    assert version_id is not None
    wait_for(lambda: DocumentVersion.objects.get(pk=version_id).status == DocumentStatus.READY, timeout=90)
    bot = chatbot_create(organization=org, name="Helper", knowledge_bases=[kb], created_by=editor)
    _refuse(bot, *PAYPAL, *BOOTS, CANADA)

    login(page, "editor@northwind.test")
    page.goto("/chatbots/")
    page.get_by_role("link", name="Gaps").click()
    page.get_by_role("heading", name="Knowledge gaps").wait_for()
    groups = page.locator("section.gap")
    assert groups.count() == 3
    assert groups.nth(0).locator(".badge").first.inner_text() == "3×"
    boots = groups.filter(has=page.locator("summary", has_text="boots"))
    boots.locator("summary").click()
    assert "Refund policy" in boots.locator("table").inner_text()  # what retrieval found
    screenshot(page, "gaps")

    boots.get_by_label("Write the answer").fill("Unworn boots can be exchanged for another size within 30 days.")
    boots.get_by_role("button", name="Add answer").click()
    page.get_by_text("the questions are test cases now").wait_for()
    assert page.locator("section.gap").count() == 2
    assert TestCase.objects.filter(chatbot=bot, source="gap").count() == 2
