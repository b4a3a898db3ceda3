"""REST API of replays: POST …/knowledge-bases/{id}/draft/replay/ and GET /api/v1/replays/{id}/."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api import OrgScopedApiView
from chat.models import Replay
from chat.replay import services
from kb.selectors import knowledge_base_get


class ReplayIn(serializers.Serializer[Any]):
    limit = serializers.IntegerField(min_value=1, max_value=services.MAX_REPLAY, default=50)


REPLAY_OUT = inline_serializer(
    "ReplayOut",
    {
        "id": serializers.IntegerField(),
        "knowledge_base": serializers.IntegerField(),
        "status": serializers.ChoiceField(choices=("queued", "running", "done", "failed")),
        "progress": inline_serializer(
            "ReplayProgress", {"done": serializers.IntegerField(), "total": serializers.IntegerField()}
        ),
        "counts": serializers.DictField(child=serializers.IntegerField()),
        "error": serializers.CharField(),
        "items": inline_serializer(
            "ReplayItemOut",
            {
                "question": serializers.CharField(),
                "chatbot": serializers.IntegerField(allow_null=True),
                "live_answer": serializers.CharField(),
                "live_refused": serializers.BooleanField(),
                "live_citations": serializers.ListField(child=serializers.DictField()),
                "draft_answer": serializers.CharField(),
                "draft_refused": serializers.BooleanField(),
                "draft_citations": serializers.ListField(child=serializers.DictField()),
                "change": serializers.ChoiceField(choices=("same", "changed", "newly_refused", "newly_answered")),
            },
            many=True,
        ),
    },
)


def replay_payload(replay: Replay) -> dict[str, Any]:
    return {
        "id": replay.pk,
        "knowledge_base": replay.knowledge_base_id,
        "status": replay.status,
        "progress": {"done": replay.items_done, "total": replay.items_total},
        "counts": services.replay_counts(replay),
        "error": replay.error,
        "items": [
            {
                "question": item.question,
                "chatbot": item.chatbot_id,
                "live_answer": item.live_answer,
                "live_refused": item.live_refused,
                "live_citations": item.live_citations,
                "draft_answer": item.draft_answer,
                "draft_refused": item.draft_refused,
                "draft_citations": item.draft_citations,
                "change": item.change,
            }
            for item in replay.items.all()
        ],
    }


class DraftReplayApi(OrgScopedApiView):
    @extend_schema(request=ReplayIn, responses={201: inline_serializer("ReplayId", {"id": serializers.IntegerField()})})
    def post(self, request: Request, kb_id: int) -> Response:
        """Replay the last N real questions of the knowledge base's bots: live and draft answers side by side."""
        kb = knowledge_base_get(organization=self.org, pk=kb_id)
        if kb is None:
            raise Http404("No such knowledge base in your organisation.")
        serializer = ReplayIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        replay = services.replay_create(
            knowledge_base=kb, limit=serializer.validated_data["limit"], actor=self.org_context
        )
        return Response({"id": replay.pk}, status=status.HTTP_201_CREATED)


class ReplayDetailApi(OrgScopedApiView):
    @extend_schema(responses=REPLAY_OUT)
    def get(self, request: Request, replay_id: int) -> Response:
        replay = services.replay_get(organization=self.org, pk=replay_id)
        if replay is None:
            raise Http404("No such replay in your organisation.")
        return Response(replay_payload(replay))
