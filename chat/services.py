"""Writes of the chat app: chatbots, provider keys, conversations, feedback, leads, review, corrections.

The answer pipeline itself (retrieve, prompt, generate, ground, cite) lives in `chat.rag`.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings as django_settings
from django.db import transaction
from django.utils.text import slugify

from accounts.models import Organization, User
from accounts.selectors import OrgContext
from accounts.services import audit_record
from chat.exceptions import ChatError
from chat.models import Chatbot, Conversation, Correction, Message, ProviderKey, Role
from chat.secrets_box import encrypt
from kb.models import KnowledgeBase

logger = logging.getLogger(__name__)


# --- chatbots ------------------------------------------------------------------------------


def chat_model_check(model: str) -> None:
    """Refuse a chat model whose provider the operator did not allow.

    A provider string decides where the web process connects (`ollama/...` means localhost:11434,
    and the error text comes back to the editor): only the providers in
    `GROUNDWORK_ALLOWED_MODEL_PROVIDERS` may be chosen. Empty means "the default" (always allowed).
    """
    from inference.gateway import model_provider

    if not model.strip():
        return
    allowed = django_settings.GROUNDWORK_ALLOWED_MODEL_PROVIDERS
    provider = model_provider(model)
    if provider not in allowed:
        raise ChatError(
            "model_not_allowed",
            f"“{model}” is not an allowed model: use provider/model with one of the providers "
            f"{', '.join(allowed)} (the operator sets them in GROUNDWORK_ALLOWED_MODEL_PROVIDERS).",
        )


MAX_FALLBACK_MODELS = 3


def fallback_models_check(models: list[str]) -> list[str]:
    """The fallback list cleaned (blank and repeated entries dropped), each model allow-listed."""
    cleaned = list(dict.fromkeys(str(m).strip() for m in models if str(m).strip()))
    if len(cleaned) > MAX_FALLBACK_MODELS:
        raise ChatError("too_many_fallbacks", f"A chatbot can have at most {MAX_FALLBACK_MODELS} fallback models.")
    for model in cleaned:
        chat_model_check(model)
    return cleaned


def chatbot_create(
    *,
    organization: Organization,
    name: str,
    knowledge_bases: list[KnowledgeBase],
    created_by: User | None,
    context: OrgContext | None = None,
    **settings: Any,
) -> Chatbot:
    """Create a chatbot over knowledge bases of the same organisation, with a unique slug.

    With `context` (the staff request's), the creation is recorded in the audit log.
    """
    _check_same_org(organization, knowledge_bases)
    chat_model_check(str(settings.get("chat_model") or ""))
    if "fallback_models" in settings:
        settings["fallback_models"] = fallback_models_check(list(settings["fallback_models"] or []))
    base = slugify(settings.pop("slug", "") or name)[:70] or "bot"
    slug, n = base, 1
    while Chatbot.objects.filter(organization=organization, slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    with transaction.atomic():
        bot = Chatbot.objects.create(organization=organization, name=name, slug=slug, created_by=created_by, **settings)
        bot.knowledge_bases.set(knowledge_bases)
    if context is not None:
        audit_record(context=context, action="chatbot.create", target=bot)
    return bot


def chatbot_update(
    *,
    chatbot: Chatbot,
    knowledge_bases: list[KnowledgeBase] | None = None,
    context: OrgContext | None = None,
    changed_fields: list[str] | None = None,
    **changes: Any,
) -> Chatbot:
    """Change a chatbot's settings and knowledge bases.

    With `context`, the change is audited with `changed_fields` (default: the fields passed).
    """
    if "chat_model" in changes:
        chat_model_check(str(changes["chat_model"] or ""))
    if "fallback_models" in changes:
        changes["fallback_models"] = fallback_models_check(list(changes["fallback_models"] or []))
    with transaction.atomic():
        for name, value in changes.items():
            setattr(chatbot, name, value)
        chatbot.save()
        if knowledge_bases is not None:
            _check_same_org(chatbot.organization, knowledge_bases)
            chatbot.knowledge_bases.set(knowledge_bases)
    if context is not None:
        if changed_fields is None:
            changed_fields = sorted(changes) + (["knowledge_bases"] if knowledge_bases is not None else [])
        audit_record(context=context, action="chatbot.update", target=chatbot, detail={"fields": changed_fields})
    return chatbot


def chatbot_delete(*, chatbot: Chatbot, context: OrgContext | None = None) -> None:
    """Delete a chatbot with its conversations (audited first, while the row still has its id)."""
    if context is not None:
        audit_record(context=context, action="chatbot.delete", target=chatbot)
    chatbot.delete()


def _check_same_org(organization: Organization, knowledge_bases: list[KnowledgeBase]) -> None:
    if any(kb.organization_id != organization.pk for kb in knowledge_bases):
        raise ChatError("foreign_knowledge_base", "A chatbot can only use knowledge bases of its own organisation.")


def provider_key_set(
    *,
    organization: Organization,
    provider: str,
    api_key: str,
    api_base: str = "",
    context: OrgContext | None = None,
) -> ProviderKey:
    """Store (encrypted) the organisation's key for a model provider; it is never shown back."""
    key, _ = ProviderKey.objects.update_or_create(
        organization=organization,
        provider=provider.strip().lower(),
        defaults={"encrypted_key": encrypt(api_key.strip()), "last_four": api_key.strip()[-4:], "api_base": api_base},
    )
    if context is not None:
        audit_record(context=context, action="settings.provider_key", target=key)
    return key


# --- conversations -------------------------------------------------------------------------


def conversation_start(
    *, chatbot: Chatbot, channel: str, started_by: User | None = None, visitor_id: str = "", title: str = ""
) -> Conversation:
    return Conversation.objects.create(
        organization_id=chatbot.organization_id,
        chatbot=chatbot,
        channel=channel,
        started_by=started_by,
        visitor_id=visitor_id,
        title=title[:200],
    )


# --- feedback and leads --------------------------------------------------------------------


def message_feedback_set(*, message: Message, value: str, comment: str = "") -> Message:
    """Thumbs up/down on an assistant answer (latest vote wins), with an optional comment."""
    from django.utils import timezone

    from chat.models import Feedback

    if message.role != Role.ASSISTANT:
        raise ChatError("not_an_answer", "Feedback can only be given on the assistant's answers.")
    if value not in Feedback.values:
        raise ChatError("bad_feedback", "Feedback must be 'up' or 'down'.")
    message.feedback = value
    message.feedback_comment = comment.strip()[:2000]
    message.feedback_at = timezone.now()
    message.save(update_fields=["feedback", "feedback_comment", "feedback_at"])
    return message


def conversation_lead_set(*, conversation: Conversation, email: str, name: str = "", message: str = "") -> Conversation:
    """Store a visitor's contact details on the conversation ("we'll get back to you")."""
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_email
    from django.utils import timezone

    email = email.strip()
    try:
        validate_email(email)
        if len(email) > Conversation._meta.get_field("lead_email").max_length:  # type: ignore[operator]
            raise ValidationError("too long")
    except ValidationError:
        raise ChatError("bad_email", "Enter a valid e-mail address so the team can reply.") from None
    conversation.lead_email = email
    conversation.lead_name = name.strip()[:200]
    conversation.lead_message = message.strip()[:4000]
    conversation.lead_at = timezone.now()
    conversation.save(update_fields=["lead_email", "lead_name", "lead_message", "lead_at", "updated_at"])
    return conversation


# --- review and corrections ------------------------------------------------------------------


def conversation_review_update(
    *,
    conversation: Conversation,
    actor: User | None,
    reviewed: bool | None = None,
    tags: list[str] | None = None,
    internal_note: str | None = None,
) -> Conversation:
    """Mark reviewed, set tags, write the internal note."""
    from django.utils import timezone

    fields = ["updated_at"]
    if reviewed is not None:
        conversation.reviewed = reviewed
        conversation.reviewed_at = timezone.now() if reviewed else None
        conversation.reviewed_by = actor if reviewed else None
        fields += ["reviewed", "reviewed_at", "reviewed_by"]
    if tags is not None:
        conversation.tags = sorted({t.strip()[:40] for t in tags if t.strip()})
        fields.append("tags")
    if internal_note is not None:
        conversation.internal_note = internal_note.strip()[:10_000]
        fields.append("internal_note")
    conversation.save(update_fields=fields)
    return conversation


def message_correct(
    *, message: Message, answer: str, actor: User | None, context: OrgContext | None = None
) -> Correction:
    """Turn a staff correction into a Q&A entry of the bot's first knowledge base, live within seconds.

    The question is the user message the answer replied to. The conversation is marked reviewed.
    """
    from kb.services import qa_entry_create

    if message.role != Role.ASSISTANT:
        raise ChatError("not_an_answer", "Only the assistant's answers can be corrected.")
    answer = answer.strip()
    if not answer:
        raise ChatError("empty_correction", "Write the correct answer first.")
    conversation = message.conversation
    question_message = conversation.messages.filter(role=Role.USER, pk__lt=message.pk).order_by("-pk").first()
    if question_message is None:
        raise ChatError("no_question", "This answer has no question to correct.")
    knowledge_base = conversation.chatbot.knowledge_bases.order_by("pk").first()
    if knowledge_base is None:
        raise ChatError("no_knowledge_base", "This chatbot has no knowledge base to add the correction to.")
    with transaction.atomic():
        entry = qa_entry_create(
            knowledge_base=knowledge_base, question=question_message.content, answer=answer, created_by=actor
        )
        correction = Correction.objects.create(
            message=message,
            question=question_message.content,
            answer=answer,
            document=entry.document,
            created_by=actor,
        )
        conversation_review_update(conversation=conversation, actor=actor, reviewed=True)
    if context is not None:
        audit_record(
            context=context, action="answer.correct", target=message, detail={"document_id": correction.document_id}
        )
    return correction


def conversation_delete(*, conversation: Conversation, context: OrgContext | None = None) -> None:
    """Delete a conversation and its messages (audited first, while the row still has its id)."""
    if context is not None:
        audit_record(context=context, action="conversation.delete", target=conversation)
    conversation.delete()


def conversations_purge_expired() -> int:
    """Delete conversations older than their organisation's retention setting. Returns how many."""
    from datetime import timedelta

    from django.utils import timezone

    from accounts.models import Organization

    deleted = 0
    for org in Organization.objects.filter(conversation_retention_days__isnull=False):
        cutoff = timezone.now() - timedelta(days=org.conversation_retention_days or 0)
        _, per_model = Conversation.objects.filter(organization=org, created_at__lt=cutoff).delete()
        deleted += per_model.get("chat.Conversation", 0)
    return deleted
