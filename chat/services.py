"""Chatbots and the grounded answer pipeline.

One question, start to finish (`chat_answer_events`):

    store the user message
      → retrieve (hybrid) over the bot's knowledge bases, enabled documents' live versions only
      → nothing relevant? answer with the fallback message, no model call, message.refused = True
      → prompt with numbered, fenced sources → stream the model's answer (LiteLLM)
      → check it: strip citations to missing sources, grade each sentence's grounding
      → store the answer with its citation snapshots, usage, latency and retrieval trace

It yields events (`delta` text pieces, then one `final` with the stored message), so the same
code serves the streaming and the non-streaming APIs, the playground and the widget.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils.text import slugify

from accounts.models import Organization, User
from chat import llm
from chat.exceptions import ChatbotDisabled, ChatError, ChatModelError
from chat.extractive import REFUSAL_SENTINEL, Source, split_sentences
from chat.grounding import check_answer
from chat.models import Channel, Chatbot, Citation, Conversation, Correction, Message, ProviderKey, Role
from chat.prompting import build_messages
from chat.secrets_box import encrypt
from kb.models import KnowledgeBase
from kb.selectors import SearchHit, chunk_search, hits_to_passages

logger = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 4000


# --- chatbots ------------------------------------------------------------------------------


def chatbot_create(
    *,
    organization: Organization,
    name: str,
    knowledge_bases: list[KnowledgeBase],
    created_by: User | None,
    **settings: Any,
) -> Chatbot:
    """Create a chatbot over knowledge bases of the same organisation, with a unique slug."""
    _check_same_org(organization, knowledge_bases)
    base = slugify(settings.pop("slug", "") or name)[:70] or "bot"
    slug, n = base, 1
    while Chatbot.objects.filter(organization=organization, slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    with transaction.atomic():
        bot = Chatbot.objects.create(organization=organization, name=name, slug=slug, created_by=created_by, **settings)
        bot.knowledge_bases.set(knowledge_bases)
    return bot


def chatbot_update(*, chatbot: Chatbot, knowledge_bases: list[KnowledgeBase] | None = None, **changes: Any) -> Chatbot:
    with transaction.atomic():
        for name, value in changes.items():
            setattr(chatbot, name, value)
        chatbot.save()
        if knowledge_bases is not None:
            _check_same_org(chatbot.organization, knowledge_bases)
            chatbot.knowledge_bases.set(knowledge_bases)
    return chatbot


def _check_same_org(organization: Organization, knowledge_bases: list[KnowledgeBase]) -> None:
    if any(kb.organization_id != organization.pk for kb in knowledge_bases):
        raise ChatError("foreign_knowledge_base", "A chatbot can only use knowledge bases of its own organisation.")


def provider_key_set(*, organization: Organization, provider: str, api_key: str, api_base: str = "") -> ProviderKey:
    """Store (encrypted) the organisation's key for a model provider; it is never shown back."""
    key, _ = ProviderKey.objects.update_or_create(
        organization=organization,
        provider=provider.strip().lower(),
        defaults={"encrypted_key": encrypt(api_key.strip()), "last_four": api_key.strip()[-4:], "api_base": api_base},
    )
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


# --- answering -----------------------------------------------------------------------------


@dataclass
class Retrieval:
    hits: list[SearchHit]
    sources: list[Source]
    trace: dict[str, Any]
    elapsed_ms: float
    relevant: bool


def _retrieve(chatbot: Chatbot, question: str) -> Retrieval:
    started = time.perf_counter()
    kbs = list(chatbot.knowledge_bases.all())
    found = chunk_search(knowledge_bases=kbs, query=question, limit=chatbot.top_k, mode="hybrid")
    budget = max((kb.chunk_size for kb in kbs), default=1200) * 2
    passages = hits_to_passages(found, max_chars=budget)
    hits = [p.hit for p in passages]
    elapsed = (time.perf_counter() - started) * 1000
    best_vector = max((h.vector_score or 0.0 for h in hits), default=0.0)
    any_keyword = any(h.keyword_score for h in hits)
    # Scores alone separate answerable from unanswerable questions poorly; this gate only catches
    # questions with nothing related at all. The answer step decides the rest.
    relevant = bool(hits) and (any_keyword or best_vector >= chatbot.min_relevance)
    sources = [
        Source(
            number=i,
            text=p.text,
            title=p.hit.chunk.document.title,
            section=p.hit.chunk.section_label or None,
        )
        for i, p in enumerate(passages, start=1)
        if p.hit.chunk is not None
    ]
    trace = {
        "query": question,
        "knowledge_bases": [kb.pk for kb in kbs],
        "mode": "hybrid",
        "relevant": relevant,
        "best_vector_score": round(best_vector, 4),
        "candidates": [
            {
                "number": i,
                "chunk_id": h.chunk_id,
                "document_id": h.chunk.document_id if h.chunk else None,
                "score": round(h.score, 5),
                "vector_score": None if h.vector_score is None else round(h.vector_score, 4),
                "vector_rank": h.vector_rank,
                "keyword_score": None if h.keyword_score is None else round(h.keyword_score, 4),
                "keyword_rank": h.keyword_rank,
                "widened_to_section": passages[i - 1].widened,
            }
            for i, h in enumerate(hits, start=1)
        ],
    }
    return Retrieval(hits=hits, sources=sources, trace=trace, elapsed_ms=elapsed, relevant=relevant)


