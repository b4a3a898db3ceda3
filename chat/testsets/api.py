"""REST API of test sets and evaluation runs (paths in `chat.api_urls` / `chat.review_urls`).

Viewers read; editors and above add, import, delete and run (the default write action).
"""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api import OrgScopedApiView
from accounts.permissions import Action
from chat.api import ChatbotScopedView
from chat.models import EvalRun, EvalTarget, TestCase
from chat.selectors import message_get_for_org
from chat.testsets import selectors, services
from chat.testsets.formats import CaseFileError, CaseRow, cases_to_csv, cases_to_jsonl


class CaseIn(serializers.Serializer[Any]):
    question = serializers.CharField(max_length=4000)
    expected = serializers.ListField(child=serializers.CharField(max_length=2000), required=False, default=list)
    must_refuse = serializers.BooleanField(required=False, default=False)
    expected_document_ids = serializers.ListField(child=serializers.IntegerField(), required=False, default=list)


class CaseImportIn(serializers.Serializer[Any]):
    file = serializers.FileField(
        help_text="CSV or JSON lines; columns: "
        + ", ".join(("question", "expected (CSV: a|b)", "must_refuse", "expected_document_ids"))
    )


class EvalIn(serializers.Serializer[Any]):
    target = serializers.ChoiceField(choices=EvalTarget.choices, default=EvalTarget.LIVE)
    settings = serializers.DictField(
        required=False, help_text="Try settings before applying: system_prompt, chat_model, top_k, min_relevance."
    )
    judge = serializers.BooleanField(required=False, default=False)


SUMMARY_FIELDS = ("pass_rate", "recall_at_k", "refusal_accuracy", "citation_validity", "p50_ms", "p95_ms")

EVAL_RUN_OUT = inline_serializer(
    "EvalRunOut",
    {
        "id": serializers.IntegerField(),
        "chatbot": serializers.IntegerField(),
        "target": serializers.CharField(),
        "status": serializers.ChoiceField(choices=("queued", "running", "done", "failed", "cancelled")),
        "progress": inline_serializer(
            "EvalProgress", {"done": serializers.IntegerField(), "total": serializers.IntegerField()}
        ),
        "summary": inline_serializer(
            "EvalSummary", {name: serializers.FloatField(allow_null=True) for name in SUMMARY_FIELDS}
        ),
        "results": serializers.ListField(child=serializers.DictField(), required=False),
    },
)

EVAL_RUN_LIST_ITEM = inline_serializer(
    "EvalRunListItem",
    {
        "id": serializers.IntegerField(),
        "chatbot": serializers.IntegerField(),
        "target": serializers.CharField(),
        "status": serializers.CharField(),
        "summary": serializers.DictField(),
    },
    many=True,
)

CASE_FIELDS: dict[str, serializers.Field[Any, Any, Any, Any]] = {
    "id": serializers.IntegerField(allow_null=True, help_text="null for a Q&A entry (read-only case)"),
    "question": serializers.CharField(),
    "expected": serializers.ListField(child=serializers.CharField()),
    "source": serializers.CharField(),
}
CASE_OUT = inline_serializer("TestCaseOut", CASE_FIELDS)
CASE_LIST = inline_serializer("TestCaseListItem", CASE_FIELDS, many=True)
EXPORT_RESPONSES = {(200, "text/csv"): OpenApiTypes.STR, (200, "application/x-ndjson"): OpenApiTypes.STR}


def case_payload(case: TestCase) -> dict[str, Any]:
    return {
        "id": case.pk,
        "question": case.question,
        "expected": case.expected,
        "must_refuse": case.must_refuse,
        "expected_document_ids": case.expected_document_ids,
        "source": case.source,
        "message_id": case.message_id,
        "created_at": case.created_at.isoformat(),
    }


def run_payload(run: EvalRun, *, results: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": run.pk,
        "chatbot": run.chatbot_id,
        "target": run.target,
        "status": run.status,
        "progress": {"done": run.cases_done, "total": run.cases_total},
        "summary": {name: run.summary.get(name) for name in SUMMARY_FIELDS} | run.summary,
        "settings": run.settings_override,
        "judge": run.judge,
        "error": run.error,
        "created_at": run.created_at.isoformat(),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }
    if results:
        data["results"] = [
            {
                "case_key": r.case_key,
                "question": r.question,
                "expected": r.expected,
                "must_refuse": r.must_refuse,
                "expected_document_ids": r.expected_document_ids,
                "passed": r.passed,
                "reason": r.reason,
                "answer": r.answer,
                "refused": r.refused,
                "checks": r.checks,
                "citations": r.citations,
                "retrieved": r.retrieved,
                "citation_valid": r.citation_valid,
                "grounding_grade": r.grounding_grade,
                "latency_ms": r.latency_ms,
            }
            for r in selectors.eval_run_results(run=run)
        ]
    return data


class CaseListCreateApi(ChatbotScopedView):
    @extend_schema(
        parameters=[OpenApiParameter("include_qa", bool, description="also list the Q&A entries (read-only cases)")],
        responses=CASE_LIST,
        operation_id="chatbot_test_cases_list",
    )
    def get(self, request: Request, bot_id: str) -> Response:
        bot = self.get_chatbot(bot_id)
        data = [case_payload(c) for c in selectors.cases_for_chatbot(chatbot=bot)]
        if request.query_params.get("include_qa") in ("1", "true", "yes"):
            data += [
                {"id": None, "key": c.key, "question": c.question, "expected": c.expected, "source": "qa"}
                for c in selectors.qa_cases_for_chatbot(chatbot=bot)
            ]
        return Response(data)

    @extend_schema(request=CaseIn, responses={201: CASE_OUT})
    def post(self, request: Request, bot_id: str) -> Response:
        bot = self.get_chatbot(bot_id)
        serializer = CaseIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        case = services.case_create(chatbot=bot, created_by=self.org_context.user, **serializer.validated_data)
        return Response(case_payload(case), status=status.HTTP_201_CREATED)


