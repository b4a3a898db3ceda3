"""Releases and drafts: what a knowledge base knows, numbered, reviewable and reversible.

Every change of what is live creates a numbered `Release` holding the whole live state (its
manifest: document -> version and enabled flag). In a knowledge base in *review* mode changes do
not go live: they wait as `DraftChange` rows (one per document) while their versions are parsed
and embedded as usual, and go live together when the draft is published.

    instant mode:  change ──► live ──► release N+1
    review mode:   change ──► draft ──► (evaluate, replay) ──► publish ──► release N+1
                                    └──► discard
    any mode:      restore release K ──► live = K's manifest ──► release N+1 ("restored from K")

Making a manifest live flips `Chunk.is_live` for exactly the documents that differ, with their
BM25 statistics, in one transaction under the knowledge base's row lock: a search sees the old
state or the new one, never a mix (chunk_search reads in one snapshot).

Storage: a release is a small JSON manifest. A deleted document stays (soft-deleted, its chunks
not live) while one of the last `GROUNDWORK_RELEASES_KEPT` releases refers to it; older releases
and documents no kept release refers to are removed by `releases_prune`. Earlier versions of a
living document are kept as before: citations of past answers point at their chunks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from accounts.services import audit_record
from kb.exceptions import KnowledgeBaseError
from kb.models import Chunk, Document, DocumentStatus, DocumentVersion, DraftChange, KnowledgeBase, Release
from kb.pipeline.index import term_stats

logger = logging.getLogger(__name__)

Manifest = dict[int, tuple[int, bool]]  # document id -> (version id, enabled)


class DraftNotReady(KnowledgeBaseError):
    """The draft cannot be published yet (documents still processing, or failed)."""


@dataclass(frozen=True)
class Actor:
    """Who made a change, for the release record."""

    user: User | None = None
    label: str = "system"


def actor_from_context(context: Any) -> Actor:
    """The release's author from a request's OrgContext (user or API key); an Actor passes through."""
    if isinstance(context, Actor):
        return context
    user = getattr(context, "user", None)
    api_key = getattr(context, "api_key", None)
    if user is not None:
        return Actor(user=user, label=user.email)
    if api_key is not None:
        return Actor(label=f"API key {api_key.name}")
    return Actor()


# --- reading the live state ------------------------------------------------------------------


def live_manifest(knowledge_base: KnowledgeBase) -> Manifest:
    """The knowledge base's current state: every document with a live version, and its switch."""
    rows = Document.objects.filter(knowledge_base=knowledge_base, live_version__isnull=False).values_list(
        "pk", "live_version_id", "enabled"
    )
    return {pk: (version_id, enabled) for pk, version_id, enabled in rows}


def _manifest_to_json(manifest: Manifest) -> dict[str, dict[str, Any]]:
    return {str(doc): {"version": version, "enabled": enabled} for doc, (version, enabled) in manifest.items()}


def _manifest_from_json(data: dict[str, Any]) -> Manifest:
    return {int(doc): (int(entry["version"]), bool(entry["enabled"])) for doc, entry in data.items()}


def _lock(knowledge_base: KnowledgeBase) -> KnowledgeBase:
    return KnowledgeBase.objects.select_for_update().get(pk=knowledge_base.pk)


# --- recording releases ----------------------------------------------------------------------


def release_record(
    *,
    knowledge_base: KnowledgeBase,
    changes: list[dict[str, Any]],
    actor: Any = None,
    summary: str = "",
    evaluation: dict[str, Any] | None = None,
    restored_from: int | None = None,
) -> Release:
    """Number the current live state as a new release. Call inside the transaction of the change.

    `actor`: the request's OrgContext, an Actor, or None (the system).
    """
    actor = actor_from_context(actor)
    kb = _lock(knowledge_base)
    number = kb.release_number + 1
    if not summary:
        summary = _summarise(changes)
    release = Release.objects.create(
        knowledge_base=kb,
        number=number,
        manifest=_manifest_to_json(live_manifest(kb)),
        changes=changes,
        summary=summary[:500],
        evaluation=evaluation or {},
        restored_from=restored_from,
        created_by=actor.user,
        created_by_label=actor.label,
    )
    KnowledgeBase.objects.filter(pk=kb.pk).update(release_number=number)
    knowledge_base.release_number = number
    transaction.on_commit(lambda: releases_prune(knowledge_base_id=kb.pk))
    return release


