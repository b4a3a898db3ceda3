"""In real headless Chromium: review mode, a replaced policy, replay side by side, publish, restore."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import Role
from chat.rag.answer import chat_answer
from chat.services import chatbot_create
from kb.models import Document, KnowledgeBase
from kb.pipeline.run import version_ingest
from kb.services import document_upload, knowledge_base_create
from tests.conftest import login, screenshot, wait_for
from tests.test_releases import POLICY_V1, POLICY_V2, SHIPPING

QUESTION = "How many days do I have to return unworn shoes?"


def _ask_in_playground(page: Any, bot_id: int) -> str:
    page.goto(f"/chatbots/{bot_id}/playground/")
    page.get_by_label("Your question").fill(QUESTION)
    page.get_by_role("button", name="Ask").click()
    answer = page.locator(".msg-bubble.assistant").last
    answer.locator(".sources").wait_for()
    return str(answer.inner_text())


@pytest.mark.browser
@pytest.mark.worker
def test_staff_replays_a_policy_change_publishes_it_and_restores_the_old_release(
    page, make_org, make_user, celery_worker, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    org = make_org("Shoes")
    user = make_user(org, role=Role.ADMIN, email="admin@shoes.test")
    kb = knowledge_base_create(organization=org, name="Policies", created_by=user)
    docs = []
    for name, body in (("returns.md", POLICY_V1), ("shipping.md", SHIPPING)):
        result = document_upload(
            knowledge_base=kb, upload=_file(tmp_path, name, body), filename=name, uploaded_by=user, enqueue=False
        )
        version_ingest(version_id=result.version.pk)
        docs.append(result.document)
    bot = chatbot_create(organization=org, name="Shop bot", knowledge_bases=[kb], created_by=user)
    assert "30 days" in chat_answer(chatbot=bot, question=QUESTION, channel="widget")["message"]["content"]

    login(page, "admin@shoes.test")
    # Review mode on, from the Changes page.
    page.goto(f"/knowledge-bases/{kb.pk}/")
    page.locator("#changes-link").click()
    page.get_by_label("Review changes first", exact=False).check()
    page.locator("#save-mode").click()
    page.get_by_text("Changes now wait in a draft", exact=False).wait_for()
    assert KnowledgeBase.objects.get(pk=kb.pk).review_changes

    # Replace the policy: 30 days becomes 60; it waits in the draft until ready.
    page.goto(f"/documents/{docs[0].pk}/")
    new_file = tmp_path / "returns.md"
    new_file.write_bytes(POLICY_V2)
    page.locator("#replace-file").set_input_files(str(new_file))
    page.get_by_role("button", name="Replace").click()
    page.goto(f"/knowledge-bases/{kb.pk}/changes/")
    page.wait_for_selector(f"#draft-table tr[data-document='{docs[0].pk}'] .badge-ready", timeout=90_000)
    assert "30 days" in _ask_in_playground(page, bot.pk)  # still live: 30 days

    # Replay: the changed answer side by side.
    page.goto(f"/knowledge-bases/{kb.pk}/changes/")
    page.locator("#replay-start").click()
    page.wait_for_url("**/replays/*/")
    row = page.locator("tr[data-change='changed']").first
    row.wait_for(timeout=120_000)
    assert "30 days" in row.locator(".live-answer").inner_text()
    assert "60 days" in row.locator(".draft-answer").inner_text()
    screenshot(page, "replay")

    # Publish: the bot answers with the new fact.
    page.goto(f"/knowledge-bases/{kb.pk}/changes/")
    page.locator("#publish-draft").click()
    page.get_by_text("is live", exact=False).first.wait_for()
    assert "60 days" in _ask_in_playground(page, bot.pk)

    # Restore the release before the change: the old answer is back.
    page.goto(f"/knowledge-bases/{kb.pk}/changes/")
    screenshot(page, "changes-and-releases")
    before_change = KnowledgeBase.objects.get(pk=kb.pk).release_number - 1
    page.locator(f"button[data-restore='{before_change}']").click()
    page.get_by_text(f"Release {before_change} restored", exact=False).wait_for()
    assert "30 days" in _ask_in_playground(page, bot.pk)
    live = wait_for(lambda: Document.objects.get(pk=docs[0].pk).live_version, timeout=5)
    assert live.number == 1


def _file(tmp_path: Any, name: str, body: bytes) -> Any:
    path = tmp_path / f"upload-{name}"
    path.write_bytes(body)
    return path.open("rb")
