"""Writes for knowledge bases and documents, and the ingestion pipeline.

Pipeline of one `DocumentVersion` (run by the `kb.document_ingest` task):

    claim (QUEUED → PARSING, conditional UPDATE)
      → parse the file (outside any transaction)
      → store sections + chunks, not yet live (EMBEDDING)
      → embed in batches, re-using vectors of identical chunks already embedded with that model
      → publish: one short transaction flips the live chunks of the document to this version (READY)

A failure on the way marks the version FAILED with a code and a sentence a person understands;
only transient model errors are retried.
"""

from __future__ import annotations

import hashlib
import html
import logging
import os
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path, PurePath
from typing import IO

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files.base import File
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.text import slugify

from accounts.models import Organization, User
from kb import embedding as embedding_api
from kb import releases, term_stats
from kb.exceptions import EmbeddingError, KnowledgeBaseError, ParseFailure, TransientEmbeddingError, UploadRejected
from kb.models import (
    Chunk,
    Document,
    DocumentStatus,
    DocumentVersion,
    DraftChange,
    KnowledgeBase,
    Section,
    SourceType,
)
from kb.vector_indexes import ensure_vector_index

logger = logging.getLogger(__name__)


# --- knowledge bases -----------------------------------------------------------------------


def knowledge_base_create(
    *,
    organization: Organization,
    name: str,
    created_by: User | None,
    description: str = "",
    embedding_model: str | None = None,
    chunk_size: int = 1200,
    chunk_overlap: int = 150,
) -> KnowledgeBase:
    """Create a knowledge base; its embedding model and dimension are fixed from here on."""
    name = name.strip()
    if KnowledgeBase.objects.filter(organization=organization, name__iexact=name).exists():
        raise KnowledgeBaseError("name_taken", f"A knowledge base called “{name}” already exists. Choose another name.")
    model = (embedding_model or settings.GROUNDWORK_EMBEDDING_MODEL).strip()
    dims = embedding_api.embedding_dimensions(model)
    ensure_vector_index(dims)
    return KnowledgeBase.objects.create(
        organization=organization,
        name=name,
        description=description,
        embedding_model=model,
        embedding_dims=dims,
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        created_by=created_by,
    )


# --- documents -----------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadResult:
    document: Document
    version: DocumentVersion
    created: bool  # False when the bytes were already in this knowledge base (nothing queued)


def _sha256_of(stream: IO[bytes]) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    stream.seek(0)
    for block in iter(lambda: stream.read(1024 * 1024), b""):
        digest.update(block)
        size += len(block)
    stream.seek(0)
    return digest.hexdigest(), size


def _safe_storage_name(organization_id: int, original_name: str) -> str:
    """A storage path that never uses the uploader's file name (no traversal, no collisions)."""
    suffix = PurePath(original_name).suffix.lower()
    if not suffix[1:].isalnum() or len(suffix) > 10:
        suffix = ""
    return f"org-{organization_id}/{uuid.uuid4().hex}{suffix}"


def _clean_filename(name: str) -> str:
    name = PurePath(name.replace("\\", "/")).name.strip()
    return name[:255] or "untitled"