def _summarise(changes: list[dict[str, Any]]) -> str:
    if not changes:
        return "No changes"
    parts = [f"{c['action']} “{c.get('title', c['document_id'])}”" for c in changes[:3]]
    more = f" and {len(changes) - 3} more" if len(changes) > 3 else ""
    return (", ".join(parts) + more)[:1].upper() + (", ".join(parts) + more)[1:]


def _audit(actor: Any, action: str, knowledge_base: KnowledgeBase, detail: dict[str, Any]) -> None:
    """Staff actions are audited (the pipeline's own releases are not: no one asked for them)."""
    if actor is not None and not isinstance(actor, Actor):
        audit_record(context=actor, action=action, target=knowledge_base, detail=detail)


def change_entry(document: Document, action: str) -> dict[str, Any]:
    return {"document_id": document.pk, "title": document.title, "action": action}


# --- making a state live ---------------------------------------------------------------------


def manifest_apply(kb: KnowledgeBase, target: Manifest) -> list[dict[str, Any]]:
    """Make `target` the live state (caller holds the knowledge base lock, inside atomic()).

    Returns the changes made, one entry per document that differs.
    """
    current = live_manifest(kb)
    changes: list[dict[str, Any]] = []
    documents = Document.all_objects.in_bulk(list(set(current) | set(target)))
    for doc_id in sorted(set(current) | set(target)):
        document = documents.get(doc_id)
        if document is None:
            continue
        now_state = current.get(doc_id)
        new_state = target.get(doc_id)
        if now_state == new_state:
            continue
        Document.all_objects.select_for_update().filter(pk=doc_id).first()
        if now_state is not None and now_state[1]:
            term_stats.remove_live_version(now_state[0])
        Chunk.objects.filter(document_id=doc_id, is_live=True).update(is_live=False)
        if new_state is None:
            Document.all_objects.filter(pk=doc_id).update(deleted_at=timezone.now(), updated_at=timezone.now())
            changes.append(change_entry(document, "delete"))
            continue
        version_id, enabled = new_state
        if enabled:
            Chunk.objects.filter(version_id=version_id).update(is_live=True)
            term_stats.add_live_version(version_id)
        Document.all_objects.filter(pk=doc_id).update(
            live_version_id=version_id, enabled=enabled, deleted_at=None, updated_at=timezone.now()
        )
        if now_state is None or document.deleted_at is not None:
            action = "restore" if document.deleted_at is not None else "add"
        elif now_state[0] != version_id:
            action = "replace"
        else:
            action = "enable" if enabled else "disable"
        changes.append(change_entry(document, action))
    return changes


def release_restore(*, knowledge_base: KnowledgeBase, number: int, actor: Any = None) -> Release:
    """Make release `number`'s state live again, atomically, as a new release."""
    with transaction.atomic():
        kb = _lock(knowledge_base)
        release = Release.objects.filter(knowledge_base=kb, number=number).first()
        if release is None:
            raise KnowledgeBaseError(
                "no_release", f"Release {number} does not exist or is older than the kept releases."
            )
        target = _manifest_from_json(release.manifest)
        missing = [doc for doc in target if not Document.all_objects.filter(pk=doc).exists()]
        if missing:
            raise KnowledgeBaseError(
                "release_incomplete", f"Release {number} refers to documents that were removed for good."
            )
        changes = manifest_apply(kb, target)
        release = release_record(
            knowledge_base=kb,
            changes=changes,
            actor=actor,
            summary=f"Restored release {number}",
            restored_from=number,
        )
        _audit(actor, "knowledge_base.restore", kb, {"from": number, "release": release.number})
        return release


# --- the draft -------------------------------------------------------------------------------


def draft_stage_version(*, version: DocumentVersion, created_by: User | None = None) -> DraftChange:
    """Put a new version into its knowledge base's draft instead of letting it go live."""
    document = version.document
    change, _ = DraftChange.objects.update_or_create(
        knowledge_base_id=document.knowledge_base_id,
        document=document,
        defaults={"version": version, "remove": False, "created_by": created_by},
    )
    return change


def draft_stage_enabled(*, document: Document, enabled: bool, created_by: User | None = None) -> DraftChange | None:
    change = DraftChange.objects.filter(knowledge_base_id=document.knowledge_base_id, document=document).first()
    if change is None:
        if document.enabled == enabled:
            return None
        change = DraftChange(knowledge_base_id=document.knowledge_base_id, document=document, created_by=created_by)
    change.enabled = None if (document.enabled == enabled and change.version_id is None) else enabled
    change.remove = False
    if change.enabled is None and change.version_id is None:
        if change.pk:
            DraftChange.objects.filter(pk=change.pk).delete()
        return None
    change.save()
    return change


