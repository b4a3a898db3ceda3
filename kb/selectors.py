"""Reads for knowledge bases and documents, and retrieval (vector, keyword, hybrid).

Every selector takes the organisation (or objects already scoped to it); nothing here returns
rows of another organisation, and a search over no knowledge base returns nothing.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet

from accounts.models import Organization
from kb import embedding as embedding_api
from kb import match_ranking, precise_ranking, search_beside
from kb.draft_scope import DraftScope, draft_scope
from kb.exceptions import EmbeddingError
from kb.keyword_search import keyword_candidates
from kb.models import Chunk, Document, KnowledgeBase
from kb.pipeline.index.vector_indexes import vector_cast, vector_literal

logger = logging.getLogger(__name__)

# Hybrid fusion: each retriever's scores are divided by its best score of the query (their floor
# is 0: BM25 never goes below, cosine similarity in practice neither), then averaged with equal
# weight. On the evaluation sets this beat reciprocal rank fusion, which throws the score gaps
# away, and z-scores: bench/fusion_sweep.py, bench/results/fusion_sweep.json.
HYBRID_VECTOR_WEIGHT = 0.5


def knowledge_bases_for_org(*, organization: Organization) -> QuerySet[KnowledgeBase]:
    return KnowledgeBase.objects.filter(organization=organization)


def knowledge_base_get(*, organization: Organization, pk: int) -> KnowledgeBase | None:
    return KnowledgeBase.objects.filter(organization=organization, pk=pk).first()


def documents_for_org(*, organization: Organization) -> QuerySet[Document]:
    return Document.objects.filter(organization=organization).select_related(
        "knowledge_base", "latest_version", "live_version"
    )


def document_get(*, organization: Organization, pk: int) -> Document | None:
    return documents_for_org(organization=organization).filter(pk=pk).first()


@dataclass
class SearchHit:
    """A retrieved chunk with the scores each retriever gave it (None: not found by that one)."""

    chunk_id: int
    score: float = 0.0
    vector_score: float | None = None
    vector_rank: int | None = None
    keyword_score: float | None = None
    keyword_rank: int | None = None
    rerank_score: float | None = None
    # Precise ranking (kb.precise_ranking): the e5 similarity, and the fused score before mixing.
    ranking_score: float | None = None
    fused_score: float | None = None
    # Match ranking (kb.match_ranking): the fitted score over the query's word matches.
    match_score: float | None = None
    chunk: Chunk | None = field(default=None, repr=False)


# Vector search compares every chunk (no HNSW) for knowledge bases this small that are also this
# small a share of the whole table.
EXACT_VECTOR_SEARCH_MAX_CHUNKS = 10_000
EXACT_VECTOR_SEARCH_MAX_SHARE = 0.02


# The vector query's transaction settings, sent in the same round trip as the query itself.
_VECTOR_SCAN_SETTINGS_SQL = """
    SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),
           set_config('hnsw.ef_search', %(ef_search)s, true),
           set_config('enable_indexscan', CASE WHEN
               %(chunks)s <= %(max_chunks)s
               AND %(chunks)s < %(max_share)s * (SELECT reltuples FROM pg_class WHERE oid = 'kb_chunk'::regclass)
           THEN 'off' ELSE 'on' END, true)
