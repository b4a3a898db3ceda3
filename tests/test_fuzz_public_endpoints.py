"""Property-based fuzzing (hypothesis) of the public widget API and the OpenAI-compatible endpoint.

Against the real server (uvicorn, `asgi_server`): bodies built from hostile values — NUL, lone
surrogates (escaped in the JSON, as a client can send them), deep nesting, huge numbers, huge
strings, mixed unicode, values of the wrong type, unparsable bytes — mixed with the real ids and
tokens so requests also get past the first check. Whatever the input: never a 5xx; an error is
JSON that says what is wrong; a 200 stream ends with its `final` (or a clear `error`) event.
Examples are bounded and derandomized, so a CI run is repeatable. tests/test_security_inputs.py
holds the explicit cases found this way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import Role
from accounts.services import api_key_issue, organization_create
from tests.conftest import returns_policy_bot

SITE = "https://shop.example"
FUZZ = settings(
    max_examples=15,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Values a hostile or broken client sends.
NASTY_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "\ud800",
        "x\udfffy",
        "\U0001f600" * 50,
        "ＲＥＴＵＲＮＳ？",
        "مرحبا كيف الإرجاع",
        "𝔯𝔢𝔱𝔲𝔯𝔫𝔰",
        "e\u0301\u0301\u0301",
        "\u202eevil",
        "<script>alert(1)</script>",
        "' OR 1=1 --",
        "{{7*7}}",
        "x" * 5000,
        "y" * 200_000,
    ]
)
HUGE_NUMBERS = st.sampled_from([0, -1, 2**31, 2**63, -(2**63) - 1, 10**40, 1e308, -1e308, 0.5])
SCALARS = st.one_of(st.none(), st.booleans(), HUGE_NUMBERS, st.integers(), st.floats(), NASTY_TEXT, st.text())
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = {"a": [value]}
    return value


# Raw bodies no JSON parser should choke on: deep nesting (a RecursionError used to be a 500), junk bytes.
RAW_BODIES = st.sampled_from(
    [
        b"[" * 100_000,
        b'{"a":' * 50_000,
        json.dumps(_nested(400)).encode(),
        b"\x00",
        b"\xff\xfe\xfd",
        b'{"message": "\\ud800"}',
        b'{"message": "unterminated',
        b"null",
        b"[]",
        b"123",
        b'"just a string"',
    ]
)


@pytest.fixture
def public(asgi_server: str) -> Iterator[dict[str, Any]]:
    """A bot with a small ready knowledge base on the running server, an API key, and a started chat."""
    org = organization_create(name="Fuzz Shop")
    _, _, bot = returns_policy_bot(org, kb_name="Policies", origin=SITE)
    key = api_key_issue(organization=org, name="fuzz", created_by=None, role=Role.VIEWER)
    # The real limiter stays on, with a budget a burst of examples fits in.
    with (
        override_settings(GROUNDWORK_WIDGET_RATE_PER_MINUTE=100_000, GROUNDWORK_WIDGET_BOT_RATE_PER_MINUTE=100_000),
        httpx.Client(base_url=asgi_server, timeout=120, headers={"Origin": SITE}) as client,
    ):
        started = client.post(f"/api/widget/{bot.widget_key}/conversations", json={"visitor_id": "fuzz"}).json()
        yield {
            "client": client,
            "widget": f"/api/widget/{bot.widget_key}",
            "bot": bot,
            "key": key.raw_key,
            "conversation_id": started["conversation_id"],
            "token": started["visitor_token"],
        }


def _post(client: httpx.Client, url: str, body: Any, **kwargs: Any) -> httpx.Response:
    """POST `body` as JSON (lone surrogates escaped, as json.dumps does), or as raw bytes when it is bytes."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    return client.post(url, content=content, headers=headers, **kwargs)


def _sse_events(text: str) -> list[str]:
    return [line.removeprefix("event: ") for line in text.splitlines() if line.startswith("event: ")]


def _assert_widget_answer(response: httpx.Response) -> None:
    """Never a 5xx; errors are JSON with a code and a message; a stream ends with `final` or `error`."""
    assert response.status_code < 500, response.text[:500]
    content_type = response.headers.get("content-type", "")
    if response.status_code >= 400:
        assert content_type.startswith("application/json"), (response.status_code, content_type, response.text[:300])
        body = response.json()
        assert isinstance(body, dict) and (body.get("detail") or body.get("error")), body
        return
    if content_type.startswith("text/event-stream"):
        events = _sse_events(response.text)
        assert events and events[-1] in ("final", "error"), response.text[-500:]
    else:
        assert content_type.startswith("application/json"), content_type


