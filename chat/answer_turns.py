"""Turns for answers computed on this machine's CPU: a few run at once, the rest wait without cost.

Why: an answer from the offline answerer is CPU work in the web process (retrieval scoring, the
extractive answerer, LiteLLM's stream bookkeeping, the grounding check: ~90 ms of one core). With
dozens of them running at once, every thread of the process shares one interpreter lock, and the
short requests around them (opening a conversation, starting a chat, the `typing` event) waited
behind the answers for seconds (bench/widget_load.py, N=200: first event p95 26 s). Letting only a
few CPU-bound answers run keeps the lock free for the short requests; the others wait here, on the
event loop, holding no thread and no database connection, and their visitors already see `typing`.

A turn is waited for at most `GROUNDWORK_ANSWER_WAIT_SECONDS`, and at most
`GROUNDWORK_ANSWER_QUEUE` answers wait per process: beyond either, the answer is "busy, retry"
(`AnswersBusy`), never a hang. Answers from hosted models mostly wait on the network and take no
turn (they are bounded by `GROUNDWORK_STREAM_THREADS`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.conf import settings

from chat.exceptions import AnswersBusy

if TYPE_CHECKING:
    from chat.models import Chatbot


def answers_on_this_cpu(chatbot: Chatbot) -> bool:
    """Whether `chatbot`'s answers are computed here (the local models), not by a hosted model."""
    return all(model.startswith("local/") for model in [chatbot.effective_chat_model, *chatbot.fallback_models])


@dataclass
class AnswerTurns:
    """At most `at_once` holders; at most `max_waiting` waiters, each for at most `wait_seconds`."""

    at_once: int
    max_waiting: int
    wait_seconds: float
    waiting: int = 0
    _semaphore: asyncio.Semaphore | None = field(default=None, repr=False)

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        if self._semaphore is None:  # created inside the running loop
            self._semaphore = asyncio.Semaphore(self.at_once)
        semaphore = self._semaphore
        if semaphore.locked() and self.waiting >= self.max_waiting:
            raise AnswersBusy(waited=0.0)
        self.waiting += 1
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await asyncio.wait_for(semaphore.acquire(), timeout=self.wait_seconds)
        except TimeoutError:
            raise AnswersBusy(waited=loop.time() - started) from None
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            semaphore.release()


_turns_by_loop: dict[asyncio.AbstractEventLoop, AnswerTurns] = {}


def local_answer_turns() -> AnswerTurns:
    """This event loop's turns (one loop per web process; tests run several, one after another)."""
    loop = asyncio.get_running_loop()
    turns = _turns_by_loop.get(loop)
    if turns is None:
        for stale in [known for known in _turns_by_loop if known.is_closed()]:
            del _turns_by_loop[stale]
        turns = _turns_by_loop[loop] = AnswerTurns(
            at_once=settings.GROUNDWORK_LOCAL_ANSWERS_AT_ONCE,
            max_waiting=settings.GROUNDWORK_ANSWER_QUEUE,
            wait_seconds=settings.GROUNDWORK_ANSWER_WAIT_SECONDS,
        )
    return turns
