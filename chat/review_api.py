"""Conversation review API: list with filters, transcript, feedback, corrections, export."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from django.http import Http404, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api import OrgScopedApiView
from accounts.permissions import Action
from chat import selectors, services
from chat.models import Conversation, Message
from chat.sse import events_in_thread

FILTER_PARAMETERS = [
    OpenApiParameter(name, str, description=description)
    for name, description in (
        ("chatbot", "chatbot id"),
        ("channel", "widget | playground | api"),
        ("feedback", "up | down | none"),
        ("refused", "true | false"),
        ("reviewed", "true | false"),
        ("has_lead", "true | false"),
        ("low_grounding", "true | false"),
        ("q", "full-text search over messages"),
        ("date_from", "YYYY-MM-DD"),
        ("date_to", "YYYY-MM-DD"),
    )
]


def message_payload(message: Message) -> dict[str, Any]:
    data = selectors.serialize_message(message)
    data.update(
        {
            "feedback": message.feedback or None,
            "feedback_comment": message.feedback_comment,
            "grounding": message.grounding,
            "retrieval_trace": message.retrieval_trace,
            "corrections": [
                {"id": c.id, "answer": c.answer, "document_id": c.document_id, "created_at": c.created_at.isoformat()}
                for c in message.corrections.all()
            ],
        }
    )
    return data


def conversation_summary(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.pk,
        "chatbot": conversation.chatbot_id,
        "chatbot_name": conversation.chatbot.name,
        "channel": conversation.channel,
        "title": conversation.title,
        "reviewed": conversation.reviewed,
        "tags": conversation.tags,
        "lead": {"email": conversation.lead_email, "name": conversation.lead_name, "message": conversation.lead_message}
        if conversation.lead_email
        else None,
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
    }


SUMMARY_FIELDS: dict[str, serializers.Field[Any, Any, Any, Any]] = {
    "id": serializers.IntegerField(),
    "chatbot": serializers.IntegerField(),
    "chatbot_name": serializers.CharField(),
    "channel": serializers.CharField(),
    "title": serializers.CharField(allow_blank=True),
    "reviewed": serializers.BooleanField(),
    "tags": serializers.ListField(child=serializers.CharField()),
    "lead": serializers.DictField(allow_null=True),
    "created_at": serializers.DateTimeField(),
    "updated_at": serializers.DateTimeField(),
}
MESSAGE_OUT = inline_serializer(
    "ReviewMessageOut",
    {
        "id": serializers.IntegerField(),
        "role": serializers.CharField(),
        "content": serializers.CharField(allow_blank=True),
        "feedback": serializers.CharField(allow_null=True),
        "corrections": serializers.ListField(child=serializers.DictField()),
    },
)
CONVERSATION_PAGE = inline_serializer(
    "ConversationPage",
    {
        "count": serializers.IntegerField(),
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": inline_serializer("ConversationSummary", SUMMARY_FIELDS, many=True),
    },
)
CONVERSATION_DETAIL = inline_serializer(
    "ConversationDetail",
    {
        **SUMMARY_FIELDS,
        "internal_note": serializers.CharField(allow_blank=True),
        "messages": serializers.ListField(child=serializers.DictField()),
    },
)
REVIEW_IN = inline_serializer(
    "ConversationReviewIn",
    {
        "reviewed": serializers.BooleanField(required=False),
        "tags": serializers.ListField(child=serializers.CharField(), required=False),
        "internal_note": serializers.CharField(required=False, allow_blank=True),
    },
)
CORRECTION_OUT = inline_serializer(
    "CorrectionOut",
    {
        "id": serializers.IntegerField(),
        "message_id": serializers.IntegerField(),
        "question": serializers.CharField(allow_blank=True),
        "answer": serializers.CharField(),
        "document_id": serializers.IntegerField(allow_null=True),
        "knowledge_base_id": serializers.IntegerField(allow_null=True),
    },
)


class ReviewView(OrgScopedApiView):
    write_action = Action.REVIEW

    def filters(self, request: Request) -> selectors.ConversationFilters:
        try:
            return selectors.ConversationFilters.from_query(request.query_params)
        except ValueError as exc:
            raise serializers.ValidationError({"detail": str(exc)}) from exc

    def get_conversation(self, pk: int) -> Conversation:
        conversation = selectors.conversation_get_for_org(organization=self.org, pk=pk)
        if conversation is None:
            raise Http404("No such conversation in your organisation.")
        return conversation

    def get_message(self, pk: int) -> Message:
        message = selectors.message_get_for_org(organization=self.org, pk=pk)
        if message is None:
            raise Http404("No such message in your organisation.")
        return message


class ConversationListApi(ReviewView):
    @extend_schema(parameters=FILTER_PARAMETERS, responses=CONVERSATION_PAGE, operation_id="api_v1_conversations_list")
    def get(self, request: Request) -> Response:
        qs = selectors.conversations_filtered(organization=self.org, filters=self.filters(request))
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response([conversation_summary(c) for c in page or []])


class ConversationDetailApi(ReviewView):
    @extend_schema(responses=CONVERSATION_DETAIL)
    def get(self, request: Request, pk: int) -> Response:
        conversation = self.get_conversation(pk)
        messages = conversation.messages.prefetch_related("citations", "corrections")
        return Response(
            {
                **conversation_summary(conversation),
                "internal_note": conversation.internal_note,
                "messages": [message_payload(m) for m in messages],
            }
        )

    @extend_schema(request=REVIEW_IN, responses=CONVERSATION_DETAIL)
    def patch(self, request: Request, pk: int) -> Response:
        conversation = self.get_conversation(pk)
        data = request.data if isinstance(request.data, dict) else {}
        tags = data.get("tags")
        if tags is not None and not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
            raise serializers.ValidationError({"tags": "A list of strings."})
        reviewed = data.get("reviewed")
        if reviewed is not None and not isinstance(reviewed, bool):
            # Strict: "false" is a non-empty string, and bool("false") would mark it reviewed.
            raise serializers.ValidationError({"reviewed": "true or false (a JSON boolean)."})
        internal_note = data.get("internal_note")
        if internal_note is not None and not isinstance(internal_note, str):
            raise serializers.ValidationError({"internal_note": "A string."})
        services.conversation_review_update(
            conversation=conversation,
            actor=self.org_context.user,
            reviewed=reviewed,
            tags=tags,
            internal_note=internal_note,
        )
        return self.get(request, pk)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        conversation = self.get_conversation(pk)
        services.conversation_delete(conversation=conversation, context=self.org_context)
        return Response(status=status.HTTP_204_NO_CONTENT)


class FeedbackIn(serializers.Serializer[Any]):
    value = serializers.ChoiceField(choices=("up", "down"))
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")


class MessageFeedbackApi(ReviewView):
    write_action = Action.VIEW  # anyone who may read the conversation may rate an answer

    @extend_schema(request=FeedbackIn, responses=MESSAGE_OUT)
    def post(self, request: Request, pk: int) -> Response:
        message = self.get_message(pk)
        serializer = FeedbackIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.message_feedback_set(message=message, **serializer.validated_data)
        return Response(message_payload(message))


class CorrectionIn(serializers.Serializer[Any]):
    answer = serializers.CharField(max_length=20_000)


class MessageCorrectionApi(ReviewView):
    @extend_schema(request=CorrectionIn, responses={201: CORRECTION_OUT})
    def post(self, request: Request, pk: int) -> Response:
        message = self.get_message(pk)
        serializer = CorrectionIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        correction = services.message_correct(
            message=message,
            answer=serializer.validated_data["answer"],
            actor=self.org_context.user,
            context=self.org_context,
        )
        return Response(
            {
                "id": correction.pk,
                "message_id": message.pk,
                "question": correction.question,
                "answer": correction.answer,
                "document_id": correction.document_id,
                "knowledge_base_id": correction.document.knowledge_base_id if correction.document else None,
            },
            status=status.HTTP_201_CREATED,
        )


EXPORT_COLUMNS = (
    "conversation_id",
    "chatbot",
    "channel",
    "conversation_created_at",
    "message_id",
    "role",
    "content",
    "refused",
    "feedback",
    "feedback_comment",
    "grounding_grade",
    "model",
    "total_ms",
    "citations",
    "lead_email",
)


def _export_rows(organization: Any, filters: selectors.ConversationFilters) -> Iterator[dict[str, Any]]:
    conversations = selectors.conversations_filtered(organization=organization, filters=filters)
    for conversation in conversations.iterator(chunk_size=500):
        for message in conversation.messages.prefetch_related("citations"):
            yield {
                "conversation_id": conversation.pk,
                "chatbot": conversation.chatbot.slug,
                "channel": conversation.channel,
                "conversation_created_at": conversation.created_at.isoformat(),
                "message_id": message.pk,
                "role": message.role,
                "content": message.content,
                "refused": message.refused,
                "feedback": message.feedback,
                "feedback_comment": message.feedback_comment,
                "grounding_grade": message.grounding_grade,
                "model": message.model,
                "total_ms": message.total_ms,
                "citations": [
                    {"document": c.document_title, "version": c.version_number, "page": c.page, "quote": c.quote}
                    for c in message.citations.all()
                ],
                "lead_email": conversation.lead_email,
            }


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A cell a spreadsheet will not run: text starting like a formula gets a leading `'`.

    Visitors write the messages; `=HYPERLINK(...)` in an export opened by staff would be live.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _csv_lines(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS)
    writer.writeheader()
    for row in rows:
        row = {**row, "citations": json.dumps(row["citations"], ensure_ascii=False)}
        writer.writerow({key: csv_cell(value) for key, value in row.items()})
        if buffer.tell() > 64_000:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _jsonl_lines(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    for row in rows:
        yield json.dumps(row, ensure_ascii=False) + "\n"


class ConversationExportApi(ReviewView):
    """Filtered conversations as CSV or JSON lines, streamed row by row (never built in memory)."""

    @extend_schema(
        parameters=[*FILTER_PARAMETERS, OpenApiParameter("format", str, description="csv | jsonl")],
        responses={(200, "text/csv"): OpenApiTypes.STR, (200, "application/x-ndjson"): OpenApiTypes.STR},
    )
    def get(self, request: Request) -> StreamingHttpResponse | Response:
        fmt = request.query_params.get("format", "csv")
        if fmt not in ("csv", "jsonl"):
            return Response({"detail": "format must be csv or jsonl."}, status=400)
        filters = self.filters(request)
        org = self.org

        def lines() -> Iterator[str]:
            rows = _export_rows(org, filters)
            return _csv_lines(rows) if fmt == "csv" else _jsonl_lines(rows)

        async def stream() -> AsyncIterator[str]:
            async for chunk in events_in_thread(lines):
                yield chunk

        response = StreamingHttpResponse(
            stream(), content_type="text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
        )
        response["Content-Disposition"] = f'attachment; filename="conversations.{fmt}"'
        return response
