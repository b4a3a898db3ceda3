"""Ranking vectors: fill `Chunk.ranking_embedding` for knowledge bases with precise ranking.

Runs in the background after a document goes live (it is answerable at once, with the fused order)
and when a knowledge base turns precise ranking on (kb.precise_ranking). A chunk whose exact text
was already embedded in this knowledge base copies that vector. Idempotent: it only ever fills what
is missing, and one fill per knowledge base runs at a time (`fill_ranking_vectors`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, connection

from kb import embedding as embedding_api
from kb.models import Chunk, DocumentVersion, KnowledgeBase
from kb.pipeline.reembed import chunk_embedding_text
from kb.precise_ranking import RANKING_MODEL, uses_precise_ranking


@dataclass(frozen=True)
class RankingProgress:
    ready: int  # live chunks with their ranking vector
    total: int  # live chunks

    @property
    def complete(self) -> bool:
        return self.ready >= self.total


def ranking_progress(knowledge_base: KnowledgeBase) -> RankingProgress | None:
    """How far the live chunks' ranking vectors are; None when the knowledge base does not use them."""
    if not uses_precise_ranking([knowledge_base]):
        return None
    live = Chunk.objects.filter(knowledge_base=knowledge_base, is_live=True)
    total = live.count()
    return RankingProgress(ready=total - live.filter(ranking_embedding__isnull=True).count(), total=total)


def knowledge_base_needing_vectors(*, version_id: int) -> int | None:
    """The knowledge base of this version when it uses precise ranking and the version's chunks lack vectors."""
    version = DocumentVersion.objects.select_related("document__knowledge_base").filter(pk=version_id).first()
    if version is None or not uses_precise_ranking([version.document.knowledge_base]):
        return None
    missing = Chunk.objects.filter(version=version, ranking_embedding__isnull=True).exists()
    return version.document.knowledge_base_id if missing else None


def fill_ranking_vectors(*, knowledge_base_id: int) -> int:
    """Give every chunk of the knowledge base its ranking vector; returns how many were embedded.

    One fill per knowledge base at a time: every finished document queues one, and two running at
    once both started from the lowest missing id and embedded the same batches (up to twice the e5
    CPU of a bulk upload). A fill that finds another running leaves at once; the running one looks
    again for missing chunks after it lets go, so chunks written meanwhile are never left behind.

    Stops early when the knowledge base is deleted or turns precise ranking off. Raises
    `EmbeddingError` (or `TransientEmbeddingError`, worth a retry) when e5 cannot embed.
    """
    embedded = 0
    while True:
        with _one_fill_at_a_time(knowledge_base_id) as ours:
            if not ours:
                return embedded
            embedded += _fill(knowledge_base_id)
        if not _vectors_missing(knowledge_base_id):
            return embedded


#: First key of the PostgreSQL advisory locks taken here (the second is the knowledge base id).
_FILL_LOCK_NAMESPACE = 0x67726B31


@contextlib.contextmanager
def _one_fill_at_a_time(knowledge_base_id: int) -> Iterator[bool]:
    """Whether this process holds the knowledge base's fill lock (a session-level advisory lock,
    released here or when the worker's connection ends)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_FILL_LOCK_NAMESPACE, knowledge_base_id])
        ours = bool(cursor.fetchone()[0])
    try:
        yield ours
    finally:
        # A lost connection took the lock with it; its error must not hide the one that ended the fill.
        if ours:
            with contextlib.suppress(DatabaseError), connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_FILL_LOCK_NAMESPACE, knowledge_base_id])


def _vectors_missing(knowledge_base_id: int) -> bool:
    kb = KnowledgeBase.objects.filter(pk=knowledge_base_id).first()
    if kb is None or not uses_precise_ranking([kb]):
        return False
    return Chunk.objects.filter(knowledge_base=kb, ranking_embedding__isnull=True).exists()


def _fill(knowledge_base_id: int) -> int:
    batch_size = settings.GROUNDWORK_EMBED_BATCH_SIZE
    embedded = 0
    # One pass in id order (keyset, so a large knowledge base is read once, not once per batch);
    # chunks created meanwhile have higher ids and are reached at the end of the pass.
    after = 0
    while True:
        kb = KnowledgeBase.objects.filter(pk=knowledge_base_id).first()
        if kb is None or not uses_precise_ranking([kb]):
            return embedded
        batch = list(
            Chunk.objects.filter(knowledge_base=kb, pk__gt=after, ranking_embedding__isnull=True)
            .select_related("document")
            .order_by("pk")[:batch_size]
        )
        if not batch:
            return embedded
        after = batch[-1].pk
        known = dict(
            Chunk.objects.filter(
                knowledge_base=kb,
                content_hash__in={c.content_hash for c in batch},
                ranking_embedding__isnull=False,
            ).values_list("content_hash", "ranking_embedding")
        )
        pending = [c for c in batch if c.content_hash not in known]
        vectors = embedding_api.embed_passages([chunk_embedding_text(c) for c in pending], model=RANKING_MODEL)
        fresh = {c.pk: v for c, v in zip(pending, vectors, strict=True)}
        for chunk in batch:
            chunk.ranking_embedding = fresh.get(chunk.pk, known.get(chunk.content_hash))
        # Only this column is written: the chunk may have gone live or been deleted meanwhile.
        Chunk.objects.bulk_update(batch, ["ranking_embedding"])
        embedded += len(pending)
