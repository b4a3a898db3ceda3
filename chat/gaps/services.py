"""Writes of the knowledge-gap inbox: grouping new failed answers, and the three actions on a group."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from accounts.selectors import OrgContext
from accounts.services import audit_record
from chat.exceptions import ChatError
from chat.gaps import clustering
from chat.models import Chatbot, Feedback, Message, Role, TestCaseSource
from chat.models.gaps import GapReason, GapScan, GapStatus, KnowledgeGap, KnowledgeGapQuestion
from chat.testsets.services import case_create
from kb.embedding import LOCAL_EMBEDDING_MODEL, embed_passages
from kb.exceptions import EmbeddingError
from kb.models import Document

logger = logging.getLogger(__name__)

#: A message id or vote this old is settled: any message with a smaller id has committed. Answers
#: are stored in one short transaction, so ids can commit out of order only within seconds.
SETTLE = timedelta(minutes=5)
#: Failed answers grouped per refresh; the rest wait for the next one.
BATCH = 500
#: Test cases an action adds at most (one per distinct wording of the group's questions).
MAX_CASES = 20


class GapClosed(ChatError):
    status_code = 409


@dataclass
class Failed:
    """An assistant message to group: refused, or disliked."""

    message_id: int
    question: str
    asked_at: datetime
    reason: str


def _with_question(messages: QuerySet[Message]) -> QuerySet[Message]:
    question = (
        Message.objects.filter(conversation=OuterRef("conversation"), role=Role.USER, pk__lt=OuterRef("pk"))
        .order_by("-pk")
        .values("content")[:1]
    )
    return messages.annotate(question_text=Subquery(question))


def embedding_model_for(chatbot: Chatbot) -> str:
    """The model questions are embedded with: the bot's first knowledge base's (the local model
    for a bot without one)."""
    kb = chatbot.knowledge_bases.order_by("pk").first()
    return kb.embedding_model if kb is not None else LOCAL_EMBEDDING_MODEL


def gaps_refresh(*, chatbot: Chatbot) -> int:
    """Group the bot's failed answers that are not grouped yet; returns how many were added.

    Failed answers are refused assistant messages with an id above the scan's `last_message_id`
    and thumbs-down votes cast since `feedback_since`, minus messages already in a group (of any
    status). With nothing new this is two indexed queries. The questions are embedded outside any
    transaction; the grouping itself runs under a lock of the bot's scan row, so concurrent
    refreshes (the periodic task, a page being opened) take turns and never group a message twice.
    """
    scan, _ = GapScan.objects.get_or_create(chatbot=chatbot)
    started = timezone.now()
    answers = Message.objects.filter(conversation__chatbot=chatbot, role=Role.ASSISTANT, gap_question__isnull=True)
    refused = list(_with_question(answers.filter(refused=True, pk__gt=scan.last_message_id)).order_by("pk")[:BATCH])
    disliked_since = scan.feedback_since or datetime.min.replace(tzinfo=started.tzinfo)
    disliked = list(
        _with_question(answers.filter(feedback=Feedback.DOWN, feedback_at__gt=disliked_since)).order_by("feedback_at")[
            :BATCH
        ]
    )
    failed: dict[int, Failed] = {}
    for message in [*refused, *disliked]:
        question = (getattr(message, "question_text", None) or "").strip()
        if question and message.pk not in failed:
            reason = GapReason.REFUSED if message.refused else GapReason.THUMBS_DOWN
            failed[message.pk] = Failed(message.pk, question, message.created_at, reason)
    last_id = _settled_message_id(scan.last_message_id, started, refused)
    since = started - SETTLE
    if len(disliked) == BATCH and disliked[-1].feedback_at is not None:
        since = min(since, disliked[-1].feedback_at)
    if not failed:
        GapScan.objects.filter(pk=scan.pk).update(last_message_id=last_id, feedback_since=since, scanned_at=started)
        return 0

    items = sorted(failed.values(), key=lambda f: (f.asked_at, f.message_id))
    model = embedding_model_for(chatbot)
    try:
        vectors = [clustering.unit(v) for v in embed_passages([f.question for f in items], model=model)]
    except EmbeddingError as exc:
        logger.warning("Knowledge gaps of bot %s not refreshed: %s", chatbot.pk, exc)
        return 0
    with transaction.atomic():
        GapScan.objects.select_for_update().get(pk=scan.pk)
        taken = set(
            KnowledgeGapQuestion.objects.filter(message_id__in=[f.message_id for f in items]).values_list(
                "message_id", flat=True
            )
        )
        fresh = [(f, v) for f, v in zip(items, vectors, strict=True) if f.message_id not in taken]
        added = _group(chatbot, model, fresh)
        GapScan.objects.filter(pk=scan.pk).update(last_message_id=last_id, feedback_since=since, scanned_at=started)
    return added


def _settled_message_id(current: int, now: datetime, batch: list[Message]) -> int:
    """How far the refused-answer cursor may move: to the newest message (of any bot) older than
    SETTLE, but not past the last message of a full batch (the rest is read next time)."""
    newest = (
        Message.objects.filter(pk__gt=current, created_at__lt=now - SETTLE)
        .order_by("-pk")
        .values_list("pk", flat=True)
        .first()
    )
    settled = max(current, newest or 0)
    if len(batch) == BATCH:
        settled = min(settled, batch[-1].pk)
    return settled


def _group(chatbot: Chatbot, model: str, fresh: list[tuple[Failed, list[float]]]) -> int:
    """Add `fresh` questions to the bot's open groups or new ones (caller holds the scan lock)."""
    if not fresh:
        return 0
    open_gaps = list(
        KnowledgeGap.objects.select_for_update().filter(chatbot=chatbot, status=GapStatus.OPEN, embedding_model=model)
    )
    clusters: list[clustering.Cluster[KnowledgeGap]] = [
        clustering.Cluster(centroid=list(g.centroid), weight=g.centroid_weight, key=g) for g in open_gaps if g.centroid
    ]
    clustering.assign(clusters, [v for _, v in fresh])
    for cluster in clusters:
        if not cluster.added:
            continue
        gap = cluster.key or KnowledgeGap(
            organization_id=chatbot.organization_id, chatbot=chatbot, embedding_model=model
        )
        gap.centroid, gap.centroid_weight = cluster.centroid, cluster.weight
        gap.save()
        KnowledgeGapQuestion.objects.bulk_create(
            [
                KnowledgeGapQuestion(
                    gap=gap,
                    message_id=fresh[i][0].message_id,
                    question=fresh[i][0].question,
                    reason=fresh[i][0].reason,
                    vector=fresh[i][1],
                    asked_at=fresh[i][0].asked_at,
                )
                for i in cluster.added
            ]
        )
        members = list(gap.questions.values_list("question", "vector"))
        gap.label = clustering.most_central(gap.centroid, members)
        gap.save(update_fields=["label", "updated_at"])
    return len(fresh)


