"""Step 1 of an answer: search the chatbot's knowledge bases and number the passages as sources."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from chat.models import Chatbot
from inference.extractive import Source
from kb.embedding import QueryVectors
from kb.models import KnowledgeBase
from kb.precise_ranking import query_models
from kb.releases import draft_version_ids
from kb.selectors import SearchHit, chunk_search, hits_to_passages


@dataclass
class Retrieval:
    hits: list[SearchHit]
    sources: list[Source]
    trace: dict[str, Any]
    elapsed_ms: float
    relevant: bool
    releases: list[dict[str, Any]] = field(default_factory=list)


def retrieve(
    *,
    chatbot: Chatbot,
    question: str,
    draft: bool = False,
    knowledge_bases: list[KnowledgeBase] | None = None,
    query_vectors: QueryVectors | None = None,
) -> Retrieval:
    """Hybrid search over the bot's knowledge bases; `relevant` is False when nothing is related.

    `draft`: search what the knowledge bases would hold if their drafts were published
    (evaluation and replay of a draft), instead of their live releases.
    `knowledge_bases` / `query_vectors`: the bot's knowledge bases and the question's vectors when
    the caller already has them (`start_retrieval`).
    """
    started = time.perf_counter()
    kbs = list(chatbot.knowledge_bases.all()) if knowledge_bases is None else knowledge_bases
    versions = [v for kb in kbs for v in draft_version_ids(kb)] if draft else None
    found = chunk_search(
        knowledge_bases=kbs,
        query=question,
        limit=chatbot.top_k,
        mode="hybrid",
        versions=versions,
        query_vectors=query_vectors,
    )
    budget = max((kb.chunk_size for kb in kbs), default=1200) * 2
    passages = hits_to_passages(found, max_chars=budget)
    hits = [p.hit for p in passages]
    elapsed = (time.perf_counter() - started) * 1000
    best_vector = max((h.vector_score or 0.0 for h in hits), default=0.0)
    any_keyword = any(h.keyword_score for h in hits)
    # Scores alone separate answerable from unanswerable questions poorly; this gate only catches
    # questions with nothing related at all. The answer step decides the rest.
    relevant = bool(hits) and (any_keyword or best_vector >= chatbot.min_relevance)
    sources = [
        Source(
            number=i,
            text=p.text,
            title=p.hit.chunk.document.title,
            section=p.hit.chunk.section_label or None,
        )
        for i, p in enumerate(passages, start=1)
        if p.hit.chunk is not None
    ]
    trace = {
        "query": question,
        "knowledge_bases": [kb.pk for kb in kbs],
        "mode": "hybrid",
        # "match": the fused top 30 re-ranked by how the question's words occur (kb.match_ranking);
        # "precise": the same with the stored e5 vectors' similarity weighed in (kb.precise_ranking).
        "ranking": _ranking(hits),
        "relevant": relevant,
        "best_vector_score": round(best_vector, 4),
        "candidates": [
            {
                "number": i,
                "chunk_id": h.chunk_id,
                "document_id": h.chunk.document_id if h.chunk else None,
                "score": round(h.score, 5),
                "vector_score": None if h.vector_score is None else round(h.vector_score, 4),
                "vector_rank": h.vector_rank,
                "keyword_score": None if h.keyword_score is None else round(h.keyword_score, 4),
                "keyword_rank": h.keyword_rank,
                "fused_score": None if h.fused_score is None else round(h.fused_score, 5),
                "precise_score": None if h.ranking_score is None else round(h.ranking_score, 4),
                "match_score": None if h.match_score is None else round(h.match_score, 4),
                "widened_to_section": passages[i - 1].widened,
            }
            for i, h in enumerate(hits, start=1)
        ],
    }
    releases = [
        {"knowledge_base_id": kb.pk, "knowledge_base": kb.name, "release": "draft" if draft else kb.release_number}
        for kb in kbs
    ]
    return Retrieval(hits=hits, sources=sources, trace=trace, elapsed_ms=elapsed, relevant=relevant, releases=releases)


def start_retrieval(*, chatbot: Chatbot, question: str) -> tuple[list[KnowledgeBase], QueryVectors]:
    """The bot's knowledge bases, and their query vectors started in the background: the caller
    stores the question meanwhile, and `retrieve` then only waits for what is still running."""
    kbs = list(chatbot.knowledge_bases.all())
    return kbs, QueryVectors(question.strip(), query_models(kbs))


def _ranking(hits: list[SearchHit]) -> str:
    """Which re-ranking ordered these hits (the retrieval trace shows it)."""
    if any(h.ranking_score is not None for h in hits):
        return "precise"
    return "match" if any(h.match_score is not None for h in hits) else "fused"
