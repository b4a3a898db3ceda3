"""Chunk (the stage): cut the parsed document into sections and chunks and store them, not yet live.

Stored in one transaction that first removes whatever an interrupted earlier run of this version
left, so a retry starts clean. The version moves to EMBEDDING with its chunk count.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from kb.exceptions import ParseFailure
from kb.models import Chunk, DocumentStatus, DocumentVersion, Section
from kb.pipeline.chunk import ChunkDraft, SectionDraft, chunk_document, chunk_plain_text
from kb.pipeline.index import term_stats
from kb.pipeline.job import Job, Parsed


def chunk_parsed(
    parsed: Parsed, *, max_chars: int, overlap: int, title: str
) -> tuple[list[SectionDraft], list[ChunkDraft]]:
    """Section and chunk drafts of a parsed file or of typed-in text."""
    if parsed.plain_text is not None:
        result = chunk_plain_text(parsed.plain_text, title=title, max_chars=max_chars, overlap=overlap)
    else:
        assert parsed.document is not None
        result = chunk_document(parsed.document, max_chars=max_chars, overlap=overlap)
    return result.sections, result.chunks


def chunk(job: Job) -> None:
    """Draft the chunks with the knowledge base's sizes, then store sections and chunks."""
    assert job.parsed is not None, "the parse stage runs first"
    knowledge_base, version = job.knowledge_base, job.version
    job.section_drafts, job.chunk_drafts = chunk_parsed(
        job.parsed, max_chars=knowledge_base.chunk_size, overlap=knowledge_base.chunk_overlap, title=job.title
    )
    if not job.chunk_drafts:
        raise ParseFailure("empty", "No text could be extracted from this document.")

    with transaction.atomic():
        # Idempotent: a retried run replaces what an interrupted one stored.
        term_stats.remove_live_version(version.pk)  # re-indexing the live version
        Chunk.objects.filter(version=version).delete()
        Section.objects.filter(version=version).delete()
        job.sections = Section.objects.bulk_create(
            [
                Section(
                    version=version,
                    ordinal=s.ordinal,
                    path=s.section_path,
                    text=s.text,
                    page_start=s.page_start,
                    page_end=s.page_end,
                )
                for s in job.section_drafts
            ]
        )
        section_by_ordinal = {s.ordinal: s for s in job.sections}
        job.chunks = Chunk.objects.bulk_create(
            [
                Chunk(
                    knowledge_base=knowledge_base,
                    document_id=version.document_id,
                    version=version,
                    section=section_by_ordinal.get(d.section_ordinal) if d.section_ordinal is not None else None,
                    ordinal=d.ordinal,
                    text=d.text,
                    page_start=d.page_start,
                    page_end=d.page_end,
                    section_path=d.section_path,
                    # The hash of the text that is embedded (title and heading path included), so
                    # a vector is re-used only for exactly the same input.
                    content_hash=d.embedding_hash(job.title),
                )
                for d in job.chunk_drafts
            ]
        )
        DocumentVersion.objects.filter(pk=version.pk).update(
            status=DocumentStatus.EMBEDDING,
            chunks_total=len(job.chunks),
            chunks_embedded=0,
            heartbeat_at=timezone.now(),
        )
