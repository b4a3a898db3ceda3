"""`make run`'s demo that talks (seeded bot, playground and widget demo URLs) and the dashboard's
first-run checklist, ticked from real data only."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from accounts.models import Role
from chat.demo import DEMO_QUESTIONS, demo_seed
from chat.models import Chatbot
from chat.onboarding import first_run_steps
from chat.rag.answer import chat_answer
from chat.services import chatbot_create, chatbot_update
from kb.pipeline.run import version_ingest
from kb.services import document_create_text, knowledge_base_create


def test_make_run_seeds_a_chatbot_with_suggested_questions_and_prints_its_urls(
    db: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOST", "127.0.0.1")
    monkeypatch.setenv("PORT", "8000")
    call_command("chat_seed_demo")
    bot = Chatbot.objects.get(organization__slug="demo")
    assert bot.suggested_questions == list(DEMO_QUESTIONS)
    assert [kb.name for kb in bot.knowledge_bases.all()] == ["Customer support"]
    out = capsys.readouterr().out
    assert f"http://127.0.0.1:8000/chatbots/{bot.pk}/playground/" in out
    assert f"http://127.0.0.1:8000/chatbots/{bot.pk}/widget-demo/" in out
    assert "groundwork-demo" in out

    # Idempotent, and a later run keeps what the user changed.
    chatbot_update(chatbot=bot, suggested_questions=["Mine?"])
    call_command("chat_seed_demo")
    assert Chatbot.objects.filter(organization__slug="demo").count() == 1
    assert Chatbot.objects.get(pk=bot.pk).suggested_questions == ["Mine?"]


def test_runner_seeds_with_the_chat_demo_command() -> None:
    from devtools.runner import _setup_steps

    steps, _ = _setup_steps()
    assert [step.argv[-1] for step in steps] == ["--noinput", "chat_seed_demo"]


def test_widget_demo_page_embeds_the_bots_snippet_for_its_organisation_only(
    db: None, make_org: Any, make_user: Any
) -> None:
    seed = demo_seed(email="admin@example.com", password=None, host="127.0.0.1")
    client = Client()
    client.force_login(seed.knowledge.user)
    page = client.get(f"/chatbots/{seed.chatbot.pk}/widget-demo/").content.decode()
    assert f'data-bot="{seed.chatbot.widget_key}"' in page and "/static/widget/widget.js" in page
    outsider = Client()
    outsider.force_login(make_user(make_org("Other"), role=Role.ADMIN))
    assert outsider.get(f"/chatbots/{seed.chatbot.pk}/widget-demo/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_first_run_checklist_ticks_each_step_from_real_data(make_org: Any, make_user: Any) -> None:
    org = make_org("Newcomer")
    editor = make_user(org, role=Role.EDITOR)
    other = make_org("Busy")  # another organisation's progress ticks nothing here
    other_kb = knowledge_base_create(organization=other, name="KB", created_by=None)
    version_ingest(
        version_id=document_create_text(
            knowledge_base=other_kb, title="T", text="Parcels ship daily.", created_by=None, enqueue=False
        ).version.pk
    )

    def done() -> dict[str, bool]:
        return {step.key: step.done for step in first_run_steps(organization=org)}

    assert done() == {"knowledge_base": False, "upload": False, "ask": False, "embed": False}
    kb = knowledge_base_create(organization=org, name="Support", created_by=editor)
    assert done()["knowledge_base"] and not done()["upload"]
    result = document_create_text(
        knowledge_base=kb,
        title="Shipping",
        text="Express delivery costs 12.50 EUR and arrives the next business day.",
        created_by=editor,
        enqueue=False,
    )
    assert not done()["upload"]  # queued is not done: it must be ready to answer from
    version_ingest(version_id=result.version.pk)
    assert done()["upload"] and not done()["ask"]
    bot = chatbot_create(organization=org, name="Helper", knowledge_bases=[kb], created_by=editor)
    chat_answer(chatbot=bot, question="How much is express delivery?", channel="playground")
    assert done()["ask"] and not done()["embed"]

    client = Client()
    client.force_login(editor)
    fragment = client.get("/first-run/").content.decode()
    assert "3 of 4 done" in fragment and f"/chatbots/{bot.pk}/" in fragment
    chatbot_update(chatbot=bot, allowed_origins=["https://www.newcomer.example"])
    assert all(done().values())
    assert "Get started" not in client.get("/first-run/").content.decode()  # gone once done
    assert 'hx-get="/first-run/"' in client.get("/").content.decode()
