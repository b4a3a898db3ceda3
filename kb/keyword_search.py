"""Keyword search: Okapi BM25 over the inverted postings (kb.models.Posting), in one statement.

`kb.selectors.chunk_search` fuses these candidates with the vector ones; the statistics and
postings it reads are kept exact by kb.pipeline.index.term_stats.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import ExitStack

from django.db import connection

from kb.draft_scope import DraftScope
from kb.languages import text_search_config
from kb.match_ranking import lexemes_kept_sql
from kb.models import Chunk, KnowledgeBase

BM25_K1 = 1.2
BM25_B = 0.75
# Candidates come from the query's rarest terms, taken in order while the postings they read
# together stay within a budget (the rarest term always counts): these postings, or this share of
# the chunks when more. A fixed 5,000 found 63 % of the exact top 10 in a 350k-chunk knowledge
# base; a share finds 99 % (bench/retrieval.py at 1M rows). The budget bounds the whole read:
# when it only bounded the terms before the last one taken, that last one could be a common word
# ("also": 13k postings of a 35k-chunk knowledge base), read whole and summed per chunk. Bounding
# the sum at twice the old threshold kept recall@10 against exhaustive BM25 (35k chunks: 0.991 ->
# 0.992; 350k: 0.992 -> 0.997) and cut the postings read at p95 (17k -> 10k; 223k -> 99k) and
# keyword p95 (13.0 -> 9.3 ms; 128 -> 54 ms).
KEYWORD_MATCH_BUDGET = 10_000
KEYWORD_MATCH_SHARE = 0.30
# Of those, the best by their score over the rare terms get the common terms' share added (one
# index probe per candidate and common term), which makes their scores exact Okapi BM25.
KEYWORD_POOL = 200


# Okapi BM25 of the query's terms over the postings (kb.models.Posting), in one statement:
#   terms      the query's lexemes with their term rows in each knowledge base and their idf
#              (document frequencies summed over the knowledge bases searched);
#   picked     the rarest terms while the postings they read together stay within the budget
#              (postings, or a share of the collection when more), the rarest always;
#   partial    every chunk a picked term matches, scored over the picked terms (index-only
#              scans), the best `pool` of them kept;
#   rest       the common terms' share of those chunks' scores: one index scan per common term
#              over the candidates' ids (an array parameter, so the scan seeks them; joined to
#              the CTE instead, the planner read every posting of the term: 23 -> 4 ms);
#   staged     (a draft) the chunks of its versions that are not live, which have no postings:
#              scored from their tsvectors, those holding a query term found by the GIN index
#              first (a draft replacing a 3,541-chunk document: 69 -> 30 ms p50), each vector
#              cut down to the query's lexemes before unnest() (35 -> 25 ms p50, 87 -> 58 p95).
# A draft's chunks that are live but not in the draft are left out (`hidden`, cast to bigint[]
# like the column: compared as int4[], each posting was checked against the whole list in turn,
# not by hash: 111 -> 69 ms p50 for those 3,541 chunks). Every CTE is
# MATERIALIZED: inlined, the planner re-ran them per candidate. Arithmetic is float8 throughout,
# with the length normalisation folded into two per-query constants: Django binds parameters
# client-side, so a bare 0.75 is a numeric literal and numeric arithmetic per posting cost
# more than reading the postings did.
_KEYWORD_SQL = """
WITH collection AS MATERIALIZED (
    SELECT greatest(sum(live_chunks), 1)::float8 AS n,
           %(k1)s::float8 * (1 - %(b)s::float8) AS len_base,
           %(k1)s::float8 * %(b)s::float8
               / greatest(sum(live_lexemes)::float8 / greatest(sum(live_chunks), 1), 1) AS len_slope
    FROM kb_knowledgebase WHERE id = ANY(%(kbs)s)
),
lexemes AS MATERIALIZED (
    SELECT DISTINCT lexeme FROM unnest(tsvector_to_array(to_tsvector(%(config)s::regconfig, %(query)s))) AS lexeme
),
rows AS MATERIALIZED (
    SELECT s.id, s.lexeme, s.chunks FROM lexemes l
    JOIN kb_termstat s ON s.lexeme = l.lexeme AND s.knowledge_base_id = ANY(%(kbs)s)
),
df AS MATERIALIZED (
    SELECT lexeme, sum(chunks)::float8 AS n FROM rows GROUP BY lexeme HAVING sum(chunks) > 0
),
weights AS MATERIALIZED (
    SELECT df.lexeme, ln(1 + (greatest(collection.n, df.n) - df.n + 0.5) / (df.n + 0.5)) AS idf,
           sum(df.n) OVER (ORDER BY df.n, df.lexeme ROWS UNBOUNDED PRECEDING)
               <= greatest(%(budget)s::float8, %(share)s::float8 * collection.n)
               OR row_number() OVER (ORDER BY df.n, df.lexeme) = 1 AS picked
    FROM df, collection
),
terms AS MATERIALIZED (
    SELECT r.id, w.lexeme, w.idf, w.idf * (%(k1)s::float8 + 1) AS weight, w.picked
    FROM rows r JOIN weights w ON w.lexeme = r.lexeme WHERE r.chunks > 0
),
partial AS MATERIALIZED (
    SELECT p.chunk_id, sum(t.weight * p.tf / (p.tf + collection.len_base + collection.len_slope * p.dl)) AS score
    FROM terms t JOIN kb_posting p ON p.term_id = t.id CROSS JOIN collection
    WHERE t.picked AND NOT (p.chunk_id = ANY(%(hidden)s::bigint[]))
    GROUP BY p.chunk_id
    ORDER BY score DESC
    LIMIT %(pool)s
),
candidates AS MATERIALIZED (
    SELECT array_agg(chunk_id) AS ids FROM partial
),
rest AS MATERIALIZED (
    SELECT p.chunk_id, sum(t.weight * p.tf / (p.tf + collection.len_base + collection.len_slope * p.dl)) AS score
    FROM terms t
    CROSS JOIN collection
    JOIN kb_posting p ON p.term_id = t.id AND p.chunk_id = ANY((SELECT ids FROM candidates)::bigint[])
    WHERE NOT t.picked
    GROUP BY p.chunk_id
){staged_cte}
SELECT c.chunk_id, c.score + coalesce(r.score, 0) AS score
FROM partial c LEFT JOIN rest r ON r.chunk_id = c.chunk_id
{staged_union}ORDER BY score DESC
LIMIT %(limit)s
"""
# A draft's versions that are not live (no postings): scored from their tsvectors.
_STAGED_CTE = r""",
staged_query AS MATERIALIZED (
    -- Any of the query's lexemes, each quoted as tsquery input wants (backslashes and quotes
    -- doubled); NULL when no term is known, which matches nothing.
    SELECT string_agg('''' || replace(replace(lexeme, '\', '\\'), '''', '''''') || '''', ' | ')::tsquery AS tq
    FROM weights
),
staged_lexemes AS MATERIALIZED (
    SELECT array_agg(lexeme) AS lexemes FROM weights
),
staged AS MATERIALIZED (
    SELECT c.id AS chunk_id, sum(w.idf * (%(k1)s::float8 + 1) * tf.tf
           / (tf.tf + collection.len_base + collection.len_slope * c.dl)) AS score
    FROM (
        -- Each vector cut down to the query's lexemes before unnest()
        -- (kb.match_ranking.lexemes_kept_sql), read from TOAST once (`|| ''`).
        SELECT id, length(v) AS dl, {lexemes_kept} AS matched
        FROM (
            SELECT id, search_vector || ''::tsvector AS v FROM kb_chunk
            WHERE version_id = ANY(%(staged)s) AND knowledge_base_id = ANY(%(kbs)s)
              AND search_vector @@ (SELECT tq FROM staged_query)
            OFFSET 0
        ) found
    ) c
    CROSS JOIN collection
    CROSS JOIN LATERAL unnest(c.matched) AS u(lexeme, positions, weights)
    JOIN weights w ON w.lexeme = u.lexeme
    CROSS JOIN LATERAL (SELECT coalesce(array_length(u.positions, 1), 1)::float AS tf) tf
    GROUP BY c.id
)""".replace("{lexemes_kept}", lexemes_kept_sql("v", "(SELECT lexemes FROM staged_lexemes)"))
_STAGED_UNION = "UNION ALL SELECT chunk_id, score FROM staged\n"


def _hidden_chunks(draft: DraftScope) -> list[int]:
    """The live chunks a draft leaves out. Postings cover live chunks only: a draft search reads
    them without these, and reads the draft's staged versions (a few documents) from their
    tsvectors, scored with the live release's collection statistics (a draft has none of its own)."""
    if not draft.hidden:
        return []
    return list(Chunk.objects.filter(version_id__in=draft.hidden, is_live=True).values_list("pk", flat=True))


