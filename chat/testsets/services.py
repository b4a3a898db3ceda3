"""Writes of test sets and evaluation runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import current_app
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from accounts.selectors import OrgContext
from accounts.services import audit_record
from chat.exceptions import ChatError
from chat.models import Chatbot, EvalRun, EvalStatus, EvalTarget, Message, Role, TestCase, TestCaseSource
from chat.services import chat_model_check
from chat.testsets.formats import CaseFileError, CaseRow, case_row_clean, parse_case_file
from chat.testsets.runner import SETTING_FIELDS
from kb.models import Document

# --- test cases --------------------------------------------------------------------------------


def _check_documents(chatbot: Chatbot, ids: Sequence[int], line: int = 0) -> None:
    """Expected documents must belong to the bot's organisation (any of its knowledge bases may change)."""
    if not ids:
        return
    found = set(
        Document.objects.filter(organization_id=chatbot.organization_id, pk__in=ids).values_list("pk", flat=True)
    )
    missing = sorted(set(ids) - found)
    if missing:
        raise CaseFileError(line, f"no document with id {missing} in your organisation.")


def case_create(
    *,
    chatbot: Chatbot,
    question: str,
    expected: list[str] | None = None,
    must_refuse: bool = False,
    expected_document_ids: list[int] | None = None,
    source: str = TestCaseSource.MANUAL,
    created_by: User | None,
    message: Message | None = None,
) -> TestCase:
    """Add a case to the bot's test set (see TestCase for what the fields expect)."""
    row = case_row_clean(
        question=question, expected=expected, must_refuse=must_refuse, expected_document_ids=expected_document_ids
    )
    _check_documents(chatbot, row.expected_document_ids)
    return TestCase.objects.create(
        organization_id=chatbot.organization_id,
        chatbot=chatbot,
        question=row.question,
        expected=row.expected,
        must_refuse=row.must_refuse,
        expected_document_ids=row.expected_document_ids,
        source=source,
        message=message,
        created_by=created_by,
    )


def cases_import(
    *, chatbot: Chatbot, name: str, content: bytes, created_by: User | None, context: OrgContext | None = None
) -> list[TestCase]:
    """Import a CSV or JSON-lines file (columns in `chat.testsets.formats`): all rows or none.

    Raises CaseFileError with the line number of the first bad row; nothing is stored then.
    With `context` (a staff request's), the import is recorded in the audit log.
    """
    rows: list[CaseRow] = parse_case_file(name=name, content=content)
    for number, row in enumerate(rows, start=1):
        _check_documents(chatbot, row.expected_document_ids, line=number)
    with transaction.atomic():
        cases = TestCase.objects.bulk_create(
            [
                TestCase(
                    organization_id=chatbot.organization_id,
                    chatbot=chatbot,
                    question=row.question,
                    expected=row.expected,
                    must_refuse=row.must_refuse,
                    expected_document_ids=row.expected_document_ids,
                    source=TestCaseSource.IMPORT,
                    created_by=created_by,
                )
                for row in rows
            ]
        )
        if context is not None:
            audit_record(context=context, action="testcases.import", target=chatbot, detail={"count": len(cases)})
        return cases


def case_delete(*, case: TestCase) -> None:
    case.delete()


def case_from_message(*, message: Message, actor: User | None) -> TestCase:
    """Promote a reviewed turn to a test case.

    The question is the user message the answer replied to; the expected phrase is the staff
    correction of the answer when there is one. Without a correction the case only requires an
    answer (no refusal) — staff add phrases afterwards.
    """
    if message.role != Role.ASSISTANT:
        raise ChatError("not_an_answer", "Only the assistant's answers can be added to a test set.")
    conversation = message.conversation
    question = conversation.messages.filter(role=Role.USER, pk__lt=message.pk).order_by("-pk").first()
    if question is None:
        raise ChatError("no_question", "This answer has no question to test.")
    correction = message.corrections.order_by("-created_at", "-pk").first()
    return case_create(
        chatbot=conversation.chatbot,
        question=question.content,
        expected=[correction.answer] if correction else [],
        source=TestCaseSource.REVIEW,
        created_by=actor,
        message=message,
    )


# --- evaluation runs ---------------------------------------------------------------------------


def settings_override_clean(raw: Any) -> dict[str, Any]:
    """Validate proposed bot settings for a trial run: system_prompt, chat_model, top_k, min_relevance."""
    if raw in (None, ""):
        return {}
    if not isinstance(raw, dict):
        raise ChatError("bad_settings", "settings must be an object.")
    unknown = set(raw) - set(SETTING_FIELDS)
    if unknown:
        raise ChatError("bad_settings", f"Unknown settings {sorted(unknown)}; try {', '.join(SETTING_FIELDS)}.")
    clean: dict[str, Any] = {}
    for name in ("system_prompt", "chat_model"):
        if name in raw:
            if not isinstance(raw[name], str) or len(raw[name]) > (20_000 if name == "system_prompt" else 200):
                raise ChatError("bad_settings", f"{name} must be a string.")
            clean[name] = raw[name].strip()
    if "chat_model" in clean:
        chat_model_check(clean["chat_model"])
    if "top_k" in raw:
        top_k = raw["top_k"]
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= 20:
            raise ChatError("bad_settings", "top_k must be a whole number from 1 to 20.")
        clean["top_k"] = top_k
    if "min_relevance" in raw:
        value = raw["min_relevance"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ChatError("bad_settings", "min_relevance must be a number from 0 to 1.")
        clean["min_relevance"] = float(value)
    return clean


def eval_run_create(
    *,
    chatbot: Chatbot,
    target: str = EvalTarget.LIVE,
    settings: dict[str, Any] | None = None,
    judge: bool = False,
    created_by: User | None,
    enqueue: bool = True,
) -> EvalRun:
    """Queue an evaluation of the bot's test cases and Q&A entries (the worker runs it)."""
    from chat.testsets.selectors import eval_cases_for_chatbot

    if target not in EvalTarget.values:
        raise ChatError("bad_target", "target must be live or draft.")
    run = EvalRun.objects.create(
        organization_id=chatbot.organization_id,
        chatbot=chatbot,
        target=target,
        settings_override=settings_override_clean(settings),
        judge=judge,
        cases_total=len(eval_cases_for_chatbot(chatbot=chatbot)),
        created_by=created_by,
    )
    if enqueue:
        transaction.on_commit(lambda: _enqueue(run.pk))
    return run


def _enqueue(run_id: int) -> None:
    # By name, so this module does not import the task module (which imports the runner).
    current_app.send_task("chat.eval_run_execute", args=[run_id])


def eval_run_cancel(*, run: EvalRun) -> EvalRun:
    """Stop a run: a queued run is cancelled at once, a running one after its current case."""
    EvalRun.objects.filter(pk=run.pk, status=EvalStatus.QUEUED).update(
        status=EvalStatus.CANCELLED, cancel_requested=True, finished_at=timezone.now()
    )
    EvalRun.objects.filter(pk=run.pk, status=EvalStatus.RUNNING).update(cancel_requested=True)
    run.refresh_from_db()
    return run


def eval_run_settings_apply(*, run: EvalRun, context: OrgContext | None = None) -> Chatbot:
    """Make the settings a run tried the bot's own ("try settings before applying"); audited with `context`."""
    from chat.services import chatbot_update

    if not run.settings_override:
        raise ChatError("no_settings", "This evaluation tried no settings of its own.")
    return chatbot_update(chatbot=run.chatbot, context=context, **run.settings_override)
