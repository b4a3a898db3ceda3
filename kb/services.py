"""Writes people ask for on knowledge bases and documents.

Create and update knowledge bases, upload files, add text, Q&A pairs and web pages, replace,
re-index, enable/disable and delete documents, and request an embedding-model change. Processing
itself is the ingestion pipeline (`kb.pipeline`), started through `kb.tasks` once the write commits.

Every write that a person makes through an interface takes that person's `actor` (the request's
`OrgContext`) and records the audit event here, so views and APIs never do; callers without a
person behind them (imports, the demo seed, evaluation) pass none and nothing is audited.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import PurePath
from typing import IO, Any

from django.conf import settings
from django.core.files.base import ContentFile, File
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts.models import Organization, User
from accounts.selectors import OrgContext
from accounts.services import audit_record
from kb import embedding as embedding_api
from kb import releases
from kb.exceptions import EmbeddingError, KnowledgeBaseError, UploadRejected
from kb.languages import Language, config_for_language
from kb.models import Chunk, Document, DocumentStatus, DocumentVersion, DraftChange, KnowledgeBase, SourceType
from kb.pipeline.fetch import check_url_allowed
from kb.pipeline.index import term_stats
from kb.pipeline.index.vector_indexes import ensure_vector_index
from kb.pipeline.job import requeue
from kb.search_settings import (
    knowledge_base_change_embedding_model,
    knowledge_base_change_language,
    precise_ranking_starts,
)
from kb.storage import safe_storage_name, sha256_of
from kb.tasks import enqueue_ingest, enqueue_ranking_fill

logger = logging.getLogger(__name__)


# --- knowledge bases -----------------------------------------------------------------------


def _name_taken(name: str) -> KnowledgeBaseError:
    return KnowledgeBaseError("name_taken", f"A knowledge base called “{name}” already exists. Choose another name.")


def knowledge_base_create(
    *,
    organization: Organization,
    name: str,
    created_by: User | None,
    description: str = "",
    embedding_model: str | None = None,
    language: str = Language.ENGLISH,
    chunk_size: int = 1200,
    chunk_overlap: int = 150,
    actor: OrgContext | None = None,
) -> KnowledgeBase:
    """Create a knowledge base. `language` sets keyword search's stemming and stop words (and the
    local answerer's); a multilingual embedding model (`local/e5`) matches across languages."""
    if language not in Language.values:
        raise KnowledgeBaseError("language_unknown", f"Unknown language {language!r}; choose one from the list.")
    name = name.strip()
    if KnowledgeBase.objects.filter(organization=organization, name__iexact=name).exists():
        raise _name_taken(name)
    model = (embedding_model or settings.GROUNDWORK_EMBEDDING_MODEL).strip()
    try:
        dims = embedding_api.embedding_dimensions(model)
    except EmbeddingError as exc:  # an unknown or unreachable model is the caller's input, not a crash
        raise KnowledgeBaseError("embedding_model_unusable", f"The model {model} cannot be used: {exc}") from exc
    ensure_vector_index(dims)
    knowledge_base = KnowledgeBase.objects.create(
        organization=organization,
        name=name,
        description=description,
        embedding_model=model,
        embedding_dims=dims,
        language=language,
        text_search_config=config_for_language(language),
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        created_by=created_by,
    )
    if actor is not None:
        audit_record(context=actor, action="knowledge_base.create", target=knowledge_base)
    return knowledge_base


@dataclass(frozen=True)
class KnowledgeBaseUpdate:
    knowledge_base: KnowledgeBase
    reembedding: bool  # True when a model change started re-embedding in the background


