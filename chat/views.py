"""Staff UI for chatbots: list, create/edit, and the playground (streaming chat + retrieval view)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST
from drf_spectacular.utils import extend_schema

from accounts.decorators import org_required
from accounts.permissions import Action
from accounts.selectors import OrgContext
from chat import selectors, services
from chat.api import ChatbotChatApi
from chat.exceptions import ChatError
from chat.forms import ChatbotForm
from chat.model_check import common_models
from chat.models import Channel, Chatbot
from kb.selectors import chunk_search


def _bot_or_404(context: OrgContext, bot_id: int) -> Chatbot:
    bot = selectors.chatbot_get(organization=context.organization, id_or_slug=bot_id)
    if bot is None:
        raise Http404("No such chatbot.")
    return bot


@org_required()
def chatbot_list(request: HttpRequest, context: OrgContext) -> HttpResponse:
    bots = selectors.chatbots_for_org(organization=context.organization)
    return render(request, "chat/chatbot_list.html", {"bots": bots, "can_edit": context.allows(Action.EDIT_CONTENT)})


def _save_form(request: HttpRequest, context: OrgContext, form: ChatbotForm, bot: Chatbot | None) -> Chatbot | None:
    """Create or update the chatbot from the form (audited by the service); None on a domain error."""
    data = dict(form.cleaned_data)
    kbs = list(data.pop("knowledge_bases"))
    data["suggested_questions"] = data.pop("suggested_questions_text")
    data["allowed_origins"] = data.pop("allowed_origins_text")
    data["fallback_models"] = data.pop("fallback_models_text")
    try:
        if bot is None:
            return services.chatbot_create(
                organization=context.organization,
                name=data.pop("name"),
                knowledge_bases=kbs,
                created_by=context.user,
                context=context,
                **data,
            )
        return services.chatbot_update(
            chatbot=bot, knowledge_bases=kbs, context=context, changed_fields=form.changed_data, **data
        )
    except ChatError as exc:
        form.add_error(None, exc.message)
        return None


@org_required(Action.EDIT_CONTENT)
@require_http_methods(["GET", "POST"])
def chatbot_create(request: HttpRequest, context: OrgContext) -> HttpResponse:
    form = ChatbotForm(request.POST or None, organization=context.organization)
    if request.method == "POST" and form.is_valid():
        bot = _save_form(request, context, form, None)
        if bot is not None:
            messages.success(request, f"Chatbot “{bot.name}” created. Try it in the playground.")
            return redirect("chat:playground", bot_id=bot.pk)
    return render(request, "chat/chatbot_form.html", {"form": form, "bot": None, "model_choices": common_models()})


@org_required()
@require_http_methods(["GET", "POST"])
def chatbot_edit(request: HttpRequest, context: OrgContext, bot_id: int) -> HttpResponse:
    bot = _bot_or_404(context, bot_id)
    can_edit = context.allows(Action.EDIT_CONTENT)
    form = ChatbotForm(request.POST or None, instance=bot, organization=context.organization)
    if request.method == "POST":
        if not can_edit:
            raise PermissionDenied("Your role may not change chatbots.")
        if form.is_valid() and _save_form(request, context, form, bot) is not None:
            messages.success(request, "Settings saved.")
            return redirect("chat:edit", bot_id=bot.pk)
    snippet = services_widget_snippet(request, bot)
    return render(
        request,
        "chat/chatbot_form.html",
        {"form": form, "bot": bot, "can_edit": can_edit, "snippet": snippet, "model_choices": common_models()},
    )


def services_widget_snippet(request: HttpRequest, bot: Chatbot) -> str:
    from django.conf import settings

    from chat.widget import widget_snippet

    return widget_snippet(bot, base_url=settings.PUBLIC_URL or request.build_absolute_uri("/").rstrip("/"))


@org_required()
def playground(request: HttpRequest, context: OrgContext, bot_id: int) -> HttpResponse:
    bot = _bot_or_404(context, bot_id)
    return render(
        request,
        "chat/playground.html",
        {"bot": bot, "bots": selectors.chatbots_for_org(organization=context.organization)},
    )


@org_required()
@require_POST
def playground_retrieval(request: HttpRequest, context: OrgContext, bot_id: int) -> HttpResponse:
    """Retrieval only: the ranked chunks with their vector, keyword and fused scores."""
    bot = _bot_or_404(context, bot_id)
    query = request.POST.get("message", "").strip()
    hits = (
        chunk_search(knowledge_bases=list(bot.knowledge_bases.all()), query=query, limit=max(bot.top_k, 10))
        if query
        else []
    )
    precise = any(h.ranking_score is not None for h in hits)
    matched = precise or any(h.match_score is not None for h in hits)
    return render(
        request, "chat/_retrieval_table.html", {"hits": hits, "query": query, "precise": precise, "matched": matched}
    )


@extend_schema(exclude=True)  # the staff playground's own endpoint (session + CSRF), not part of the API
class PlaygroundChatApi(ChatbotChatApi):
    """The chat API for signed-in staff (session + CSRF), recorded as playground conversations."""

    channel = Channel.PLAYGROUND


@org_required()
def first_run(request: HttpRequest, context: OrgContext) -> HttpResponse:
    """The dashboard's first-run checklist (an htmx fragment; empty once every step is done)."""
    from chat.onboarding import first_run_steps

    steps = first_run_steps(organization=context.organization)
    done = sum(step.done for step in steps)
    return render(
        request,
        "chat/_first_run.html",
        {
            "steps": steps,
            "done_count": done,
            "all_done": done == len(steps),
            "can_edit": context.allows(Action.EDIT_CONTENT),
        },
    )


@org_required()
def widget_demo(request: HttpRequest, context: OrgContext, bot_id: int) -> HttpResponse:
    """A local sample web page with the bot's widget snippet in it: the widget as visitors see it."""
    bot = _bot_or_404(context, bot_id)
    return render(request, "chat/widget_demo.html", {"bot": bot, "snippet": services_widget_snippet(request, bot)})


@org_required(Action.EDIT_CONTENT)
@require_POST
def chatbot_model_check(request: HttpRequest, context: OrgContext) -> HttpResponse:
    """**Test connection** (htmx): one tiny request to the model typed in the form, in plain words."""
    from chat.model_check import chat_model_connection_test

    result = chat_model_connection_test(
        model=request.POST.get("chat_model", "")[:200], organization=context.organization
    )
    return render(request, "chat/_model_check.html", {"result": result})


# A round trip to the model, up to its timeout: it takes no request lane (config.lanes).
chatbot_model_check.long_request = True  # type: ignore[attr-defined]
