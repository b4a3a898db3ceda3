"""Shared fixtures: organisations, users, API clients, and the real Celery worker."""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.models import Organization, Role, User
from accounts.services import api_key_issue, membership_set, organization_create

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def make_org(db: None) -> Callable[..., Organization]:
    def make(name: str = "Acme") -> Organization:
        return organization_create(name=name)

    return make


@pytest.fixture
def make_user(db: None) -> Callable[..., User]:
    counter = {"n": 0}

    def make(organization: Organization | None = None, role: str = Role.EDITOR, email: str | None = None) -> User:
        counter["n"] += 1
        user = User.objects.create_user(email=email or f"user{counter['n']}@example.test", password="pw-Secret-123")
        if organization is not None:
            membership_set(user=user, organization=organization, role=role)
        return user

    return make


@pytest.fixture
def api_client_for(db: None) -> Callable[..., APIClient]:
    """An API client authenticated with a fresh API key of `organization` and `role`."""

    def make(organization: Organization, role: str = Role.ADMIN) -> APIClient:
        issued = api_key_issue(organization=organization, name="test", created_by=None, role=role)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.raw_key}")
        return client

    return make


@pytest.fixture(scope="session")
def celery_worker_session(django_db_setup: Any, django_db_blocker: Any) -> Iterator[Any]:
    """A real Celery worker consuming from the real (embedded) Redis, in this process.

    It runs tasks in its own threads with its own database connections to the test database,
    so tests that use it need `django_db(transaction=True)`: the worker sees committed rows only.
    """
    from celery.contrib.testing.worker import start_worker

    from config.celery import app

    app.control.purge()  # messages left by an interrupted earlier run
    with (
        django_db_blocker.unblock(),
        start_worker(
            app, pool="threads", concurrency=2, perform_ping_check=False, loglevel="WARNING", shutdown_timeout=30
        ) as worker,
    ):
        yield worker


