"""Staff UI of test sets and evaluation runs: the Tests page per chatbot, run detail with a live
progress fragment (htmx polling that stops when the run is terminal), cancel, compare."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.decorators import org_required
from accounts.permissions import Action
from accounts.selectors import OrgContext
from chat import charts
from chat.exceptions import ChatError
from chat.models import Chatbot, EvalRun
from chat.selectors import chatbot_get, message_get_for_org
from chat.testsets import selectors, services
from chat.testsets.formats import CaseFileError


def _bot_or_404(context: OrgContext, bot_id: int) -> Chatbot:
    bot = chatbot_get(organization=context.organization, id_or_slug=bot_id)
    if bot is None:
        raise Http404("No such chatbot.")
    return bot


def _run_or_404(context: OrgContext, pk: int) -> EvalRun:
    run = selectors.eval_run_get(organization=context.organization, pk=pk)
    if run is None:
        raise Http404("No such evaluation.")
    return run


@org_required()
def tests_page(request: HttpRequest, context: OrgContext, bot_id: int) -> HttpResponse:
    bot = _bot_or_404(context, bot_id)
    runs = list(selectors.eval_runs_for_chatbot(chatbot=bot)[:30])
    done = [r for r in reversed(runs) if r.summary.get("pass_rate") is not None]
    trend = (
        charts.bar_chart(
            [r.created_at.date() for r in done],
            [("Pass rate %", [round(100 * r.summary["pass_rate"]) for r in done], "#1f7a44")],
            height=120,
            title="Pass rate per run",
        )
        if done
        else ""
    )
    return render(
        request,
        "chat/testsets/tests.html",
        {
            "bot": bot,
            "cases": selectors.cases_for_chatbot(chatbot=bot),
            "qa_cases": selectors.qa_cases_for_chatbot(chatbot=bot),
            "runs": runs,
            "trend": trend,
            "can_edit": context.allows(Action.EDIT_CONTENT),
        },
    )


@org_required(Action.EDIT_CONTENT)
@require_POST
def case_add(request: HttpRequest, context: OrgContext, bot_id: int) -> HttpResponseBase:
    bot = _bot_or_404(context, bot_id)
    try:
        services.case_create(
            chatbot=bot,
            question=request.POST.get("question", ""),
            expected=[p for p in request.POST.get("expected", "").split("|") if p.strip()],
            must_refuse=request.POST.get("must_refuse") == "1",
            expected_document_ids=[
                int(i) for i in request.POST.get("expected_document_ids", "").split(",") if i.strip().isdigit()
            ],
            created_by=context.user,
        )
        messages.success(request, "Test case added.")
    except ChatError as exc:
        messages.error(request, exc.message)
    return redirect("chat:tests", bot_id=bot.pk)


@org_required(Action.EDIT_CONTENT)
@require_POST
def case_delete(request: HttpRequest, context: OrgContext, bot_id: int, pk: int) -> HttpResponseBase:
    bot = _bot_or_404(context, bot_id)
    case = selectors.case_get(chatbot=bot, pk=pk)
    if case is None:
        raise Http404("No such test case.")
    services.case_delete(case=case)
    messages.success(request, "Test case deleted.")
    return redirect("chat:tests", bot_id=bot.pk)


@org_required(Action.EDIT_CONTENT)
@require_POST
def cases_import(request: HttpRequest, context: OrgContext, bot_id: int) -> HttpResponseBase:
    bot = _bot_or_404(context, bot_id)
    upload = request.FILES.get("file")
    if upload is None:
        messages.error(request, "Choose a CSV or JSON-lines file.")
        return redirect("chat:tests", bot_id=bot.pk)
    try:
        cases = services.cases_import(
            chatbot=bot, name=upload.name or "", content=upload.read(), created_by=context.user, context=context
        )
        messages.success(request, f"Imported {len(cases)} test cases.")
    except CaseFileError as exc:
        messages.error(request, f"Nothing imported. {exc.message}")
    return redirect("chat:tests", bot_id=bot.pk)


@org_required(Action.EDIT_CONTENT)
@require_POST
def run_start(request: HttpRequest, context: OrgContext, bot_id: int) -> HttpResponseBase:
    bot = _bot_or_404(context, bot_id)
    try:
        run = services.eval_run_create(
            chatbot=bot,
            target=request.POST.get("target") or "live",
            settings=_trial_settings(request),
            created_by=context.user,
        )
    except ChatError as exc:
        messages.error(request, exc.message)
        return redirect("chat:tests", bot_id=bot.pk)
    return redirect("chat:eval_run", pk=run.pk)


def _trial_settings(request: HttpRequest) -> dict[str, Any] | None:
    """The "try other settings" form: only the fields filled in are tried (numbers parsed here)."""
    proposed: dict[str, Any] = {}
    for name in ("system_prompt", "chat_model"):
        value = (request.POST.get(f"try_{name}") or "").strip()
        if value:
            proposed[name] = value
    for name, kind in (("top_k", int), ("min_relevance", float)):
        raw = (request.POST.get(f"try_{name}") or "").strip()
        if raw:
            try:
                proposed[name] = kind(raw)
            except ValueError as exc:
                raise ChatError("bad_settings", f"{name} must be a number.") from exc
    return proposed or None


@org_required(Action.EDIT_CONTENT)
@require_POST
def run_apply_settings(request: HttpRequest, context: OrgContext, pk: int) -> HttpResponseBase:
    """Make the settings a trial run used the bot's own."""
    run = _run_or_404(context, pk)
    try:
        services.eval_run_settings_apply(run=run, context=context)
    except ChatError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "The tried settings are now the bot's own.")
    return redirect("chat:eval_run", pk=run.pk)