def document_upload(
    *,
    knowledge_base: KnowledgeBase,
    upload: IO[bytes],
    filename: str,
    uploaded_by: User | None,
    title: str | None = None,
    replace_document: Document | None = None,
    enqueue: bool = True,
) -> UploadResult:
    """Store an uploaded file and queue it for ingestion.

    - Byte-identical to a version already in this knowledge base: nothing is queued, the existing
      document is returned (`created=False`).
    - Same file name as an existing document (or `replace_document` given): a new version of it;
      the old version keeps answering until the new one is ready.
    - Otherwise: a new document.
    """
    filename = _clean_filename(filename)
    sha256, size = _sha256_of(upload)
    if size == 0:
        raise UploadRejected("empty_file", f"“{filename}” is empty (0 bytes). Choose a file with content.")
    if size > settings.GROUNDWORK_MAX_UPLOAD_BYTES:
        limit_mb = settings.GROUNDWORK_MAX_UPLOAD_BYTES / (1024 * 1024)
        raise UploadRejected("too_large", f"“{filename}” is larger than the {limit_mb:g} MB upload limit.")

    duplicate = (
        DocumentVersion.objects.select_related("document")
        .filter(document__knowledge_base=knowledge_base, sha256=sha256)
        .exclude(status=DocumentStatus.FAILED)
        .order_by("-number")
        .first()
    )
    if duplicate is not None and (replace_document is None or duplicate.document_id == replace_document.pk):
        return UploadResult(document=duplicate.document, version=duplicate, created=False)

    with transaction.atomic():
        document = replace_document
        if document is None:
            same_name_id = (
                Document.objects.filter(
                    knowledge_base=knowledge_base, source_type=SourceType.FILE, versions__original_filename=filename
                )
                .values_list("pk", flat=True)
                .first()
            )
            document = Document.objects.filter(pk=same_name_id).first() if same_name_id else None
        if document is None:
            document = Document.objects.create(
                organization_id=knowledge_base.organization_id,
                knowledge_base=knowledge_base,
                title=(title or filename)[:500],
                source_type=SourceType.FILE,
                created_by=uploaded_by,
            )
        else:
            document = Document.objects.select_for_update().get(pk=document.pk)
        number = (document.versions.order_by("-number").values_list("number", flat=True).first() or 0) + 1
        version = DocumentVersion(
            document=document,
            number=number,
            original_filename=filename,
            size_bytes=size,
            sha256=sha256,
            created_by=uploaded_by,
            heartbeat_at=timezone.now(),
        )
        version.file.save(_safe_storage_name(knowledge_base.organization_id, filename), File(upload), save=False)
        version.save()
        document.latest_version = version
        document.save(update_fields=["latest_version", "updated_at"])
        _stage_if_reviewed(knowledge_base, version, uploaded_by)
        if enqueue:  # False: the caller runs `version_ingest` itself (imports, evaluation)
            transaction.on_commit(lambda: _enqueue_ingest(version.pk))
    return UploadResult(document=document, version=version, created=True)


MAX_TEXT_CHARS = 500_000


def document_create_text(
    *,
    knowledge_base: KnowledgeBase,
    title: str,
    text: str,
    created_by: User | None,
    source_type: str = SourceType.TEXT,
    replace_document: Document | None = None,
    enqueue: bool = True,
) -> UploadResult:
    """A document typed into the UI or sent as text (also Q&A entries). Same pipeline as files."""
    title, text = title.strip(), text.strip()
    if not text:
        raise UploadRejected("empty_text", "Write some text first.")
    if len(text) > MAX_TEXT_CHARS:
        raise UploadRejected("too_large", f"Text entries are limited to {MAX_TEXT_CHARS:,} characters; upload a file.")
    body = text.encode("utf-8")
    with transaction.atomic():
        document = replace_document or Document.objects.create(
            organization_id=knowledge_base.organization_id,
            knowledge_base=knowledge_base,
            title=(title or text.splitlines()[0])[:500],
            source_type=source_type,
            created_by=created_by,
        )
        if replace_document is not None and title:
            Document.objects.filter(pk=document.pk).update(title=title[:500])
        version = _new_version(
            document, filename=f"{slugify(title)[:80] or 'text'}.txt", body=body, created_by=created_by
        )
        if enqueue:
            transaction.on_commit(lambda: _enqueue_ingest(version.pk))
    return UploadResult(document=document, version=version, created=True)


def qa_entry_create(
    *, knowledge_base: KnowledgeBase, question: str, answer: str, created_by: User | None, enqueue: bool = True
) -> UploadResult:
    """A question with its approved answer: the quickest fix for a wrong or missing answer."""
    question, answer = question.strip(), answer.strip()
    if not question or not answer:
        raise UploadRejected("empty_text", "Both the question and the answer are needed.")
    return document_create_text(
        knowledge_base=knowledge_base,
        title=question,
        # The question as a heading: it becomes the section path (embedded with the text), and the
        # chunk holds only the answer, so answers quote the answer, not the question.
        text=f"## {question}\n\n{answer}",
        created_by=created_by,
        source_type=SourceType.QA,
        enqueue=enqueue,
    )