"""


def _vector_scan_settings(chunks: int, limit: int) -> dict[str, Any]:
    """Parameters of `_VECTOR_SCAN_SETTINGS_SQL`: the settings of the vector query's transaction.

    Iterative index scans (pgvector 0.8) keep scanning until `limit` rows pass the tenant filter;
    without them a selective filter silently returns fewer rows. Exact search (no HNSW) when the
    knowledge bases are a sliver of the table: the filtered HNSW scan stops after
    hnsw.max_scan_tuples, before finding the tenant's neighbours (5k chunks among 1M: recall@50
    0.56 at 220 ms, exact 1.00 at 77 ms), yet the planner still picks it. For a larger share HNSW
    is both right and faster (5k among 100k: recall@10 0.99 at 15 ms, exact 74 ms), for a draft
    as for the live release. bench/retrieval.py.
    """
    return {
        "ef_search": str(max(40, min(1000, int(limit) * 2))),
        "chunks": chunks,
        "max_chunks": EXACT_VECTOR_SEARCH_MAX_CHUNKS,
        "max_share": EXACT_VECTOR_SEARCH_MAX_SHARE,
    }


def _vector_candidates(
    knowledge_bases: Sequence[KnowledgeBase],
    query: str,
    limit: int,
    draft: DraftScope | None = None,
    query_vectors: embedding_api.QueryVectors | None = None,
) -> list[tuple[int, float]]:
    """Nearest chunks by cosine similarity, per embedding model, using the HNSW index
    (`_vector_scan_settings` says when not), on the request's connection."""
    results: list[tuple[int, float]] = []
    for (model, dims), kbs in _model_groups(knowledge_bases).items():
        query_vector = query_vectors.vector(model) if query_vectors else embedding_api.embed_query(query, model=model)
        query_sql, params = _vector_statement(kbs, dims, query_vector, limit, draft)
        # Inside chunk_search's transaction already (no savepoint needed): SET LOCAL lasts until it ends.
        # Parameters are bound client-side: both statements go in one execute, one round trip.
        with transaction.atomic(savepoint=False), connection.cursor() as cursor:
            cursor.execute(f"{_VECTOR_SCAN_SETTINGS_SQL};\n{query_sql}", params)
            while cursor.nextset():  # to the last statement's rows
                pass
            results.extend(_similarities(cursor.fetchall()))
    return _best_first(results, limit)


def _model_groups(knowledge_bases: Iterable[KnowledgeBase]) -> dict[tuple[str, int], list[KnowledgeBase]]:
    """The knowledge bases by (embedding model, vector width): one vector query per group."""
    groups: dict[tuple[str, int], list[KnowledgeBase]] = defaultdict(list)
    for kb in knowledge_bases:
        groups[(kb.embedding_model, kb.embedding_dims)].append(kb)
    return groups


def _best_first(results: list[tuple[int, float]], limit: int) -> list[tuple[int, float]]:
    # relaxed_order may return rows slightly out of order: sort them exactly.
    results.sort(key=lambda r: r[1], reverse=True)
    return results[:limit]


def _similarities(rows: Iterable[tuple[int, Any]]) -> list[tuple[int, float]]:
    # The distance once, ordered by its name: "1 - distance" in the select list read (detoasted)
    # every row's stored vector a second time (exact scan of 468 chunks: 2.0 -> 1.4 ms).
    return [(row[0], 1.0 - float(row[1])) for row in rows]


def _vector_statement(
    kbs: list[KnowledgeBase],
    dims: int,
    query_vector: list[float],
    limit: int,
    draft: DraftScope | None,
) -> tuple[str, dict[str, Any]]:
    """The vector query, and its parameters and those of `_VECTOR_SCAN_SETTINGS_SQL`."""
    cast = vector_cast(dims)
    params = {
        # A draft too: it reads the live chunks give or take a few documents (kb.draft_scope).
        **_vector_scan_settings(sum(kb.live_chunks for kb in kbs), limit),
        "vector": vector_literal(query_vector),
        "dims": dims,
        "kbs": [kb.pk for kb in kbs],
        "hidden": draft.hidden if draft else [],
        "staged": draft.staged if draft else [],
        "limit": limit,
    }
    # Only `cast` and the scope are interpolated: built from an integer dimension by
    # vector_cast(), and one of `_scope`'s two fixed texts.
    query_sql = f"""
        SELECT id, (embedding::{cast}) <=> %(vector)s::{cast} AS distance
        FROM kb_chunk
        WHERE embedding_dims = %(dims)s AND knowledge_base_id = ANY(%(kbs)s) AND {_scope(draft)}
        ORDER BY distance
        LIMIT %(limit)s
    """  # noqa: S608
    return query_sql, params


