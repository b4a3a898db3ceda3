"""A scanned PDF uploaded in the browser is read by OCR, becomes ready, and answers in the playground."""

from __future__ import annotations

from pathlib import Path

import pytest

from accounts.models import Role
from chat.services import chatbot_create
from kb.models import Document
from kb.services import knowledge_base_create
from tests.conftest import login, screenshot
from tests.test_ocr import KETTLE, _pdf


@pytest.mark.browser
@pytest.mark.worker
@pytest.mark.timeout(900)  # OCR of one page and the first model loads; minutes only on a loaded shared box
def test_staff_uploads_a_scanned_pdf_in_the_browser_and_the_bot_answers_from_it(  # type: ignore[no-untyped-def]
    page, make_org, make_user, celery_worker, tmp_path: Path
) -> None:
    org = make_org("Northwind")
    user = make_user(org, role=Role.EDITOR, email="editor@northwind.test")
    kb = knowledge_base_create(organization=org, name="Scans", created_by=user)
    bot = chatbot_create(organization=org, name="Helper", knowledge_bases=[kb], created_by=user)
    login(page, "editor@northwind.test")
    page.goto(f"/knowledge-bases/{kb.pk}/")
    page.locator("#upload-files").set_input_files(str(_pdf(KETTLE, tmp_path)))

    page.wait_for_function(
        "() => document.querySelectorAll('#document-table [data-status=ready]').length === 1", timeout=600_000
    )
    document = Document.objects.get(knowledge_base=kb)
    assert document.live_version is not None and document.live_version.ocr_pages == [1]

    page.goto(f"/chatbots/{bot.pk}/playground/")
    page.get_by_label("Your question").fill("How long is the warranty of the Zephyr kettle?")
    page.locator("#ask-button").click()
    answer = page.locator(".msg-bubble.assistant").last
    answer.locator(".sources").wait_for(timeout=120_000)
    assert "27 months" in answer.inner_text()
    screenshot(page, "scanned-pdf-answer")
