"""Reads of chatbots and conversations, always scoped to an organisation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.contrib.postgres.search import SearchQuery, SearchVector
from django.db.models import Exists, OuterRef, Q, QuerySet

from accounts.models import Organization
from chat.models import Chatbot, Conversation, Message
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


# --- review ----------------------------------------------------------------------------------


@dataclass
class ConversationFilters:
    """Filters of the conversation list (staff UI and API share them)."""

    chatbot: int | None = None
    channel: str | None = None
    feedback: str | None = None  # up | down | none
    refused: bool | None = None
    reviewed: bool | None = None
    has_lead: bool | None = None
    low_grounding: bool | None = None
    q: str = ""
    date_from: date | None = None
    date_to: date | None = None

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> ConversationFilters:
        """Parse query parameters; raise ValueError with a readable message on bad values."""

        def boolean(name: str) -> bool | None:
            raw = (params.get(name) or "").strip().lower()
            if raw in ("", "any"):
                return None
            if raw in ("1", "true", "yes"):
                return True
            if raw in ("0", "false", "no"):
                return False
            raise ValueError(f"{name} must be true or false.")

        def day(name: str) -> date | None:
            raw = (params.get(name) or "").strip()
            if not raw:
                return None
            try:
                return date.fromisoformat(raw)
            except ValueError:
                raise ValueError(f"{name} must be a date like 2026-01-31.") from None

        feedback = (params.get("feedback") or "").strip().lower() or None
        if feedback not in (None, "up", "down", "none"):
            raise ValueError("feedback must be up, down or none.")
        chatbot = (params.get("chatbot") or "").strip()
        if chatbot and not chatbot.isdigit():
            raise ValueError("chatbot must be a chatbot id.")
        return cls(
            chatbot=int(chatbot) if chatbot else None,
            channel=(params.get("channel") or "").strip() or None,
            feedback=feedback,
            refused=boolean("refused"),
            reviewed=boolean("reviewed"),
            has_lead=boolean("has_lead"),
            low_grounding=boolean("low_grounding"),
            q=(params.get("q") or "").strip()[:200],
            date_from=day("date_from"),
            date_to=day("date_to"),
        )


LOW_GROUNDING_GRADE = 0.5


def conversations_filtered(*, organization: Organization, filters: ConversationFilters) -> QuerySet[Conversation]:
    """The organisation's conversations matching `filters`, newest first, with summary counts."""
    qs = Conversation.objects.filter(organization=organization)
    if filters.chatbot:
        qs = qs.filter(chatbot_id=filters.chatbot)
    if filters.channel:
        qs = qs.filter(channel=filters.channel)
    if filters.reviewed is not None:
        qs = qs.filter(reviewed=filters.reviewed)
    if filters.has_lead is not None:
        qs = qs.exclude(lead_email="") if filters.has_lead else qs.filter(lead_email="")
    if filters.date_from:
        qs = qs.filter(created_at__date__gte=filters.date_from)
    if filters.date_to:
        qs = qs.filter(created_at__date__lte=filters.date_to)
    answers = Message.objects.filter(conversation=OuterRef("pk"), role="assistant")
    if filters.feedback in ("up", "down"):
        qs = qs.filter(Exists(answers.filter(feedback=filters.feedback)))
    elif filters.feedback == "none":
        qs = qs.exclude(Exists(answers.exclude(feedback="")))
    if filters.refused is not None:
        refused = Exists(answers.filter(refused=True))
        qs = qs.filter(refused) if filters.refused else qs.exclude(refused)
    if filters.low_grounding is not None:
        low = Exists(answers.filter(grounding_grade__lt=LOW_GROUNDING_GRADE))
        qs = qs.filter(low) if filters.low_grounding else qs.exclude(low)
    if filters.q:
        qs = qs.filter(
            Exists(
                Message.objects.filter(conversation=OuterRef("pk"))
                .annotate(search=SearchVector("content", config="english"))
                .filter(search=SearchQuery(filters.q, config="english", search_type="websearch"))
            )
        )
    return qs.select_related("chatbot").order_by("-created_at", "-pk")


def conversation_get_for_org(*, organization: Organization, pk: int) -> Conversation | None:
    return Conversation.objects.filter(organization=organization, pk=pk).select_related("chatbot").first()


def message_get_for_org(*, organization: Organization, pk: int) -> Message | None:
    return (
        Message.objects.filter(conversation__organization=organization, pk=pk)
        .select_related("conversation__chatbot")
        .first()
    )


def conversation_history(*, conversation: Conversation, before: Message) -> list[tuple[str, str]]:
    """(role, content) of the answered turns before `before`, oldest first (three exchanges at most)."""
    turns = list(
        conversation.messages.filter(pk__lt=before.pk, refused=False)
        .order_by("-pk")
        .values_list("role", "content")[: 2 * 3]
    )
    return [(role, content) for role, content in reversed(turns)]


def serialize_message(message: Message) -> dict[str, Any]:
    """The JSON form of a stored message, as the chat APIs return it."""
    return {
        "id": message.pk,
        "conversation_id": message.conversation_id,
        "role": message.role,
        "content": message.content,
        "refused": message.refused,
        "model": message.model,
        "grounding_grade": message.grounding_grade,
        "grounding_label": message.grounding_label,
        "citations": [
            {
                "id": c.pk,
                "number": c.number,
                "chunk_id": c.chunk_id,
                "version_id": c.version_id,
                "document_id": c.document_id,
                "document_title": c.document_title,
                "version": c.version_number,
                "page": c.page,
                "page_end": c.page_end,
                "section": c.section,
                "quote": c.quote,
                "source_url": c.source_url,
                "source_path": c.source_path,
            }
            for c in message.citations.all()
        ],
        "latency": {
            "retrieval_ms": message.retrieval_ms,
            "first_token_ms": message.first_token_ms,
            "total_ms": message.total_ms,
        },
        "usage": {"prompt_tokens": message.prompt_tokens, "completion_tokens": message.completion_tokens},
        "releases": message.releases,
        "created_at": message.created_at.isoformat(),
    }
