"""`make run`'s demo that talks: the demo knowledge base (`kb.demo`) plus a chatbot on it with
suggested questions, and the URLs of its playground and of a local page embedding its widget."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from django.urls import reverse

from chat.models import Chatbot
from chat.services import chatbot_create
from kb.demo import DemoKnowledgeBase, demo_knowledge_base_seed

DEMO_BOT_SLUG: Final = "support"
# Each is answered by a sentence of kb/demo_documents, so the local extractive answerer can.
DEMO_QUESTIONS: Final = (
    "How long do I have to return an item?",
    "How much does express delivery cost?",
    "How long is the warranty on a tent?",
)


@dataclass(frozen=True, slots=True)
class DemoSeed:
    knowledge: DemoKnowledgeBase
    chatbot: Chatbot

    def playground_url(self, base_url: str) -> str:
        return base_url.rstrip("/") + reverse("chat:playground", args=[self.chatbot.pk])

    def widget_demo_url(self, base_url: str) -> str:
        return base_url.rstrip("/") + reverse("chat:widget_demo", args=[self.chatbot.pk])


def demo_chatbot_seed(*, knowledge: DemoKnowledgeBase) -> Chatbot:
    """The demo chatbot over the demo knowledge base (created once; a later run leaves it as edited)."""
    bot = Chatbot.objects.filter(organization=knowledge.organization, slug=DEMO_BOT_SLUG).first()
    if bot is not None:
        return bot
    return chatbot_create(
        organization=knowledge.organization,
        name="Northwind support",
        slug=DEMO_BOT_SLUG,
        knowledge_bases=[knowledge.knowledge_base],
        created_by=knowledge.user,
        welcome_message="Hi! I answer questions about Northwind's returns, shipping and warranty.",
        suggested_questions=list(DEMO_QUESTIONS),
        widget_title="Northwind help",
    )


def demo_seed(*, email: str, password: str | None, host: str) -> DemoSeed:
    """Everything `make run` seeds (idempotent): user, organisation, knowledge base, chatbot."""
    knowledge = demo_knowledge_base_seed(email=email, password=password, host=host)
    return DemoSeed(knowledge=knowledge, chatbot=demo_chatbot_seed(knowledge=knowledge))
