"""The optional reranker, called through LiteLLM's real `cohere/` rerank provider against a
Cohere-compatible rerank server started by the test (it prefers texts naming a magic word)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from kb.models import Chunk
from kb.selectors import chunk_search
from kb.services import document_create_text, knowledge_base_create
from tests.conftest import json_server, wait_for

CALLS: list[dict[str, Any]] = []


def _rerank_response(body: dict[str, Any]) -> dict[str, Any]:
    """A Cohere-compatible /v1/rerank answer."""
    CALLS.append(body)
    documents = [d if isinstance(d, str) else d.get("text", "") for d in body["documents"]]
    scores = [1.0 if "lighthouse" in d.lower() else 0.1 for d in documents]
    order = sorted(range(len(documents)), key=lambda i: scores[i], reverse=True)
    return {
        "id": "rerank-test",
        "results": [{"index": i, "relevance_score": scores[i]} for i in order[: body.get("top_n") or len(order)]],
        "meta": {"billed_units": {"search_units": 1}},
    }


@pytest.fixture
def reranker(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("COHERE_API_KEY", "test-local")
    with json_server(_rerank_response) as url:
        yield url


@pytest.mark.worker
def test_configured_reranker_reorders_hybrid_results(make_org, celery_worker, reranker) -> None:  # type: ignore[no-untyped-def]
    kb = knowledge_base_create(organization=make_org(), name="Coast", created_by=None)
    texts = {
        "Harbour": "The harbour of the town is busy with fishing boats and ferries every morning.",
        "Lighthouse": "The old lighthouse stands on the cliff north of the town and guides boats at night.",
        "Market": "The town market sells fish from the boats of the harbour on Saturdays.",
    }
    for title, text in texts.items():
        document_create_text(knowledge_base=kb, title=title, text=text, created_by=None)
    wait_for(lambda: Chunk.objects.filter(knowledge_base=kb, is_live=True).count() == 3, timeout=60)

    plain = chunk_search(knowledge_bases=[kb], query="boats harbour town", limit=3)
    assert plain[0].chunk is not None and plain[0].chunk.document.title != "Lighthouse"
    with override_settings(GROUNDWORK_RERANK_MODEL="cohere/rerank-english-v3.0", GROUNDWORK_RERANK_API_BASE=reranker):
        reranked = chunk_search(knowledge_bases=[kb], query="boats harbour town", limit=3)
    assert CALLS and CALLS[-1]["query"] == "boats harbour town"
    assert reranked[0].chunk is not None and reranked[0].chunk.document.title == "Lighthouse"
    assert reranked[0].rerank_score == 1.0

    # A reranker that cannot be reached never breaks search: the fused order is kept.
    with override_settings(
        GROUNDWORK_RERANK_MODEL="cohere/rerank-english-v3.0", GROUNDWORK_RERANK_API_BASE="http://127.0.0.1:9"
    ):
        fallback = chunk_search(knowledge_bases=[kb], query="boats harbour town", limit=3)
    assert [h.chunk_id for h in fallback] == [h.chunk_id for h in plain]