def document_add_url(
    *, knowledge_base: KnowledgeBase, url: str, created_by: User | None, enqueue: bool = True
) -> UploadResult:
    """Queue one web page for import; the worker fetches it (see `kb.webfetch`)."""
    from kb.webfetch import check_url_allowed

    url = check_url_allowed(url)
    existing = Document.objects.filter(
        knowledge_base=knowledge_base, source_type=SourceType.URL, source_url=url
    ).first()
    with transaction.atomic():
        document = existing or Document.objects.create(
            organization_id=knowledge_base.organization_id,
            knowledge_base=knowledge_base,
            title=url[:500],
            source_type=SourceType.URL,
            source_url=url,
            created_by=created_by,
        )
        # The body arrives in the worker; the hash is of the URL until then.
        version = _new_version(document, filename="", body=None, created_by=created_by, sha256=_sha256_text(url))
        if enqueue:
            transaction.on_commit(lambda: _enqueue_ingest(version.pk))
    return UploadResult(document=document, version=version, created=existing is None)


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _new_version(
    document: Document, *, filename: str, body: bytes | None, created_by: User | None, sha256: str | None = None
) -> DocumentVersion:
    """Append a version to `document` (locked) and make it the latest."""
    from django.core.files.base import ContentFile

    Document.objects.select_for_update().filter(pk=document.pk).first()
    number = (document.versions.order_by("-number").values_list("number", flat=True).first() or 0) + 1
    version = DocumentVersion(
        document=document,
        number=number,
        original_filename=filename,
        size_bytes=len(body) if body else 0,
        sha256=sha256 or hashlib.sha256(body or b"").hexdigest(),
        created_by=created_by,
        heartbeat_at=timezone.now(),
    )
    if body is not None:
        version.file.save(
            _safe_storage_name(document.organization_id, filename or "text.txt"), ContentFile(body), save=False
        )
    version.save()
    Document.objects.filter(pk=document.pk).update(latest_version=version, updated_at=timezone.now())
    document.latest_version = version
    _stage_if_reviewed(document.knowledge_base, version, created_by)
    return version


def _stage_if_reviewed(knowledge_base: KnowledgeBase, version: DocumentVersion, created_by: User | None) -> None:
    """In a review-mode knowledge base a new version waits in the draft instead of going live."""
    if KnowledgeBase.objects.filter(pk=knowledge_base.pk, review_changes=True).exists():
        releases.draft_stage_version(version=version, created_by=created_by)


def _enqueue_ingest(version_id: int) -> None:
    from kb.tasks import document_ingest as document_ingest_task

    document_ingest_task.delay(version_id)


# --- ingestion -----------------------------------------------------------------------------


def _fail(version_id: int, code: str, message: str) -> None:
    DocumentVersion.objects.filter(pk=version_id).update(
        status=DocumentStatus.FAILED, error_code=code, error_message=message, finished_at=timezone.now()
    )


def _update(version_id: int, **fields: object) -> None:
    DocumentVersion.objects.filter(pk=version_id).update(heartbeat_at=timezone.now(), **fields)


def version_ingest(*, version_id: int, worker: str = "") -> None:
    """Run the whole pipeline for one version. Safe to call twice: a second call finds it claimed."""
    now = timezone.now()
    claimed = DocumentVersion.objects.filter(pk=version_id, status=DocumentStatus.QUEUED).update(
        status=DocumentStatus.PARSING,
        claimed_by=worker,
        started_at=now,
        heartbeat_at=now,
        attempts=F("attempts") + 1,
        error_code="",
        error_message="",
    )
    if claimed != 1:
        return  # gone, already done, or another worker has it
    version = DocumentVersion.objects.select_related("document__knowledge_base").get(pk=version_id)
    try:
        _ingest_claimed(version)
    except TransientEmbeddingError:
        # Hand it back to the queue; the task retries with backoff.
        DocumentVersion.objects.filter(pk=version_id).update(status=DocumentStatus.QUEUED)
        raise
    except ParseFailure as failure:
        _fail(version_id, failure.code, failure.message)
    except SoftTimeLimitExceeded:
        _fail(
            version_id,
            "timeout",
            f"Processing took longer than the {settings.GROUNDWORK_INGEST_TIME_LIMIT}-second limit. "
            "Try splitting the file into smaller parts.",
        )
    except EmbeddingError as exc:
        _fail(version_id, "embedding_failed", f"The embedding model could not process this document: {exc}")
    except Exception:
        logger.exception("Unexpected failure ingesting version %s", version_id)
        _fail(
            version_id,
            "internal_error",
            "Something unexpected went wrong while processing this document. Try re-indexing it; "
            "if it fails again, the server log has the details.",
        )