def _best_quote(chunk_text: str, claims: list[str]) -> str:
    """The sentence of the chunk that best matches what the answer said with this citation.

    Always verbatim from the chunk, so a reader can find it in the document.
    """
    sentences = split_sentences(chunk_text) or [chunk_text]
    claim_words = {w.lower() for claim in claims for w in claim.split() if len(w) > 2}
    if not claim_words:
        return _exact_span(chunk_text, sentences[0])[:600]

    def overlap(sentence: str) -> float:
        words = {w.lower() for w in sentence.split() if len(w) > 2}
        return len(words & claim_words) / (len(words) ** 0.5 or 1)

    return _exact_span(chunk_text, max(sentences, key=overlap))[:600]


def _exact_span(text: str, sentence: str) -> str:
    """`sentence` as it stands in `text` (sentence splitting folds whitespace; quotes must be
    verbatim so a reader — and the citation check — finds them in the source)."""
    words = sentence.split()
    if not words:
        return sentence
    match = re.search(r"\s+".join(re.escape(w) for w in words), text)
    return match.group(0) if match else sentence


def _history(conversation: Conversation, before: Message) -> list[tuple[str, str]]:
    turns = list(
        conversation.messages.filter(pk__lt=before.pk, refused=False)
        .order_by("-pk")
        .values_list("role", "content")[: 2 * 3]
    )
    return [(role, content) for role, content in reversed(turns)]


def serialize_message(message: Message) -> dict[str, Any]:
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
                "number": c.number,
                "chunk_id": c.chunk_id,
                "document_id": c.document_id,
                "document_title": c.document_title,
                "version": c.version_number,
                "page": c.page,
                "page_end": c.page_end,
                "section": c.section,
                "quote": c.quote,
                "source_url": c.source_url,
            }
            for c in message.citations.all()
        ],
        "latency": {
            "retrieval_ms": message.retrieval_ms,
            "first_token_ms": message.first_token_ms,
            "total_ms": message.total_ms,
        },
        "usage": {"prompt_tokens": message.prompt_tokens, "completion_tokens": message.completion_tokens},
        "created_at": message.created_at.isoformat(),
    }


def chat_answer_events(
    *,
    chatbot: Chatbot,
    question: str,
    conversation: Conversation | None = None,
    channel: str = Channel.API,
    user: User | None = None,
    visitor_id: str = "",
) -> Iterator[dict[str, Any]]:
    """Answer `question`; yields {"type": "start"}, {"type": "delta", "text"}…, then {"type": "final"}."""
    if not chatbot.enabled:
        raise ChatbotDisabled("chatbot_disabled", "This chatbot is switched off.")
    question = question.strip()
    if not question:
        raise ChatError("empty_question", "Ask a question first.")
    if len(question) > MAX_QUESTION_CHARS:
        raise ChatError("question_too_long", f"Questions are limited to {MAX_QUESTION_CHARS} characters.")
    started = time.perf_counter()
    if conversation is None:
        conversation = conversation_start(
            chatbot=chatbot, channel=channel, started_by=user, visitor_id=visitor_id, title=question[:80]
        )
    user_message = Message.objects.create(conversation=conversation, role=Role.USER, content=question)
    yield {"type": "start", "conversation_id": conversation.pk, "user_message_id": user_message.pk}

    retrieval = _retrieve(chatbot, question)
    answer = Message(
        conversation=conversation,
        role=Role.ASSISTANT,
        retrieval_ms=round(retrieval.elapsed_ms, 1),
        retrieval_trace=retrieval.trace,
    )
    if not retrieval.relevant:
        answer.content, answer.refused = chatbot.fallback_message, True
        answer.total_ms = round((time.perf_counter() - started) * 1000, 1)
        answer.save()
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=answer.created_at)
        yield {"type": "final", "message": serialize_message(answer)}
        return

    model = chatbot.effective_chat_model
    messages = build_messages(
        chatbot=chatbot, question=question, sources=retrieval.sources, history=_history(conversation, user_message)
    )
    answer.model = model
    try:
        stream = llm.stream_completion(
            model=model, messages=messages, temperature=chatbot.temperature, organization=chatbot.organization
        )
        raw = ""
        held = ""  # held back while it could still turn out to be the refusal sentinel
        for piece in stream:
            if answer.first_token_ms is None:
                answer.first_token_ms = round((time.perf_counter() - started) * 1000, 1)
            raw += piece
            if held is not None:
                held += piece
                if REFUSAL_SENTINEL.startswith(held.strip()) or held.strip().startswith(REFUSAL_SENTINEL):
                    continue
                piece, held = held, None  # type: ignore[assignment]
            yield {"type": "delta", "text": piece}
    except ChatModelError as exc:
        answer.content, answer.refused, answer.error = chatbot.fallback_message, True, exc.message
        answer.total_ms = round((time.perf_counter() - started) * 1000, 1)
        answer.save()
        logger.warning("Chat model failed for bot %s: %s", chatbot.pk, exc.message)
        yield {"type": "final", "message": serialize_message(answer), "error": exc.message}
        return

    answer.prompt_tokens, answer.completion_tokens = stream.usage.prompt_tokens, stream.usage.completion_tokens
    _finish_answer(answer, raw, retrieval, chatbot)
    answer.total_ms = round((time.perf_counter() - started) * 1000, 1)
    with transaction.atomic():
        answer.save()
        _save_citations(answer, retrieval)
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=answer.created_at)
    yield {"type": "final", "message": serialize_message(answer)}