def keyword_candidates(
    knowledge_bases: Sequence[KnowledgeBase],
    query: str,
    limit: int,
    draft: DraftScope | None = None,
    meanwhile: Callable[[], None] | None = None,
) -> list[tuple[int, float]]:
    """Chunks ranked by Okapi BM25 over the postings (kb.models.Posting), in one round trip.

    Postgres' own `ts_rank` has no inverse document frequency, so rare words weigh no more than
    common ones; BM25 fixes that. Query terms are the stemmed lexemes of the question (stop words
    dropped), ORed: a question rarely contains only words its answer contains. Collection size,
    mean length and each term's document frequency are read from the statistics
    kb.pipeline.index.term_stats keeps exact. The returned scores are exact Okapi BM25; which
    chunks are returned is exact unless the best chunks match none of the rarest terms (recall@10
    against an exhaustive BM25: bench/retrieval.py). `draft`: search a draft (kb.draft_scope).
    `meanwhile`: called once the first statement is on its way, while the database runs it
    (hybrid search sends its vector query then).
    """
    by_config: dict[str, list[int]] = defaultdict(list)
    for kb in knowledge_bases:
        by_config[text_search_config(kb)].append(kb.pk)
    hidden, staged = (_hidden_chunks(draft), draft.staged) if draft is not None else ([], [])
    results: list[tuple[int, float]] = []
    for config, kb_ids in by_config.items():
        results.extend(
            keyword_scores(
                config=config,
                knowledge_base_ids=kb_ids,
                query=query,
                limit=limit,
                hidden=hidden,
                staged=staged,
                meanwhile=meanwhile,
            )
        )
        meanwhile = None
    results.sort(key=lambda r: r[1], reverse=True)
    return results[:limit]