def _fetch_into_version(version: DocumentVersion) -> None:
    """For a web page: fetch it (outside any transaction) and store the body as the version's file."""
    from django.core.files.base import ContentFile

    from kb.webfetch import fetch_url

    page = fetch_url(version.document.source_url)
    name = f"page.{page.extension}"
    version.file.save(_safe_storage_name(version.document.organization_id, name), ContentFile(page.body), save=False)
    version.original_filename = name
    version.size_bytes = len(page.body)
    version.sha256 = hashlib.sha256(page.body).hexdigest()
    version.save(update_fields=["file", "original_filename", "size_bytes", "sha256"])
    document = version.document
    if document.title == document.source_url and page.extension == "html":
        match = re.search(rb"<title[^>]*>(.*?)</title>", page.body[:200_000], re.IGNORECASE | re.DOTALL)
        if match:
            title = html.unescape(" ".join(match.group(1).decode("utf-8", "replace").split()))[:500]
            if title:
                Document.objects.filter(pk=document.pk).update(title=title)
                document.title = title


def _ingest_claimed(version: DocumentVersion) -> None:
    from kb import ingestion

    knowledge_base = version.document.knowledge_base
    if version.document.source_type == SourceType.URL:
        _fetch_into_version(version)
    parsed = ingestion.parse_version(version)
    _update(
        version.pk,
        pages_total=parsed.page_count,
        pages_parsed=parsed.page_count or 0,
        file_type=parsed.file_type,
        warnings=parsed.warnings,
    )
    title = version.document.title
    sections, drafts = ingestion.chunk_parsed(parsed, knowledge_base=knowledge_base, title=title)
    if not drafts:
        raise ParseFailure("empty", "No text could be extracted from this document.")

    with transaction.atomic():
        # Idempotent: a retried run replaces what an interrupted one stored.
        term_stats.remove_live_version(version.pk)  # re-indexing the live version
        Chunk.objects.filter(version=version).delete()
        Section.objects.filter(version=version).delete()
        section_rows = Section.objects.bulk_create(
            [
                Section(
                    version=version,
                    ordinal=s.ordinal,
                    path=s.section_path,
                    text=s.text,
                    page_start=s.page_start,
                    page_end=s.page_end,
                )
                for s in sections
            ]
        )
        section_by_ordinal = {s.ordinal: s for s in section_rows}
        chunks = Chunk.objects.bulk_create(
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
                    content_hash=d.embedding_hash(title),
                )
                for d in drafts
            ]
        )
        DocumentVersion.objects.filter(pk=version.pk).update(
            status=DocumentStatus.EMBEDDING, chunks_total=len(chunks), chunks_embedded=0, heartbeat_at=timezone.now()
        )

    embedding_texts = {d.ordinal: d.embedding_text(title) for d in drafts}
    _embed_chunks(version, knowledge_base, chunks, embedding_texts)
    _fill_search_vectors(version, knowledge_base)
    version_publish(version_id=version.pk)


def _embed_chunks(
    version: DocumentVersion, knowledge_base: KnowledgeBase, chunks: list[Chunk], texts: dict[int, str]
) -> None:
    """Embed chunks in batches; identical text already embedded with this model is copied, not re-embedded."""
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
        _update(version.pk, chunks_embedded=done)

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
        _update(version.pk, chunks_embedded=done)


def _title_words(title: str) -> str:
    """A document title as words: "2023_Q2-MSFT.pdf" → "2023 Q2 MSFT"."""
    return re.sub(r"[_.\-]+", " ", re.sub(r"\.[A-Za-z][A-Za-z0-9]{0,4}$", "", title))


