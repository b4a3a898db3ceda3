"""Replays of real questions against a knowledge base's draft (see chat.models.Replay).

For each of the last `limit` questions people asked bots that use the knowledge base, the bot that
was asked answers again twice — from the live release and from the draft — without storing a
conversation (chat.testsets.answering rolls the answers back). Each pair is classified:

    same            both refused, or the same answer citing the same documents
    changed         both answered, differently
    newly_refused   live answers, the draft refuses
    newly_answered  live refuses, the draft answers
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from celery import current_app
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Organization, User
from accounts.services import audit_record
from chat.models import Chatbot, Message, Replay, ReplayChange, ReplayItem, ReplayStatus, Role
from chat.testsets.answering import CaseAnswer, answer_case
from kb.models import KnowledgeBase

logger = logging.getLogger(__name__)

MAX_REPLAY = 500


@dataclass(frozen=True)
class AskedQuestion:
    chatbot: Chatbot
    question: str
    asked_at: datetime | None


def replay_create(*, knowledge_base: KnowledgeBase, limit: int, actor: object = None) -> Replay:
    """Queue a replay of the last `limit` questions (1..500) asked of bots using `knowledge_base`."""
    limit = max(1, min(MAX_REPLAY, int(limit)))
    user = getattr(actor, "user", None)
    replay = Replay.objects.create(
        organization_id=knowledge_base.organization_id,
        knowledge_base=knowledge_base,
        limit=limit,
        created_by=user if isinstance(user, User) else None,
    )
    if actor is not None:
        audit_record(context=actor, action="knowledge_base.replay", target=knowledge_base, detail={"limit": limit})
    # By name, so this module does not import its task module (which imports this one).
    transaction.on_commit(lambda: current_app.send_task("chat.replay_execute", args=[replay.pk]))
    return replay


def recent_questions(*, knowledge_base: KnowledgeBase, limit: int) -> list[AskedQuestion]:
    """The newest distinct user questions asked of this organisation's bots that use the knowledge base."""
    messages = (
        Message.objects.filter(
            role=Role.USER,
            conversation__organization_id=knowledge_base.organization_id,
            conversation__chatbot__knowledge_bases=knowledge_base,
        )
        .select_related("conversation__chatbot")
        .order_by("-created_at", "-pk")
    )
    seen: set[str] = set()
    asked: list[AskedQuestion] = []
    for message in messages.iterator(chunk_size=200):
        key = _normalise(message.content)
        if not key or key in seen:
            continue
        seen.add(key)
        asked.append(AskedQuestion(message.conversation.chatbot, message.content, message.created_at))
        if len(asked) >= limit:
            break
    return asked


def _normalise(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.casefold())
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return " ".join(re.findall(r"\w+", folded))


def classify(live: CaseAnswer, draft: CaseAnswer) -> str:
    if live.refused and draft.refused:
        return ReplayChange.SAME
    if live.refused:
        return ReplayChange.NEWLY_ANSWERED
    if draft.refused:
        return ReplayChange.NEWLY_REFUSED
    same_text = _normalise(live.content) == _normalise(draft.content)
    same_sources = {c.get("document_id") for c in live.citations} == {c.get("document_id") for c in draft.citations}
    return ReplayChange.SAME if same_text and same_sources else ReplayChange.CHANGED


def _citations(answer: CaseAnswer) -> list[dict[str, object]]:
    keys = ("number", "document_id", "document_title", "page", "quote")
    return [{k: c.get(k) for k in keys} for c in answer.citations]


def replay_execute(*, replay_id: int) -> Replay | None:
    """Claim a queued replay and answer its questions from live and from draft, storing progress."""
    claimed = Replay.objects.filter(pk=replay_id, status=ReplayStatus.QUEUED).update(status=ReplayStatus.RUNNING)
    if claimed != 1:
        return None
    replay = Replay.objects.select_related("knowledge_base").get(pk=replay_id)
    status, error = ReplayStatus.DONE, ""
    try:
        asked = recent_questions(knowledge_base=replay.knowledge_base, limit=replay.limit)
        Replay.objects.filter(pk=replay.pk).update(items_total=len(asked))
        for ordinal, item in enumerate(asked):
            live = answer_case(chatbot=item.chatbot, question=item.question, target="live")
            draft = answer_case(chatbot=item.chatbot, question=item.question, target="draft")
            ReplayItem.objects.create(
                replay=replay,
                ordinal=ordinal,
                chatbot=item.chatbot,
                question=item.question,
                asked_at=item.asked_at,
                live_answer=live.content,
                live_refused=live.refused,
                live_citations=_citations(live),
                draft_answer=draft.content,
                draft_refused=draft.refused,
                draft_citations=_citations(draft),
                change=classify(live, draft),
            )
            Replay.objects.filter(pk=replay.pk).update(items_done=F("items_done") + 1)
    except Exception as exc:
        logger.exception("Replay %s failed", replay.pk)
        status, error = ReplayStatus.FAILED, f"{type(exc).__name__}: {exc}"[:2000]
    Replay.objects.filter(pk=replay.pk).update(status=status, error=error, finished_at=timezone.now())
    replay.refresh_from_db()
    return replay


def replay_get(*, organization: Organization, pk: int) -> Replay | None:
    return Replay.objects.filter(organization=organization, pk=pk).select_related("knowledge_base").first()


def replay_counts(replay: Replay) -> dict[str, int]:
    counts = {choice.value: 0 for choice in ReplayChange}
    for change in replay.items.values_list("change", flat=True):
        counts[change] = counts.get(change, 0) + 1
    return counts