@pytest.fixture
def celery_worker(celery_worker_session: Any, transactional_db: None) -> Iterator[Any]:
    yield celery_worker_session
    # Let the worker go idle before the database is flushed: a task still writing while the
    # tables are truncated can deadlock with the flush. Pending messages of this test are dropped.
    from celery.worker import state

    from config.celery import app

    app.control.purge()
    deadline = time.monotonic() + 60
    while (state.active_requests or state.reserved_requests) and time.monotonic() < deadline:
        time.sleep(0.05)


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.2) -> Any:
    """Poll until `predicate()` is truthy; fail with the last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    assert value, f"condition not met within {timeout}s (last value: {value!r})"
    return value


@pytest.fixture(scope="session")
def asgi_server_session(django_db_setup: Any, django_db_blocker: Any) -> Iterator[str]:
    """The real ASGI app under uvicorn, in a thread of this process, on a free loopback port."""
    import socket
    import threading

    import uvicorn

    from config.asgi import application

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(application, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    with django_db_blocker.unblock():
        thread.start()
        wait_for(lambda: server.started, timeout=30, interval=0.05)
        yield f"http://127.0.0.1:{port}"
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def asgi_server(asgi_server_session: str, transactional_db: None) -> str:
    return asgi_server_session


def _chromium_path() -> str | None:
    import os
    import shutil

    return os.environ.get("GROUNDWORK_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium driven by Playwright (Playwright's own browser download is not used)."""
    executable = _chromium_path()
    if executable is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); browser tests skipped.")
    import os

    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread; Django would then refuse
    # the tests' own (synchronous, non-overlapping) ORM calls. They are safe: allow them.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any, asgi_server: str) -> Iterator[Any]:
    context = browser.new_context(base_url=asgi_server, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def screenshot(page: Any, name: str) -> Path:
    """Save a screenshot under test-artifacts/ (look at them: they are how the UI is reviewed)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def login(page: Any, email: str, password: str = "pw-Secret-123") -> None:
    page.goto("/accounts/login/")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/")


def read_streaming(response: Any) -> bytes:
    """The whole body of a streamed (async) response, read on a thread of its own (`run_async`)."""

    async def collect() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    return run_async(collect)


def run_async(body: Callable[[], Any]) -> Any:
    """Run an async test body (e.g. AsyncClient requests, as an ASGI server serves them) to the end
    on a thread of its own: a browser test earlier in the session keeps an event loop running in
    the main thread, where async_to_sync refuses to start. The body's database work runs on that
    thread's own connection (closed at the end), so what it reads must be committed:
    `django_db(transaction=True)`."""
    from concurrent.futures import ThreadPoolExecutor

    from asgiref.sync import async_to_sync
    from django.db import connections

    def run() -> Any:
        try:
            return async_to_sync(body)()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


@dataclass
class Reply:
    """What the stand-in provider of `json_server` sends for one request.

    A `status` and JSON `body` with `headers`; with `hold`, it first waits (up to 30 s) for that
    event: a provider that hangs, until the test sets it. A 200 chat completion asked for with
    `"stream": true` is sent as OpenAI server-sent events, word by word.
    """

    body: dict[str, Any]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None


def chat_reply(text: str, model: str = "stand-in") -> dict[str, Any]:
    """An OpenAI chat completion answering `text`."""
    return {
        "id": "chatcmpl-stand-in",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": len(text.split()), "total_tokens": 10 + len(text.split())},
    }


def _completion_events(body: dict[str, Any]) -> Iterator[bytes]:
    """A chat completion as the chunks of an OpenAI stream, then the usage and `[DONE]`."""
    text = body["choices"][0]["message"]["content"]

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        data = {"id": body["id"], "object": "chat.completion.chunk", "created": 1, "model": body["model"], **extra}
        data["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}] if delta is not None else []
        return f"data: {json.dumps(data)}\n\n".encode()

    yield chunk({"role": "assistant", "content": ""})
    for piece in re.findall(r"\S+\s*", text):
        yield chunk({"content": piece})
    yield chunk({}, "stop")
    yield chunk(None, usage=body["usage"])  # type: ignore[arg-type]
    yield b"data: [DONE]\n\n"


@contextmanager
def json_server(respond: Callable[[dict[str, Any]], dict[str, Any] | Reply]) -> Iterator[str]:
    """A local HTTP server answering every POST with `respond(request JSON)`: a dict is sent as a
    200 JSON body, a `Reply` as it says (an error status, a hang, a stream). A stand-in model
    provider reached through LiteLLM's real providers. Yields "http://127.0.0.1:<port>"."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            reply = respond(body)
            if not isinstance(reply, Reply):
                reply = Reply(reply)
            if reply.hold is not None:
                reply.hold.wait(30)
            try:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if body.get("stream") and reply.status == 200 and "choices" in reply.body:
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for event in _completion_events(reply.body):
                        self.wfile.write(event)
                    return
                data = json.dumps(reply.body).encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def returns_policy_bot(organization: Organization, *, kb_name: str, origin: str) -> tuple[Any, Any, Any]:
    """A knowledge base holding one ready returns policy (ingested inline) and a widget bot on it,
    for tests that need real answers without a worker. Returns (knowledge base, upload result, bot)."""
    from chat.services import chatbot_create
    from kb.pipeline.run import version_ingest
    from kb.services import document_create_text, knowledge_base_create

    kb = knowledge_base_create(organization=organization, name=kb_name, created_by=None)
    result = document_create_text(
        knowledge_base=kb,
        title="Returns",
        text="Returns are accepted within 30 days of delivery with the receipt.",
        created_by=None,
        enqueue=False,
    )
    version_ingest(version_id=result.version.pk)
    bot = chatbot_create(
        organization=organization,
        name="Shop bot",
        knowledge_bases=[kb],
        created_by=None,
        allowed_origins=[origin],
        lead_capture=True,
    )
    return kb, result, bot
