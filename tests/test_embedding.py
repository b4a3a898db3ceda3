"""Embeddings for the app (kb.embedding): batching, the local default through LiteLLM, error mapping.

No database: these run against the real local model through the real LiteLLM call the app makes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.embedder import LocalEmbedder, get_local_embedder
from kb import embedding
from kb.exceptions import EmbeddingError, LocalEmbeddingModelError, TransientEmbeddingError

# Lengths from one word to several hundred tokens, so batches need padding and truncation.
_WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "lazy", "dogs", "while", "seven", "wizards", "judge")
VARIED_TEXTS = [" ".join(_WORDS[(i + j) % len(_WORDS)] for j in range(1 + (i * 53) % 300)) for i in range(34)]


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return get_local_embedder()


def test_embedding_api_matches_the_embedder(embedder: LocalEmbedder) -> None:
    model = embedding.LOCAL_EMBEDDING_MODEL

    passages = embedding.embed_passages(VARIED_TEXTS[:7], model=model, batch_size=3)
    query = embedding.embed_query("How do I reset my password?", model=model)

    np.testing.assert_allclose(passages, embedder.embed(VARIED_TEXTS[:7]), atol=1e-6)
    np.testing.assert_allclose(query, embedder.embed(["How do I reset my password?"])[0], atol=1e-6)
    assert embedding.embedding_dimensions(model) == 384
    assert embedding.embed_passages([], model=model) == []


def test_broken_local_model_is_a_permanent_embedding_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Through LiteLLM the checksum failure must not turn into a retryable "connection error".
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"tampered")
    monkeypatch.setattr("inference.embedder.packaged_model_path", lambda: fake)
    monkeypatch.setattr("inference.embedder._instance", None)  # restored after the test

    with pytest.raises(LocalEmbeddingModelError, match="pinned checksum"):
        embedding.embed_passages(["hello"], model=embedding.LOCAL_EMBEDDING_MODEL)


def test_unknown_local_model_is_a_permanent_error() -> None:
    with pytest.raises(EmbeddingError, match="Check the embedding model name") as info:
        embedding.embed_query("hello", model="local/no-such-model")
    assert not isinstance(info.value, TransientEmbeddingError)


def test_unreachable_provider_is_a_transient_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing listens on the loopback discard port: the connection is refused at once, no network.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-key")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")

    with pytest.raises(TransientEmbeddingError, match="retrying later may succeed"):
        embedding.embed_query("hello", model="openai/text-embedding-3-small", timeout=5)
