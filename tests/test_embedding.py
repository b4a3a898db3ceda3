"""The offline default embedder (all-MiniLM-L6-v2 int8 ONNX) and its LiteLLM wiring.

No database: these run against the real local model through the real LiteLLM call the app makes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from inference import embedder as local_embedder
from inference.embedder import (
    LOCAL_EMBEDDING_DIMS,
    MAX_TOKENS,
    TOKENIZER_PATH,
    LocalEmbedder,
    default_threads,
    get_local_embedder,
)
from inference.gateway import LOCAL_PROVIDER, get_litellm
from kb import embedding
from kb.exceptions import EmbeddingError, LocalEmbeddingModelError, TransientEmbeddingError

SENTENCES = [
    "How do I reset my password?",
    "I forgot my login credentials and cannot sign in.",
    "The Normans gave their name to Normandy, a region in northern France.",
    "Refunds are issued to the original payment method within 14 days.",
    "",
]

# Lengths from one word to several hundred tokens, so batches need padding and truncation.
_WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "lazy", "dogs", "while", "seven", "wizards", "judge")
VARIED_TEXTS = [" ".join(_WORDS[(i + j) % len(_WORDS)] for j in range(1 + (i * 53) % 300)) for i in range(34)]


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return get_local_embedder()


def _cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b))  # the vectors are unit length


def test_tokenizer_gives_reference_ids() -> None:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(TOKENIZER_PATH))
    # The file as shipped pads to 128 (LocalEmbedder turns that off): the first four ids are the text.
    assert tokenizer.encode("hello world").ids[:4] == [101, 7592, 2088, 102]
    assert tokenizer.encode("Unbelievable tokenization!").tokens[:6] == [
        "[CLS]",
        "unbelievable",
        "token",
        "##ization",
        "!",
        "[SEP]",
    ]


def test_vendored_model_config_matches_the_embedder() -> None:
    assets = TOKENIZER_PATH.parent
    assert json.loads((assets / "sentence_bert_config.json").read_text())["max_seq_length"] == MAX_TOKENS
    pooling = json.loads((assets / "pooling_config.json").read_text())
    assert pooling["word_embedding_dimension"] == LOCAL_EMBEDDING_DIMS
    assert pooling["pooling_mode_mean_tokens"] is True


def test_embedder_truncates_at_256_not_the_tokenizer_files_128(embedder: LocalEmbedder) -> None:
    assert embedder.count_tokens(["hello world"]) == 4
    assert embedder.count_tokens(["word " * 1000]) == MAX_TOKENS == 256


def test_vectors_are_384_dimensional_and_unit_norm(embedder: LocalEmbedder) -> None:
    vectors = embedder.embed(SENTENCES)

    assert len(vectors) == len(SENTENCES)
    for vector in vectors:
        assert len(vector) == LOCAL_EMBEDDING_DIMS == 384
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_close_sentences_score_higher_than_unrelated(embedder: LocalEmbedder) -> None:
    reset, forgot, normans, refunds, _ = embedder.embed(SENTENCES)

    related = _cosine(reset, forgot)
    assert related > 0.5
    assert related > _cosine(reset, normans) + 0.3
    assert related > _cosine(reset, refunds) + 0.3
    assert _cosine(normans, refunds) < 0.3


def test_batching_gives_the_same_vectors_as_one_by_one(embedder: LocalEmbedder) -> None:
    batched = np.array(embedder.embed(VARIED_TEXTS))  # 34 texts: two batches of mixed lengths
    single = np.array([embedder.embed([text])[0] for text in VARIED_TEXTS])

    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_embed_rejects_a_bare_string(embedder: LocalEmbedder) -> None:
    with pytest.raises(TypeError, match="list of strings"):
        embedder.embed("hello")
    assert embedder.embed([]) == []


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


def test_embedding_api_matches_the_embedder(embedder: LocalEmbedder) -> None:
    model = embedding.LOCAL_EMBEDDING_MODEL

    passages = embedding.embed_passages(VARIED_TEXTS[:7], model=model, batch_size=3)
    query = embedding.embed_query("How do I reset my password?", model=model)

    np.testing.assert_allclose(passages, embedder.embed(VARIED_TEXTS[:7]), atol=1e-6)
    np.testing.assert_allclose(query, embedder.embed(["How do I reset my password?"])[0], atol=1e-6)
    assert embedding.embedding_dimensions(model) == 384
    assert embedding.embed_passages([], model=model) == []


def test_sha256_mismatch_raises_a_clear_error(tmp_path: Path) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not the model")

    with pytest.raises(local_embedder.LocalEmbeddingModelError, match="does not match its pinned checksum") as info:
        LocalEmbedder(model_path=fake)
    assert "uv sync --frozen" in str(info.value)


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


def test_threads_setting_is_parsed_strictly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROUNDWORK_EMBED_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.setenv("GROUNDWORK_EMBED_THREADS", "0")
    with pytest.raises(ValueError, match="below the minimum 1"):
        default_threads()
    monkeypatch.setenv("GROUNDWORK_EMBED_THREADS", "two")
    with pytest.raises(ValueError, match="not a whole number"):
        default_threads()


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
