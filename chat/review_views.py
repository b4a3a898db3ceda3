"""Staff UI: conversation list and transcript with review actions, and the dashboard."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.decorators import org_required
from accounts.permissions import Action
from accounts.selectors import OrgContext
from chat import analytics, charts, selectors, services
from chat.exceptions import ChatError
from chat.models import Channel, Conversation


def _conversation_or_404(context: OrgContext, pk: int) -> Conversation:
    conversation = selectors.conversation_get_for_org(organization=context.organization, pk=pk)
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


@org_required()
def conversation_list(request: HttpRequest, context: OrgContext) -> HttpResponse:
    try:
        filters = selectors.ConversationFilters.from_query(request.GET)
        error = ""
    except ValueError as exc:
        filters, error = selectors.ConversationFilters(), str(exc)
    qs = selectors.conversations_filtered(organization=context.organization, filters=filters)
    page = Paginator(qs, 25).get_page(request.GET.get("page"))
    query = {k: v for k, v in request.GET.items() if k != "page" and v}
    return render(
        request,
        "chat/conversation_list.html",
        {
            "page": page,
            "filters": filters,
            "error": error,
            "bots": selectors.chatbots_for_org(organization=context.organization),
            "channels": Channel.choices,
            "query": urlencode(query),
        },
    )


@org_required()
def conversation_detail(request: HttpRequest, context: OrgContext, pk: int) -> HttpResponse:
    conversation = _conversation_or_404(context, pk)
    return render(
        request,
        "chat/conversation_detail.html",
        {
            "conversation": conversation,
            "messages_list": conversation.messages.prefetch_related("citations", "corrections"),
            "can_review": context.allows(Action.REVIEW),
            "correct": request.GET.get("correct"),
        },
    )


@org_required(Action.REVIEW)
@require_POST
def conversation_action(request: HttpRequest, context: OrgContext, pk: int, action: str) -> HttpResponseBase:
    conversation = _conversation_or_404(context, pk)
    try:
        if action == "review":
            services.conversation_review_update(
                conversation=conversation,
                actor=context.user,
                reviewed=request.POST.get("reviewed") == "1",
                tags=[t for t in request.POST.get("tags", "").split(",")],
                internal_note=request.POST.get("internal_note", ""),
            )
            messages.success(request, "Review saved.")
        elif action == "correct":
            message = conversation.messages.filter(pk=request.POST.get("message_id") or 0).first()
            if message is None:
                raise Http404("No such message.")
            services.message_correct(
                message=message, answer=request.POST.get("answer", ""), actor=context.user, context=context
            )
            messages.success(request, "Correction saved as a Q&A entry; it answers the same question within seconds.")
        elif action == "delete":
            services.conversation_delete(conversation=conversation, context=context)
            messages.success(request, "Conversation deleted.")
            return redirect("chat:conversations")
        else:
            raise Http404("Unknown action.")
    except ChatError as exc:
        messages.error(request, exc.message)
    return redirect("chat:conversation", pk=conversation.pk)


@org_required()
def analytics_dashboard(request: HttpRequest, context: OrgContext) -> HttpResponse:
    bot_id = request.GET.get("chatbot")
    days = 30 if request.GET.get("days") not in ("7", "90") else int(request.GET["days"])
    data = analytics.dashboard(
        organization=context.organization, chatbot_id=int(bot_id) if bot_id and bot_id.isdigit() else None, days=days
    )
    return render(
        request,
        "chat/analytics.html",
        {
            "data": data,
            "days": days,
            "bots": selectors.chatbots_for_org(organization=context.organization),
            "bot_id": int(bot_id) if bot_id and bot_id.isdigit() else None,
            "volume_chart": charts.bar_chart(
                data.days, [("Conversations", data.conversations_per_day, "#2457c5")], title="Conversations per day"
            ),
            "answers_chart": charts.bar_chart(
                data.days,
                [("Answered", data.answered_per_day, "#1f7a44"), ("Refused", data.refused_per_day, "#d08a00")],
                title="Answers per day",
            ),
            "cited_chart": charts.hbar_list(data.most_cited),
        },
    )
