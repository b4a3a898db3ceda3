"""The one adapter from answer events to server-sent events, for every streaming endpoint.

`chat.rag.answer.chat_answer_events` yields `start`, `delta`… and `final` events. The API chat
endpoint and the staff playground (`ApiFormat`), the widget (`WidgetFormat`) and the
OpenAI-compatible endpoint (`OpenAIFormat`) each put them on the wire in their own shape; the loop
that runs the pipeline, maps the events and reports errors is `answer_sse`, written once.

The answer pipeline is synchronous (ORM, LiteLLM, the local models); the ASGI server must not
block on it. Each stream runs in a bounded thread pool and hands events to the event loop, so
a response starts as soon as the first piece is ready. Django's StreamingHttpResponse would
otherwise buffer a synchronous iterator completely under ASGI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connections
from django.http import StreamingHttpResponse
from psycopg import errors as pg_errors
from psycopg_pool import PoolTimeout, TooManyRequests

from chat.answer_turns import local_answer_turns
from chat.exceptions import BUSY_DETAIL, AnswersBusy, ChatError

logger = logging.getLogger(__name__)

_executor = ThreadPoolExecutor(max_workers=settings.GROUNDWORK_STREAM_THREADS, thread_name_prefix="answer-stream")
_DONE = object()
__all__ = ["BUSY_DETAIL", "answer_sse", "database_busy", "sse_response"]


def database_busy(exc: BaseException) -> bool:
    """Whether `exc` means "no database connection free right now" (so: busy, retry later).

    The connection pool timed out or refused to queue (Django wraps it in its OperationalError),
    or, without a pool, the server refused a connection over `max_connections`.
    """
    seen: BaseException | None = exc
    for _ in range(5):  # the cause chain is short; never loop on a cycle
        if seen is None:
            return False
        if isinstance(seen, PoolTimeout | TooManyRequests | pg_errors.TooManyConnections):
            return True
        if "too many clients already" in str(seen):  # refused at connect: no SQLSTATE object
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def events_in_thread(factory: Callable[[], Iterator[Any]]) -> AsyncGenerator[Any, None]:
    """Yield what `factory()` yields, computed in a worker thread. Exceptions are re-raised here."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def run() -> None:
        close_old_connections()
        try:
            for event in factory():
                loop.call_soon_threadsafe(queue.put_nowait, event)
        except BaseException as exc:  # handed to the consumer, which decides what to show
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            connections.close_all()
            loop.call_soon_threadsafe(queue.put_nowait, _DONE)

    producer = loop.run_in_executor(_executor, run)
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if not producer.done():
            # The reader left early (a visitor closed the page): the answer still finishes and is
            # stored. Wait for it, so an answer turn (chat.answer_turns) lasts as long as its CPU work.
            with contextlib.suppress(BaseException):
                await producer