def _finish_answer(answer: Message, raw: str, retrieval: Retrieval, chatbot: Chatbot) -> None:
    """Refusal detection and the grounding check of the model's raw answer."""
    text = raw.strip()
    if not text or text.startswith(REFUSAL_SENTINEL) or text.endswith(REFUSAL_SENTINEL):
        answer.content, answer.refused = chatbot.fallback_message, True
        return
    report = check_answer(text, {s.number: s.text for s in retrieval.sources})
    answer.content = report.answer.replace(REFUSAL_SENTINEL, "").strip()
    answer.grounding_grade = round(report.grade, 3)
    answer.grounding_label = str(report.label)
    answer.grounding = {
        "removed_citations": report.removed_citations,
        "sentences": [
            {
                "text": s.text,
                "citations": s.citations,
                "verdict": str(s.verdict),
                "support": round(s.support, 3),
                "claim": s.claim,
                "best_source": s.best_source,
            }
            for s in report.sentences
        ],
    }
    answer._claims_by_source = {  # type: ignore[attr-defined]
        n: [s.text for s in report.sentences if n in s.citations] for n in report.cited_sources
    }


def _save_citations(answer: Message, retrieval: Retrieval) -> None:
    claims: dict[int, list[str]] = getattr(answer, "_claims_by_source", {})
    hits = {i: h for i, h in enumerate(retrieval.hits, start=1)}
    source_texts = {s.number: s.text for s in retrieval.sources}
    rows = []
    for number, sentences in sorted(claims.items()):
        hit = hits.get(number)
        if hit is None or hit.chunk is None:
            continue
        # The source the model read: the chunk, or its whole (small) section.
        quote = _best_quote(source_texts.get(number, hit.chunk.text), sentences)
        chunk = _chunk_holding(hit.chunk, quote)
        rows.append(
            Citation(
                message=answer,
                number=number,
                chunk=chunk,
                document_id=chunk.document_id,
                version_id=chunk.version_id,
                document_title=chunk.document.title,
                version_number=chunk.version.number,
                page=chunk.page_start,
                page_end=chunk.page_end,
                section=chunk.section_label,
                quote=quote,
                source_url=chunk.document.source_url,
            )
        )
    Citation.objects.bulk_create(rows)


def _chunk_holding(chunk: Any, quote: str) -> Any:
    """The chunk of the same section that contains `quote` (for its exact page), else `chunk`."""
    if quote in chunk.text or not chunk.section_id:
        return chunk
    from kb.models import Chunk

    siblings = Chunk.objects.filter(version_id=chunk.version_id, section_id=chunk.section_id).select_related(
        "document", "version"
    )
    return next((c for c in siblings if quote in c.text), chunk)


def chat_answer(**kwargs: Any) -> dict[str, Any]:
    """Non-streaming form of `chat_answer_events`: the final event."""
    final: dict[str, Any] = {}
    for event in chat_answer_events(**kwargs):
        if event["type"] == "final":
            final = event
    return final


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


def message_correct(*, message: Message, answer: str, actor: User | None) -> Correction:
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
    return correction


def conversation_delete(*, conversation: Conversation) -> None:
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
