"""The public chat widget: who may talk to a bot, visitor tokens, rate limits, and the answers.

The widget runs on customers' websites, so the only thing a request carries is the bot's public
`widget_key`. Everything else is checked on every request, in this order:

    widget key names a bot                              else 404 unknown_widget
    the website (host origin) is allowed for the bot    else 403 origin_not_allowed
    the bot is enabled                                  else 403 bot_disabled
    writes: under the visitor's and the bot's limits    else 429 rate_limited
    conversation access: the visitor token matches      else 404 conversation_not_found

Origins. Browsers send `Origin` and cannot be made to lie about it; other clients can send
anything, so the check keeps other *websites* from using a bot, it is not authentication. The
chat runs in an iframe served by this app, so its own calls come from the app's origin (`Origin`
on POSTs, `Sec-Fetch-Site: same-origin` on GETs) and name the website that embeds it in
`X-Groundwork-Host`. That claim can be trusted as far as the iframe can: the iframe page checks
the same website against the bot's list and is served with `frame-ancestors` of that list, so a
page elsewhere cannot frame it. A call made directly from a website (CORS) is checked on its
own `Origin`. The app's own origin is always allowed, so staff can preview the widget; an empty
list therefore allows nothing else.

Conversations belong to whoever holds their visitor token: random, shown once, only its SHA-256
is stored (`Conversation.visitor_token_hash`). No cookies are involved (third-party cookies are
blocked in most browsers anyway).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.db import transaction

from chat.exceptions import ChatError
from chat.models import Channel, Chatbot, Conversation, Message, Role
from chat.rag.answer import chat_answer_events
from chat.services import conversation_lead_set, conversation_start, message_feedback_set
from chat.source_links import source_link_url
from chat.widget import normalize_origin, normalized_origins

logger = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 1000
MAX_COMMENT_CHARS = 1000
RATE_WINDOW_SECONDS = 60
DEFAULT_THEME_COLOR = "#2457c5"
_THEME_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_VISITOR_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
# "Can I talk to a person?" — offered the lead form even when the bot did answer.
_WANTS_HUMAN = re.compile(
    r"\b(human|real person|a person|someone|somebody|agent|representative|operator|staff|support team|"
    r"call me|phone|contact (?:you|us|someone|the team)|speak to|talk to|get in touch|e-?mail (?:me|you))\b",
    re.IGNORECASE,
)


class WidgetError(ChatError):
    """A refused widget request; `status_code` per instance, `retry_after` (seconds) for 429."""

    def __init__(self, code: str, message: str, *, status_code: int = 400, retry_after: int | None = None) -> None:
        super().__init__(code, message)
        self.status_code = status_code
        self.retry_after = retry_after


# --- bots and origins ----------------------------------------------------------------------


def widget_bot_get(*, widget_key: str) -> Chatbot:
    """The bot with this public key (read fresh on every request: switching it off acts at once)."""
    bot = Chatbot.objects.filter(widget_key=widget_key).first() if widget_key else None
    if bot is None:
        raise WidgetError("unknown_widget", "No chatbot has this widget key. Copy the snippet again.", status_code=404)
    return bot


def widget_origin_allowed(*, chatbot: Chatbot, origin: str | None, own_origins: set[str]) -> bool:
    """May a page on `origin` use this bot's widget? The app's own origins always may (preview)."""
    normalized = normalize_origin(origin) if origin else None
    if normalized is None:
        return False
    return normalized in own_origins or normalized in normalized_origins(chatbot.allowed_origins)


def widget_host_origin(
    *, chatbot: Chatbot, request_origin: str | None, claimed_host: str | None, own_origins: set[str]
) -> str:
    """The website a widget API call comes from, once it is known to be allowed; else 403.

    `request_origin` is what the browser vouches for (`Origin`, or the app's own origin for a
    same-origin GET without one); `claimed_host` the iframe's `X-Groundwork-Host`.
    """
    origin = normalize_origin(request_origin) if request_origin else None
    if origin is None:
        raise WidgetError(
            "origin_not_allowed",
            "The widget answers only in a browser on an allowed website (this request has no Origin).",
            status_code=403,
        )
    host = origin
    if origin in own_origins and claimed_host:
        # The iframe (or a staff preview page) speaking for the website that embeds it.
        host = normalize_origin(claimed_host) or claimed_host
    if not widget_origin_allowed(chatbot=chatbot, origin=host, own_origins=own_origins):
        raise WidgetError(
            "origin_not_allowed",
            f"This chatbot is not enabled on {host}. The site owner can add it under the chatbot's "
            "allowed website origins.",
            status_code=403,
        )
    return host


def widget_check_enabled(*, chatbot: Chatbot) -> None:
    """403 `bot_disabled` for a switched-off bot (checked on every request, so it acts at once)."""
    if not chatbot.enabled:
        raise WidgetError("bot_disabled", "This chat is switched off at the moment.", status_code=403)


def widget_config(*, chatbot: Chatbot) -> dict[str, Any]:
    """What the launcher and the chat window show; public by design."""
    title = chatbot.widget_title.strip() or chatbot.name
    color = chatbot.theme_color if _THEME_COLOR.match(chatbot.theme_color or "") else DEFAULT_THEME_COLOR
    questions = chatbot.suggested_questions if isinstance(chatbot.suggested_questions, list) else []
    return {
        "name": chatbot.name,
        "title": title,
        "avatar": (title[:1] or "?").upper(),
        "theme_color": color,
        "position": "left" if chatbot.widget_position == "left" else "right",
        "welcome_message": chatbot.welcome_message,
        "suggested_questions": [str(q)[:200] for q in questions if str(q).strip()][:6],
        "lead_capture": chatbot.lead_capture,
        "max_message_chars": MAX_MESSAGE_CHARS,
    }


# --- rate limits ---------------------------------------------------------------------------

_redis_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    """One client per process (it pools its connections)."""
    global _redis_client
    if _redis_client is None:
        # Short timeouts: a stalled Redis must not stall the widget (see `widget_rate_limit_hit`).
        _redis_client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)
    return _redis_client


def visitor_rate_key(*, visitor_token: str = "", client_ip: str = "") -> str:
    """Who a request counts against: the conversation's visitor, else (no token yet) the address."""
    if visitor_token:
        return "t:" + hashlib.sha256(visitor_token.encode()).hexdigest()[:32]
    return "ip:" + (client_ip or "unknown")


