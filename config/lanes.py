"""Request lanes: a few requests run their middleware and view at once per web process, in order.

Why: Django's ASGI handler runs each request's synchronous middleware and view in a thread of its
own, so a burst of 200 widget visitors made 200 threads share one interpreter lock: every request
progressed slowly and all of them finished late (bench/widget_load.py, N=200, offline answers
already in turns: the first event of a chat p95 3.1 s). In lanes, requests wait their turn on the
event loop (no thread, no connection) and each runs at full speed when it gets one: 4 lanes, first
event p95 0.21 s (bench/results/widget_load_layouts.json).

Order: a visitor who has asked a question and waits for the first sign of an answer (views marked
`urgent_request = True`: the widget's chat) goes before requests that are not yet awaited the same
way (opening a conversation, pages, the API), then first come, first served.

A view that may run for long inside the request (a non-streamed answer waits for the whole
answer; marked `long_request = True`) takes no lane, so it never holds one up; it runs as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest
from django.urls import Resolver404, resolve

URGENT, NORMAL = 0, 1


class RequestLanes:
    """At most `size` holders at once; waiters are served by priority (lower first), then in order."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.busy = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    @contextlib.asynccontextmanager
    async def lane(self, priority: int) -> AsyncIterator[None]:
        if self.busy < self.size and not self._waiters:
            self.busy += 1
        else:
            handed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiters, (priority, next(self._arrivals), handed))
            try:
                await handed
            except asyncio.CancelledError:
                if handed.done() and not handed.cancelled():  # handed a lane just as it was cancelled
                    self._release()
                raise  # (a cancelled waiter left in the heap is skipped by _release)
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiters:
            _, _, handed = heapq.heappop(self._waiters)
            if not handed.done():
                handed.set_result(None)  # the lane passes to the next waiter: `busy` is unchanged
                return
        self.busy -= 1


def lane_priority(request: HttpRequest) -> int | None:
    """URGENT or NORMAL from the view's markers; None for a view marked `long_request` (no lane)."""
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return NORMAL
    view: Any = getattr(match.func, "view_class", None) or getattr(match.func, "cls", None) or match.func
    if getattr(view, "long_request", False):
        return None
    return URGENT if getattr(view, "urgent_request", False) else NORMAL


class LanedASGIHandler(ASGIHandler):
    """Django's ASGI handler, with each request's middleware and view run in a lane."""

    def __init__(self) -> None:
        super().__init__()
        self._lanes: dict[asyncio.AbstractEventLoop, RequestLanes] = {}

    def lanes(self) -> RequestLanes:
        """This event loop's lanes (one loop per server process; tests may run several in turn)."""
        loop = asyncio.get_running_loop()
        lanes = self._lanes.get(loop)
        if lanes is None:
            for stale in [known for known in self._lanes if known.is_closed()]:
                del self._lanes[stale]
            lanes = self._lanes[loop] = RequestLanes(settings.GROUNDWORK_WEB_LANES)
        return lanes

    async def run_get_response(self, request: HttpRequest) -> Any:
        priority = lane_priority(request)
        if priority is None or not settings.GROUNDWORK_WEB_LANES:
            return await super().run_get_response(request)
        async with self.lanes().lane(priority):
            return await super().run_get_response(request)
