"""Settings a non-engineer can use: the chatbot form in sections with a live preview, model
suggestions with free entry, relevance explained by example, and **Test connection** answering
in plain words with the provider's own message (one tiny request through LiteLLM)."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.test import Client

from accounts.models import Role
from chat.services import chatbot_create, provider_key_set


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@contextmanager
def _provider(status: int, body: dict[str, Any]) -> Iterator[str]:
    """A stand-in OpenAI-compatible provider on loopback answering every POST with `status`/`body`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()


COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "OK"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}
BAD_KEY = {
    "error": {
        "message": "Incorrect API key provided: sk-wr***ong.",
        "type": "invalid_request_error",
        "code": "invalid_api_key",
    }
}


def test_chatbot_form_is_in_sections_with_a_preview_model_list_and_relevance_examples(
    make_org: Any, make_user: Any
) -> None:
    org = make_org()
    bot = chatbot_create(organization=org, name="Helper", knowledge_bases=[], created_by=None)
    html = _client(make_user(org, role=Role.EDITOR)).get(f"/chatbots/{bot.pk}/").content.decode()
    for title in ("Persona", "Knowledge", "Answer behaviour", "Widget"):
        assert f"<legend><h2>{title}</h2></legend>" in html
    assert 'list="model-choices"' in html and '<option value="local/extractive">' in html
    assert '<option value="openai/gpt-4o-mini">' in html
    assert "Test connection" in html and 'hx-post="/chatbots/model-check/"' in html
    assert 'id="widget-preview"' in html and "js/chatbot_form.js" in html
    assert "See how relevance works, by example" in html and "When will my parcel arrive?" in html
    assert "Visitors may open the cited documents" in html
    assert f"/chatbots/{bot.pk}/widget-demo/" in html


def test_the_form_saves_the_source_link_setting(make_org: Any, make_user: Any) -> None:
    org = make_org()
    bot = chatbot_create(organization=org, name="Helper", knowledge_bases=[], created_by=None)
    client = _client(make_user(org, role=Role.EDITOR))
    data = {
        "name": "Helper",
        "system_prompt": "Be kind.",
        "chat_model": "",
        "temperature": "0.1",
        "top_k": "5",
        "min_relevance": "0.25",
        "answer_language": "match_user",
        "answer_caution": "balanced",
        "fallback_message": "Sorry.",
        "welcome_message": "Hi",
        "enabled": "on",
        "theme_color": "#2457c5",
        "widget_position": "right",
        "widget_source_links": "on",
        "suggested_questions_text": "Where is my parcel?",
    }
    response = client.post(f"/chatbots/{bot.pk}/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    bot.refresh_from_db()
    assert bot.widget_source_links is True and bot.suggested_questions == ["Where is my parcel?"]


def test_test_connection_with_the_local_default_succeeds(make_org: Any, make_user: Any) -> None:
    org = make_org()
    response = _client(make_user(org, role=Role.EDITOR)).post("/chatbots/model-check/", {"chat_model": ""})
    html = response.content.decode()
    assert response.status_code == 200
    assert "Connected: local/extractive answered." in html and 'class="model-check ok"' in html


def test_test_connection_tells_provider_errors_in_plain_words(
    make_org: Any, make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    org = make_org("Keyed")
    client = _client(make_user(org, role=Role.EDITOR))

    def check(model: str) -> str:
        response = client.post("/chatbots/model-check/", {"chat_model": model})
        assert response.status_code == 200
        return response.content.decode()

    # A provider the operator did not allow: said before anything is sent.
    assert "is not an allowed model" in check("ollama/llama3.1")
    # No key stored for the provider.
    assert "There is no API key for openai" in check("openai/gpt-4o-mini")
    # A wrong key: plain words, and the provider's own message underneath.
    with _provider(401, BAD_KEY) as api_base:
        provider_key_set(organization=org, provider="openai", api_key="sk-wrong", api_base=api_base)
        html = check("openai/gpt-4o-mini")
    assert "openai rejected the API key" in html and "Incorrect API key provided" in html
    # A working provider.
    with _provider(200, COMPLETION) as api_base:
        provider_key_set(organization=org, provider="openai", api_key="sk-right", api_base=api_base)
        assert "Connected: openai/gpt-4o-mini answered." in check("openai/gpt-4o-mini")
    # Nobody listening at the stored address.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    provider_key_set(organization=org, provider="openai", api_key="sk-right", api_base=closed)
    assert "Could not reach openai" in check("openai/gpt-4o-mini")

    # Another organisation never uses this one's key.
    other = _client(make_user(make_org("Other"), role=Role.EDITOR))
    assert (
        "There is no API key for openai"
        in other.post("/chatbots/model-check/", {"chat_model": "openai/gpt-4o-mini"}).content.decode()
    )


def test_test_connection_is_for_editors_only(make_org: Any, make_user: Any) -> None:
    org = make_org()
    assert _client(make_user(org, role=Role.VIEWER)).post("/chatbots/model-check/", {}).status_code == 403
    assert Client().post("/chatbots/model-check/", {}).status_code in (302, 403)
