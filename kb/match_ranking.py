"""Match ranking: the fused top candidates re-ordered by how the query's words occur in each chunk.

BM25 counts a chunk's query words wherever they fall; cosine similarity sees the chunk whole. A
question is usually answered by one sentence that holds most of its rarer words close together,
in the question's order (COVID-QA: the gold chunk is in the fused top 30 for 92 % of questions
but in the top 5 for 78 %). These features read that from the chunks' stored keyword-search
vectors (`Chunk.search_vector`: lexeme positions, weight A for the text, B for the section path,
C for the title), and a linear score over them and the retrievers' own scores re-orders the pool.
The weights were fitted by bench/match_ranking.py on the four public evaluation sets (listwise).
Fitted on the other three sets and measured on the one left out, recall@5 went COVID-QA 0.781 →
0.822 (recall@1 0.536 → 0.597), SQuAD-2 MRR 0.879 → 0.893, ClapNQ unchanged (1.000), 10-Q 0.831
→ 0.831 (recall@1 0.578 → 0.542: the one set it does not help); through the product's search
with these weights, 10-Q recall@5 0.843 → 0.868. It costs ~1.5-2 ms per search on 2 cores (p50;
one prepared statement, ~0.7 ms of it on the server, and the features of 30 candidates, ~0.35 ms).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from kb.models import KnowledgeBase
    from kb.selectors import SearchHit

#: How many fused candidates hybrid search re-orders (at least; all it returns when more).
MATCH_POOL = 30
#: A "close" occurrence: distinct query words within this many positions of each other.
WINDOW = 12
#: Query words in order within this many positions count as a kept pair.
PAIR_GAP = 3

# (position, weight) of every occurrence of a lexeme in a chunk's search vector.
Occurrences = Sequence[tuple[int, str]]

FEATURES = (
    "fused",
    "vector",
    "keyword",
    "rank",
    "cover",
    "window",
    "pairs",
    "heading",
    "length",
    "pool_cover",
    "pool_window",
)


@dataclass(frozen=True)
class QueryTerms:
    """The query's lexemes in their order, with each lexeme's idf in the searched collection."""

    lexemes: Sequence[str]
    idf: Mapping[str, float]

    @property
    def total_idf(self) -> float:
        return sum(self.idf.get(t, 0.0) for t in set(self.lexemes)) or 1.0


def term_features(
    query: QueryTerms, chunk: Mapping[str, Occurrences], pool_idf: Mapping[str, float] | None = None
) -> dict[str, float]:
    """How the query's lexemes occur in one chunk, each feature in [0, 1].

    cover    idf share of the query's lexemes found in the chunk's text;
    window   the best idf share found within `WINDOW` consecutive text positions;
    pairs    share of the query's consecutive lexeme pairs found in that order, close together;
    heading  idf share found in the section path or the document title;
    pool_cover, pool_window  cover and window again with `pool_idf` (see `pool_terms`), if given.
    """
    text: dict[str, list[int]] = {}
    heading: set[str] = set()
    for lexeme in set(query.lexemes):
        for position, weight in chunk.get(lexeme, ()):
            if weight == "A":
                text.setdefault(lexeme, []).append(position)
            else:
                heading.add(lexeme)
    total = query.total_idf
    pairs_seen = [(a, b) for a, b in zip(query.lexemes, query.lexemes[1:], strict=False) if a != b]
    kept = sum(1 for a, b in pairs_seen if _in_order(text.get(a, ()), text.get(b, ())))
    features = {
        "cover": sum(query.idf.get(t, 0.0) for t in text) / total,
        "window": _best_window(text, query.idf) / total,
        "pairs": kept / len(pairs_seen) if pairs_seen else 0.0,
        "heading": sum(query.idf.get(t, 0.0) for t in heading) / total,
    }
    if pool_idf is not None:
        pool_total = sum(pool_idf.get(t, 0.0) for t in set(query.lexemes)) or 1.0
        features["pool_cover"] = sum(pool_idf.get(t, 0.0) for t in text) / pool_total
        features["pool_window"] = _best_window(text, pool_idf) / pool_total
    return features


def _best_window(text: Mapping[str, Sequence[int]], idf: Mapping[str, float]) -> float:
    """The largest idf sum of distinct lexemes that occur within `WINDOW` positions (a sweep)."""
    events = sorted((p, t) for t, positions in text.items() for p in positions)
    best = 0.0
    inside: dict[str, int] = {}
    start = 0
    for position, lexeme in events:
        inside[lexeme] = inside.get(lexeme, 0) + 1
        while events[start][0] < position - WINDOW:
            left = events[start][1]
            inside[left] -= 1
            if not inside[left]:
                del inside[left]
            start += 1
        best = max(best, sum(idf.get(t, 0.0) for t in inside))
    return best


def _in_order(first: Sequence[int], second: Sequence[int]) -> bool:
    return any(0 < b - a <= PAIR_GAP for a in first for b in second)


def feature_vector(
    *,
    query: QueryTerms,
    chunk: Mapping[str, Occurrences],
    fused: float,
    vector: float,
    keyword: float,
    rank: int,
    length: int,
    pool_query: QueryTerms,
) -> list[float]:
    """The features of one candidate, in `FEATURES` order (scores already scaled to the pool's best).

    `pool_query`: the same lexemes weighted by their idf among the pool's texts: a word every
    candidate holds (the article's subject) tells them apart no better than a stop word.
    """
    terms = term_features(query, chunk, pool_query.idf)
    return [
        fused,
        vector,
        keyword,
        1.0 / (1.0 + rank),
        terms["cover"],
        terms["window"],
        terms["pairs"],
        terms["heading"],
        math.log1p(length) / 8.0,
        terms["pool_cover"],
        terms["pool_window"],
    ]


def pool_terms(query: QueryTerms, chunks: Sequence[Mapping[str, Occurrences]]) -> QueryTerms:
    """The query's lexemes weighted by idf among these chunks' texts."""
    documents = {t: sum(1 for c in chunks if any(w == "A" for _, w in c.get(t, ()))) for t in set(query.lexemes)}
    return QueryTerms(lexemes=query.lexemes, idf={t: idf(d, len(chunks)) for t, d in documents.items()})


def idf(documents: float, collection: float) -> float:
    """Okapi BM25's idf, as kb.keyword_search computes it."""
    return math.log(1 + (max(collection, documents) - documents + 0.5) / (documents + 0.5))


#: Fitted by bench/match_ranking.py on all four public sets (the features in `FEATURES` order).
WEIGHTS: Final[dict[str, float]] = {
    "fused": 3.6075,
    "vector": 4.2746,
    "keyword": 0.0748,
    "rank": 0.4047,
    "cover": 1.0988,
    "window": 2.8199,
    "pairs": 2.5216,
    "heading": -0.0087,
    "length": 1.4001,
    "pool_cover": 0.8171,
    "pool_window": 1.936,
}
#: Precise ranking's (kb.precise_ranking): the same features and the e5 similarity, fitted alike.
PRECISE_WEIGHTS: Final[dict[str, float]] = {
    "fused": 2.6066,
    "vector": 2.6724,
    "keyword": -0.164,
    "rank": 0.18,
    "cover": 0.9351,
    "window": 2.5445,
    "pairs": 2.541,
    "heading": -0.2002,
    "length": 1.3021,
    "pool_cover": 1.1152,
    "pool_window": 2.076,
    "e5": 3.2705,
}


def lexemes_kept_sql(vector: str, lexemes: str) -> str:
    """SQL for the tsvector `vector` with only the lexemes of the text[] `lexemes` (positions and
    weights kept): all others are deleted, the vector less `lexemes` naming them. Two C functions
    over a sorted vector, where unnest() of the whole vector built every lexeme's arrays to keep a
    few (match ranking's statement: execution 1.07 -> 0.58 ms p50 for 30 candidates, same rows).
    Both arguments are SQL expressions written in this package, never user input."""
    return f"ts_delete({vector}, tsvector_to_array(ts_delete({vector}, {lexemes})))"


# One round trip: first the query's lexemes (chunk id NULL) with their positions in the query,
# their document frequency over the knowledge bases searched and the size of that collection
# (kb.keyword_search's idf); then, per candidate, its length in distinct lexemes and where the
# query's lexemes occur in it. `|| ''` makes each stored (TOASTed) vector a value in memory once:
# length() and ts_delete() each read it from TOAST again otherwise (430 buffers -> 190 for 30).
# The vector is cut down to the query's lexemes before unnest() (`lexemes_kept_sql`).
_TERMS_SQL = f"""
    WITH q AS MATERIALIZED (
        SELECT u.lexeme, u.positions
        FROM unnest(to_tsvector(%(config)s::regconfig, %(query)s)) AS u(lexeme, positions, weights)
    ),
    query_lexemes AS MATERIALIZED (SELECT array_agg(lexeme) AS lexemes FROM q)
    SELECT NULL::bigint, NULL::integer, q.lexeme, q.positions, NULL::text[],
           (SELECT coalesce(sum(s.chunks), 0) FROM kb_termstat s
            WHERE s.lexeme = q.lexeme AND s.knowledge_base_id = ANY(%(kbs)s))::float8,
           (SELECT coalesce(sum(k.live_chunks), 0) FROM kb_knowledgebase k WHERE k.id = ANY(%(kbs)s))::float8
    FROM q
    UNION ALL
    SELECT c.id, length(c.search_vector), u.lexeme, u.positions, u.weights, NULL, NULL
    FROM (SELECT id, search_vector || ''::tsvector AS search_vector
          FROM kb_chunk WHERE id = ANY(%(ids)s) OFFSET 0) c
    LEFT JOIN LATERAL unnest({lexemes_kept_sql("c.search_vector", "(SELECT lexemes FROM query_lexemes)")})
        AS u(lexeme, positions, weights) ON true
"""  # noqa: S608 - only lexemes_kept_sql's fixed expressions are interpolated


def read_terms(
    query: str, knowledge_base_ids: list[int], config: str, chunk_ids: list[int]
) -> tuple[QueryTerms, dict[int, int], dict[int, dict[str, list[tuple[int, str]]]]] | None:
    """The query's lexemes with their idf, and per chunk its length in distinct lexemes and where
    the query's lexemes occur in it (position, weight); None when the query has no lexeme."""
    rows = _fetch_prepared(_TERMS_SQL, {"kbs": knowledge_base_ids, "config": config, "query": query, "ids": chunk_ids})
    query_rows = [r for r in rows if r[0] is None]
    if not query_rows:
        return None
    ordered = sorted((p, lexeme) for _, _, lexeme, positions, _, _, _ in query_rows for p in positions)
    terms = QueryTerms(
        lexemes=[lexeme for _, lexeme in ordered],
        idf={lexeme: idf(documents, collection) for _, _, lexeme, _, _, documents, collection in query_rows},
    )
    lengths: dict[int, int] = {}
    occurrences: dict[int, dict[str, list[tuple[int, str]]]] = {}
    for chunk_id, length, lexeme, positions, weights, _, _ in rows:
        if chunk_id is None:
            continue
        lengths[chunk_id] = length or 0
        if lexeme is not None:
            occurrences.setdefault(chunk_id, {})[lexeme] = list(zip(positions, weights, strict=True))
    return terms, lengths, occurrences


def _fetch_prepared(statement: str, params: Mapping[str, object]) -> list[tuple[Any, ...]]:
    """The rows of `statement` run as a prepared statement on the request's connection.

    Django binds parameters client-side, so the server parses and plans each statement anew; this
    one runs on every hybrid search, with the same shape. A server-side cursor prepares it once
    per connection, and a search's transaction (kb.search_beside.repeatable_read) keeps its
    generic plan: 1.22 -> 0.79 ms p50 for 30 candidates (bench/retrieval.py's tiny tenant).
    Not seen by Django's query logging.
    """
    import psycopg
    from django.db import connection

    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(statement, params, prepare=True)
        return cursor.fetchall()


def rerank(
    hits: Sequence[SearchHit],
    query: str,
    knowledge_bases: Sequence[KnowledgeBase],
    *,
    similarities: Sequence[float] | None = None,
) -> list[SearchHit] | None:
    """`hits` (the fused pool, best first) re-ordered by the fitted score; None (keep the fused
    order) when there is nothing to re-order or the knowledge bases differ in language.

    `similarities`: each hit's e5 cosine (precise ranking, kb.precise_ranking): it becomes one more
    feature, scored with `PRECISE_WEIGHTS`, and is kept as `ranking_score`. Sets `fused_score`
    (the score before) and `match_score` (the fitted score); `score` becomes the fitted score over
    the best one, so results still read best first, in (0, 1].
    """
    from kb.languages import text_search_config

    pool = list(hits)
    configs = {text_search_config(kb) for kb in knowledge_bases}
    if len(pool) < 2 or len(configs) != 1:
        return None
    read = read_terms(query, [kb.pk for kb in knowledge_bases], configs.pop(), [h.chunk_id for h in pool])
    if read is None:
        return None
    terms, lengths, occurrences = read
    vector = scaled_to_best([h.vector_score for h in pool])
    keyword = scaled_to_best([h.keyword_score for h in pool])
    best_fused = max(h.score for h in pool) or 1.0
    if similarities is None:
        weights = [WEIGHTS[f] for f in FEATURES]
    else:
        weights = [PRECISE_WEIGHTS[f] for f in (*FEATURES, "e5")]
        low, high = min(similarities), max(similarities)
        e5 = [(s - low) / ((high - low) or 1.0) for s in similarities]
    local = pool_terms(terms, [occurrences.get(h.chunk_id, {}) for h in pool])
    for rank, hit in enumerate(pool):
        features = feature_vector(
            query=terms,
            chunk=occurrences.get(hit.chunk_id, {}),
            fused=hit.score / best_fused,
            vector=vector[rank],
            keyword=keyword[rank],
            rank=rank,
            length=lengths.get(hit.chunk_id, 0),
            pool_query=local,
        )
        if similarities is not None:
            features.append(e5[rank])
            hit.ranking_score = float(similarities[rank])
        hit.fused_score = hit.score
        hit.match_score = sum(w * x for w, x in zip(weights, features, strict=True))
    best = max(h.match_score or 0.0 for h in pool)
    for hit in pool:
        hit.score = (hit.match_score or 0.0) / best if best > 0 else hit.match_score or 0.0
    pool.sort(key=lambda h: h.score, reverse=True)
    return pool


def scaled_to_best(scores: Sequence[float | None]) -> list[float]:
    """Each score over the best in the pool; a candidate the retriever did not return gets the lowest."""
    best = max((s for s in scores if s is not None), default=0.0) or 1.0
    scaled = [max(s, 0.0) / best if s is not None else None for s in scores]
    floor = min((s for s in scaled if s is not None), default=0.0)
    return [floor if s is None else s for s in scaled]