def widget_rate_limit_hit(*, chatbot: Chatbot, visitor: str) -> None:
    """Count one write against the visitor's and the bot's per-minute budgets; 429 when over.

    Fixed one-minute windows (INCR, then EXPIRE so the counter disappears with its window). A
    burst at a window boundary may get up to twice the rate; that is acceptable for abuse
    control and costs one round trip. If Redis is unreachable the request is let through and
    logged: the limiter failing must not take every customer's chat down with it.
    """
    per_visitor = int(getattr(settings, "GROUNDWORK_WIDGET_RATE_PER_MINUTE", 20))
    per_bot = int(getattr(settings, "GROUNDWORK_WIDGET_BOT_RATE_PER_MINUTE", 600))
    now = time.time()
    window = int(now // RATE_WINDOW_SECONDS)
    retry_after = max(1, int(RATE_WINDOW_SECONDS - now % RATE_WINDOW_SECONDS))
    bot_key = f"gw:widget:rate:bot:{chatbot.widget_key}:{window}"
    visitor_key = f"gw:widget:rate:visitor:{chatbot.widget_key}:{visitor}:{window}"
    try:
        pipe = _redis().pipeline()
        pipe.incr(visitor_key)
        pipe.expire(visitor_key, RATE_WINDOW_SECONDS + 5)
        pipe.incr(bot_key)
        pipe.expire(bot_key, RATE_WINDOW_SECONDS + 5)
        visitor_count, _, bot_count, _ = pipe.execute()
    except redis.RedisError as exc:
        logger.warning("Widget rate limiter unavailable, request let through: %s", exc)
        return
    if int(visitor_count) > per_visitor:
        raise WidgetError(
            "rate_limited",
            f"You are sending messages too quickly. Please wait {retry_after} seconds and try again.",
            status_code=429,
            retry_after=retry_after,
        )
    if int(bot_count) > per_bot:
        raise WidgetError(
            "rate_limited",
            f"This chat is very busy right now. Please try again in {retry_after} seconds.",
            status_code=429,
            retry_after=retry_after,
        )


# --- conversations -------------------------------------------------------------------------


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class StartedConversation:
    conversation: Conversation
    visitor_token: str  # shown once; only its hash is stored


def widget_conversation_start(*, chatbot: Chatbot, origin: str, visitor_id: str = "") -> StartedConversation:
    """A widget conversation for one visitor on `origin`, with a fresh visitor token."""
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        conversation = conversation_start(
            chatbot=chatbot, channel=Channel.WIDGET, visitor_id=visitor_id if _VISITOR_ID.match(visitor_id) else ""
        )
        conversation.origin = origin[:300]
        conversation.visitor_token_hash = _token_hash(token)
        conversation.save(update_fields=["origin", "visitor_token_hash"])
    return StartedConversation(conversation=conversation, visitor_token=token)


def widget_conversation_get(*, chatbot: Chatbot, conversation_id: int | None, visitor_token: str) -> Conversation:
    """The bot's widget conversation that `visitor_token` opens.

    A wrong token and a missing conversation get the same 404, so ids reveal nothing.
    """
    conversation = (
        Conversation.objects.filter(pk=conversation_id, chatbot=chatbot, channel=Channel.WIDGET).first()
        if conversation_id and visitor_token
        else None
    )
    if (
        conversation is None
        or not conversation.visitor_token_hash
        or not hmac.compare_digest(conversation.visitor_token_hash, _token_hash(visitor_token))
    ):
        raise WidgetError(
            "conversation_not_found", "This conversation does not exist or is not yours.", status_code=404
        )
    return conversation


def public_message(message: dict[str, Any], *, chatbot: Chatbot | None = None) -> dict[str, Any]:
    """What a visitor may see of a serialized message (no model, usage, trace or internal ids).

    With `chatbot` allowing it (`widget_source_links`), a citation of a stored document carries
    `source`: a signed, expiring link to the cited place (`chat.source_links`).
    """
    return {
        "id": message["id"],
        "role": message["role"],
        "content": message["content"],
        "refused": message["refused"],
        "citations": [
            {
                "number": c["number"],
                "title": c["document_title"],
                "page": c["page"],
                "page_end": c["page_end"],
                "section": c["section"],
                "quote": c["quote"],
                "url": c["source_url"] if str(c["source_url"]).startswith(("https://", "http://")) else "",
                "source": source_link_url(chatbot=chatbot, citation_id=c.get("id"), version_id=c.get("version_id"))
                if chatbot is not None
                else "",
            }
            for c in message["citations"]
        ],
        "feedback": message.get("feedback", ""),
    }


def widget_conversation_messages(*, conversation: Conversation) -> list[dict[str, Any]]:
    """The conversation's messages as the visitor saw them (for restoring the chat)."""
    messages = conversation.messages.prefetch_related("citations").order_by("created_at", "pk")
    rows = []
    for message in messages:
        citations = [
            {
                "number": c.number,
                "document_title": c.document_title,
                "page": c.page,
                "page_end": c.page_end,
                "section": c.section,
                "quote": c.quote,
                "source_url": c.source_url,
                "id": c.pk,
                "version_id": c.version_id,
            }
            for c in message.citations.all()
        ]
        rows.append(
            public_message(
                {
                    "id": message.pk,
                    "role": message.role,
                    "content": message.content,
                    "refused": message.refused,
                    "citations": citations,
                    "feedback": message.feedback,
                },
                chatbot=conversation.chatbot,
            )
        )
    return rows


# --- answering -----------------------------------------------------------------------------


def widget_question_clean(question: Any) -> str:
    """The visitor's message, stripped; 400 when empty or over `MAX_MESSAGE_CHARS`."""
    text = question.strip() if isinstance(question, str) else ""
    if not text:
        raise WidgetError("empty_message", "Type a question first.")
    if len(text) > MAX_MESSAGE_CHARS:
        raise WidgetError(
            "message_too_long",
            f"Messages are limited to {MAX_MESSAGE_CHARS} characters; this one has {len(text)}. Please shorten it.",
        )
    return text


def wants_human(question: str) -> bool:
    """Does the visitor ask for a person (so the lead form is offered even after an answer)?"""
    return bool(_WANTS_HUMAN.search(question))


def widget_answer_events(*, chatbot: Chatbot, conversation: Conversation, question: str) -> Iterator[dict[str, Any]]:
    """`chat_answer_events` for the widget: public message payloads, and whether to offer the lead form."""
    if not conversation.title:
        Conversation.objects.filter(pk=conversation.pk, title="").update(title=question[:80])
    for event in chat_answer_events(
        chatbot=chatbot,
        question=question,
        conversation=conversation,
        channel=Channel.WIDGET,
        visitor_id=conversation.visitor_id,
    ):
        if event["type"] == "final":
            message = public_message(event["message"], chatbot=chatbot)
            offer = (
                chatbot.lead_capture and not conversation.lead_email and (message["refused"] or wants_human(question))
            )
            final: dict[str, Any] = {"type": "final", "message": message, "offer_lead": offer}
            if event.get("error"):  # the model failed: the visitor gets plain words, never staff detail
                final.update(error_code=event["error_code"], public_error=event["public_error"])
            yield final
        else:
            yield event


# --- feedback and leads --------------------------------------------------------------------


def widget_feedback_set(
    *, chatbot: Chatbot, message_id: int, visitor_token: str, value: Any, comment: Any = ""
) -> Message:
    """Thumbs up/down (and an optional comment) on an answer in the visitor's own conversation."""
    message = (
        Message.objects.filter(pk=message_id, role=Role.ASSISTANT, conversation__chatbot=chatbot)
        .select_related("conversation")
        .first()
    )
    # An unknown answer and someone else's get the same 404: message ids reveal nothing.
    not_found = WidgetError("message_not_found", "This answer does not exist or is not yours.", status_code=404)
    if message is None:
        raise not_found
    try:
        widget_conversation_get(chatbot=chatbot, conversation_id=message.conversation_id, visitor_token=visitor_token)
    except WidgetError:
        raise not_found from None
    text = comment if isinstance(comment, str) else ""
    if len(text) > MAX_COMMENT_CHARS:
        raise WidgetError("comment_too_long", f"Comments are limited to {MAX_COMMENT_CHARS} characters.")
    return message_feedback_set(message=message, value=str(value or ""), comment=text)


def widget_lead_set(
    *,
    chatbot: Chatbot,
    conversation_id: int | None,
    visitor_token: str,
    email: Any,
    name: Any = "",
    message: Any = "",
) -> Conversation:
    """Store the visitor's contact details on their conversation, if the bot collects leads."""
    if not chatbot.lead_capture:
        raise WidgetError("lead_capture_off", "This chat does not collect contact details.", status_code=403)
    conversation = widget_conversation_get(
        chatbot=chatbot, conversation_id=conversation_id, visitor_token=visitor_token
    )
    return conversation_lead_set(
        conversation=conversation,
        email=email if isinstance(email, str) else "",
        name=name if isinstance(name, str) else "",
        message=message if isinstance(message, str) else "",
    )
