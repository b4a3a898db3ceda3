"""REST API of the knowledge-gap inbox (paths in `chat.gaps.api_urls`).

Viewers read; editors and above act on a group (the default write action).
"""

from __future__ import annotations

from typing import Any

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api import OrgScopedApiView
from chat.api import ChatbotScopedView
from chat.gaps import selectors, services
from chat.models.gaps import GapStatus, KnowledgeGap
from kb.selectors import document_get
from kb.serializers import DocumentOutSerializer


class AnswerIn(serializers.Serializer[Any]):
    answer = serializers.CharField(max_length=20_000, help_text="The answer, added as a Q&A entry.")


class GapOut(serializers.Serializer[Any]):
    """An open group of the inbox (the schema of `gap_payload`)."""

    id = serializers.IntegerField()
    chatbot = serializers.IntegerField()
    label = serializers.CharField(help_text="The group's most central question.")  # type: ignore[assignment]
    status = serializers.ChoiceField(choices=GapStatus.choices)
    count = serializers.IntegerField()
    questions = serializers.ListField(child=serializers.CharField(), help_text="Most recent first.")
    last_seen = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class GapDetailOut(GapOut):
    answer_document_id = serializers.IntegerField(allow_null=True)
    items = serializers.ListField(
        child=serializers.DictField(),
        help_text="The most recent questions with the answer given, its citations and what retrieval found.",
    )


class GapOutOfScopeOut(GapOut):
    cases = serializers.IntegerField(help_text="Must-refuse test cases added.")


def gap_payload(gap: KnowledgeGap, *, detail: bool = False) -> dict[str, Any]:
    last_seen = getattr(gap, "last_seen", None)
    data: dict[str, Any] = {
        "id": gap.pk,
        "chatbot": gap.chatbot_id,
        "label": gap.label,
        "status": gap.status,
        "count": getattr(gap, "count", None),
        "questions": selectors.gap_questions(gap=gap),
        "last_seen": last_seen.isoformat() if last_seen else None,
        "created_at": gap.created_at.isoformat(),
    }
    if data["count"] is None:
        data["count"] = len(data["questions"])
    if detail:
        data["answer_document_id"] = gap.answer_document_id
        data["items"] = [item.as_dict() for item in selectors.gap_items(gap=gap)]
    return data


class ChatbotGapsApi(ChatbotScopedView):
    @extend_schema(
        responses=GapOut(many=True),
        operation_id="chatbot_gaps_list",
        description="The bot's open knowledge gaps, ranked by how often and how recently they were asked. "
        "New refused or disliked answers are grouped first.",
    )
    def get(self, request: Request, bot_id: str) -> Response:
        bot = self.get_chatbot(bot_id)
        services.gaps_refresh(chatbot=bot)
        return Response([gap_payload(g) for g in selectors.gaps_open_for_chatbot(chatbot=bot)])


class GapScopedView(OrgScopedApiView):
    def get_gap(self, pk: int) -> KnowledgeGap:
        gap = selectors.gap_get(organization=self.org, pk=pk)
        if gap is None:
            raise Http404("No such knowledge gap in your organisation.")
        return gap


class GapDetailApi(GapScopedView):
    @extend_schema(responses=GapDetailOut)
    def get(self, request: Request, pk: int) -> Response:
        return Response(gap_payload(self.get_gap(pk), detail=True))


class GapAnswerApi(GapScopedView):
    @extend_schema(
        request=AnswerIn,
        responses={201: DocumentOutSerializer, 409: None},
        description="Write the answer: a Q&A entry in the bot's first knowledge base (live, or in its draft "
        "when it reviews changes first), and the group's questions as test cases expecting it.",
    )
    def post(self, request: Request, pk: int) -> Response:
        gap = self.get_gap(pk)
        serializer = AnswerIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        document = services.gap_answer(gap=gap, answer=serializer.validated_data["answer"], context=self.org_context)
        return Response(
            DocumentOutSerializer(document_get(organization=self.org, pk=document.pk)).data,
            status=status.HTTP_201_CREATED,
        )


class GapOutOfScopeApi(GapScopedView):
    @extend_schema(
        request=None,
        responses=GapOutOfScopeOut,
        description="Out of scope: the group's questions become must-refuse test cases.",
    )
    def post(self, request: Request, pk: int) -> Response:
        gap = self.get_gap(pk)
        cases = services.gap_mark_out_of_scope(gap=gap, context=self.org_context)
        return Response(gap_payload(gap) | {"cases": cases})


class GapDismissApi(GapScopedView):
    @extend_schema(request=None, responses=GapOut)
    def post(self, request: Request, pk: int) -> Response:
        gap = services.gap_dismiss(gap=self.get_gap(pk), context=self.org_context)
        return Response(gap_payload(gap))
