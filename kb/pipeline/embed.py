"""Embed (the stage): a vector for every stored chunk, in batches, with the knowledge base's model.

A chunk whose exact embedding input (same text, title and heading path, hence the same
`content_hash`) was already embedded with this model in this knowledge base copies that vector
instead of calling the model again: re-uploading an edited document re-embeds only what changed.
Progress (`chunks_embedded`) is written after every batch.
"""

from __future__ import annotations

from django.conf import settings

from kb import embedding as embedding_api
from kb.exceptions import EmbeddingError
from kb.models import Chunk
from kb.pipeline import warm
from kb.pipeline.chunk import embedding_text
from kb.pipeline.job import Job, progress


def embed(job: Job) -> None:
    """Embed the job's chunks; identical text already embedded with this model is copied, not re-embedded."""
    warm.wait_for_embedder()
    version, knowledge_base, chunks = job.version, job.knowledge_base, job.chunks
    if job.chunk_drafts:
        texts = {d.ordinal: d.embedding_text(job.title) for d in job.chunk_drafts}
    else:  # embedded later (kb.pipeline.run): from the stored chunks
        texts = {c.ordinal: embedding_text(c.text, c.section_path, job.title) for c in chunks}
    model = knowledge_base.embedding_model
    reusable = dict(
        Chunk.objects.filter(
            knowledge_base=knowledge_base,
            embedding_model=model,
            content_hash__in={c.content_hash for c in chunks},
            embedding__isnull=False,
        )
        .exclude(version=version)
        .values_list("content_hash", "embedding")
    )
    done = 0
    pending: list[Chunk] = []
    for chunk in chunks:
        if chunk.content_hash in reusable:
            chunk.embedding = reusable[chunk.content_hash]
            chunk.embedding_model, chunk.embedding_dims = model, knowledge_base.embedding_dims
            done += 1
        else:
            pending.append(chunk)
    if done:
        Chunk.objects.bulk_update(
            [c for c in chunks if c.embedding is not None], ["embedding", "embedding_model", "embedding_dims"]
        )
        progress(version.pk, chunks_embedded=done)

    batch_size = settings.GROUNDWORK_EMBED_BATCH_SIZE
    for start in range(0, len(pending), batch_size):
        batch = pending[start : start + batch_size]
        vectors = embedding_api.embed_passages([texts[c.ordinal] for c in batch], model=model)
        for chunk, vector in zip(batch, vectors, strict=True):
            if len(vector) != knowledge_base.embedding_dims:
                raise EmbeddingError(
                    f"the model returned {len(vector)} dimensions, the knowledge base expects "
                    f"{knowledge_base.embedding_dims}"
                )
            chunk.embedding = vector
            chunk.embedding_model, chunk.embedding_dims = model, knowledge_base.embedding_dims
        Chunk.objects.bulk_update(batch, ["embedding", "embedding_model", "embedding_dims"])
        done += len(batch)
        progress(version.pk, chunks_embedded=done)


def warm_up() -> None:
    """Load the local embedding model (each worker process, after forking)."""
    embedding_api.embed_query("warm up", model=embedding_api.LOCAL_EMBEDDING_MODEL)