@org_required()
def run_detail(request: HttpRequest, context: OrgContext, pk: int) -> HttpResponse:
    run = _run_or_404(context, pk)
    return render(
        request,
        "chat/testsets/run_detail.html",
        {
            "run": run,
            "results": selectors.eval_run_results(run=run),
            "previous": selectors.eval_runs_for_chatbot(chatbot=run.chatbot).filter(pk__lt=run.pk).first(),
            "can_edit": context.allows(Action.EDIT_CONTENT),
        },
    )


@org_required()
def run_progress(request: HttpRequest, context: OrgContext, pk: int) -> HttpResponse:
    run = _run_or_404(context, pk)
    response = render(
        request, "chat/testsets/_run_progress.html", {"run": run, "can_edit": context.allows(Action.EDIT_CONTENT)}
    )
    if run.is_terminal and request.headers.get("HX-Request"):
        response["HX-Refresh"] = "true"  # once: load the results table
    return response


@org_required(Action.EDIT_CONTENT)
@require_POST
def run_cancel(request: HttpRequest, context: OrgContext, pk: int) -> HttpResponseBase:
    run = services.eval_run_cancel(run=_run_or_404(context, pk))
    messages.success(request, "Cancelling after the current case." if not run.is_terminal else "Evaluation stopped.")
    return redirect("chat:eval_run", pk=run.pk)


@org_required()
def runs_compare(request: HttpRequest, context: OrgContext) -> HttpResponse:
    a_id, b_id = request.GET.get("a", ""), request.GET.get("b", "")
    if not (a_id.isdigit() and b_id.isdigit()):
        raise Http404("Choose two evaluations.")
    a, b = _run_or_404(context, int(a_id)), _run_or_404(context, int(b_id))
    return render(
        request, "chat/testsets/compare.html", {"a": a, "b": b, "diff": selectors.eval_runs_compare(a=a, b=b)}
    )


@org_required(Action.REVIEW)
@require_POST
def message_add_to_tests(request: HttpRequest, context: OrgContext, pk: int) -> HttpResponseBase:
    message = message_get_for_org(organization=context.organization, pk=pk)
    if message is None:
        raise Http404("No such message.")
    try:
        services.case_from_message(message=message, actor=context.user)
        messages.success(request, "Added to the chatbot's test set.")
    except ChatError as exc:
        messages.error(request, exc.message)
    return redirect("chat:conversation", pk=message.conversation_id)