def keyword_scores(
    *,
    config: str,
    knowledge_base_ids: list[int],
    query: str,
    limit: int,
    hidden: Sequence[int] = (),
    staged: Sequence[int] = (),
    meanwhile: Callable[[], None] | None = None,
) -> list[tuple[int, float]]:
    """The best `limit` chunks by BM25 in knowledge bases sharing one text search configuration.

    `hidden`: live chunks left out; `staged`: versions whose chunks (not live) are scored too.
    `meanwhile`: called after the statement is sent, before its rows are awaited.
    """
    sql = _KEYWORD_SQL.format(staged_cte=_STAGED_CTE if staged else "", staged_union=_STAGED_UNION if staged else "")
    with connection.cursor() as cursor, ExitStack() as pipeline:
        if meanwhile is not None:
            # Pipeline mode (psycopg's, on the connection under Django's): execute() sends the
            # statement and returns; fetchall() waits for its rows.
            pipeline.enter_context(connection.connection.pipeline())
        cursor.execute(
            sql,
            {
                "config": config,
                "query": query,
                "kbs": knowledge_base_ids,
                "budget": KEYWORD_MATCH_BUDGET,
                "share": KEYWORD_MATCH_SHARE,
                "pool": max(KEYWORD_POOL, limit),
                "k1": BM25_K1,
                "b": BM25_B,
                "limit": limit,
                "hidden": list(hidden),
                "staged": list(staged),
            },
        )
        if meanwhile is not None:
            meanwhile()
        return [(row[0], float(row[1])) for row in cursor.fetchall()]
