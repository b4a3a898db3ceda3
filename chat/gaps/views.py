"""Staff UI of the knowledge-gap inbox: the Gaps page per chatbot and its three actions."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.decorators import org_required
from accounts.permissions import Action
from accounts.selectors import OrgContext
from chat.exceptions import ChatError
from chat.gaps import selectors, services
from chat.models.gaps import KnowledgeGap
from chat.selectors import chatbot_get
from kb.exceptions import KnowledgeBaseError


def _gap_or_404(context: OrgContext, pk: int) -> KnowledgeGap:
    gap = selectors.gap_get(organization=context.organization, pk=pk)
    if gap is None:
        raise Http404("No such knowledge gap.")
    return gap


@org_required()
def gaps_page(request: HttpRequest, context: OrgContext, bot_id: int) -> HttpResponse:
    bot = chatbot_get(organization=context.organization, id_or_slug=bot_id)
    if bot is None:
        raise Http404("No such chatbot.")
    services.gaps_refresh(chatbot=bot)
    gaps = list(selectors.gaps_open_for_chatbot(chatbot=bot)[:100])
    groups = [(gap, selectors.gap_items(gap=gap)) for gap in gaps]
    return render(
        request,
        "chat/gaps/gaps.html",
        {
            "bot": bot,
            "groups": groups,
            "knowledge_base": bot.knowledge_bases.order_by("pk").first(),
            "can_edit": context.allows(Action.EDIT_CONTENT),
        },
    )


@org_required(Action.EDIT_CONTENT)
@require_POST
def gap_answer(request: HttpRequest, context: OrgContext, pk: int) -> HttpResponseBase:
    gap = _gap_or_404(context, pk)
    try:
        document = services.gap_answer(gap=gap, answer=request.POST.get("answer", ""), context=context)
        messages.success(
            request, f"Answer added as the Q&A entry “{document.title}”; the questions are test cases now."
        )
    except (ChatError, KnowledgeBaseError) as exc:
        messages.error(request, exc.message)
    return redirect("chat:gaps", bot_id=gap.chatbot_id)


@org_required(Action.EDIT_CONTENT)
@require_POST
def gap_out_of_scope(request: HttpRequest, context: OrgContext, pk: int) -> HttpResponseBase:
    gap = _gap_or_404(context, pk)
    try:
        cases = services.gap_mark_out_of_scope(gap=gap, context=context)
        messages.success(request, f"Marked out of scope: {cases} must-refuse test case(s) added.")
    except ChatError as exc:
        messages.error(request, exc.message)
    return redirect("chat:gaps", bot_id=gap.chatbot_id)


@org_required(Action.EDIT_CONTENT)
@require_POST
def gap_dismiss(request: HttpRequest, context: OrgContext, pk: int) -> HttpResponseBase:
    gap = _gap_or_404(context, pk)
    try:
        services.gap_dismiss(gap=gap, context=context)
        messages.success(request, "Dismissed.")
    except ChatError as exc:
        messages.error(request, exc.message)
    return redirect("chat:gaps", bot_id=gap.chatbot_id)