class _VectorSearchBeside:
    """The vector queries on a second connection (kb.search_beside), sent once `start` is called
    and the query's vectors exist: at once when they do, else from the thread that embeds the
    question, the moment it has. The request's thread reads the rows after the keyword query's."""

    def __init__(
        self,
        beside: search_beside.Beside,
        knowledge_bases: Sequence[KnowledgeBase],
        limit: int,
        draft: DraftScope | None,
        query_vectors: embedding_api.QueryVectors,
    ) -> None:
        self._beside = beside
        self._groups = _model_groups(knowledge_bases)
        self._limit = limit
        self._draft = draft
        self._query_vectors = query_vectors
        self._cursors: list[Any] = []
        self._failure: BaseException | None = None
        self._started = False
        self._sent = threading.Event()

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._query_vectors.when_ready([model for model, _ in self._groups], self._send)

    def _send(self) -> None:
        try:
            for (model, dims), kbs in self._groups.items():
                vector = self._query_vectors.vector(model)
                query_sql, params = _vector_statement(kbs, dims, vector, self._limit, self._draft)
                self._beside.send(_VECTOR_SCAN_SETTINGS_SQL, params)
                self._cursors.append(self._beside.send(query_sql, params))
            self._beside.end()
        except BaseException as exc:  # an embedding error, or the connection failed: raised by result()
            self._failure = exc
        finally:
            self._sent.set()

    def wait_until_sent(self) -> None:
        """Until the queries are on their way, i.e. the query vectors exist (or failed)."""
        self.start()
        self._sent.wait()

    def result(self) -> list[tuple[int, float]]:
        self.wait_until_sent()
        if self._failure is not None:
            raise self._failure
        results: list[tuple[int, float]] = []
        try:
            for cursor in self._cursors:
                results.extend(_similarities(cursor.fetchall()))
        except BaseException:
            self._beside.failed()
            raise
        return _best_first(results, self._limit)

    def close(self) -> None:
        """Give the connection back (after `result`, or without it when the search failed)."""
        self.wait_until_sent()
        self._beside.close()


def _scope(draft: DraftScope | None) -> str:
    """Which chunks a search reads: the live ones, or (a draft) the live ones but those of its
    hidden versions, and its staged versions' (kb.draft_scope).

    Only one of these two fixed texts is interpolated; the version lists are parameters, cast to
    the column's type so that a long list is looked up by hash, not read through per row.
    """
    if draft is None:
        return "is_live"
    return "((is_live AND NOT (version_id = ANY(%(hidden)s::bigint[]))) OR version_id = ANY(%(staged)s::bigint[]))"


def chunk_search(
    *,
    knowledge_bases: Iterable[KnowledgeBase],
    query: str,
    limit: int = 5,
    mode: str = "hybrid",
    candidates: int = 50,
    versions: list[int] | None = None,
    query_vectors: embedding_api.QueryVectors | None = None,
) -> list[SearchHit]:
    """Best live chunks for `query` over the given knowledge bases.

    `mode`: "hybrid" (vector + keyword, normalised scores averaged), "vector" or "keyword".
    `versions`: search exactly these document versions instead of the live ones (a draft).
    `query_vectors`: the query's vectors, started earlier in the background (else embedded here).
    The knowledge bases must already be scoped to the caller's organisation.

    Both retrievers and the chunk rows are read in one REPEATABLE READ snapshot: a release
    published meanwhile is seen whole or not at all, never half (kb.releases).
    """
    kbs = list(knowledge_bases)
    query = query.strip()
    if not kbs or not query:
        return []
    if mode in ("hybrid", "vector") and query_vectors is None:
        # Embedding the query overlaps the keyword search below.
        query_vectors = embedding_api.QueryVectors(query, precise_ranking.query_models(kbs))
    if connection.in_atomic_block:
        # The caller's transaction may hold writes a second connection cannot see: in turn.
        return _chunk_search(kbs, query, limit, mode, candidates, versions, query_vectors)
    beside = mode == "hybrid" and _worth_a_second_connection(kbs) and search_beside.available()
    with transaction.atomic():
        snapshot = search_beside.repeatable_read(export=beside)
        return _chunk_search(kbs, query, limit, mode, candidates, versions, query_vectors, snapshot=snapshot)


def _worth_a_second_connection(kbs: list[KnowledgeBase]) -> bool:
    """Whether the vector query may run beside the keyword statement: for large knowledge bases.
    A small one's vector query is short, and a second connection costs more than it overlaps."""
    return sum(kb.live_chunks for kb in kbs) > settings.GROUNDWORK_SEARCH_BESIDE_MIN_CHUNKS


