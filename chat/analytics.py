"""Dashboard figures for an organisation (optionally one chatbot): volumes, answers, feedback,
latency, most cited documents, the most frequent unanswered or disliked questions, and the open
groups of the knowledge-gap inboxes (`chat.gaps`, kept current by its periodic task)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from accounts.models import Organization
from chat.gaps.selectors import open_gap_counts
from chat.models import Citation, Conversation, Message


@dataclass
class QuestionGroup:
    question: str  # a representative wording
    count: int
    message_id: int  # the assistant answer to correct
    conversation_id: int
    variants: list[str] = field(default_factory=list)


@dataclass
class Dashboard:
    days: list[date]
    conversations_per_day: list[int]
    answered_per_day: list[int]
    refused_per_day: list[int]
    totals: dict[str, Any]
    most_cited: list[tuple[str, int]]
    problem_questions: list[QuestionGroup]
    open_gaps: list[dict[str, Any]] = field(default_factory=list)  # per bot: chatbot_id, chatbot, open


_WORD = re.compile(r"[^\W\d_]+|\d+")
_STOP = frozenset(
    "a an the is are was were do does did can could i you we my your our to of in on for and or what how".split()
)


def _signature(text: str) -> frozenset[str]:
    return frozenset(w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1)


def group_questions(rows: list[tuple[str, int, int]], *, threshold: float = 0.6) -> list[QuestionGroup]:
    """Group near-duplicate questions (word-set Jaccard ≥ threshold), biggest groups first."""
    groups: list[tuple[frozenset[str], QuestionGroup]] = []
    for question, message_id, conversation_id in rows:
        signature = _signature(question)
        for existing, group in groups:
            union = len(existing | signature)
            if union and len(existing & signature) / union >= threshold:
                group.count += 1
                if len(group.variants) < 5 and question not in group.variants:
                    group.variants.append(question)
                break
        else:
            groups.append(
                (
                    signature,
                    QuestionGroup(
                        question=question,
                        count=1,
                        message_id=message_id,
                        conversation_id=conversation_id,
                        variants=[question],
                    ),
                )
            )
    return sorted((g for _, g in groups), key=lambda g: g.count, reverse=True)


def dashboard(*, organization: Organization, chatbot_id: int | None = None, days: int = 30) -> Dashboard:
    since = timezone.now() - timedelta(days=days - 1)
    start = since.date()
    conversations = Conversation.objects.filter(organization=organization, created_at__gte=since)
    answers = Message.objects.filter(conversation__organization=organization, role="assistant", created_at__gte=since)
    if chatbot_id:
        conversations = conversations.filter(chatbot_id=chatbot_id)
        answers = answers.filter(conversation__chatbot_id=chatbot_id)

    day_list = [start + timedelta(days=i) for i in range(days)]
    per_day = dict(
        conversations.annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(n=Count("id"))
        .values_list("day", "n")
    )
    answer_days = {
        row["day"]: row
        for row in answers.annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(answered=Count("id", filter=Q(refused=False)), refused=Count("id", filter=Q(refused=True)))
    }
    counts = answers.aggregate(
        messages=Count("id"),
        refused=Count("id", filter=Q(refused=True)),
        up=Count("id", filter=Q(feedback="up")),
        down=Count("id", filter=Q(feedback="down")),
    )
    latency = _latency_percentiles(answers)
    rated = counts["up"] + counts["down"]
    totals = {
        "conversations": conversations.count(),
        "answers": counts["messages"],
        "refused": counts["refused"],
        "answer_rate": round(1 - counts["refused"] / counts["messages"], 3) if counts["messages"] else None,
        "thumbs_up": counts["up"],
        "thumbs_down": counts["down"],
        "satisfaction": round(counts["up"] / rated, 3) if rated else None,
        "latency_p50_ms": latency[0],
        "latency_p95_ms": latency[1],
    }
    open_gaps = open_gap_counts(organization=organization, chatbot_id=chatbot_id)
    totals["open_gaps"] = sum(row["open"] for row in open_gaps)
    most_cited = list(
        Citation.objects.filter(message__in=answers)
        .values("document_title")
        .annotate(n=Count("id"))
        .order_by("-n")
        .values_list("document_title", "n")[:8]
    )
    problems = answers.filter(Q(refused=True) | Q(feedback="down")).order_by("-created_at")[:500]
    rows: list[tuple[str, int, int]] = []
    for answer in problems.select_related("conversation"):
        question = (
            Message.objects.filter(conversation_id=answer.conversation_id, role="user", pk__lt=answer.pk)
            .order_by("-pk")
            .values_list("content", flat=True)
            .first()
        )
        if question:
            rows.append((question, answer.pk, answer.conversation_id))
    return Dashboard(
        days=day_list,
        conversations_per_day=[per_day.get(d, 0) for d in day_list],
        answered_per_day=[answer_days.get(d, {}).get("answered", 0) for d in day_list],
        refused_per_day=[answer_days.get(d, {}).get("refused", 0) for d in day_list],
        totals=totals,
        most_cited=most_cited,
        problem_questions=group_questions(rows)[:10],
        open_gaps=open_gaps,
    )


def _latency_percentiles(answers: Any) -> tuple[float | None, float | None]:
    sql, params = answers.filter(total_ms__isnull=False).values("total_ms").query.sql_with_params()
    # `sql` is Django's own compiled query with its parameters kept separate: nothing user-supplied.
    query = f"SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY total_ms), percentile_cont(0.95) WITHIN GROUP (ORDER BY total_ms) FROM ({sql}) AS t"  # noqa: S608, E501
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        p50, p95 = cursor.fetchone() or (None, None)
    return (round(p50) if p50 is not None else None, round(p95) if p95 is not None else None)
