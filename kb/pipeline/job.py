"""What the stages of one ingestion pass hand each other, and the status writes they share.

A `Job` is created by the claim stage for one `DocumentVersion`; each following stage reads what
the earlier ones left on it and adds its own result (parsed document, drafts, stored chunks).
Status, progress and error are columns on the version row, written with a fresh heartbeat so the
recover stage can tell a live worker from a dead one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.utils import timezone

from kb.models import Chunk, DocumentStatus, DocumentVersion, KnowledgeBase, Section

if TYPE_CHECKING:
    from kb.pipeline.chunk import ChunkDraft, SectionDraft
    from kb.pipeline.parse import ParsedDocument


@dataclass
class Parsed:
    """The parse stage's result: a parsed file, or the text typed into the UI (which skips the parser)."""

    file_type: str
    page_count: int | None
    document: ParsedDocument | None = None
    plain_text: str | None = None  # typed-in text and Q&A entries skip the parser
    warnings: list[str] = field(default_factory=list)
    ocr_pages: list[int] = field(default_factory=list)


@dataclass
class Job:
    """One claimed version on its way through the stages."""

    version: DocumentVersion
    knowledge_base: KnowledgeBase
    parsed: Parsed | None = None
    section_drafts: list[SectionDraft] = field(default_factory=list)
    chunk_drafts: list[ChunkDraft] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)
    words_first: bool = False  # its chunks went live for keyword search before their vectors

    @property
    def title(self) -> str:
        return self.version.document.title


def progress(version_id: int, **fields: object) -> None:
    """Record progress (and that the worker is alive)."""
    DocumentVersion.objects.filter(pk=version_id).update(heartbeat_at=timezone.now(), **fields)


def fail(version_id: int, code: str, message: str) -> None:
    """Mark a version FAILED with a code and a sentence the uploader understands."""
    DocumentVersion.objects.filter(pk=version_id).update(
        status=DocumentStatus.FAILED, error_code=code, error_message=message, finished_at=timezone.now()
    )


def requeue(version_id: int) -> None:
    """Put a version back to QUEUED (the caller sends the task)."""
    DocumentVersion.objects.filter(pk=version_id).update(
        status=DocumentStatus.QUEUED, error_code="", error_message="", heartbeat_at=timezone.now()
    )
