"""The one door from evaluation runs to the answer pipeline and the chat model.

Everything an evaluation needs from outside `chat.testsets` — answering a question, the
retrieval trace, the cited chunks' text, a plain completion for the optional judge — goes
through this module, so a move of the answer pipeline re-points imports here and nowhere else.

Answers are generated inside a transaction (a savepoint when one is already open) that is rolled
back: an evaluation leaves no conversations, messages or citations behind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from chat.exceptions import ChatError
from chat.models import Channel, Chatbot, Message
from chat.rag import generate
from chat.rag.answer import chat_answer
from kb.models import Chunk, Document


@dataclass
class CaseAnswer:
    """What the bot answered to one case's question, with what it retrieved and cited."""

    content: str = ""
    refused: bool = False
    citations: list[dict[str, Any]] = field(default_factory=list)
    # Each citation's chunk text (by chunk id) read before the rollback, for the quote check.
    chunk_texts: dict[int, str] = field(default_factory=dict)
    retrieved: list[dict[str, Any]] = field(default_factory=list)
    grounding_grade: float | None = None
    latency_ms: float | None = None
    error: str = ""


def answer_case(*, chatbot: Chatbot, question: str, target: str = "live") -> CaseAnswer:
    """Answer `question` as `chatbot` would, leaving nothing stored.

    `target` is "live" or "draft" (what the bot's knowledge bases would hold with their drafts
    published: kb.releases).
    """
    started = time.perf_counter()
    result = CaseAnswer()
    with transaction.atomic():
        try:
            final = chat_answer(chatbot=chatbot, question=question, channel=Channel.API, draft=target == "draft")
        except ChatError as exc:
            transaction.set_rollback(True)
            result.refused, result.error = True, exc.message
            result.latency_ms = round((time.perf_counter() - started) * 1000, 1)
            return result
        message = final["message"]
        trace = Message.objects.filter(pk=message["id"]).values_list("retrieval_trace", flat=True).first() or {}
        chunk_ids = [c["chunk_id"] for c in message["citations"] if c.get("chunk_id")]
        result.chunk_texts = dict(Chunk.objects.filter(pk__in=chunk_ids).values_list("pk", "text"))
        transaction.set_rollback(True)
    result.content = message["content"]
    result.refused = bool(message["refused"])
    result.error = final.get("error") or ""
    result.citations = [
        {k: c.get(k) for k in ("number", "chunk_id", "document_id", "document_title", "page", "quote")}
        for c in message["citations"]
    ]
    result.grounding_grade = message["grounding_grade"]
    total = message["latency"]["total_ms"]
    result.latency_ms = total if total is not None else round((time.perf_counter() - started) * 1000, 1)
    candidates = trace.get("candidates") or []
    titles = dict(
        Document.objects.filter(pk__in=[c.get("document_id") for c in candidates if c.get("document_id")]).values_list(
            "pk", "title"
        )
    )
    result.retrieved = [
        {
            "rank": c.get("number"),
            "chunk_id": c.get("chunk_id"),
            "document_id": c.get("document_id"),
            "document_title": titles.get(c.get("document_id"), ""),
            "score": c.get("score"),
        }
        for c in candidates
    ]
    return result


def chat_model_is_local(model: str) -> bool:
    """Whether `model` is the in-process offline model (no judge with it: it cannot grade)."""
    return model.startswith("local/")


def complete_text(*, chatbot: Chatbot, messages: list[dict[str, Any]]) -> str:
    """One short, non-streamed completion from the bot's chat model (the judge), with the
    organisation's stored key. Raises ChatModelError when the model cannot answer."""
    return generate.complete_text(
        model=chatbot.effective_chat_model, messages=messages, organization=chatbot.organization
    )
