"""Turns for offline answers (chat.answer_turns): a few CPU-bound answers run at once, the others
wait holding no thread, and a full or too-long queue is told "busy, retry" instead of hanging."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.test import override_settings

from chat import sse
from chat.answer_turns import answers_on_this_cpu
from chat.models import Chatbot


class Answers:
    """Answer generators that run until released, counting how many run at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.running = 0
        self.most_at_once = 0
        self.started: list[str] = []

    def factory(self, name: str, *, block: bool = True) -> Any:
        def events() -> Iterator[dict[str, Any]]:
            with self.lock:
                self.running += 1
                self.most_at_once = max(self.most_at_once, self.running)
                self.started.append(name)
            try:
                yield {"type": "start", "conversation_id": 1, "user_message_id": len(self.started)}
                if block:
                    assert self.release.wait(30)
                yield {"type": "final", "message": {"content": name}, "offer_lead": False}
            finally:
                with self.lock:
                    self.running -= 1

        return events


def _event_names(lines: list[str]) -> list[str]:
    return [line.split("\n", 1)[0].removeprefix("event: ") for line in lines]


def _run(coroutine: Any) -> Any:
    with ThreadPoolExecutor(1) as runner:  # a browser test may keep an event loop in this thread
        return runner.submit(asyncio.run, asyncio.wait_for(coroutine, timeout=60)).result()


async def _collect(stream: Any, into: list[str]) -> list[str]:
    async for line in stream:
        into.append(line)
    return into


def _widget(name: str) -> sse.WidgetFormat:
    return sse.WidgetFormat(bot_id=1, conversation_id=len(name))


@override_settings(GROUNDWORK_LOCAL_ANSWERS_AT_ONCE=1, GROUNDWORK_ANSWER_QUEUE=1, GROUNDWORK_ANSWER_WAIT_SECONDS=30)
def test_one_offline_answer_at_a_time_one_waits_and_the_next_is_told_busy_at_once() -> None:
    answers = Answers()

    async def scenario() -> dict[str, list[str]]:
        lines: dict[str, list[str]] = {name: [] for name in ("first", "second", "third", "hosted")}
        first = asyncio.create_task(
            _collect(sse.answer_sse(answers.factory("first"), _widget("first"), on_this_cpu=True), lines["first"])
        )
        while "first" not in answers.started:
            await asyncio.sleep(0.01)
        second = asyncio.create_task(
            _collect(sse.answer_sse(answers.factory("second"), _widget("second"), on_this_cpu=True), lines["second"])
        )
        await asyncio.sleep(0.2)
        # The queue (one) is full: the third is refused at once, with typing first and nothing run.
        await _collect(sse.answer_sse(answers.factory("third"), _widget("third"), on_this_cpu=True), lines["third"])
        # A hosted model's answer takes no turn: it runs while the offline ones wait.
        hosted = asyncio.create_task(
            _collect(sse.answer_sse(answers.factory("hosted", block=False), _widget("hosted")), lines["hosted"])
        )
        await hosted
        assert answers.started == ["first", "hosted"]
        assert lines["second"] and _event_names(lines["second"]) == ["typing"]  # told typing while waiting
        answers.release.set()
        await asyncio.gather(first, second)
        return lines

    lines = _run(scenario())
    assert _event_names(lines["third"]) == ["typing", "busy"]
    assert '"retry_after"' in lines["third"][1]
    assert _event_names(lines["second"]) == ["typing", "start", "final"]
    assert _event_names(lines["first"]) == ["typing", "start", "final"]
    assert answers.started == ["first", "hosted", "second"]
    assert answers.most_at_once == 2  # the first offline answer and the hosted one; never two offline


@override_settings(GROUNDWORK_LOCAL_ANSWERS_AT_ONCE=1, GROUNDWORK_ANSWER_QUEUE=10, GROUNDWORK_ANSWER_WAIT_SECONDS=0.3)
def test_an_answer_that_waits_too_long_for_its_turn_is_told_busy_and_never_runs() -> None:
    answers = Answers()

    async def scenario() -> list[str]:
        first = asyncio.create_task(
            _collect(sse.answer_sse(answers.factory("first"), _widget("first"), on_this_cpu=True), [])
        )
        while "first" not in answers.started:
            await asyncio.sleep(0.01)
        late = await _collect(sse.answer_sse(answers.factory("late"), _widget("late"), on_this_cpu=True), [])
        answers.release.set()
        await first
        return late

    late = _run(scenario())
    assert _event_names(late) == ["typing", "busy"]
    assert answers.started == ["first"]  # the late question was never stored or answered


@override_settings(GROUNDWORK_LOCAL_ANSWERS_AT_ONCE=1, GROUNDWORK_ANSWER_QUEUE=10, GROUNDWORK_ANSWER_WAIT_SECONDS=30)
def test_a_reader_that_leaves_keeps_the_turn_until_its_answer_is_done() -> None:
    """A visitor who closes the page: the answer still finishes (and is stored), and the next
    offline answer does not start beside it."""
    answers = Answers()

    async def scenario() -> None:
        stream = sse.answer_sse(answers.factory("left"), _widget("left"), on_this_cpu=True)
        assert (await stream.__anext__()).startswith("event: typing")
        assert (await stream.__anext__()).startswith("event: start")
        closing = asyncio.create_task(stream.aclose())  # the reader leaves mid-answer
        nxt = asyncio.create_task(
            _collect(sse.answer_sse(answers.factory("next"), _widget("next"), on_this_cpu=True), [])
        )
        await asyncio.sleep(0.3)
        assert answers.started == ["left"]
        answers.release.set()
        await asyncio.gather(closing, nxt)

    _run(scenario())
    assert answers.started == ["left", "next"]
    assert answers.most_at_once == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("chat_model", "fallbacks", "on_this_cpu"),
    [
        ("", [], True),  # the default: the offline answerer
        ("local/extractive", ["local/extractive"], True),
        ("openai/gpt-4o-mini", [], False),
        ("local/extractive", ["openai/gpt-4o-mini"], False),
    ],
)
def test_answers_from_local_models_take_turns_and_hosted_ones_do_not(
    make_org: Any, chat_model: str, fallbacks: list[str], on_this_cpu: bool
) -> None:
    bot = Chatbot(organization=make_org(), name="Bot", chat_model=chat_model, fallback_models=fallbacks)
    assert answers_on_this_cpu(bot) is on_this_cpu
