"""In real headless Chromium: a playground citation opens the source with the quote highlighted;
a newcomer's `make run` demo bot answers a suggested question; the chatbot settings page tests
its model connection. Screenshots go to docs/screenshots/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.models import Role
from chat.demo import DEMO_QUESTIONS, demo_seed
from chat.services import chatbot_create
from kb.models import DocumentStatus, DocumentVersion
from kb.pipeline.run import version_ingest
from kb.services import document_upload, knowledge_base_create
from tests.conftest import login, wait_for
from tests.pdf_factory import simple_pdf

SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
RETURNS = "Returns are accepted within 30 days of delivery for a full refund."


def _shot(page: Any, name: str, *, full_page: bool = True) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=full_page)


@pytest.mark.browser
def test_clicking_a_citation_in_the_playground_opens_the_pdf_page_with_the_quote_highlighted(
    page, make_org, make_user
) -> None:  # type: ignore[no-untyped-def]
    org = make_org("Northwind")
    make_user(org, role=Role.EDITOR, email="staff@northwind.test")
    kb = knowledge_base_create(organization=org, name="Terms", created_by=None)
    pdf = simple_pdf(
        [
            ["Terms of sale", "These terms apply to every order placed in our online shop."],
            ["Returns and refunds", RETURNS, "Refunds are paid to the original payment method."],
        ]
    )
    result = document_upload(
        knowledge_base=kb,
        upload=SimpleUploadedFile("terms.pdf", pdf),
        filename="terms.pdf",
        uploaded_by=None,
        enqueue=False,
    )
    version_ingest(version_id=result.version.pk)
    bot = chatbot_create(organization=org, name="Helper", knowledge_bases=[kb], created_by=None)

    login(page, "staff@northwind.test")
    page.goto(f"/chatbots/{bot.pk}/playground/")
    page.get_by_label("Your question").fill("Within how many days are returns accepted?")
    page.get_by_role("button", name="Ask").click()
    answer = page.locator(".msg-bubble.assistant").last
    answer.locator(".sources").wait_for()
    link = answer.locator("a.citation-link").first
    with (
        page.context.expect_page() as opened,
        page.context.expect_event("response", lambda r: "/source/page.png" in r.url) as image_response,
    ):
        link.click()
    source = opened.value
    source.wait_for_load_state("load")
    image = image_response.value
    assert image.status == 200 and image.headers["content-type"] == "image/png"
    assert image.body().startswith(b"\x89PNG")
    assert int(image.headers["x-highlight-boxes"]) >= 1
    assert "Quoted on page 2" in source.locator("#source-view").inner_text()
    assert source.locator("#source-page-image").evaluate("img => img.naturalWidth") > 0
    source.set_viewport_size({"width": 1100, "height": 1000})
    _shot(source, "citation-highlight.png", full_page=False)


@pytest.mark.browser
@pytest.mark.worker
def test_newcomers_demo_bot_answers_a_suggested_question_in_the_playground(page, celery_worker) -> None:  # type: ignore[no-untyped-def]
    seed = demo_seed(email="admin@example.com", password=None, host="127.0.0.1")  # what `make run` seeds
    kb = seed.knowledge.knowledge_base
    wait_for(
        lambda: (
            DocumentVersion.objects.filter(document__knowledge_base=kb).exclude(status=DocumentStatus.READY).count()
            == 0
        ),
        timeout=120,
    )
    login(page, "admin@example.com", "groundwork-demo")
    checklist = page.locator("#first-run")
    checklist.wait_for()
    assert checklist.locator("[data-step=knowledge_base].done").count() == 1
    assert checklist.locator("[data-step=upload].done").count() == 1
    assert checklist.locator("[data-step=ask].done").count() == 0
    _shot(page, "first-run.png")

    page.goto(seed.playground_url(""))
    page.get_by_role("button", name=DEMO_QUESTIONS[0]).click()
    answer = page.locator(".msg-bubble.assistant").last
    answer.locator(".sources").wait_for()
    assert "30 days" in answer.inner_text()
    assert "refund-policy" in answer.locator(".sources").inner_text().lower()

    page.goto("/")
    page.locator("#first-run [data-step=ask].done").wait_for()


@pytest.mark.browser
def test_chatbot_settings_preview_follows_the_form_and_test_connection_answers(page, make_org, make_user) -> None:  # type: ignore[no-untyped-def]
    org = make_org("Northwind")
    make_user(org, role=Role.EDITOR, email="staff@northwind.test")
    bot = chatbot_create(
        organization=org,
        name="Helper",
        knowledge_bases=[],
        created_by=None,
        suggested_questions=["How long do I have to return an item?"],
    )
    login(page, "staff@northwind.test")
    page.goto(f"/chatbots/{bot.pk}/")
    page.get_by_label("Widget title").fill("Northwind help")
    page.get_by_label("Welcome message").fill("Hi! Ask me about returns and delivery.")
    page.get_by_label("Theme color").fill("#1f8a4c")
    assert page.locator("#wp-title").inner_text() == "Northwind help"
    assert page.locator("#wp-welcome").inner_text() == "Hi! Ask me about returns and delivery."
    assert page.locator("#wp-chips .wp-chip").all_inner_texts() == ["How long do I have to return an item?"]
    assert page.locator("#wp-head").evaluate("el => getComputedStyle(el).backgroundColor") == "rgb(31, 138, 76)"

    page.get_by_role("combobox", name="Model").fill("local/extractive")
    page.get_by_role("button", name="Test connection").click()
    page.locator("#model-check-result.model-check").wait_for(timeout=60_000)  # first LiteLLM import is slow
    assert "Connected: local/extractive answered." in page.locator("#model-check-result").inner_text()
    page.locator("#section-3").scroll_into_view_if_needed()
    _shot(page, "chatbot-settings.png", full_page=False)
