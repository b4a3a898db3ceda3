"""One partial HNSW index per embedding dimension in use.

`kb_chunk.embedding` holds vectors of several dimensions (knowledge bases may use different
models). pgvector indexes such a column with an expression index per dimension:
`(embedding::vector(N))` restricted to `embedding_dims = N`. Queries must use the same expression
and predicate (see `kb.selectors`) for the planner to pick the index. Above 2,000 dimensions
(HNSW's limit for `vector`) the index is built on `halfvec`.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection, transaction

HNSW_MAX_VECTOR_DIMS = 2000
HNSW_MAX_HALFVEC_DIMS = 4000


def vector_cast(dims: int) -> str:
    """The SQL type the index for `dims` uses; query with the same cast."""
    if dims <= HNSW_MAX_VECTOR_DIMS:
        return f"vector({int(dims)})"
    if dims <= HNSW_MAX_HALFVEC_DIMS:
        return f"halfvec({int(dims)})"
    raise ValueError(f"Embeddings of {dims} dimensions cannot be indexed (maximum {HNSW_MAX_HALFVEC_DIMS}).")


def vector_literal(values: Sequence[float]) -> str:
    """A query vector as pgvector's text form ('[0.1,0.2,...]'), cast in SQL (`%s::vector`)."""
    return "[" + ",".join(f"{x:.7g}" for x in values) + "]"


def opclass(dims: int) -> str:
    return "vector_cosine_ops" if dims <= HNSW_MAX_VECTOR_DIMS else "halfvec_cosine_ops"


def index_sql(dims: int) -> str:
    dims = int(dims)
    return (
        f"CREATE INDEX IF NOT EXISTS chunk_embedding_hnsw_{dims} ON kb_chunk "
        f"USING hnsw ((embedding::{vector_cast(dims)}) {opclass(dims)}) WHERE embedding_dims = {dims}"
    )


def ensure_vector_index(dims: int) -> None:
    """Create the HNSW index for `dims` if this is the first knowledge base with that dimension."""
    with connection.cursor() as cursor:
        cursor.execute(index_sql(dims))


# Chunks whose vector lies in the TOAST table, one batch after `after` in id order (PostgreSQL 17+:
# pg_column_toast_chunk_id). Rewriting the vector from its text form makes a new value, which is
# stored as the column now says (MAIN, kb migration 0013: in the row when it fits).
_OUT_OF_LINE_SQL = """
    WITH batch AS (
        SELECT id FROM kb_chunk
        WHERE id > %(after)s AND pg_column_toast_chunk_id(embedding) IS NOT NULL
          AND (%(kbs)s::bigint[] IS NULL OR knowledge_base_id = ANY(%(kbs)s::bigint[]))
        ORDER BY id LIMIT %(batch)s
    )
    UPDATE kb_chunk c SET embedding = (c.embedding::text)::vector
    FROM batch WHERE c.id = batch.id
    RETURNING c.id
"""


def store_vectors_in_rows(*, knowledge_base_ids: Sequence[int] | None = None, batch: int = 1000) -> int:
    """Move the stored vectors that lie in the TOAST table into their rows, where they fit (rows
    written before kb migration 0013); returns how many chunks were rewritten.

    One pass in id order, a transaction per batch: safe to stop and run again, and a vector too
    wide for its row (a remote model's) is rewritten once, not forever.
    """
    rewritten, after = 0, 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                _OUT_OF_LINE_SQL,
                {"after": after, "batch": batch, "kbs": list(knowledge_base_ids) if knowledge_base_ids else None},
            )
            ids = [row[0] for row in cursor.fetchall()]
        if not ids:
            return rewritten
        rewritten += len(ids)
        after = max(ids)
