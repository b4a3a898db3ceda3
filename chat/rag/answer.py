"""One question, start to finish: the grounded answer pipeline.

    store the user message
      → retrieve (hybrid) over the bot's knowledge bases, enabled documents' live versions only
      → nothing relevant? answer with the fallback message, no model call, message.refused = True
        (a refusal may point to up to three related passages, as citations: `refuse`)
      → prompt with numbered, fenced sources → stream the model's answer (LiteLLM)
      → ground it: strip citations to missing sources, grade each sentence's grounding
      → store the answer with its citation snapshots, usage, latency and retrieval trace

`chat_answer_events` yields events (`delta` text pieces, then one `final` with the stored
message), so the same code serves the streaming and the non-streaming APIs, the playground and
the widget (`chat.sse` turns the events into each endpoint's server-sent events).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from django.db import connection, transaction

from accounts.models import User
from chat.exceptions import ChatbotDisabled, ChatError, ChatModelError
from chat.models import Channel, Chatbot, Conversation, Message, Role
from chat.rag import generate
from chat.rag.cite import citations_save, pointer_claims, pointers_text
from chat.rag.ground import check_answer
from chat.rag.prompt import build_messages
from chat.rag.retrieve import Retrieval, retrieve, start_retrieval
from chat.selectors import conversation_history, serialize_message
from chat.services import conversation_start
from inference.extractive import REFUSAL_SENTINEL

logger = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 4000


def chat_answer_events(
    *,
    chatbot: Chatbot,
    question: str,
    conversation: Conversation | None = None,
    channel: str = Channel.API,
    user: User | None = None,
    visitor_id: str = "",
    draft: bool = False,
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
    knowledge_bases, query_vectors = start_retrieval(chatbot=chatbot, question=question)
    # One commit for the conversation and the question, which does not wait for its WAL flush:
    # the answer's commit below flushes it (the WAL is written in order), so a question is
    # durable no later than its answer, and the first token does not wait for the disk.
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
        is_new_conversation = conversation is None
        if conversation is None:
            conversation = conversation_start(
                chatbot=chatbot, channel=channel, started_by=user, visitor_id=visitor_id, title=question[:80]
            )
        user_message = Message.objects.create(conversation=conversation, role=Role.USER, content=question)
    yield {"type": "start", "conversation_id": conversation.pk, "user_message_id": user_message.pk}

    retrieval = retrieve(
        chatbot=chatbot, question=question, draft=draft, knowledge_bases=knowledge_bases, query_vectors=query_vectors
    )
    answer = Message(
        conversation=conversation,
        role=Role.ASSISTANT,
        retrieval_ms=round(retrieval.elapsed_ms, 1),
        retrieval_trace=retrieval.trace,
        releases=retrieval.releases,
    )
    if not retrieval.relevant:
        pointers = refuse(answer, retrieval, chatbot)
        answer.total_ms = round((time.perf_counter() - started) * 1000, 1)
        with transaction.atomic():
            answer.save()
            citations_save(answer=answer, retrieval=retrieval, claims=pointers)
            Conversation.objects.filter(pk=conversation.pk).update(updated_at=answer.created_at)
        yield {"type": "final", "message": serialize_message(answer)}
        return

    model = chatbot.effective_chat_model
    messages = build_messages(
        chatbot=chatbot,
        question=question,
        sources=retrieval.sources,
        # A conversation started with this question has no history: no query for it.
        history=[] if is_new_conversation else conversation_history(conversation=conversation, before=user_message),
    )
    answer.model = model
    fallbacks = list(chatbot.fallback_models or [])
    # The staff trace of the model call: asked for, answered by, retries and fallbacks, or the error.
    generation: dict[str, Any] = {"model": model, "fallback_models": fallbacks}
    answer.retrieval_trace = {**(answer.retrieval_trace or {}), "generation": generation}
    _release_database_connection()
    try:
        stream = generate.stream_completion(
            model=model,
            messages=messages,
            temperature=chatbot.temperature,
            organization=chatbot.organization,
            fallbacks=fallbacks,
            # The offline answerer's refusal threshold follows the bot's caution setting (sent only
            # when every model of the chain is local: hosted providers get no unknown parameter).
            extra={"caution": chatbot.answer_caution}
            if all(m.startswith("local/") for m in [model, *fallbacks])
            else None,
        )
        answer.model = stream.model
        generation.update(answered_by=stream.model, retries=stream.retries, fallbacks_tried=stream.fallbacks)
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
        # Retries and fallbacks are spent: store what happened for staff, tell the visitor plainly.
        answer.content, answer.refused, answer.error = chatbot.fallback_message, True, exc.message
        generation["error"] = {"code": exc.code, "detail": exc.message}
        answer.total_ms = round((time.perf_counter() - started) * 1000, 1)
        answer.save()
        logger.warning("Chat model failed for bot %s: %s", chatbot.pk, exc.message)
        yield {
            "type": "final",
            "message": serialize_message(answer),
            "error": exc.message,
            "error_code": exc.code,
            "public_error": exc.public_message,
        }
        return

    answer.prompt_tokens, answer.completion_tokens = stream.usage.prompt_tokens, stream.usage.completion_tokens
    claims = finish_answer(answer, raw, retrieval, chatbot)
    answer.total_ms = round((time.perf_counter() - started) * 1000, 1)
    with transaction.atomic():
        answer.save()
        citations_save(answer=answer, retrieval=retrieval, claims=claims)
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=answer.created_at)
    yield {"type": "final", "message": serialize_message(answer)}


def _release_database_connection() -> None:
    """Give the connection back to the pool while the model writes (seconds with a hosted LLM, or
    waiting for a local answer slot): the answer's save takes one again, so concurrent answers are
    not capped by the pool. Inside a transaction (a test's) it stays."""
    if not connection.in_atomic_block:
        connection.close()


def finish_answer(answer: Message, raw: str, retrieval: Retrieval, chatbot: Chatbot) -> dict[int, list[str]]:
    """Refusal detection and the grounding check of the model's raw answer, written onto `answer`.

    Returns the answer sentences by the source number they cite (for a refusal: the passages it
    points to), from which the citation quotes are chosen.
    """
    text = raw.strip()
    if not text or text.startswith(REFUSAL_SENTINEL) or text.endswith(REFUSAL_SENTINEL):
        return refuse(answer, retrieval, chatbot)
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
    return {n: [s.text for s in report.sentences if n in s.citations] for n in report.cited_sources}


def refuse(answer: Message, retrieval: Retrieval, chatbot: Chatbot) -> dict[int, list[str]]:
    """Make `answer` the bot's refusal: its fallback message, `refused=True`.

    With the bot's `refusal_pointers` on and passages at or above its relevance threshold, the
    refusal adds "I couldn't find a direct answer, but these passages may help:" and lists up to
    three of them; the returned claims become their citations (verbatim quotes of the chunks).
    Nothing is generated: the bot still refuses, it only says where to look.
    """
    answer.content, answer.refused = chatbot.fallback_message, True
    claims = pointer_claims(retrieval=retrieval, chatbot=chatbot)
    if claims:
        answer.content = f"{chatbot.fallback_message}\n\n{pointers_text(retrieval=retrieval, claims=claims)}"
    return claims


def chat_answer(**kwargs: Any) -> dict[str, Any]:
    """Non-streaming form of `chat_answer_events`: the final event."""
    final: dict[str, Any] = {}
    for event in chat_answer_events(**kwargs):
        if event["type"] == "final":
            final = event
    return final
