"""Changing a knowledge base's embedding model: re-embedded in the background, then swapped at once.

The second model is served over HTTP by a small OpenAI-compatible embeddings server in this test
(a hashed bag-of-words model, 64 dimensions), reached through LiteLLM's real `openai/` provider —
the same path a hosted model takes. Nothing outside the machine is contacted.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.conftest import json_server, wait_for

DIMS = 64
REQUESTS: list[int] = []


def hashed_embedding(text: str) -> list[float]:
    vector = [0.0] * DIMS
    for word in re.findall(r"\w+", text.lower()):
        bucket = int(hashlib.sha256(word.encode()).hexdigest(), 16) % DIMS
        vector[bucket] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def _embeddings_response(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI-compatible /v1/embeddings answer."""
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    REQUESTS.append(len(inputs))
    return {
        "object": "list",
        "model": body["model"],
        "data": [{"object": "embedding", "index": i, "embedding": hashed_embedding(t)} for i, t in enumerate(inputs)],
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
    }


@pytest.fixture
def embeddings_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with json_server(_embeddings_response) as url:
        monkeypatch.setenv("OPENAI_API_BASE", f"{url}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-local")
        yield f"{url}/v1"


@pytest.mark.worker
def test_model_change_reembeds_in_the_background_then_swaps(
    make_org, api_client_for, celery_worker, embeddings_server
) -> None:  # type: ignore[no-untyped-def]
    client = api_client_for(make_org())
    kb = client.post("/api/v1/knowledge-bases/", {"name": "Docs"}, format="json").json()
    assert kb["embedding_model"] == "local/minilm" and kb["embedding_dims"] == 384
    doc = client.post(
        f"/api/v1/knowledge-bases/{kb['id']}/documents/",
        {"file": SimpleUploadedFile("tents.md", b"# Tents\n\nOur tents carry a five year warranty on the poles.\n")},
        format="multipart",
    ).json()
    wait_for(lambda: client.get(f"/api/v1/documents/{doc['id']}/").json()["status"] == "ready", timeout=60)

    response = client.patch(
        f"/api/v1/knowledge-bases/{kb['id']}/", {"embedding_model": "openai/hash-64"}, format="json"
    )
    assert response.status_code == 202, response.content
    assert response.json()["reembedding"]["model"] == "openai/hash-64"

    def swapped() -> dict[str, Any] | None:
        body = client.get(f"/api/v1/knowledge-bases/{kb['id']}/").json()
        return body if body["reembedding"] is None else None

    after = wait_for(swapped, timeout=60)
    assert (after["embedding_model"], after["embedding_dims"]) == ("openai/hash-64", DIMS)
    assert sum(REQUESTS) >= 2  # the dimension probe, then the chunks
    results = client.post(
        f"/api/v1/knowledge-bases/{kb['id']}/search/",
        {"query": "tents warranty poles", "mode": "vector", "top_k": 3},
        format="json",
    ).json()["results"]
    assert results and results[0]["document_id"] == doc["id"]
    assert results[0]["vector_score"] > 0.5  # scored with the new 64-d vectors
