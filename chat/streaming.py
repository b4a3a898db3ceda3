"""Run a synchronous event generator in a worker thread and stream it as server-sent events.

The answer pipeline is synchronous (ORM, LiteLLM, the local models); the ASGI server must not
block on it. Each stream runs in a bounded thread pool and hands events to the event loop, so
a response starts as soon as the first piece is ready. Django's StreamingHttpResponse would
otherwise buffer a synchronous iterator completely under ASGI.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.db import close_old_connections, connections

from config.env import env_int

logger = logging.getLogger(__name__)

_executor = ThreadPoolExecutor(
    max_workers=env_int("GROUNDWORK_STREAM_THREADS", 32, minimum=1), thread_name_prefix="answer-stream"
)
_DONE = object()


async def events_in_thread(factory: Callable[[], Iterator[Any]]) -> AsyncIterator[Any]:
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

    loop.run_in_executor(_executor, run)
    while True:
        item = await queue.get()
        if item is _DONE:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


def sse(data: Any, event: str | None = None) -> str:
    """One server-sent event."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return head + "".join(f"data: {line}\n" for line in payload.split("\n")) + "\n"
