"""Parse (the stage): read the version's stored file into a `Parsed`, or fail it with a reason.

The parsers themselves (`kb.pipeline.parse`) know nothing of Django; this is the glue that reads
the stored file, applies the deploy's limits and records what was found on the version row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from django.conf import settings

from kb.exceptions import ParseFailure
from kb.models import DocumentStatus, DocumentVersion, SourceType
from kb.pipeline import parse as parsers
from kb.pipeline import warm
from kb.pipeline.job import Job, Parsed, progress
from kb.pipeline.parse.isolated import child_parsing_available, parse_document_in_child
from kb.storage import local_copy


def parse(job: Job) -> None:
    """Parse the stored file; typed-in text and Q&A entries skip the parser."""
    version = job.version
    if version.document.source_type in (SourceType.TEXT, SourceType.QA):
        with version.file.open("rb") as handle:
            text = handle.read().decode("utf-8")
        parsed = Parsed(file_type="text", page_count=None, plain_text=text)
    else:
        # A path on this machine: the file itself, or a temporary copy of the object-storage original.
        with local_copy(version.file) as path:
            parsed = _parse_file(path, filename=version.original_filename, processes=_range_processes(version))
    progress(
        version.pk,
        pages_total=parsed.page_count,
        pages_parsed=parsed.page_count or 0,
        file_type=parsed.file_type,
        warnings=parsed.warnings,
        ocr_pages=parsed.ocr_pages,
    )
    job.parsed = parsed


def _range_processes(version: DocumentVersion) -> int:
    """Processes that may read this document's page ranges: the configured number less one per
    other document this worker node is busy with. Each of those keeps a core busy already, and a
    range read on a busy core gains no time: the 5 largest shared PDFs at concurrency 2 on 2 cores
    were READY as soon either way, with parse CPU 1.26-1.30x raw partition in ranges against
    1.06-1.22x read whole (bench/ingest.py, five runs). A lone document still gets every range."""
    configured: int = settings.GROUNDWORK_PARSE_PROCESSES
    if configured <= 1:
        return 1
    busy = (
        DocumentVersion.objects.filter(
            claimed_by=version.claimed_by, status__in=(DocumentStatus.PARSING, DocumentStatus.EMBEDDING)
        )
        .exclude(pk=version.pk)
        .count()
    )
    return max(1, configured - busy)


def _parse_file(path: Path, *, filename: str, processes: int) -> Parsed:
    """A ParseError becomes a ParseFailure (the version FAILS, with the parser's reason).

    In a forked child by default (`kb.pipeline.parse.isolated`): the pool process keeps none of
    the parser's memory, and a parser crash fails this document only. Small plain text and
    Markdown are read in this process: they need neither, and need not wait for the PDF stack to
    load (`kb.pipeline.warm`)."""
    small_text = _small_text(path, filename=filename)
    if small_text:
        warm.wait_for_text_parser()
    else:
        warm.wait_for_everything()
    in_child = settings.GROUNDWORK_PARSE_IN_CHILD and child_parsing_available() and not small_text
    parse_document = parse_document_in_child if in_child else parsers.parse_document
    try:
        document = parse_document(
            path,
            filename=filename,
            max_pages=settings.GROUNDWORK_MAX_PAGES,
            # Below Celery's soft limit, so the parser stops with its own readable reason.
            timeout_s=max(10.0, settings.GROUNDWORK_INGEST_TIME_LIMIT - 30.0),
            # Page ranges fork from the parse child; the worker's own process never forks them.
            processes=processes if in_child else 1,
        )
    except parsers.ParseError as exc:
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
        ocr_pages=list(document.ocr_pages),
    )


# Plain text and Markdown up to these sizes are parsed in the worker's own process (no fork, no
# waiting for the other formats' parsers): `partition_text` allocates little and has no native
# code; Markdown becomes an HTML tree (lxml) several times its size, so its cap is lower. The
# demo's documents and most typed-up policies are such files.
SMALL_TEXT_BYTES: Final = {"txt": 1_000_000, "md": 256_000}


def _small_text(path: Path, *, filename: str) -> bool:
    try:
        size = path.stat().st_size
        if size > max(SMALL_TEXT_BYTES.values()):
            return False
        with path.open("rb") as handle:
            head = handle.read(parsers.HEAD_BYTES)
        kind = parsers.detect_file_type(head, filename, path=path)
        return size <= SMALL_TEXT_BYTES.get(kind, -1)
    except (OSError, parsers.ParseError):
        return False  # the parser reports it, with its reason
