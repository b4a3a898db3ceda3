"""Glue between stored versions and the parser/chunker: file in, sections and chunk drafts out.

Kept apart from `kb.services` so the pipeline's orchestration (claim, store, embed, publish) does
not depend on how a format is parsed. `kb.parsing` is imported first so it can configure
unstructured (offline, no telemetry) before anything else imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from kb import parsing
from kb.chunking import ChunkDraft, SectionDraft, chunk_document, chunk_plain_text
from kb.exceptions import ParseFailure
from kb.models import DocumentVersion, KnowledgeBase, SourceType

__all__ = ["ChunkDraft", "Parsed", "SectionDraft", "chunk_parsed", "parse_version"]


@dataclass
class Parsed:
    file_type: str
    page_count: int | None
    document: parsing.ParsedDocument | None = None
    plain_text: str | None = None  # typed-in text and Q&A entries skip the parser
    warnings: list[str] = field(default_factory=list)


def parse_version(version: DocumentVersion) -> Parsed:
    """Parse the version's stored file; a ParseError becomes a ParseFailure (FAILED, with reason)."""
    if version.document.source_type in (SourceType.TEXT, SourceType.QA):
        with version.file.open("rb") as handle:
            text = handle.read().decode("utf-8")
        return Parsed(file_type="text", page_count=None, plain_text=text)
    try:
        document = parsing.parse_document(
            Path(version.file.path),
            filename=version.original_filename,
            max_pages=settings.GROUNDWORK_MAX_PAGES,
            # Below Celery's soft limit, so the parser stops with its own readable reason.
            timeout_s=max(10.0, settings.GROUNDWORK_INGEST_TIME_LIMIT - 30.0),
        )
    except parsing.ParseError as exc:
        raise ParseFailure(exc.code, exc.message) from exc
    page_count = document.page_count
    if page_count is None and document.file_type == "pdf":
        # pypdf could not count the pages but pdfminer read them: the highest page cited will do.
        page_count = max((e.page_number or 0 for e in document.elements), default=0) or None
    if page_count is not None and page_count > settings.GROUNDWORK_MAX_PAGES:
        raise ParseFailure(
            "too_many_pages",
            f"This document has {page_count} pages; the limit is {settings.GROUNDWORK_MAX_PAGES}. Split it into parts.",
        )
    return Parsed(
        file_type=document.file_type,
        page_count=page_count,
        document=document,
        warnings=list(document.warnings),
    )


def chunk_parsed(
    parsed: Parsed, *, knowledge_base: KnowledgeBase, title: str
) -> tuple[list[SectionDraft], list[ChunkDraft]]:
    size, overlap = knowledge_base.chunk_size, knowledge_base.chunk_overlap
    if parsed.plain_text is not None:
        result = chunk_plain_text(parsed.plain_text, title=title, max_chars=size, overlap=overlap)
    else:
        assert parsed.document is not None
        result = chunk_document(parsed.document, max_chars=size, overlap=overlap)
    return result.sections, result.chunks


def warm_up_parsers() -> None:
    """Import the parsing stack and load spaCy once (worker parent, before forking)."""
    parsing.warm_up()


def warm_up_models() -> None:
    """Load the local embedding model (each worker process, after forking)."""
    from kb.embedding import LOCAL_EMBEDDING_MODEL, embed_query

    embed_query("warm up", model=LOCAL_EMBEDDING_MODEL)