def gaps_refresh_all() -> int:
    """Refresh every enabled bot's inbox (the periodic task); returns the questions grouped."""
    added = 0
    for chatbot in Chatbot.objects.filter(enabled=True).order_by("pk"):
        added += gaps_refresh(chatbot=chatbot)
    return added


# --- actions -----------------------------------------------------------------------------------


def _wordings(gap: KnowledgeGap) -> list[str]:
    """The group's distinct questions (case and spacing folded), most recent first, capped."""
    seen: dict[str, str] = {}
    for question in gap.questions.order_by("-asked_at", "-pk").values_list("question", flat=True):
        key = " ".join(question.lower().split())
        seen.setdefault(key, question)
        if len(seen) >= MAX_CASES:
            break
    return list(seen.values())


def _close(gap: KnowledgeGap, status: str, context: OrgContext, **fields: object) -> None:
    """Claim the open group for `status`; another request that got there first wins."""
    claimed = KnowledgeGap.objects.filter(pk=gap.pk, status=GapStatus.OPEN).update(
        status=status, resolved_by=context.user, resolved_at=timezone.now(), updated_at=timezone.now(), **fields
    )
    if claimed != 1:
        raise GapClosed("gap_closed", "This group was already handled; refresh the page.")
    gap.refresh_from_db()


def gap_answer(*, gap: KnowledgeGap, answer: str, context: OrgContext) -> Document:
    """Write the answer: a Q&A entry (the group's label as its question) in the bot's first
    knowledge base — live at once, or staged in the draft when that knowledge base reviews changes
    first — and one test case per distinct question expecting the answer. All or nothing."""
    from kb.services import qa_entry_create

    answer = answer.strip()
    if not answer:
        raise ChatError("empty_answer", "Write the answer first.")
    knowledge_base = gap.chatbot.knowledge_bases.order_by("pk").first()
    if knowledge_base is None:
        raise ChatError("no_knowledge_base", "This chatbot has no knowledge base to add the answer to.")
    with transaction.atomic():
        entry = qa_entry_create(
            knowledge_base=knowledge_base, question=gap.label, answer=answer, created_by=context.user, actor=context
        )
        _close(gap, GapStatus.ANSWERED, context, answer_document=entry.document)
        for question in _wordings(gap):
            case_create(
                chatbot=gap.chatbot,
                question=question,
                expected=[answer],
                source=TestCaseSource.GAP,
                created_by=context.user,
            )
        audit_record(context=context, action="gap.answer", target=gap, detail={"document_id": entry.document.pk})
    return entry.document


def gap_mark_out_of_scope(*, gap: KnowledgeGap, context: OrgContext) -> int:
    """Out of scope: the group's questions become must-refuse test cases; returns how many."""
    with transaction.atomic():
        _close(gap, GapStatus.OUT_OF_SCOPE, context)
        wordings = _wordings(gap)
        for question in wordings:
            case_create(
                chatbot=gap.chatbot,
                question=question,
                must_refuse=True,
                source=TestCaseSource.GAP,
                created_by=context.user,
            )
        audit_record(context=context, action="gap.out_of_scope", target=gap, detail={"cases": len(wordings)})
    return len(wordings)


def gap_dismiss(*, gap: KnowledgeGap, context: OrgContext) -> KnowledgeGap:
    """Dismiss the group: it leaves the inbox, nothing else changes."""
    with transaction.atomic():
        _close(gap, GapStatus.DISMISSED, context)
        audit_record(context=context, action="gap.dismiss", target=gap)
    return gap
