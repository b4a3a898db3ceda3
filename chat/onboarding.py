"""The dashboard's first-run checklist: knowledge base → upload → ask → embed on your site.

Each step is ticked from real data of the organisation, never from a flag someone set; the
checklist disappears when all four are done.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import reverse

from accounts.models import Organization
from chat.models import Chatbot, Message, Role
from kb.models import Document, KnowledgeBase


@dataclass(frozen=True, slots=True)
class Step:
    key: str
    title: str
    hint: str
    done: bool
    url: str
    action: str


def first_run_steps(*, organization: Organization) -> list[Step]:
    kb = KnowledgeBase.objects.filter(organization=organization).order_by("pk").first()
    has_ready = Document.objects.filter(
        organization=organization, deleted_at__isnull=True, live_version__isnull=False
    ).exists()
    bot = Chatbot.objects.filter(organization=organization).order_by("pk").first()
    asked = Message.objects.filter(conversation__organization=organization, role=Role.ASSISTANT).exists()
    embedded = Chatbot.objects.filter(organization=organization).exclude(allowed_origins=[]).exists()
    bot_url = reverse("chat:edit", args=[bot.pk]) if bot else reverse("chat:create")
    return [
        Step(
            "knowledge_base",
            "Create a knowledge base",
            "It holds the documents your chatbots answer from.",
            kb is not None,
            reverse("kb:create"),
            "Create",
        ),
        Step(
            "upload",
            "Upload a document",
            "A PDF, Word file, web page or typed text; it is ready to answer from in seconds.",
            has_ready,
            reverse("kb:detail", args=[kb.pk]) if kb else reverse("kb:create"),
            "Upload",
        ),
        Step(
            "ask",
            "Ask your chatbot a question",
            "Try it in the playground: every answer cites the passage it comes from.",
            asked,
            reverse("chat:playground", args=[bot.pk]) if bot else reverse("chat:create"),
            "Open the playground" if bot else "Create a chatbot",
        ),
        Step(
            "embed",
            "Embed it on your site",
            "Add your website's address to the chatbot and paste the snippet into your pages.",
            embedded,
            bot_url,
            "Get the snippet" if bot else "Create a chatbot",
        ),
    ]
