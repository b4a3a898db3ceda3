"""Staff UI of replays, and the draft tools a knowledge base's Changes page loads from chat."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.decorators import org_required
from accounts.permissions import Action
from accounts.selectors import OrgContext
from chat.models import Chatbot, Replay, ReplayChange
from chat.replay import services
from kb.models import KnowledgeBase
from kb.selectors import knowledge_base_get


def _kb_or_404(context: OrgContext, kb_id: int) -> KnowledgeBase:
    kb = knowledge_base_get(organization=context.organization, pk=kb_id)
    if kb is None:
        raise Http404("No such knowledge base.")
    return kb


@org_required()
def draft_tools(request: HttpRequest, context: OrgContext, kb_id: int) -> HttpResponse:
    """Fragment for the Changes page: replay form, recent replays, and the bots whose tests can run on the draft."""
    kb = _kb_or_404(context, kb_id)
    return render(
        request,
        "chat/replay/_draft_tools.html",
        {
            "kb": kb,
            "replays": Replay.objects.filter(organization=context.organization, knowledge_base=kb)[:5],
            "chatbots": Chatbot.objects.filter(organization=context.organization, knowledge_bases=kb).order_by("name"),
            "can_edit": context.allows(Action.EDIT_CONTENT),
        },
    )


@org_required(Action.EDIT_CONTENT)
@require_POST
def replay_start(request: HttpRequest, context: OrgContext, kb_id: int) -> HttpResponseBase:
    kb = _kb_or_404(context, kb_id)
    try:
        limit = int(request.POST.get("limit") or 50)
    except ValueError:
        limit = 50
    replay = services.replay_create(knowledge_base=kb, limit=limit, actor=context)
    return redirect("chat:replay", pk=replay.pk)


@org_required()
def replay_detail(request: HttpRequest, context: OrgContext, pk: int) -> HttpResponse:
    replay = services.replay_get(organization=context.organization, pk=pk)
    if replay is None:
        raise Http404("No such replay.")
    show = request.GET.get("show", "differences")
    items = replay.items.select_related("chatbot")
    if show == "differences":
        items = items.exclude(change=ReplayChange.SAME)
    template = "chat/replay/_replay_body.html" if request.headers.get("HX-Request") else "chat/replay/replay.html"
    return render(
        request,
        template,
        {"replay": replay, "items": items, "counts": services.replay_counts(replay), "show": show},
    )