def knowledge_base_update(
    *, knowledge_base: KnowledgeBase, changes: dict[str, Any], actor: OrgContext | None = None
) -> KnowledgeBaseUpdate:
    """Rename or describe a knowledge base, or change its embedding model (re-embeds in the background).

    `changes` holds the fields given (`name`, `description`, `embedding_model`, `language`,
    `review_changes`, `publish_min_pass_rate`, `precise_ranking`); the audit event names all of them.
    Turning precise ranking on fills the ranking vectors in the background (kb.precise_ranking).
    """
    if "language" in changes and changes["language"] not in Language.values:
        raise KnowledgeBaseError(
            "language_unknown", f"Unknown language {changes['language']!r}; choose one from the list."
        )
    if "name" in changes:
        changes = {**changes, "name": changes["name"].strip()}
        taken = KnowledgeBase.objects.filter(
            organization_id=knowledge_base.organization_id, name__iexact=changes["name"]
        ).exclude(pk=knowledge_base.pk)
        if taken.exists():
            raise _name_taken(changes["name"])
    starts_ranking = precise_ranking_starts(knowledge_base=knowledge_base, changes=changes)
    for field in ("name", "description", "review_changes", "publish_min_pass_rate", "precise_ranking"):
        if field in changes:
            setattr(knowledge_base, field, changes[field])
    try:
        with transaction.atomic():
            knowledge_base.save()
            if starts_ranking:
                pk = knowledge_base.pk
                transaction.on_commit(lambda: enqueue_ranking_fill(pk))
    except IntegrityError:  # renamed by a concurrent request between the check and the save
        raise _name_taken(changes.get("name", knowledge_base.name)) from None
    if "language" in changes and changes["language"] != knowledge_base.language:
        knowledge_base = knowledge_base_change_language(knowledge_base=knowledge_base, language=changes["language"])
    reembedding = False
    if "embedding_model" in changes and changes["embedding_model"] != knowledge_base.embedding_model:
        knowledge_base = knowledge_base_change_embedding_model(
            knowledge_base=knowledge_base, model=changes["embedding_model"]
        )
        reembedding = True
    if actor is not None:
        audit_record(
            context=actor, action="knowledge_base.update", target=knowledge_base, detail={"fields": sorted(changes)}
        )
    return KnowledgeBaseUpdate(knowledge_base=knowledge_base, reembedding=reembedding)


# --- documents -----------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadResult:
    document: Document
    version: DocumentVersion
    created: bool  # False when the bytes were already in this knowledge base (nothing queued)


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
    actor: OrgContext | None = None,
) -> UploadResult:
    """Store an uploaded file and queue it for ingestion.

    - Byte-identical to a version already in this knowledge base: nothing is queued, the existing
      document is returned (`created=False`).
    - Same file name as an existing document (or `replace_document` given): a new version of it;
      the old version keeps answering until the new one is ready.
    - Otherwise: a new document.

    Audited as `document.upload` when something new was stored; a replacement is audited as
    `document.replace` whatever its outcome (a person asked for it).
    """
    if actor is not None and replace_document is not None:
        audit_record(context=actor, action="document.replace", target=replace_document)
    filename = _clean_filename(filename)
    sha256, size = sha256_of(upload)
    if size == 0:
        raise UploadRejected("empty_file", f"“{filename}” is empty (0 bytes). Choose a file with content.")
    if size > settings.GROUNDWORK_MAX_UPLOAD_BYTES:
        limit_mb = settings.GROUNDWORK_MAX_UPLOAD_BYTES / (1024 * 1024)
        raise UploadRejected("too_large", f"“{filename}” is larger than the {limit_mb:g} MB upload limit.")

    duplicate = (
        DocumentVersion.objects.select_related("document")
        .filter(document__knowledge_base=knowledge_base, document__deleted_at__isnull=True, sha256=sha256)
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
        version.file.save(safe_storage_name(knowledge_base.organization_id, filename), File(upload), save=False)
        version.save()
        document.latest_version = version
        document.save(update_fields=["latest_version", "updated_at"])
        stage_if_reviewed(knowledge_base, version, uploaded_by)
        if enqueue:  # False: the caller runs `version_ingest` itself (imports, evaluation)
            transaction.on_commit(lambda: enqueue_ingest(version.pk))
    if actor is not None and replace_document is None:
        audit_record(context=actor, action="document.upload", target=document)
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
    actor: OrgContext | None = None,
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
            transaction.on_commit(lambda: enqueue_ingest(version.pk))
    if actor is not None:
        audit_record(context=actor, action=f"document.add_{SourceType(source_type).value}", target=document)
    return UploadResult(document=document, version=version, created=True)


def qa_entry_create(
    *,
    knowledge_base: KnowledgeBase,
    question: str,
    answer: str,
    created_by: User | None,
    enqueue: bool = True,
    actor: OrgContext | None = None,
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
        actor=actor,
    )


def document_add_url(
    *,
    knowledge_base: KnowledgeBase,
    url: str,
    created_by: User | None,
    enqueue: bool = True,
    actor: OrgContext | None = None,
) -> UploadResult:
    """Queue one web page for import; the worker fetches it (see `kb.pipeline.fetch`)."""
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
            transaction.on_commit(lambda: enqueue_ingest(version.pk))
    if actor is not None:
        audit_record(context=actor, action="document.add_url", target=document)
    return UploadResult(document=document, version=version, created=existing is None)


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _new_version(
    document: Document, *, filename: str, body: bytes | None, created_by: User | None, sha256: str | None = None
) -> DocumentVersion:
    """Append a version to `document` (locked) and make it the latest."""
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
            safe_storage_name(document.organization_id, filename or "text.txt"), ContentFile(body), save=False
        )
    version.save()
    Document.objects.filter(pk=document.pk).update(latest_version=version, updated_at=timezone.now())
    document.latest_version = version
    stage_if_reviewed(document.knowledge_base, version, created_by)
    return version


