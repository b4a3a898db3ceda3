"""Optional reranking of retrieved chunks through LiteLLM (`litellm.rerank`), when configured.

`GROUNDWORK_RERANK_MODEL` names any reranker LiteLLM supports (e.g. `cohere/rerank-english-v3.0`,
`jina_ai/jina-reranker-v2-base-multilingual`, an Infinity or vLLM server); `GROUNDWORK_RERANK_API_BASE`
points at a self-hosted one. A failing reranker never fails a search: the fused order is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.conf import settings

logger = logging.getLogger(__name__)


def rerank_enabled() -> bool:
    return bool(settings.GROUNDWORK_RERANK_MODEL)


def rerank_scores(query: str, texts: Sequence[str]) -> list[float] | None:
    """A relevance score per text (same order), or None when no reranker is configured or it failed."""
    if not rerank_enabled() or not texts:
        return None
    from inference.gateway import get_litellm

    litellm = get_litellm()
    kwargs: dict[str, object] = {}
    if settings.GROUNDWORK_RERANK_API_BASE:
        kwargs["api_base"] = settings.GROUNDWORK_RERANK_API_BASE
    try:
        response = litellm.rerank(
            model=settings.GROUNDWORK_RERANK_MODEL,
            query=query,
            documents=list(texts),
            top_n=len(texts),
            timeout=settings.GROUNDWORK_MODEL_TIMEOUT,
            **kwargs,
        )
    except Exception as exc:  # reranking is an improvement, never a point of failure
        logger.warning("Reranker %s failed, keeping the fused order: %s", settings.GROUNDWORK_RERANK_MODEL, exc)
        return None
    scores = [0.0] * len(texts)
    for result in response.results or []:
        index = result["index"] if isinstance(result, dict) else result.index
        score = result["relevance_score"] if isinstance(result, dict) else result.relevance_score
        if 0 <= index < len(texts):
            scores[index] = float(score)
    return scores