def _chunk_search(
    kbs: list[KnowledgeBase],
    query: str,
    limit: int,
    mode: str,
    candidates: int,
    versions: list[int] | None,
    query_vectors: embedding_api.QueryVectors | None,
    snapshot: str | None = None,
) -> list[SearchHit]:
    pool = max(limit, candidates)
    draft = draft_scope(kbs, versions) if versions is not None else None
    # The vector query on a second connection in this `snapshot` (exported when one is free), sent
    # as soon as the query vector exists, while the keyword query runs here; else after it:
    # keyword first, as it needs no query vector, still being computed.
    vector_beside = None
    if snapshot is not None and query_vectors is not None:
        beside = search_beside.connect(snapshot)
        if beside is not None:
            vector_beside = _VectorSearchBeside(beside, kbs, pool, draft, query_vectors)
    try:
        hits = _retrieve(kbs, query, mode, pool, draft, query_vectors, vector_beside)
    finally:
        if vector_beside is not None:
            vector_beside.close()
    if mode == "hybrid":
        _fuse(hits.values())
    else:
        for hit in hits.values():
            hit.score = (hit.vector_score if mode == "vector" else hit.keyword_score) or 0.0
    from kb.reranking import rerank_enabled, rerank_scores

    rerank = mode == "hybrid" and rerank_enabled()
    # A configured reranker (a cross-encoder) supersedes precise and match ranking.
    precise = mode == "hybrid" and not rerank and precise_ranking.uses_precise_ranking(kbs)
    ranked = sorted(hits.values(), key=lambda h: h.score, reverse=True)
    if mode == "hybrid" and not rerank:
        # Match ranking (and precise ranking's e5 similarity) re-orders a deeper pool than is
        # returned (twice the limit at least, as duplicates are dropped after it), from ids and
        # the stored search vectors: only what may be returned is loaded.
        ranked = ranked[: max(limit * 2, match_ranking.MATCH_POOL)]
        similarities = _precise_similarities(ranked, query_vectors) if precise and query_vectors is not None else None
        ranked = match_ranking.rerank(ranked, query, kbs, similarities=similarities) or ranked
    # A configured reranker reads the texts of a deeper pool than is returned.
    pool_size = max(limit * 3, 20) if rerank else limit
    # Twice the pool is loaded so that dropping duplicates still fills it.
    ranked = ranked[: pool_size * 2]
    chunks = (
        Chunk.objects.select_related("document", "version")
        .without_vectors()  # not read past this point
        .order_by()  # a dict by id: Meta.ordering would only add a join-ordered sort and its compiling
        .in_bulk([h.chunk_id for h in ranked])
    )
    for hit in ranked:
        hit.chunk = chunks.get(hit.chunk_id)
    ranked = _without_duplicates([h for h in ranked if h.chunk is not None])[:pool_size]
    if rerank:
        scores = rerank_scores(query, [h.chunk.text for h in ranked if h.chunk is not None])
        if scores is not None:
            for hit, score in zip(ranked, scores, strict=True):
                hit.rerank_score = score
            ranked.sort(key=lambda h: h.rerank_score or 0.0, reverse=True)
    return ranked[:limit]


def _retrieve(
    kbs: list[KnowledgeBase],
    query: str,
    mode: str,
    pool: int,
    draft: DraftScope | None,
    query_vectors: embedding_api.QueryVectors | None,
    vector_beside: _VectorSearchBeside | None,
) -> dict[int, SearchHit]:
    """Each retriever's best `pool` candidates, by chunk id, with their scores and ranks."""
    hits: dict[int, SearchHit] = {}
    if mode in ("hybrid", "keyword"):
        # The vector query leaves while the keyword statement runs: its rows are read after these.
        meanwhile = vector_beside.start if vector_beside is not None else None
        for rank, (chunk_id, rank_score) in enumerate(
            keyword_candidates(kbs, query, pool, draft, meanwhile=meanwhile), start=1
        ):
            hit = hits.setdefault(chunk_id, SearchHit(chunk_id=chunk_id))
            hit.keyword_score, hit.keyword_rank = rank_score, rank
    if mode in ("hybrid", "vector"):
        vector_hits = (
            vector_beside.result()
            if vector_beside is not None
            else _vector_candidates(kbs, query, pool, draft, query_vectors)
        )
        for rank, (chunk_id, similarity) in enumerate(vector_hits, start=1):
            hit = hits.setdefault(chunk_id, SearchHit(chunk_id=chunk_id))
            hit.vector_score, hit.vector_rank = similarity, rank
    return hits


