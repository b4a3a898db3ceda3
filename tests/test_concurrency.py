"""More concurrent chats than database connections: load queues for the pool, never exhausts the server.

The web process takes its connections from a bounded pool (settings `GROUNDWORK_DB_POOL_*`). These
tests shrink that pool to a few connections and drive the real ASGI server (uvicorn, in a thread of
the test process) with many more chats at once: every chat gets its answer or a clean "busy, retry"
(503 with Retry-After, or a `busy` event), never a 500, a `server_error` event or a hang.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import pytest
from django.db import OperationalError, connections
from psycopg_pool import PoolTimeout

from accounts.models import Organization
from accounts.services import api_key_issue
from chat.models import Chatbot
from chat.services import chatbot_create
from chat.sse import ApiFormat, OpenAIFormat, WidgetFormat, answer_sse, database_busy
from kb.models import DocumentStatus, DocumentVersion
from kb.services import document_create_text, knowledge_base_create
from tests.conftest import wait_for

SITE = "https://shop.example"
POLICY = """Returns
Unused items can be returned within 30 days of delivery for a full refund.

Warranty
All tents carry a 5-year warranty against manufacturing defects.
"""
QUESTIONS = ["How many days do I have to return an item?", "How long is the warranty on tents?", "Who won in 1998?"]
CHATS = 30
POOL_MAX = 4


def _use_pool(**options: Any) -> dict[str, Any]:
    """Replace the process's connection pool with one built from `options`; return the old options.

    The settings dict is shared by every thread's connection wrapper (the ASGI server's too);
    Django builds a new pool from it at the next connection once the old one is closed.
    """
    connections.close_all()
    default = connections["default"]
    previous = dict(default.settings_dict["OPTIONS"]["pool"])
    default.settings_dict["OPTIONS"]["pool"] = options
    default.close_pool()  # type: ignore[attr-defined]
    return previous


@pytest.fixture
def small_pool() -> Iterator[None]:
    previous = _use_pool(min_size=0, max_size=POOL_MAX, timeout=120.0)
    yield
    _use_pool(**previous)


@pytest.fixture
def open_rate_limits(settings: Any) -> None:
    # Every visitor here comes from 127.0.0.1.
    settings.GROUNDWORK_WIDGET_RATE_PER_MINUTE = 100_000
    settings.GROUNDWORK_WIDGET_BOT_RATE_PER_MINUTE = 100_000


@pytest.fixture
def shop_bot(make_org: Any, celery_worker: Any) -> Chatbot:
    org: Organization = make_org("Shop")
    kb = knowledge_base_create(organization=org, name="Store", created_by=None, chunk_size=400, chunk_overlap=0)
    document_create_text(knowledge_base=kb, title="Store policies", text=POLICY, created_by=None)
    ready = DocumentVersion.objects.filter(document__knowledge_base=kb, status=DocumentStatus.READY)
    wait_for(ready.exists, timeout=120)
    return chatbot_create(
        organization=org, name="Shop Bot", knowledge_bases=[kb], created_by=None, allowed_origins=[SITE]
    )


def _widget_chat(base: str, bot: Chatbot, question: str) -> str:
    """One visitor: start a conversation, ask, read the stream. Returns the outcome."""
    api = f"{base}/api/widget/{bot.widget_key}"
    with httpx.Client(timeout=httpx.Timeout(300.0, connect=30.0), headers={"Origin": SITE}) as client:
        started = client.post(f"{api}/conversations", json={})
        if started.status_code != 201:
            return _http_outcome(started)
        body = {"message": question, **{k: started.json()[k] for k in ("conversation_id", "visitor_token")}}
        with client.stream("POST", f"{api}/chat", json=body) as stream:
            if stream.status_code != 200:
                stream.read()
                return _http_outcome(stream)
            events = [line[len("event: ") :] for line in stream.iter_lines() if line.startswith("event: ")]
    for terminal in ("final", "busy", "error"):
        if terminal in events:
            return terminal
    return "no_final_event"


def _http_outcome(response: httpx.Response) -> str:
    if response.status_code == 503:
        assert response.headers["Retry-After"].isdigit()
        assert response.json()["error"] == "busy"
        return "busy"
    return f"http_{response.status_code}"


@pytest.mark.worker
@pytest.mark.usefixtures("small_pool", "open_rate_limits")
def test_more_widget_chats_than_pooled_connections_all_get_an_answer_or_busy(
    asgi_server: str, shop_bot: Chatbot
) -> None:
    peak = _PeakConnections()
    with peak, ThreadPoolExecutor(CHATS) as visitors:
        outcomes = list(visitors.map(lambda i: _widget_chat(asgi_server, shop_bot, QUESTIONS[i % 3]), range(CHATS)))

    counts = Counter(outcomes)
    assert set(counts) <= {"final", "busy"}, counts
    assert counts["final"] >= 1, counts
    # The pool held: this process (web server, worker threads, test) never had more connections
    # to the database open than the pool allows, though 30 chats ran at once.
    assert 1 <= peak.added <= POOL_MAX, (peak.before, peak.value)


class _PeakConnections:
    """Samples, while in use, the most client connections to the test database (other than its own)."""

    def __init__(self) -> None:
        self.value = 0
        self.before: int | None = None  # connections already open when sampling started (earlier tests)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        db = connections["default"].settings_dict
        with psycopg.connect(
            host=db["HOST"], port=db["PORT"] or None, user=db["USER"], dbname=db["NAME"], autocommit=True
        ) as conn:
            while not self._stop.is_set():
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
                ).fetchone()
                count = row[0] if row else 0
                if self.before is None:
                    self.before = count
                self.value = max(self.value, count)
                self._stop.wait(0.01)

    def __enter__(self) -> _PeakConnections:
        self._thread.start()
        while self.before is None and self._thread.is_alive():
            self._stop.wait(0.01)
        return self

    @property
    def added(self) -> int:
        """The most connections open at once beyond those already open before."""
        return self.value - (self.before or 0)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.usefixtures("open_rate_limits")
def test_when_no_connection_comes_free_requests_get_503_with_retry_after(asgi_server: str, make_org: Any) -> None:
    org = make_org("Busy")
    bot = chatbot_create(organization=org, name="Busy Bot", knowledge_bases=[], created_by=None, allowed_origins=[SITE])
    key = api_key_issue(organization=org, name="busy", created_by=None).raw_key
    issued_headers = {"Authorization": f"Bearer {key}"}
    previous = _use_pool(min_size=0, max_size=2, timeout=0.5)
    pool = connections["default"].pool  # type: ignore[attr-defined]
    pool.open()
    held = [pool.getconn(), pool.getconn()]  # every connection of the pool, taken
    try:
        widget = httpx.post(
            f"{asgi_server}/api/widget/{bot.widget_key}/conversations", json={}, headers={"Origin": SITE}
        )
        api = httpx.get(f"{asgi_server}/api/v1/knowledge-bases/", headers=issued_headers)
        page = httpx.get(f"{asgi_server}/accounts/login/")
    finally:
        for conn in held:
            pool.putconn(conn)
        _use_pool(**previous)

    for response in (widget, api):
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"].isdigit()
        assert response.json()["error"] == "busy"
        assert "try again" in response.json()["detail"]
    assert widget.headers["Access-Control-Allow-Origin"] == SITE  # the widget can read it
    assert page.status_code in (200, 503)  # a page that needs no database, or a plain 503
    assert page.status_code == 200 or page.headers["Retry-After"].isdigit()


def _pool_timeout() -> OperationalError:
    """What Django raises when the pool has no connection for a request: its error, caused by the pool's."""
    try:
        try:
            raise PoolTimeout("couldn't get a connection after 0.50 sec")
        except PoolTimeout as cause:
            raise OperationalError(str(cause)) from cause
    except OperationalError as exc:
        return exc


