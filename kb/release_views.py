"""Staff UI for a knowledge base's draft and releases: review mode, publish, discard, restore, "as of"."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.decorators import org_required
from accounts.permissions import Action
from accounts.selectors import OrgContext
from kb import releases, selectors, services
from kb.exceptions import KnowledgeBaseError
from kb.models import Document, KnowledgeBase, Release


def _kb_or_404(context: OrgContext, kb_id: int) -> KnowledgeBase:
    kb = selectors.knowledge_base_get(organization=context.organization, pk=kb_id)
    if kb is None:
        raise Http404("No such knowledge base.")
    return kb


def _draft_rows(kb: KnowledgeBase) -> list[dict[str, object]]:
    return [
        {
            "document": change.document,
            "action": change.action,
            "status": releases.draft_status(change),
            "version": change.version,
        }
        for change in releases.draft_changes(kb)
    ]


@org_required()
def knowledge_base_changes(request: HttpRequest, context: OrgContext, kb_id: int) -> HttpResponse:
    kb = _kb_or_404(context, kb_id)
    rows = _draft_rows(kb)
    template = "kb/_draft_table.html" if request.headers.get("HX-Request") else "kb/changes.html"
    return render(
        request,
        template,
        {
            "kb": kb,
            "rows": rows,
            "processing": any(r["status"] not in ("ready", "failed") for r in rows),
            "gate": releases.publish_gate(kb),
            "releases": Release.objects.filter(knowledge_base=kb)[:50],
            "can_edit": context.allows(Action.EDIT_CONTENT),
            "is_owner": context.allows(Action.DELETE_ORGANIZATION),
        },
    )


@org_required(Action.EDIT_CONTENT)
@require_POST
def knowledge_base_review_mode(request: HttpRequest, context: OrgContext, kb_id: int) -> HttpResponse:
    kb = _kb_or_404(context, kb_id)
    enabled = request.POST.get("review_changes") == "on"
    services.knowledge_base_update(knowledge_base=kb, changes={"review_changes": enabled}, actor=context)
    messages.success(
        request,
        "Changes now wait in a draft until you publish them."
        if enabled
        else "Changes now go live as soon as they are ready.",
    )
    return redirect("kb:changes", kb_id=kb.pk)


@org_required(Action.EDIT_CONTENT)
@require_POST
def draft_publish(request: HttpRequest, context: OrgContext, kb_id: int) -> HttpResponse:
    kb = _kb_or_404(context, kb_id)
    try:
        release = releases.draft_publish_gated(
            knowledge_base=kb,
            actor=context,
            override=request.POST.get("override") == "1",
            may_override=context.allows(Action.DELETE_ORGANIZATION),
        )
    except KnowledgeBaseError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Release {release.number} is live.")
    return redirect("kb:changes", kb_id=kb.pk)


@org_required(Action.EDIT_CONTENT)
@require_POST
def draft_discard(request: HttpRequest, context: OrgContext, kb_id: int) -> HttpResponse:
    kb = _kb_or_404(context, kb_id)
    count = releases.draft_discard(knowledge_base=kb, actor=context)
    messages.success(request, f"Discarded {count} staged change(s).")
    return redirect("kb:changes", kb_id=kb.pk)


@org_required(Action.EDIT_CONTENT)
@require_POST
def release_restore(request: HttpRequest, context: OrgContext, kb_id: int, number: int) -> HttpResponse:
    kb = _kb_or_404(context, kb_id)
    try:
        release = releases.release_restore(knowledge_base=kb, number=number, actor=context)
    except KnowledgeBaseError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Release {number} restored: it is live again as release {release.number}.")
    return redirect("kb:changes", kb_id=kb.pk)


@org_required()
def release_detail(request: HttpRequest, context: OrgContext, kb_id: int, number: int) -> HttpResponse:
    """What the knowledge base knew as of a release: its documents and the versions that answered."""
    kb = _kb_or_404(context, kb_id)
    release = Release.objects.filter(knowledge_base=kb, number=number).first()
    if release is None:
        raise Http404("This release is not kept any more (or never existed).")
    entries = {int(doc): entry for doc, entry in release.manifest.items()}
    documents = Document.all_objects.filter(knowledge_base=kb, pk__in=list(entries)).select_related("live_version")
    from kb.models import DocumentVersion

    versions = DocumentVersion.objects.in_bulk([e["version"] for e in entries.values()])
    rows = [
        {"document": d, "version": versions.get(entries[d.pk]["version"]), "enabled": entries[d.pk]["enabled"]}
        for d in sorted(documents, key=lambda d: d.title.casefold())
    ]
    return render(request, "kb/release_detail.html", {"kb": kb, "release": release, "rows": rows})