def draft_stage_delete(*, document: Document, created_by: User | None = None) -> DraftChange | None:
    """Stage a deletion. A document that never went live is simply removed."""
    if document.live_version_id is None:
        return None
    change, _ = DraftChange.objects.update_or_create(
        knowledge_base_id=document.knowledge_base_id,
        document=document,
        defaults={"remove": True, "created_by": created_by},
    )
    return change


def version_is_staged(version_id: int) -> bool:
    return DraftChange.objects.filter(version_id=version_id).exists()


def draft_changes(knowledge_base: KnowledgeBase) -> list[DraftChange]:
    return list(
        DraftChange.objects.filter(knowledge_base=knowledge_base).select_related("document", "version").order_by("pk")
    )


def draft_status(change: DraftChange) -> str:
    """The ingestion status the draft shows: the staged version's, else ready (nothing to process)."""
    return change.version.status if change.version is not None else DocumentStatus.READY


def draft_manifest(knowledge_base: KnowledgeBase, *, ready_only: bool = True) -> Manifest:
    """The state the knowledge base would have if the draft were published now."""
    manifest = live_manifest(knowledge_base)
    for change in draft_changes(knowledge_base):
        doc = change.document_id
        if change.remove:
            manifest.pop(doc, None)
            continue
        version_id, enabled = manifest.get(doc, (None, change.document.enabled))
        if change.version_id is not None and (not ready_only or draft_status(change) == DocumentStatus.READY):
            version_id = change.version_id
        if change.enabled is not None:
            enabled = change.enabled
        if version_id is not None:
            manifest[doc] = (version_id, enabled)
    return manifest


def draft_version_ids(knowledge_base: KnowledgeBase) -> list[int]:
    """The versions a search of the draft reads (enabled documents only)."""
    return [version for version, enabled in draft_manifest(knowledge_base).values() if enabled]


def draft_publish(
    *, knowledge_base: KnowledgeBase, actor: Any = None, evaluation: dict[str, Any] | None = None
) -> Release:
    """Make the whole draft live in one transaction and record it as a release."""
    with transaction.atomic():
        kb = _lock(knowledge_base)
        changes = draft_changes(kb)
        if not changes:
            raise DraftNotReady("draft_empty", "The draft is empty: there is nothing to publish.")
        waiting = [c for c in changes if draft_status(c) != DocumentStatus.READY]
        if waiting:
            failed = [c for c in waiting if draft_status(c) == DocumentStatus.FAILED]
            if failed:
                raise DraftNotReady(
                    "draft_failed",
                    f"“{failed[0].document.title}” failed to process: fix or discard it before publishing.",
                )
            raise DraftNotReady(
                "draft_processing", f"{len(waiting)} document(s) of the draft are still processing; publish when ready."
            )
        applied = manifest_apply(kb, draft_manifest(kb, ready_only=False))
        for change in changes:
            if change.version_id is not None:
                DocumentVersion.objects.filter(pk=change.version_id).update(finished_at=timezone.now())
        DraftChange.objects.filter(knowledge_base=kb).delete()
        return release_record(knowledge_base=kb, changes=applied, actor=actor, evaluation=evaluation)


def draft_discard(*, knowledge_base: KnowledgeBase, actor: Any = None) -> int:
    """Drop every staged change; documents that were only in the draft are removed."""
    with transaction.atomic():
        kb = _lock(knowledge_base)
        changes = draft_changes(kb)
        for change in changes:
            document = change.document
            if change.version_id is not None:
                if document.live_version_id is None:
                    Document.all_objects.filter(pk=document.pk).delete()
                    continue
                DocumentVersion.objects.filter(pk=change.version_id).delete()
                Document.all_objects.filter(pk=document.pk).update(latest_version_id=document.live_version_id)
        DraftChange.objects.filter(knowledge_base=kb).delete()
        _audit(actor, "knowledge_base.discard_draft", kb, {"changes": len(changes)})
        return len(changes)


# --- the publish gate ------------------------------------------------------------------------


