"""Re-embed: move a whole knowledge base to a new embedding model while the old vectors keep serving.

`kb.search_settings.knowledge_base_change_embedding_model` records the pending model; this fills each
chunk's `next_embedding` in batches, then swaps every vector to the new model in one transaction.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.db.models import F

from kb import embedding as embedding_api
from kb.exceptions import EmbeddingError, TransientEmbeddingError
from kb.models import Chunk, KnowledgeBase
from kb.pipeline.chunk import embedding_text


def chunk_embedding_text(chunk: Chunk) -> str:
    """What a stored chunk's vectors embed: "Document > Heading" on a line, then the text (as at ingestion)."""
    return embedding_text(chunk.text, chunk.section_path, chunk.document.title)


def knowledge_base_reembed(*, knowledge_base_id: int) -> None:
    """Re-embed with the knowledge base's pending model; a permanent model error aborts the change
    (the old vectors never stopped serving) and is recorded for the UI."""
    try:
        _reembed(knowledge_base_id)
    except TransientEmbeddingError:
        raise
    except EmbeddingError as exc:
        with transaction.atomic():
            Chunk.objects.filter(knowledge_base_id=knowledge_base_id).update(next_embedding=None)
            KnowledgeBase.objects.filter(pk=knowledge_base_id).update(
                reembed_model="", reembed_dims=None, reembed_error=f"The model change failed: {exc}"
            )


def _reembed(knowledge_base_id: int) -> None:
    """Fill `next_embedding` for every chunk, then swap all vectors to the new model at once.

    Chunks added meanwhile (embedded with the old model) are picked up by the next pass; the swap
    happens under a lock on the knowledge base only when no chunk is missing its new vector.
    """
    batch_size = settings.GROUNDWORK_EMBED_BATCH_SIZE
    while True:
        kb = KnowledgeBase.objects.filter(pk=knowledge_base_id).first()
        if kb is None or not kb.reembed_model:
            return  # deleted, or finished by another run
        pending = list(
            Chunk.objects.filter(knowledge_base=kb, next_embedding__isnull=True)
            .select_related("document")
            .order_by("pk")[: batch_size * 8]
        )
        if pending:
            for start in range(0, len(pending), batch_size):
                batch = pending[start : start + batch_size]
                vectors = embedding_api.embed_passages([chunk_embedding_text(c) for c in batch], model=kb.reembed_model)
                for chunk, vector in zip(batch, vectors, strict=True):
                    chunk.next_embedding = vector
                Chunk.objects.bulk_update(batch, ["next_embedding"])
                KnowledgeBase.objects.filter(pk=kb.pk).update(reembed_done=F("reembed_done") + len(batch))
            continue
        with transaction.atomic():
            kb = KnowledgeBase.objects.select_for_update().get(pk=knowledge_base_id)
            if Chunk.objects.filter(knowledge_base=kb, next_embedding__isnull=True).exists():
                continue  # new chunks arrived: embed them first
            Chunk.objects.filter(knowledge_base=kb).update(
                embedding=F("next_embedding"),
                next_embedding=None,
                embedding_model=kb.reembed_model,
                embedding_dims=kb.reembed_dims,
            )
            KnowledgeBase.objects.filter(pk=kb.pk).update(
                embedding_model=kb.reembed_model,
                embedding_dims=kb.reembed_dims,
                reembed_model="",
                reembed_dims=None,
            )
        return
