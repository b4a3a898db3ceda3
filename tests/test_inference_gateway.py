"""The LiteLLM gateway (inference.gateway): offline switches and the in-process `local` provider.

No database: the real LiteLLM calls the app makes, served by the real local models.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from inference.embedder import LocalEmbedder, get_local_embedder
from inference.gateway import LOCAL_PROVIDER, get_litellm

SENTENCES = [
    "How do I reset my password?",
    "I forgot my login credentials and cannot sign in.",
    "The Normans gave their name to Normandy, a region in northern France.",
    "Refunds are issued to the original payment method within 14 days.",
    "",
]


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return get_local_embedder()


def test_litellm_local_provider_returns_the_embedders_vectors(embedder: LocalEmbedder) -> None:
    litellm = get_litellm()

    response = litellm.embedding(model="local/minilm", input=SENTENCES)

    assert [row["index"] for row in response.data] == list(range(len(SENTENCES)))
    np.testing.assert_allclose([row["embedding"] for row in response.data], embedder.embed(SENTENCES), atol=1e-6)
    assert response.usage.prompt_tokens == embedder.count_tokens(SENTENCES)


def test_litellm_registers_the_local_provider_once() -> None:
    litellm = get_litellm()

    assert get_litellm() is litellm
    assert [e["provider"] for e in litellm.custom_provider_map].count(LOCAL_PROVIDER) == 1
    assert os.environ["LITELLM_OFFLINE_MODE"] == "true"
    assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"


def test_local_chat_streams_the_same_text_it_returns() -> None:
    # Glue only: whatever inference.extractive answers must arrive whole, streamed or not.
    litellm = get_litellm()
    messages = [{"role": "user", "content": "What are the opening hours?"}]

    whole = litellm.completion(model="local/extractive", messages=messages)
    pieces = [
        chunk.choices[0].delta.content
        for chunk in litellm.completion(model="local/extractive", messages=messages, stream=True)
    ]

    text = whole.choices[0].message.content
    assert isinstance(text, str)
    assert text
    assert "".join(p for p in pieces if p) == text
    assert whole.usage.total_tokens > 0


def test_local_answers_run_at_most_the_configured_number_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The offline answerer is CPU-bound: with GROUNDWORK_LOCAL_ANSWER_SLOTS=1, six concurrent
    requests are answered one after another (the others wait), and every one is answered."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    import inference.extractive as extractive
    from inference import gateway

    running, most = 0, 0
    lock = threading.Lock()
    real_complete = extractive.complete

    def counting_complete(**kwargs: object) -> str:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)  # long enough for the other threads to arrive
        with lock:
            running -= 1
        return real_complete(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setenv("GROUNDWORK_LOCAL_ANSWER_SLOTS", "1")
    monkeypatch.setattr(extractive, "complete", counting_complete)
    gateway._local_answer_slots.cache_clear()
    try:
        litellm = get_litellm()
        messages = [{"role": "user", "content": "What are the opening hours?"}]
        with ThreadPoolExecutor(6) as pool:
            texts = list(pool.map(lambda _: litellm.completion(model="local/extractive", messages=messages), range(6)))
    finally:
        gateway._local_answer_slots.cache_clear()
    assert most == 1
    assert all(t.choices[0].message.content for t in texts)