def draft_evaluation_record(*, knowledge_base: KnowledgeBase, summary: dict[str, Any]) -> None:
    """Remember the latest evaluation of this knowledge base's draft (for the gate and the release).

    `summary` holds at least `pass_rate` and `must_refuse_answered`; the time is added here so a
    draft changed after its evaluation needs a new one.
    """
    stamped = {**summary, "at": timezone.now().isoformat()}
    KnowledgeBase.objects.filter(pk=knowledge_base.pk).update(draft_evaluation=stamped)
    knowledge_base.draft_evaluation = stamped


def publish_gate(knowledge_base: KnowledgeBase) -> dict[str, Any]:
    """Whether the gate lets the draft through: {"enabled", "open", "reason", "evaluation"}."""
    minimum = knowledge_base.publish_min_pass_rate
    evaluation = knowledge_base.draft_evaluation or {}
    if minimum is None:
        return {"enabled": False, "open": True, "reason": "", "evaluation": evaluation}
    last_change = (
        DraftChange.objects.filter(knowledge_base=knowledge_base)
        .order_by("-updated_at")
        .values_list("updated_at", flat=True)
        .first()
    )
    reason = ""
    if not evaluation:
        reason = "The draft has not been evaluated: run the test set against the draft first."
    elif last_change is not None and last_change.isoformat() > str(evaluation.get("at", "")):
        reason = "The draft changed after its last evaluation: evaluate it again."
    elif float(evaluation.get("pass_rate") or 0.0) < minimum:
        reason = (
            f"The draft's evaluation passed {float(evaluation.get('pass_rate') or 0.0):.0%} of the test cases; "
            f"publishing needs {minimum:.0%}."
        )
    elif int(evaluation.get("must_refuse_answered") or 0) > 0:
        reason = f"The draft answered {evaluation['must_refuse_answered']} question(s) it must refuse."
    return {"enabled": True, "open": not reason, "reason": reason, "evaluation": evaluation}


def draft_publish_gated(
    *, knowledge_base: KnowledgeBase, actor: Any, override: bool = False, may_override: bool = False
) -> Release:
    """Publish the draft unless the gate blocks it; an owner may override (recorded on the release)."""
    gate = publish_gate(knowledge_base)
    if not gate["open"]:
        if not override:
            raise DraftNotReady("gate_blocked", f"Publishing is blocked: {gate['reason']}")
        if not may_override:
            raise DraftNotReady(
                "gate_blocked", f"Publishing is blocked: {gate['reason']} Only an owner can override the gate."
            )
    evaluation = dict(gate["evaluation"])
    if not gate["open"]:
        evaluation["override"] = True
    release = draft_publish(knowledge_base=knowledge_base, actor=actor, evaluation=evaluation)
    KnowledgeBase.objects.filter(pk=knowledge_base.pk).update(draft_evaluation={})
    _audit(actor, "knowledge_base.publish", knowledge_base, {"release": release.number, "override": not gate["open"]})
    return release


# --- bounding storage ------------------------------------------------------------------------


def releases_prune(*, knowledge_base_id: int) -> int:
    """Forget releases beyond the kept number and delete documents none of the rest refers to."""
    keep = settings.GROUNDWORK_RELEASES_KEPT
    with transaction.atomic():
        kb = KnowledgeBase.objects.select_for_update().filter(pk=knowledge_base_id).first()
        if kb is None:
            return 0
        kept = list(Release.objects.filter(knowledge_base=kb).order_by("-number")[:keep])
        if len(kept) == keep:
            Release.objects.filter(knowledge_base=kb, number__lt=kept[-1].number).delete()
        referenced = {int(doc) for release in kept for doc in release.manifest}
        gone = list(
            Document.all_objects.filter(knowledge_base=kb, deleted_at__isnull=False)
            .exclude(pk__in=referenced)
            .exclude(pk__in=DraftChange.objects.filter(knowledge_base=kb).values("document_id"))
        )
        for document in gone:
            document_delete_for_good(document)
        return len(gone)


def document_delete_for_good(document: Document) -> None:
    files = [v.file.name for v in document.versions.all() if v.file]
    storage = DocumentVersion._meta.get_field("file").storage  # type: ignore[attr-defined]
    Document.all_objects.filter(pk=document.pk).delete()
    for name in files:
        transaction.on_commit(lambda name=name: _delete_file(storage, name))  # type: ignore[misc]


def _delete_file(storage: Any, name: str) -> None:
    try:
        storage.delete(name)
    except Exception:  # an OSError, or an object store's client error: the rows are gone either way
        logger.warning("Could not delete stored file %s", name, exc_info=True)
