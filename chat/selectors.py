"""Reads of chatbots and conversations, always scoped to an organisation."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from accounts.models import Organization
from chat.models import Chatbot, Conversation
from kb.models import KnowledgeBase


def chatbots_for_org(*, organization: Organization) -> QuerySet[Chatbot]:
    return Chatbot.objects.filter(organization=organization).prefetch_related("knowledge_bases")


def chatbot_get(*, organization: Organization, id_or_slug: str | int) -> Chatbot | None:
    """A chatbot of the organisation by numeric id or slug."""
    lookup = Q(slug=str(id_or_slug))
    if str(id_or_slug).isdigit():
        lookup |= Q(pk=int(id_or_slug))
    return chatbots_for_org(organization=organization).filter(lookup).first()


def conversation_get(*, chatbot: Chatbot, pk: int) -> Conversation | None:
    return Conversation.objects.filter(chatbot=chatbot, organization_id=chatbot.organization_id, pk=pk).first()


def knowledge_bases_by_ids(*, organization: Organization, ids: list[int]) -> list[KnowledgeBase]:
    """The organisation's knowledge bases with these ids; missing or foreign ids raise ValueError."""
    found = list(KnowledgeBase.objects.filter(organization=organization, pk__in=ids))
    missing = set(ids) - {kb.pk for kb in found}
    if missing:
        raise ValueError(f"No knowledge base with id {sorted(missing)} in your organisation.")
    return found
