"""Request lanes (config.lanes): a few requests run their middleware and view at once, a visitor's
chat goes first, and views that wait for a whole answer take no lane."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.test import RequestFactory

from config.lanes import NORMAL, URGENT, LanedASGIHandler, RequestLanes, lane_priority


def _run(coroutine: Any) -> Any:
    with ThreadPoolExecutor(1) as runner:  # a browser test may keep an event loop in this thread
        return runner.submit(asyncio.run, asyncio.wait_for(coroutine, timeout=30)).result()


async def _hold(
    lanes: RequestLanes, name: str, priority: int, log: list[str], inside: list[int], gate: asyncio.Event
) -> None:
    async with lanes.lane(priority):
        inside[0] += 1
        inside[1] = max(inside[1], inside[0])
        log.append(name)
        await gate.wait()
        inside[0] -= 1


def test_at_most_size_requests_run_and_a_waiting_chat_goes_before_earlier_requests() -> None:
    async def scenario() -> tuple[list[str], int]:
        lanes = RequestLanes(2)
        log: list[str] = []
        inside = [0, 0]
        gates = {name: asyncio.Event() for name in ("a", "b", "open-1", "open-2", "chat")}
        tasks = {}
        for name, priority in (("a", NORMAL), ("b", NORMAL), ("open-1", NORMAL), ("open-2", NORMAL), ("chat", URGENT)):
            tasks[name] = asyncio.create_task(_hold(lanes, name, priority, log, inside, gates[name]))
            await asyncio.sleep(0.01)
        assert log == ["a", "b"]  # two lanes; three wait
        for name in ("a", "b", "chat", "open-1", "open-2"):  # each one, when it has run, frees its lane
            while name not in log:
                await asyncio.sleep(0.01)
            gates[name].set()
        await asyncio.gather(*tasks.values())
        assert lanes.busy == 0
        return log, inside[1]

    log, most_at_once = _run(scenario())
    assert log == ["a", "b", "chat", "open-1", "open-2"]
    assert most_at_once == 2


def test_a_request_that_gives_up_while_waiting_does_not_keep_a_lane() -> None:
    async def scenario() -> list[str]:
        lanes = RequestLanes(1)
        log: list[str] = []
        inside = [0, 0]
        first_gate, gone_gate, last_gate = asyncio.Event(), asyncio.Event(), asyncio.Event()
        first = asyncio.create_task(_hold(lanes, "first", NORMAL, log, inside, first_gate))
        await asyncio.sleep(0.01)
        gone = asyncio.create_task(_hold(lanes, "gone", URGENT, log, inside, gone_gate))
        last = asyncio.create_task(_hold(lanes, "last", NORMAL, log, inside, last_gate))
        await asyncio.sleep(0.01)
        gone.cancel()  # the client disconnected while waiting
        first_gate.set()
        last_gate.set()
        await asyncio.gather(first, last)
        assert lanes.busy == 0
        return log

    assert _run(scenario()) == ["first", "last"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "priority"),
    [
        ("/api/widget/wk_abc/chat", URGENT),  # a visitor waits for the first sign of an answer
        ("/api/widget/wk_abc/conversations", NORMAL),
        ("/api/widget/wk_abc/config", NORMAL),
        ("/api/v1/chatbots/7/chat/", None),  # unstreamed, it waits for the whole answer
        ("/v1/chat/completions", None),
        ("/chatbots/7/playground/chat/", None),
        ("/chatbots/model-check/", None),  # a round trip to the model
        ("/knowledge-bases/", NORMAL),
        ("/no/such/page", NORMAL),
    ],
)
def test_the_lane_of_each_kind_of_request(path: str, priority: int | None) -> None:
    assert lane_priority(RequestFactory().post(path)) == priority


def test_the_served_application_runs_requests_in_lanes() -> None:
    from config.asgi import application

    assert isinstance(application, LanedASGIHandler)
