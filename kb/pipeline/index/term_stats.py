"""BM25 statistics of each knowledge base's live chunks, kept exact as chunks go live or leave.

Keyword search needs, per query, the number of live chunks (N), their mean length and, for
every query term, how many live chunks contain it (document frequency). Counting these per query
means visiting every matching chunk: seconds per query for a common word once a knowledge base
holds a few hundred thousand chunks (bench/retrieval.py). Here they are maintained instead:

- `KnowledgeBase.live_chunks` / `live_lexemes` hold N and the total tsvector length;
- `TermStat` rows hold each lexeme's document frequency;
- `Posting` rows (the inverted index search reads) hold, per term and live chunk, the term's
  frequency in the chunk and the chunk's length.

Every change of `Chunk.is_live` goes through `add_live_version` / `remove_live_*` in the same
transaction as the change, so search sees the statistics of exactly the chunks it searches.
The deltas are aggregated from the chunks that change (a document's worth), not recounted.
Rows are upserted in lexeme order, so concurrent publishes in one knowledge base lock them in
the same order and cannot deadlock each other. Postings are added after the statistics (their
term rows exist by then) and removed before them, while the chunks are still flagged live.
"""

from __future__ import annotations

from django.db import connection, transaction

from kb.models import KnowledgeBase

# Which chunks change: only these fixed filters are ever interpolated into the SQL below.
_FILTERS = {
    "version_live": "c.version_id = %(target)s AND c.is_live",
    "document_live": "c.document_id = %(target)s AND c.is_live",
    "knowledge_base_live": "c.knowledge_base_id = %(target)s AND c.is_live",
}


# The (term, chunk) pairs of the changing chunks, with what BM25 needs of them.
_PAIRS = """
    SELECT s.id AS term_id, c.id AS chunk_id,
           least(coalesce(array_length(u.positions, 1), 1), 32767) AS tf,
           least(length(c.search_vector), 32767) AS dl
    FROM kb_chunk c
    CROSS JOIN LATERAL unnest(c.search_vector) AS u(lexeme, positions, weights)
    JOIN kb_termstat s ON s.knowledge_base_id = c.knowledge_base_id AND s.lexeme = u.lexeme
    WHERE {where}
"""


def _apply(kind: str, target: int, sign: int) -> None:
    where = _FILTERS[kind]
    params = {"target": target, "sign": sign}
    pairs = _PAIRS.replace("{where}", where)
    with connection.cursor() as cursor:
        if sign < 0:
            cursor.execute(
                f"""
                DELETE FROM kb_posting p USING ({pairs}) d
                WHERE p.term_id = d.term_id AND p.chunk_id = d.chunk_id
                """,  # noqa: S608 (only a fixed filter from _FILTERS is interpolated)
                params,
            )
        cursor.execute(
            f"""
            INSERT INTO kb_termstat (knowledge_base_id, lexeme, chunks)
            SELECT c.knowledge_base_id, lexeme, %(sign)s * count(*)
            FROM kb_chunk c CROSS JOIN LATERAL unnest(tsvector_to_array(c.search_vector)) AS lexeme
            WHERE {where}
            GROUP BY c.knowledge_base_id, lexeme
            ORDER BY c.knowledge_base_id, lexeme
            ON CONFLICT (knowledge_base_id, lexeme) DO UPDATE SET chunks = kb_termstat.chunks + EXCLUDED.chunks
            """,  # noqa: S608 (only a fixed filter from _FILTERS is interpolated)
            params,
        )
        cursor.execute(
            f"""
            UPDATE kb_knowledgebase kb
            SET live_chunks = kb.live_chunks + %(sign)s * d.n, live_lexemes = kb.live_lexemes + %(sign)s * d.total
            FROM (
                SELECT c.knowledge_base_id, count(*) AS n, coalesce(sum(length(c.search_vector)), 0) AS total
                FROM kb_chunk c WHERE {where} GROUP BY c.knowledge_base_id
            ) d
            WHERE kb.id = d.knowledge_base_id
            """,  # noqa: S608 (only a fixed filter from _FILTERS is interpolated)
            params,
        )
        if sign > 0:
            cursor.execute(
                f"""
                INSERT INTO kb_posting (term_id, chunk_id, tf, dl)
                SELECT term_id, chunk_id, tf, dl FROM ({pairs}) d ORDER BY term_id, chunk_id
                ON CONFLICT (term_id, chunk_id) DO UPDATE SET tf = EXCLUDED.tf, dl = EXCLUDED.dl
                """,  # noqa: S608 (only a fixed filter from _FILTERS is interpolated)
                params,
            )


def add_live_version(version_id: int) -> None:
    """Count the live chunks of this version: call it right after they became live."""
    _apply("version_live", version_id, +1)


def remove_live_version(version_id: int) -> None:
    """Uncount the live chunks of this version: call it right before they leave or are deleted."""
    _apply("version_live", version_id, -1)


def remove_live_document(document_id: int) -> None:
    """Uncount a document's live chunks: call it right before they stop being live or are deleted."""
    _apply("document_live", document_id, -1)


@transaction.atomic
def rebuild(knowledge_base: KnowledgeBase) -> None:
    """Recount a knowledge base's statistics and postings from its live chunks (bulk loads, repairs)."""
    KnowledgeBase.objects.select_for_update().filter(pk=knowledge_base.pk).update(live_chunks=0, live_lexemes=0)
    with connection.cursor() as cursor:
        # Its postings go with the term rows (ON DELETE CASCADE); stray ones of chunks that are no
        # longer live would otherwise survive under term rows of the same lexemes.
        cursor.execute("DELETE FROM kb_termstat WHERE knowledge_base_id = %s", [knowledge_base.pk])
    _apply("knowledge_base_live", knowledge_base.pk, +1)
