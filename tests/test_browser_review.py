"""In real headless Chromium: the playground streams a cited answer; a reviewer finds a thumbs-down
conversation, corrects the answer, and the playground then answers correctly; the dashboard renders."""

from __future__ import annotations

import pytest

from accounts.models import Role
from chat.rag.answer import chat_answer
from chat.services import chatbot_create, message_feedback_set
from kb.models import DocumentStatus, DocumentVersion
from kb.services import document_create_text, knowledge_base_create
from tests.conftest import login, screenshot, wait_for

POLICY = (
    "Standard delivery takes 2 to 4 business days within the EU. "
    "Express delivery costs 12.50 EUR and arrives the next business day. "
    "Every order gets a tracking link by e-mail when the parcel leaves the warehouse."
)


@pytest.mark.browser
@pytest.mark.worker
def test_reviewer_corrects_a_disliked_answer_and_the_playground_then_answers(
    page, make_org, make_user, celery_worker
) -> None:  # type: ignore[no-untyped-def]
    org = make_org("Northwind")
    editor = make_user(org, role=Role.EDITOR, email="reviewer@northwind.test")
    kb = knowledge_base_create(organization=org, name="Support", created_by=editor)
    doc = document_create_text(knowledge_base=kb, title="Shipping", text=POLICY, created_by=editor).document
    version_id = doc.latest_version_id
    assert version_id is not None
    wait_for(lambda: DocumentVersion.objects.get(pk=version_id).status == DocumentStatus.READY, timeout=60)
    bot = chatbot_create(organization=org, name="Helper", knowledge_bases=[kb], created_by=editor)
    question = "Can I collect my order at the Utrecht warehouse?"
    disliked = chat_answer(chatbot=bot, question=question, channel="widget")["message"]
    from chat.models import Message

    message_feedback_set(message=Message.objects.get(pk=disliked["id"]), value="down", comment="Wrong answer")
    chat_answer(chatbot=bot, question="How long does standard delivery take?", channel="widget")

    login(page, "reviewer@northwind.test")
    # Playground: a streamed answer with its sources.
    page.goto(f"/chatbots/{bot.pk}/playground/")
    page.get_by_label("Your question").fill("How much does express delivery cost?")
    page.get_by_role("button", name="Ask").click()
    answer = page.locator(".msg-bubble.assistant").last
    try:
        answer.locator(".sources").wait_for()
    finally:
        screenshot(page, "playground-answer")
    assert "12.50 EUR" in answer.inner_text()
    assert "Shipping" in answer.locator(".sources").inner_text()
    screenshot(page, "playground-answer")

    # Review: filter to thumbs-down, open, correct.
    page.goto("/conversations/")
    page.get_by_label("Feedback").select_option("down")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.table tbody tr")
    assert rows.count() == 1
    rows.first.get_by_role("link").click()
    page.get_by_text("Correct this answer").click()
    page.get_by_label("The right answer").fill(
        "Yes: orders can be collected at the Utrecht warehouse on weekdays from 9:00 to 17:00."
    )
    page.get_by_role("button", name="Save correction").click()
    page.get_by_text("Correction saved").wait_for()
    screenshot(page, "transcript-after-correction")

    qa = DocumentVersion.objects.filter(document__knowledge_base=kb, document__source_type="qa").first()
    assert qa is not None
    wait_for(lambda: DocumentVersion.objects.get(pk=qa.pk).status == DocumentStatus.READY, timeout=60)

    page.goto(f"/chatbots/{bot.pk}/playground/")
    page.get_by_label("Your question").fill(question)
    page.get_by_role("button", name="Ask").click()
    answer = page.locator(".msg-bubble.assistant").last
    answer.locator(".sources").wait_for()
    assert "Utrecht warehouse on weekdays" in answer.inner_text()

    page.goto("/analytics/")
    page.locator("svg.chart").first.wait_for()
    assert page.locator(".kpi-value").first.inner_text().strip() == "4"  # 2 widget + 2 playground
    screenshot(page, "dashboard")
