"""Reads of the knowledge-gap inbox, always scoped to an organisation or a bot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Max, QuerySet

from accounts.models import Organization
from chat.models import Chatbot, Citation
from chat.models.gaps import GapStatus, KnowledgeGap, KnowledgeGapQuestion
from kb.models import Chunk

#: Retrieved passages shown per question, and questions shown with their retrieval per group.
PASSAGES_PER_QUESTION = 3
DETAILED_QUESTIONS = 10


def gaps_open_for_chatbot(*, chatbot: Chatbot) -> QuerySet[KnowledgeGap]:
    """The bot's open groups, ranked: most questions first, then the most recently asked.

    `count` and `last_seen` are annotated from the questions (groups left without questions, after
    their conversations were purged, are left out).
    """
    return (
        KnowledgeGap.objects.filter(chatbot=chatbot, status=GapStatus.OPEN)
        .annotate(count=Count("questions"), last_seen=Max("questions__asked_at"))
        .filter(count__gt=0)
        .order_by("-count", "-last_seen", "-pk")
    )


def gap_get(*, organization: Organization, pk: int) -> KnowledgeGap | None:
    """A group of the organisation (any status), with its count and last question time."""
    return (
        KnowledgeGap.objects.filter(organization=organization, pk=pk)
        .select_related("chatbot", "answer_document")
        .annotate(count=Count("questions"), last_seen=Max("questions__asked_at"))
        .first()
    )


def gap_questions(*, gap: KnowledgeGap) -> list[str]:
    """The group's questions, most recent first."""
    return list(gap.questions.values_list("question", flat=True))


@dataclass
class GapItem:
    """One question of a group with what the bot did with it."""

    question: KnowledgeGapQuestion
    answer: str  # the disliked answer ("" for a refusal)
    refused: bool
    citations: list[dict[str, Any]]
    retrieved: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        q = self.question
        return {
            "question": q.question,
            "reason": q.reason,
            "asked_at": q.asked_at.isoformat(),
            "message_id": q.message_id,
            "conversation_id": q.message.conversation_id,
            "answer": self.answer,
            "refused": self.refused,
            "citations": self.citations,
            "retrieved": self.retrieved,
        }


def gap_items(*, gap: KnowledgeGap, limit: int = DETAILED_QUESTIONS) -> list[GapItem]:
    """The group's most recent questions with what retrieval found for each (the best passages of
    the answer's retrieval trace, with their document and an excerpt) and what the answer cited."""
    questions = list(gap.questions.select_related("message")[:limit])
    chunk_ids = {
        c["chunk_id"]
        for q in questions
        for c in (q.message.retrieval_trace.get("candidates") or [])[:PASSAGES_PER_QUESTION]
        if c.get("chunk_id")
    }
    # The trace holds ids only; the chunks must still exist and belong to this organisation.
    chunks = {
        c.pk: c
        for c in Chunk.objects.filter(pk__in=chunk_ids, document__organization_id=gap.organization_id)
        .without_vectors()
        .select_related("document")
    }
    citations: dict[int, list[dict[str, Any]]] = {}
    for c in Citation.objects.filter(message_id__in=[q.message_id for q in questions]).order_by("number"):
        citations.setdefault(c.message_id, []).append(
            {"number": c.number, "document_id": c.document_id, "document_title": c.document_title, "quote": c.quote}
        )
    items = []
    for q in questions:
        retrieved = []
        for candidate in (q.message.retrieval_trace.get("candidates") or [])[:PASSAGES_PER_QUESTION]:
            chunk = chunks.get(candidate.get("chunk_id") or 0)
            if chunk is None:
                continue
            retrieved.append(
                {
                    "chunk_id": chunk.pk,
                    "document_id": chunk.document_id,
                    "document_title": chunk.document.title,
                    "section": _section_without_title(chunk.section_label, chunk.document.title),
                    "score": candidate.get("vector_score"),
                    "excerpt": chunk.text[:300],
                }
            )
        items.append(
            GapItem(
                question=q,
                answer="" if q.message.refused else q.message.content,
                refused=q.message.refused,
                citations=citations.get(q.message_id, []),
                retrieved=retrieved,
            )
        )
    return items


def _section_without_title(section: str, title: str) -> str:
    """ "Refund policy › Exceptions" under the document "Refund policy" is just "Exceptions"."""
    prefix = f"{title} › "
    return section[len(prefix) :] if section.startswith(prefix) else ("" if section == title else section)


def open_gap_counts(*, organization: Organization, chatbot_id: int | None = None) -> list[dict[str, Any]]:
    """Open groups per bot of the organisation (bots without any left out), most first."""
    gaps = KnowledgeGap.objects.filter(
        organization=organization, status=GapStatus.OPEN, questions__isnull=False
    ).distinct()
    if chatbot_id is not None:
        gaps = gaps.filter(chatbot_id=chatbot_id)
    rows = (
        KnowledgeGap.objects.filter(pk__in=gaps.values("pk"))
        .values("chatbot_id", "chatbot__name")
        .annotate(open=Count("pk"))
        .order_by("-open", "chatbot__name")
    )
    return [{"chatbot_id": r["chatbot_id"], "chatbot": r["chatbot__name"], "open": r["open"]} for r in rows]
