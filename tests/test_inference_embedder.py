"""The offline default embedder (inference.embedder: all-MiniLM-L6-v2 int8 ONNX).

No database, no LiteLLM: the embedder itself, against the real local model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inference.embedder import (
    LOCAL_EMBEDDING_DIMS,
    MAX_TOKENS,
    TOKENIZER_PATH,
    LocalEmbedder,
    LocalEmbeddingModelError,
    default_threads,
    get_local_embedder,
)

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


def test_sha256_mismatch_raises_a_clear_error(tmp_path: Path) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not the model")

    with pytest.raises(LocalEmbeddingModelError, match="does not match its pinned checksum") as info:
        LocalEmbedder(model_path=fake)
    assert "uv sync --frozen" in str(info.value)


def test_threads_setting_is_parsed_strictly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROUNDWORK_EMBED_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.setenv("GROUNDWORK_EMBED_THREADS", "0")
    with pytest.raises(ValueError, match="below the minimum 1"):
        default_threads()
    monkeypatch.setenv("GROUNDWORK_EMBED_THREADS", "two")
    with pytest.raises(ValueError, match="not a whole number"):
        default_threads()


def test_sentence_cache_returns_the_models_vectors_and_embeds_each_sentence_once(embedder: LocalEmbedder) -> None:
    """The answerer's cache: the same vectors as the model, in input order, duplicates included;
    a sentence seen before is not sent to the model again, and the oldest are forgotten first."""
    from inference.embedder import CachedEmbedder

    sent_to_model: list[list[str]] = []

    class Counting:
        def embed(self, texts: list[str]) -> list[list[float]]:
            sent_to_model.append(list(texts))
            return embedder.embed(texts)

    cached = CachedEmbedder(Counting(), size=3)
    first = cached.embed([SENTENCES[0], SENTENCES[1], SENTENCES[0]])
    direct = embedder.embed([SENTENCES[0], SENTENCES[1]])
    assert _cosine(first[0], direct[0]) > 0.9999 and _cosine(first[1], direct[1]) > 0.9999
    assert first[2] == first[0]
    assert sent_to_model == [[SENTENCES[0], SENTENCES[1]]]

    again = cached.embed([SENTENCES[1], SENTENCES[2]])
    assert sent_to_model[-1] == [SENTENCES[2]]  # only the new sentence reaches the model
    assert again[0] == first[1]

    cached.embed([SENTENCES[3]])  # a fourth sentence: the least recently used (SENTENCES[0]) goes
    cached.embed([SENTENCES[0]])
    assert sent_to_model[-1] == [SENTENCES[0]]


def test_idle_embedding_threads_sleep_instead_of_spinning() -> None:
    # Worker pool processes embed side by side on the same cores: threads that spin while they
    # wait burned 1.34x the raw CPU of ingestion on 2 cores (bench/ingest.py).
    embedder = LocalEmbedder(threads=2)
    options = embedder._session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.intra_op_num_threads == 2
    assert len(embedder.embed(["still embeds"])[0]) == LOCAL_EMBEDDING_DIMS