def _stream(fmt: Any, exc: Exception) -> str:
    def events() -> Iterator[dict[str, Any]]:
        raise exc
        yield {}  # a generator, like the answer pipeline

    async def collect() -> str:
        return "".join([line async for line in answer_sse(events, fmt)])

    with ThreadPoolExecutor(1) as runner:  # a browser test may keep an event loop in this thread
        return runner.submit(asyncio.run, collect()).result()


def test_a_stream_that_finds_no_free_connection_ends_with_a_busy_event() -> None:
    busy = _pool_timeout()
    assert database_busy(busy)
    assert database_busy(psycopg.OperationalError("FATAL:  sorry, too many clients already"))
    assert not database_busy(OperationalError("server closed the connection unexpectedly"))

    for fmt in (ApiFormat(), WidgetFormat(bot_id=1, conversation_id=1)):
        raw = _stream(fmt, busy)
        names = [line[len("event: ") :] for line in raw.splitlines() if line.startswith("event: ")]
        # The widget opens every stream with "typing", sent before any connection is needed.
        assert names == (["typing", "busy"] if isinstance(fmt, WidgetFormat) else ["busy"]), raw
        busy_event = raw[raw.index("event: busy\n") :]
        data = json.loads(busy_event.split("data: ", 1)[1].split("\n", 1)[0])
        assert data["error"] == "busy" and data["retry_after"] >= 1
        assert "server_error" not in raw
    openai = _stream(OpenAIFormat(completion_id="c", created=0, model="m"), busy)
    assert '"code": "busy"' in openai and openai.endswith("data: [DONE]\n\n")


@pytest.mark.worker
def test_answers_hold_no_database_connection_while_the_model_writes(shop_bot: Chatbot) -> None:
    """Four answers stream at once through a pool of two connections: each gives its connection
    back while the model writes (seconds with a hosted LLM), so the pool does not cap how many
    answers are being written at once. The stand-in model only answers once all four are in it."""
    from unittest import mock

    from chat.rag.answer import chat_answer
    from chat.rag.generate import CompletionStream

    answers = 4
    all_writing = threading.Barrier(answers, timeout=30)

    def model_writing_with_the_others(**kwargs: Any) -> CompletionStream:
        all_writing.wait()
        return CompletionStream(pieces=iter(["Unused items can be returned ", "within 30 days of delivery [1]."]))

    def ask(_: int) -> dict[str, Any]:
        try:
            return chat_answer(chatbot=shop_bot, question=QUESTIONS[0])
        finally:
            connections.close_all()

    previous = _use_pool(min_size=0, max_size=2, timeout=60.0)
    try:
        with (
            mock.patch("chat.rag.generate.stream_completion", model_writing_with_the_others),
            ThreadPoolExecutor(answers) as visitors,
        ):
            finals = list(visitors.map(ask, range(answers)))
    finally:
        _use_pool(**previous)
    assert [f["message"]["refused"] for f in finals] == [False] * answers
    assert all("30 days" in f["message"]["content"] for f in finals)