class CaseDetailApi(ChatbotScopedView):
    def get_case(self, bot_id: str, pk: int) -> TestCase:
        case = selectors.case_get(chatbot=self.get_chatbot(bot_id), pk=pk)
        if case is None:
            raise Http404("No such test case for this chatbot.")
        return case

    @extend_schema(responses=CASE_OUT)
    def get(self, request: Request, bot_id: str, pk: int) -> Response:
        return Response(case_payload(self.get_case(bot_id, pk)))

    @extend_schema(responses={204: None})
    def delete(self, request: Request, bot_id: str, pk: int) -> Response:
        services.case_delete(case=self.get_case(bot_id, pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class CaseImportApi(ChatbotScopedView):
    parser_classes = (MultiPartParser, FormParser)

    @extend_schema(
        request={"multipart/form-data": CaseImportIn},
        responses={201: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT},
        description="All rows or none: a bad row answers 400 with its `line` and nothing is imported.",
    )
    def post(self, request: Request, bot_id: str) -> Response:
        bot = self.get_chatbot(bot_id)
        serializer = CaseImportIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        upload = serializer.validated_data["file"]
        try:
            cases = services.cases_import(
                chatbot=bot,
                name=upload.name or "",
                content=upload.read(),
                created_by=self.org_context.user,
                context=self.org_context,
            )
        except CaseFileError as exc:
            return Response({"error": exc.code, "detail": exc.message, "line": exc.line or None}, status=400)
        return Response({"imported": len(cases)}, status=status.HTTP_201_CREATED)


class CaseExportApi(ChatbotScopedView):
    @extend_schema(parameters=[OpenApiParameter("format", str, description="csv | jsonl")], responses=EXPORT_RESPONSES)
    def get(self, request: Request, bot_id: str) -> HttpResponse | Response:
        bot = self.get_chatbot(bot_id)
        fmt = request.query_params.get("format", "csv")
        if fmt not in ("csv", "jsonl"):
            return Response({"detail": "format must be csv or jsonl."}, status=400)
        rows = [
            CaseRow(c.question, list(c.expected), c.must_refuse, list(c.expected_document_ids))
            for c in selectors.cases_for_chatbot(chatbot=bot)
        ]
        body = cases_to_csv(rows) if fmt == "csv" else cases_to_jsonl(rows)
        response = HttpResponse(
            body, content_type="text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
        )
        response["Content-Disposition"] = f'attachment; filename="{bot.slug}-test-cases.{fmt}"'
        return response


class MessageCaseApi(OrgScopedApiView):
    write_action = Action.REVIEW

    @extend_schema(request=None, responses={201: CASE_OUT})
    def post(self, request: Request, pk: int) -> Response:
        message = message_get_for_org(organization=self.org, pk=pk)
        if message is None:
            raise Http404("No such message in your organisation.")
        case = services.case_from_message(message=message, actor=self.org_context.user)
        return Response(case_payload(case), status=status.HTTP_201_CREATED)


class EvalListCreateApi(ChatbotScopedView):
    @extend_schema(responses=EVAL_RUN_LIST_ITEM)
    def get(self, request: Request, bot_id: str) -> Response:
        bot = self.get_chatbot(bot_id)
        runs = selectors.eval_runs_for_chatbot(chatbot=bot)[:100]
        return Response([run_payload(r, results=False) for r in runs])

    @extend_schema(
        request=EvalIn, responses={201: inline_serializer("EvalCreated", {"id": serializers.IntegerField()})}
    )
    def post(self, request: Request, bot_id: str) -> Response:
        bot = self.get_chatbot(bot_id)
        serializer = EvalIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        run = services.eval_run_create(chatbot=bot, created_by=self.org_context.user, **serializer.validated_data)
        return Response({"id": run.pk, "status": run.status}, status=status.HTTP_201_CREATED)


class EvalScopedView(OrgScopedApiView):
    def get_run(self, pk: int | str) -> EvalRun:
        run = selectors.eval_run_get(organization=self.org, pk=int(pk)) if str(pk).isdigit() else None
        if run is None:
            raise Http404("No such evaluation in your organisation.")
        return run


class EvalDetailApi(EvalScopedView):
    @extend_schema(responses=EVAL_RUN_OUT)
    def get(self, request: Request, pk: int) -> Response:
        return Response(run_payload(self.get_run(pk)))


class EvalCancelApi(EvalScopedView):
    @extend_schema(request=None, responses=EVAL_RUN_OUT)
    def post(self, request: Request, pk: int) -> Response:
        run = services.eval_run_cancel(run=self.get_run(pk))
        return Response(run_payload(run, results=False))


class EvalApplySettingsApi(EvalScopedView):
    @extend_schema(request=None, responses=OpenApiTypes.OBJECT)
    def post(self, request: Request, pk: int) -> Response:
        run = self.get_run(pk)
        bot = services.eval_run_settings_apply(run=run, context=self.org_context)
        return Response({"chatbot": bot.pk, "applied": run.settings_override})


class EvalCompareApi(EvalScopedView):
    @extend_schema(
        parameters=[OpenApiParameter("a", int, required=True), OpenApiParameter("b", int, required=True)],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: Request) -> Response:
        a = self.get_run(request.query_params.get("a", ""))
        b = self.get_run(request.query_params.get("b", ""))
        return Response(selectors.eval_runs_compare(a=a, b=b))