def _fill_search_vectors(version: DocumentVersion, knowledge_base: KnowledgeBase) -> None:
    """Keyword-search vectors: the chunk's text, its section path (headings match queries too) and
    the document's title (people name the document: "what does the travel policy say about …";
    on the 10-Q set this lifted keyword recall@10 from 0.86 to 0.94)."""
    title = Document.objects.values_list("title", flat=True).get(pk=version.document_id)
    config = knowledge_base.text_search_config
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE kb_chunk SET search_vector =
                setweight(to_tsvector(%(config)s::regconfig, %(title)s), 'C')
                || setweight(to_tsvector(%(config)s::regconfig, coalesce(section_path::text, '')), 'B')
                || setweight(to_tsvector(%(config)s::regconfig, text), 'A')
            WHERE version_id = %(version)s
            """,
            {"config": config, "title": _title_words(title), "version": version.pk},
        )


def version_publish(*, version_id: int) -> None:
    """Make a fully embedded version the live one of its document, atomically."""
    with transaction.atomic():
        version = DocumentVersion.objects.select_related("document").get(pk=version_id)
        document = Document.objects.select_for_update().get(pk=version.document_id)
        live = document.live_version
        staged = releases.version_is_staged(version_id)
        if staged or (live is not None and live.number > version.number):
            # Staged: it waits in the draft. Older: a newer version went live while this one was
            # processing; keep this one as history.
            DocumentVersion.objects.filter(pk=version_id).update(
                status=DocumentStatus.READY, finished_at=timezone.now(), heartbeat_at=timezone.now()
            )
            return
        action = "add" if live is None else ("replace" if live.pk != version_id else "")
        term_stats.remove_live_document(document.pk)
        Chunk.objects.filter(document=document, is_live=True).exclude(version_id=version_id).update(is_live=False)
        Chunk.objects.filter(version_id=version_id).update(is_live=document.enabled)
        term_stats.add_live_version(version_id)
        document.live_version_id = version_id
        document.save(update_fields=["live_version", "updated_at"])
        DocumentVersion.objects.filter(pk=version_id).update(
            status=DocumentStatus.READY, finished_at=timezone.now(), heartbeat_at=timezone.now()
        )
        if action:  # a re-index of the live version changes nothing a release records
            releases.release_record(
                knowledge_base=document.knowledge_base,
                changes=[releases.change_entry(document, action)],
                actor=releases.Actor(user=version.created_by, label=getattr(version.created_by, "email", "system")),
            )


def document_set_enabled(*, document: Document, enabled: bool, actor: releases.Actor | None = None) -> Document:
    """Include or exclude a document from retrieval (at once, or in the draft in review mode)."""
    with transaction.atomic():
        document = Document.objects.select_for_update().get(pk=document.pk)
        if document.knowledge_base.review_changes and document.live_version_id is not None:
            releases.draft_stage_enabled(document=document, enabled=enabled, created_by=actor.user if actor else None)
            return document
        if document.enabled == enabled:
            return document
        document.enabled = enabled
        document.save(update_fields=["enabled", "updated_at"])
        if document.live_version_id is not None:
            if not enabled:
                term_stats.remove_live_version(document.live_version_id)
            Chunk.objects.filter(version_id=document.live_version_id).update(is_live=enabled)
            if enabled:
                term_stats.add_live_version(document.live_version_id)
            releases.release_record(
                knowledge_base=document.knowledge_base,
                changes=[releases.change_entry(document, "enable" if enabled else "disable")],
                actor=actor,
            )
    return document


def document_rename(*, document: Document, title: str) -> Document:
    """Change the title people and citations see (the search vectors keep the title they were built with)."""
    title = title.strip()[:500] or document.title
    Document.objects.filter(pk=document.pk).update(title=title, updated_at=timezone.now())
    document.title = title
    return document


def document_delete(*, document: Document, actor: releases.Actor | None = None) -> None:
    """Take a document out of the knowledge base; it leaves retrieval at once (or with the draft).

    A document that went live stays restorable with an earlier release (its rows are kept,
    soft-deleted, until no kept release refers to it); one that never went live goes for good.
    """
    with transaction.atomic():
        kb = KnowledgeBase.objects.select_for_update().get(pk=document.knowledge_base_id)
        document = Document.objects.select_for_update().get(pk=document.pk)  # no publish in between
        if document.live_version_id is None:
            DraftChange.objects.filter(document=document).delete()
            releases.document_delete_for_good(document)
            return
        if kb.review_changes:
            releases.draft_stage_delete(document=document, created_by=actor.user if actor else None)
            return
        DraftChange.objects.filter(document=document).delete()
        target = releases.live_manifest(kb)
        target.pop(document.pk, None)
        changes = releases.manifest_apply(kb, target)
        releases.release_record(knowledge_base=kb, changes=changes, actor=actor)


def version_requeue(*, version: DocumentVersion) -> DocumentVersion:
    """Re-run ingestion of a version (re-index button, or recovery of a stuck one)."""
    DocumentVersion.objects.filter(pk=version.pk).update(
        status=DocumentStatus.QUEUED, error_code="", error_message="", heartbeat_at=timezone.now()
    )
    transaction.on_commit(lambda: _enqueue_ingest(version.pk))
    version.refresh_from_db()
    return version


def documents_recover_stuck() -> int:
    """Find versions whose worker went silent and re-queue them (or fail them after too many tries).

    A worker killed mid-document leaves its version in PARSING/EMBEDDING with an old heartbeat;
    queued ones whose message was lost stay QUEUED. Returns how many were touched.
    """
    deadline = timezone.now() - timedelta(seconds=settings.GROUNDWORK_STUCK_AFTER_SECONDS)
    stuck = DocumentVersion.objects.filter(
        status__in=(DocumentStatus.QUEUED, DocumentStatus.PARSING, DocumentStatus.EMBEDDING),
        heartbeat_at__lt=deadline,
    )
    touched = 0
    for version in stuck:
        if version.attempts >= settings.GROUNDWORK_MAX_ATTEMPTS:
            _fail(
                version.pk,
                "stuck",
                f"Processing stopped responding {version.attempts} times; the file may be too large or complex. "
                "Try splitting it, or re-index to try again.",
            )
        else:
            with transaction.atomic():
                version_requeue(version=version)
        touched += 1
    return touched


def documents_recover_after_worker_restart(*, worker: str) -> int:
    """Re-queue what a worker node had claimed before it died, and re-send queued work.

    Called when a worker node starts: anything still claimed under its name belongs to a previous
    incarnation that was killed. With late acks Redis would redeliver its messages only after the
    visibility timeout (an hour); this brings them back at once. Re-sending a task for a QUEUED
    version is harmless: the claim is a conditional update, so only one run does the work.
    """
    orphaned = list(
        DocumentVersion.objects.filter(
            status__in=(DocumentStatus.PARSING, DocumentStatus.EMBEDDING), claimed_by=worker
        ).exclude(claimed_by="")
    )
    for version in orphaned:
        with transaction.atomic():
            version_requeue(version=version)
    queued = list(DocumentVersion.objects.filter(status=DocumentStatus.QUEUED).values_list("pk", flat=True))
    for version_id in queued:
        _enqueue_ingest(version_id)
    return len(orphaned)


def stored_file_path(version: DocumentVersion) -> Path:
    return Path(os.fspath(version.file.path))


# --- changing the embedding model ------------------------------------------------------------


def knowledge_base_change_embedding_model(*, knowledge_base: KnowledgeBase, model: str) -> KnowledgeBase:
    """Start re-embedding every chunk with `model` in the background; old vectors keep serving."""
    model = model.strip()
    if model == knowledge_base.embedding_model and not knowledge_base.reembed_model:
        return knowledge_base
    try:
        dims = embedding_api.embedding_dimensions(model)
    except EmbeddingError as exc:
        raise KnowledgeBaseError("embedding_model_unusable", f"The model {model} cannot be used: {exc}") from exc
    ensure_vector_index(dims)
    with transaction.atomic():
        Chunk.objects.filter(knowledge_base=knowledge_base).update(next_embedding=None)
        KnowledgeBase.objects.filter(pk=knowledge_base.pk).update(
            reembed_model=model,
            reembed_dims=dims,
            reembed_done=0,
            reembed_total=Chunk.objects.filter(knowledge_base=knowledge_base).count(),
            reembed_error="",
        )
        transaction.on_commit(lambda: _enqueue_reembed(knowledge_base.pk))
    knowledge_base.refresh_from_db()
    return knowledge_base


def _enqueue_reembed(knowledge_base_id: int) -> None:
    from kb.tasks import knowledge_base_reembed as knowledge_base_reembed_task

    knowledge_base_reembed_task.delay(knowledge_base_id)


def _embedding_text(chunk: Chunk) -> str:
    from kb.chunking import PATH_SEPARATOR

    path = [chunk.document.title, *chunk.section_path]
    return PATH_SEPARATOR.join(path) + "\n\n" + chunk.text


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
                vectors = embedding_api.embed_passages([_embedding_text(c) for c in batch], model=kb.reembed_model)
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
