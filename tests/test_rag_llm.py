"""A configured LLM through LiteLLM, against a local OpenAI-compatible stand-in server.

What changes when a bot uses a real model instead of the offline `local/extractive` answerer:
the answer is the model's text (streamed), the prompt carries the bot's system prompt, the
numbered fenced sources and the question, the grounding check grades what the model wrote
(an invented claim is flagged), the model's refusal sentinel becomes the bot's refusal, and the
offline answerer's caution setting is not sent to the provider.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from chat.models import Chatbot, Message
from chat.rag.answer import chat_answer
from chat.services import chatbot_create, provider_key_set
from inference.extractive import REFUSAL_SENTINEL
from kb.models import Chunk
from kb.services import document_create_text, knowledge_base_create
from tests.conftest import wait_for

REQUESTS: list[dict[str, Any]] = []


@contextmanager
def openai_stand_in(reply: Callable[[dict[str, Any]], str]) -> Iterator[str]:
    """An OpenAI-compatible /chat/completions server: streams `reply(request)` as SSE chunks
    (or answers one JSON completion when not streaming). Yields its base URL (".../v1")."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            REQUESTS.append(body)
            text = reply(body)
            base = {"id": "cmpl-test", "created": 1, "model": body.get("model", "stand-in")}
            if not body.get("stream"):
                data = json.dumps(
                    {
                        **base,
                        "object": "chat.completion",
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                        ],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            words = text.split(" ")
            pieces = [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
            for piece in pieces:
                chunk = {
                    **base,
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
                }
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            last = {
                **base,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 42, "completion_tokens": len(pieces), "total_tokens": 42 + len(pieces)},
            }
            self.wfile.write(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())
            self.wfile.flush()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()


LEAVE = "Employees get 25 days of paid annual leave per year, plus public holidays."


@pytest.fixture
def llm_bot(make_org: Callable[..., Any], celery_worker: Any) -> Callable[[str], Chatbot]:
    """A bot over one ingested document, whose model is `openai/stand-in` at a local server."""
    org = make_org()
    kb = knowledge_base_create(organization=org, name="HR", created_by=None)
    document_create_text(knowledge_base=kb, title="Leave policy", text=LEAVE, created_by=None)
    wait_for(lambda: Chunk.objects.filter(knowledge_base=kb, is_live=True).exists(), timeout=400)

    def make(api_base: str) -> Chatbot:
        provider_key_set(organization=org, provider="openai", api_key="sk-test-local", api_base=api_base)
        return chatbot_create(
            organization=org,
            name="HR bot",
            knowledge_bases=[kb],
            created_by=None,
            chat_model="openai/stand-in",
            system_prompt="You are the HR assistant of Example Ltd.",
            answer_caution="cautious",
        )

    return make


@pytest.mark.worker
def test_configured_llm_answers_from_the_prompt_and_is_grounding_checked(llm_bot: Callable[[str], Chatbot]) -> None:
    REQUESTS.clear()
    with openai_stand_in(lambda body: "Employees get 25 days of paid annual leave per year [1].") as url:
        bot = llm_bot(url)
        final = chat_answer(chatbot=bot, question="How many days of annual leave do employees get?")
    message = Message.objects.get(pk=final["message"]["id"])

    # Answer path: the model's streamed text, not the extractive answerer's.
    assert message.content == "Employees get 25 days of paid annual leave per year [1]."
    assert message.model == "openai/stand-in" and not message.refused
    assert message.prompt_tokens == 42
    # Prompt: the bot's system prompt, the numbered fenced source and the question.
    (request,) = REQUESTS
    assert request["stream"] is True and request["model"] == "stand-in"
    prompt = json.dumps(request["messages"])
    assert "You are the HR assistant of Example Ltd." in prompt
    assert "25 days of paid annual leave" in prompt
    assert "How many days of annual leave do employees get?" in prompt
    # The offline answerer's caution is not sent to a hosted model.
    assert "caution" not in request
    # Grounding check: the claim is supported by the cited source.
    assert message.grounding_label == "grounded"
    assert message.citations.count() == 1


@pytest.mark.worker
def test_configured_llm_invention_is_flagged_and_its_refusal_becomes_the_bots(
    llm_bot: Callable[[str], Chatbot],
) -> None:
    invented = "Employees get 40 days of leave and a company car from Zurich Motors [1]."
    with openai_stand_in(lambda body: invented) as url:
        bot = llm_bot(url)
        final = chat_answer(chatbot=bot, question="How many days of annual leave do employees get?")
    message = Message.objects.get(pk=final["message"]["id"])
    assert message.grounding_label in ("ungrounded", "partially_grounded")
    sentence = message.grounding["sentences"][0]
    assert sentence["verdict"] == "unsupported"

    REQUESTS.clear()
    with openai_stand_in(lambda body: REFUSAL_SENTINEL) as url:
        provider_key_set(organization=bot.organization, provider="openai", api_key="sk-test-local", api_base=url)
        final = chat_answer(chatbot=bot, question="Do employees get extra leave on public holidays?")
    message = Message.objects.get(pk=final["message"]["id"])
    assert len(REQUESTS) == 1  # the model was asked, and declined
    assert message.refused
    assert message.content.startswith(bot.fallback_message)