def sse(data: Any, event: str | None = None) -> str:
    """One server-sent event."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return head + "".join(f"data: {line}\n" for line in payload.split("\n")) + "\n"


def sse_response(events: AsyncIterator[str]) -> StreamingHttpResponse:
    """A `text/event-stream` response that proxies pass through unbuffered.

    Called at the end of a view: the view's database connection goes back to the pool now, not
    when the stream ends (the stream's thread takes its own), so a streaming answer holds one
    connection, not two. Inside a transaction (a test's) the connection stays.
    """
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()
    response = StreamingHttpResponse(events, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # keep reverse proxies from buffering the stream
    return response


class SseFormat:
    """How one endpoint writes answer events. The default writes nothing; formats override."""

    def opening(self) -> list[str]:
        return []

    def start(self, event: dict[str, Any]) -> list[str]:
        return []

    def delta(self, event: dict[str, Any]) -> list[str]:
        return []

    def final(self, event: dict[str, Any]) -> list[str]:
        return []

    def error(self, exc: ChatError) -> list[str]:
        return []

    def busy(self) -> list[str]:
        """No database connection came free in time: tell the client to retry."""
        data = {"error": "busy", "detail": BUSY_DETAIL, "retry_after": settings.GROUNDWORK_BUSY_RETRY_AFTER}
        return [sse(data, event="busy")]

    def unexpected(self, exc: Exception) -> list[str] | None:
        """Events for an unexpected failure once headers are sent; None lets it propagate."""
        return None

    def closing(self) -> list[str]:
        return []


async def answer_sse(
    factory: Callable[[], Iterator[dict[str, Any]]], fmt: SseFormat, *, on_this_cpu: bool = False
) -> AsyncGenerator[str, None]:
    """Run an answer-event generator in a worker thread and write its events in `fmt`'s shape.

    `on_this_cpu`: the answer is computed here (the local models), so it waits for one of the
    few turns of `chat.answer_turns` first; its opening events are already sent.
    """
    for line in fmt.opening():
        yield line
    try:
        handlers = {"start": fmt.start, "delta": fmt.delta, "final": fmt.final}
        async with (
            local_answer_turns().turn() if on_this_cpu else contextlib.nullcontext(),
            # Closed here, not whenever it is collected: a reader who leaves early must release the
            # turn only after the answer's thread is done.
            contextlib.aclosing(events_in_thread(factory)) as events,
        ):
            async for event in events:
                handler = handlers.get(event["type"])
                for line in handler(event) if handler is not None else []:
                    yield line
    except AnswersBusy as exc:
        logger.warning("Answer refused: no turn for it within %.1f s (%s)", exc.waited, exc.message)
        for line in fmt.busy():
            yield line
    except ChatError as exc:
        for line in fmt.error(exc):
            yield line
    except Exception as exc:
        if database_busy(exc):
            logger.warning("Answer stream refused: no database connection free (%s)", exc)
            for line in fmt.busy():
                yield line
            for line in fmt.closing():
                yield line
            return
        lines_or_none = fmt.unexpected(exc)
        if lines_or_none is None:
            raise
        for line in lines_or_none:
            yield line
    for line in fmt.closing():
        yield line


# --- the endpoints' formats ------------------------------------------------------------------


def answer_payload(final: dict[str, Any]) -> dict[str, Any]:
    """The chat API's answer object (the JSON response, and the data of the `final` event)."""
    message = final["message"]
    return {
        "answer": message["content"],
        "citations": message["citations"],
        "refused": message["refused"],
        "conversation_id": message["conversation_id"],
        "message_id": message["id"],
        "model": message["model"],
        "grounding": {"grade": message["grounding_grade"], "label": message["grounding_label"]},
        "latency": message["latency"],
        "releases": message.get("releases", []),
        **({"error": final["error"]} if final.get("error") else {}),
    }


class ApiFormat(SseFormat):
    """The chat API and the playground: `start`, `delta`…, `final` (or `error`) named events."""

    def start(self, event: dict[str, Any]) -> list[str]:
        return [sse({"conversation_id": event["conversation_id"]}, event="start")]

    def delta(self, event: dict[str, Any]) -> list[str]:
        return [sse({"text": event["text"]}, event="delta")]

    def final(self, event: dict[str, Any]) -> list[str]:
        return [sse(answer_payload(event), event="final")]

    def error(self, exc: ChatError) -> list[str]:
        return [sse({"error": exc.code, "detail": exc.message}, event="error")]


@dataclass
class WidgetFormat(ApiFormat):
    """The public widget: public message payloads, the lead-form offer, and no server error unsaid."""

    bot_id: int
    conversation_id: int

    def opening(self) -> list[str]:
        # Sent before the answer waits for a thread, a database connection or the CPU, so a visitor
        # sees "typing" at once even when 200 questions queue (bench/widget_load.py: first event).
        return [sse({"conversation_id": self.conversation_id}, event="typing")]

    def start(self, event: dict[str, Any]) -> list[str]:
        data = {"conversation_id": event["conversation_id"], "user_message_id": event["user_message_id"]}
        return [sse(data, event="start")]

    def final(self, event: dict[str, Any]) -> list[str]:
        if event.get("public_error"):
            # The model failed after its retries and fallbacks: plain words for the visitor (never
            # the provider's text), and they may simply ask again. Staff see the cause in the trace.
            data = {"error": event["error_code"], "detail": event["public_error"], "retriable": True}
            return [sse(data, event="error")]
        return [sse({"message": event["message"], "offer_lead": event["offer_lead"]}, event="final")]

    def unexpected(self, exc: Exception) -> list[str]:
        # Headers are sent: the visitor can only be told in the stream.
        logger.error("Widget answer failed (bot %s, conversation %s)", self.bot_id, self.conversation_id, exc_info=exc)
        detail = "Something went wrong while answering. Please try again."
        return [sse({"error": "server_error", "detail": detail}, event="error")]


def openai_usage(message: dict[str, Any]) -> dict[str, int]:
    """OpenAI's `usage` object for a stored message."""
    prompt = message["usage"]["prompt_tokens"] or 0
    completion = message["usage"]["completion_tokens"] or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


@dataclass
class OpenAIFormat(SseFormat):
    """`chat.completion.chunk` objects as unnamed events, closed by `data: [DONE]`."""

    completion_id: str
    created: int
    model: str

    def chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        return sse(
            {
                "id": self.completion_id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
        )

    def opening(self) -> list[str]:
        return [self.chunk({"role": "assistant", "content": ""})]

    def delta(self, event: dict[str, Any]) -> list[str]:
        return [self.chunk({"content": event["text"]})]

    def final(self, event: dict[str, Any]) -> list[str]:
        message = event["message"]
        extra: dict[str, Any] = {
            "citations": message["citations"],
            "refused": message["refused"],
            "conversation_id": message["conversation_id"],
            "answer": message["content"],
            "usage": openai_usage(message),
        }
        # Nothing was streamed for a refusal: send the fallback text itself.
        lines = [self.chunk({"content": message["content"]})] if message["refused"] else []
        return [*lines, self.chunk({}, "stop", **extra)]

    def error(self, exc: ChatError) -> list[str]:
        return [sse({"error": {"message": exc.message, "type": "invalid_request_error", "code": exc.code}})]

    def busy(self) -> list[str]:
        return [sse({"error": {"message": BUSY_DETAIL, "type": "server_busy", "code": "busy"}})]

    def closing(self) -> list[str]:
        return ["data: [DONE]\n\n"]