def _precise_similarities(hits: list[SearchHit], query_vectors: embedding_api.QueryVectors) -> list[float] | None:
    """The hits' e5 similarities to the query, or None when that cannot be done yet."""
    try:
        query_vector = query_vectors.vector(precise_ranking.RANKING_MODEL)
    except EmbeddingError as exc:  # an improvement, never a point of failure
        logger.warning("Precise ranking skipped, the query could not be embedded: %s", exc)
        return None
    return precise_ranking.similarities([h.chunk_id for h in hits], query_vector)


def _scaled(values: dict[int, float]) -> dict[int, float]:
    best = max(values.values(), default=0.0)
    return {key: max(v, 0.0) / best if best > 0 else 0.0 for key, v in values.items()}


def _fuse(hits: Iterable[SearchHit]) -> None:
    """Hybrid score: the weighted mean of the two retrievers' scores, each scaled to its best.

    A chunk one retriever did not return gets that retriever's lowest scaled score among its
    candidates (it ranked below all of them). Scores are comparable only within one query.
    """
    hits = list(hits)
    vector = _scaled({h.chunk_id: h.vector_score for h in hits if h.vector_score is not None})
    keyword = _scaled({h.chunk_id: h.keyword_score for h in hits if h.keyword_score is not None})
    vector_floor = min(vector.values(), default=0.0)
    keyword_floor = min(keyword.values(), default=0.0)
    for hit in hits:
        hit.score = HYBRID_VECTOR_WEIGHT * vector.get(hit.chunk_id, vector_floor) + (
            1 - HYBRID_VECTOR_WEIGHT
        ) * keyword.get(hit.chunk_id, keyword_floor)


def _without_duplicates(hits: list[SearchHit]) -> list[SearchHit]:
    """Drop a hit whose text a better hit already holds, word for word.

    Documents repeat themselves (every quarterly filing carries the same risk paragraph; a
    policy is uploaded twice under two names): the same text twice would take two of the few
    sources an answer gets.
    """
    seen: set[str] = set()
    kept: list[SearchHit] = []
    for hit in hits:
        assert hit.chunk is not None
        key = " ".join(hit.chunk.text.split()).casefold()
        if key not in seen:
            seen.add(key)
            kept.append(hit)
    return kept


@dataclass
class ContextPassage:
    """What a model reads for one hit: the chunk, or its whole section when that is small."""

    hit: SearchHit
    text: str
    widened: bool = False


def hits_to_passages(hits: Sequence[SearchHit], *, max_chars: int) -> list[ContextPassage]:
    """Widen hits to their parent section when the whole section fits in `max_chars`, and drop
    hits already covered by an earlier passage (two chunks of the same small section).

    A short section split into pieces loses context at the cut (a list's heading, the sentence
    before); giving the model the whole section answers more questions with the same budget.
    """
    from kb.models import Section

    section_ids = {h.chunk.section_id for h in hits if h.chunk is not None and h.chunk.section_id}
    sections = Section.objects.in_bulk(list(section_ids))
    passages: list[ContextPassage] = []
    covered: set[int] = set()
    for hit in hits:
        chunk = hit.chunk
        if chunk is None:
            continue
        section = sections.get(chunk.section_id) if chunk.section_id else None
        if section is not None and section.pk in covered:
            continue
        if section is not None and len(chunk.text) < len(section.text) <= max_chars:
            covered.add(section.pk)
            passages.append(ContextPassage(hit=hit, text=section.text, widened=True))
        else:
            passages.append(ContextPassage(hit=hit, text=chunk.text))
    return passages