def stage_if_reviewed(knowledge_base: KnowledgeBase, version: DocumentVersion, created_by: User | None) -> None:
    """In a review-mode knowledge base a new version waits in the draft instead of going live."""
    if KnowledgeBase.objects.filter(pk=knowledge_base.pk, review_changes=True).exists():
        releases.draft_stage_version(version=version, created_by=created_by)


# --- enable, re-index, delete ----------------------------------------------------------------


def document_set_enabled(*, document: Document, enabled: bool, actor: OrgContext | None = None) -> Document:
    """Include or exclude a document from retrieval (at once, or with the draft in review mode)."""
    if actor is not None:
        audit_record(context=actor, action=f"document.{'enable' if enabled else 'disable'}", target=document)
    with transaction.atomic():
        document = Document.objects.select_for_update().get(pk=document.pk)
        if document.knowledge_base.review_changes and document.live_version_id is not None:
            releases.draft_stage_enabled(document=document, enabled=enabled, created_by=getattr(actor, "user", None))
            return document
        if document.enabled == enabled:
            return document
        document.enabled = enabled
        document.save(update_fields=["enabled", "updated_at"])
        if document.live_version_id is None and not enabled:
            # A long new document searchable by its words while it embeds leaves search now; the
            # publish at the end of its ingestion honours the switch.
            term_stats.remove_live_document(document.pk)
            Chunk.objects.filter(document=document, is_live=True).update(is_live=False)
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


def document_rename(*, document: Document, title: str, actor: OrgContext | None = None) -> Document:
    """Change the title people and citations see (search vectors keep the title they were built with)."""
    title = title.strip()[:500] or document.title
    Document.objects.filter(pk=document.pk).update(title=title, updated_at=timezone.now())
    document.title = title
    if actor is not None:
        audit_record(context=actor, action="document.rename", target=document)
    return document


def document_delete(*, document: Document, actor: OrgContext | None = None) -> None:
    """Take a document out of its knowledge base; it leaves retrieval at once (or with the draft).

    A document that went live stays restorable with an earlier release (its rows are kept,
    soft-deleted, until no kept release refers to it); one that never went live goes for good.
    """
    if actor is not None:
        audit_record(context=actor, action="document.delete", target=document)  # while it still has its id
    with transaction.atomic():
        kb = KnowledgeBase.objects.select_for_update().get(pk=document.knowledge_base_id)
        document = Document.objects.select_for_update().get(pk=document.pk)  # no publish in between
        if document.live_version_id is None:
            DraftChange.objects.filter(document=document).delete()
            term_stats.remove_live_document(document.pk)  # searchable by its words while it embedded
            releases.document_delete_for_good(document)
            return
        if kb.review_changes:
            releases.draft_stage_delete(document=document, created_by=getattr(actor, "user", None))
            return
        DraftChange.objects.filter(document=document).delete()
        target = releases.live_manifest(kb)
        target.pop(document.pk, None)
        changes = releases.manifest_apply(kb, target)
        releases.release_record(knowledge_base=kb, changes=changes, actor=actor)


def version_requeue(*, version: DocumentVersion, actor: OrgContext | None = None) -> DocumentVersion:
    """Re-run ingestion of a version (the re-index button)."""
    if actor is not None:
        audit_record(context=actor, action="document.reindex", target=version.document)
    requeue(version.pk)
    transaction.on_commit(lambda: enqueue_ingest(version.pk))
    version.refresh_from_db()
    return version