def _assert_openai_answer(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text[:500]
    content_type = response.headers.get("content-type", "")
    if response.status_code >= 400:
        assert content_type.startswith("application/json"), (response.status_code, content_type)
        error = response.json()["error"]
        assert isinstance(error, dict) and isinstance(error["message"], str) and error["message"]
        return
    if content_type.startswith("text/event-stream"):
        data = [line for line in response.text.splitlines() if line.startswith("data: ")]
        assert data and data[-1] == "data: [DONE]", response.text[-500:]
    else:
        body = response.json()
        assert body["object"] == "chat.completion" and isinstance(body["choices"][0]["message"]["content"], str)


# --- the widget --------------------------------------------------------------------------


def _maybe(real: Any) -> st.SearchStrategy[Any]:
    """The real value most of the time (to get past the first check), hostile values otherwise."""
    return st.one_of(st.just(real), st.just(real), JSON_VALUES)


@FUZZ
@given(data=st.data())
def test_widget_chat_never_fails_whatever_the_body(public: dict[str, Any], data: st.DataObject) -> None:
    body = data.draw(
        st.one_of(
            RAW_BODIES,
            JSON_VALUES,
            st.fixed_dictionaries(
                {
                    "message": st.one_of(NASTY_TEXT, JSON_VALUES, st.just("How long do I have to return an item?")),
                    "conversation_id": _maybe(public["conversation_id"]),
                    "visitor_token": _maybe(public["token"]),
                }
            ),
        )
    )
    _assert_widget_answer(_post(public["client"], f"{public['widget']}/chat", body))


@FUZZ
@given(data=st.data())
def test_widget_conversation_lead_and_feedback_never_fail(public: dict[str, Any], data: st.DataObject) -> None:
    client = public["client"]
    widget = public["widget"]
    body = data.draw(
        st.one_of(
            RAW_BODIES,
            JSON_VALUES,
            st.fixed_dictionaries(
                {
                    "conversation_id": _maybe(public["conversation_id"]),
                    "visitor_token": _maybe(public["token"]),
                    "visitor_id": st.one_of(NASTY_TEXT, JSON_VALUES),
                    "email": st.one_of(st.just("visitor@example.com"), NASTY_TEXT, JSON_VALUES),
                    "name": st.one_of(NASTY_TEXT, JSON_VALUES),
                    "message": st.one_of(NASTY_TEXT, JSON_VALUES),
                    "value": st.one_of(st.sampled_from(["up", "down", ""]), JSON_VALUES),
                    "comment": st.one_of(NASTY_TEXT, JSON_VALUES),
                }
            ),
        )
    )
    message_id = data.draw(st.one_of(st.just(1), st.integers(min_value=0, max_value=2**70)))
    for url in (f"{widget}/conversations", f"{widget}/lead", f"{widget}/messages/{message_id}/feedback"):
        _assert_widget_answer(_post(client, url, body))


@FUZZ
@given(
    token=st.one_of(NASTY_TEXT, st.text()),
    conversation=st.one_of(st.integers(min_value=0, max_value=2**70), st.text(max_size=20)),
    # (values an HTTP client can put in a header at all)
    origin=st.one_of(st.just(SITE), NASTY_TEXT.filter(lambda t: t.isascii() and t.isprintable() and t == t.strip())),
)
def test_widget_reads_never_fail(public: dict[str, Any], token: str, conversation: Any, origin: str) -> None:
    client = public["client"]
    headers = {"Origin": origin[:2000]}
    _assert_widget_answer(client.get(f"{public['widget']}/config", headers=headers))
    # Percent-encoded by hand: a lone surrogate goes out as the invalid UTF-8 bytes a hostile client sends.
    path, query = (quote(str(value), safe="", errors="surrogatepass") for value in (conversation, token))
    response = client.get(f"{public['widget']}/conversations/{path}?token={query}", headers=headers)
    assert response.status_code < 500 and response.headers["content-type"].startswith("application/json")


# --- the OpenAI-compatible endpoint ----------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_openai_chat_completions_never_fails_whatever_the_body(public: dict[str, Any], data: st.DataObject) -> None:
    content = st.one_of(
        st.just("How long do I have to return an item?"),
        NASTY_TEXT,
        JSON_VALUES,
        st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": st.one_of(NASTY_TEXT, JSON_VALUES)})),
    )
    message = st.fixed_dictionaries({"role": st.one_of(st.just("user"), JSON_VALUES), "content": content})
    body = data.draw(
        st.one_of(
            RAW_BODIES,
            JSON_VALUES,
            st.fixed_dictionaries(
                {
                    "model": st.one_of(st.just(public["bot"].slug), st.just(str(public["bot"].pk)), JSON_VALUES),
                    "messages": st.one_of(st.lists(message, min_size=1, max_size=3), JSON_VALUES),
                    "stream": st.one_of(st.booleans(), JSON_VALUES),
                },
                optional={"conversation_id": st.one_of(HUGE_NUMBERS, JSON_VALUES), "temperature": JSON_VALUES},
            ),
        )
    )
    response = _post(
        public["client"], "/v1/chat/completions", body, headers={"Authorization": f"Bearer {public['key']}"}
    )
    _assert_openai_answer(response)
