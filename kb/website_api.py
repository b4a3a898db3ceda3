"""REST API of website sources: add a site, read its pages and last report, sync it, set its schedule."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from kb.api import KnowledgeBaseScopedView
from kb.models import WebSource, WebSourceMode, WebSourceSchedule
from kb.websites import selectors as website_selectors
from kb.websites import services as website_services


class WebSourceInSerializer(serializers.Serializer[Any]):
    url = serializers.CharField(max_length=2000)
    mode = serializers.ChoiceField(choices=WebSourceMode.choices, default=WebSourceMode.SITEMAP)
    path_prefix = serializers.CharField(max_length=500, default="/")
    max_depth = serializers.IntegerField(min_value=0, max_value=website_services.MAX_DEPTH_LIMIT, default=3)
    max_pages = serializers.IntegerField(min_value=1, max_value=website_services.MAX_PAGES_LIMIT, default=100)
    schedule = serializers.ChoiceField(choices=WebSourceSchedule.choices, default=WebSourceSchedule.WEEKLY)


class WebSourceUpdateSerializer(serializers.Serializer[Any]):
    schedule = serializers.ChoiceField(choices=WebSourceSchedule.choices)


_SOURCE_FIELDS: tuple[str, ...] = (
    "id",
    "knowledge_base",
    "url",
    "mode",
    "path_prefix",
    "max_depth",
    "max_pages",
    "schedule",
    "status",
    "error_message",
    "last_synced_at",
    "last_report",
    "created_at",
)


class WebSourceOutSerializer(serializers.ModelSerializer[WebSource]):
    class Meta:
        model = WebSource
        fields = _SOURCE_FIELDS
        read_only_fields = _SOURCE_FIELDS


class WebPageOutSerializer(serializers.Serializer[Any]):
    url = serializers.CharField()
    document_id = serializers.IntegerField(allow_null=True)
    status = serializers.CharField()
    result = serializers.CharField()
    error = serializers.CharField()


class WebSourceDetailSerializer(WebSourceOutSerializer):
    pages = serializers.SerializerMethodField()

    class Meta(WebSourceOutSerializer.Meta):
        fields = (*_SOURCE_FIELDS, "pages")
        read_only_fields = (*_SOURCE_FIELDS, "pages")

    @extend_schema(responses=WebPageOutSerializer(many=True))
    def get_pages(self, source: WebSource) -> list[dict[str, Any]]:
        return [
            {
                "url": page.url,
                "document_id": page.document_id,
                "status": website_selectors.web_page_status(page),
                "result": page.result,
                "error": page.error_message,
            }
            for page in website_selectors.web_pages(source=source)
        ]


class _WebSourceView(KnowledgeBaseScopedView):
    def get_source(self, kb_id: int, source_id: int) -> WebSource:
        kb = self.get_knowledge_base(kb_id)
        source = website_selectors.web_source_get(organization=self.org, knowledge_base=kb, pk=source_id)
        if source is None:
            raise Http404("No such website source in your organisation.")
        return source


class WebSourceListCreateApi(_WebSourceView):
    @extend_schema(responses=WebSourceOutSerializer(many=True))
    def get(self, request: Request, kb_id: int) -> Response:
        kb = self.get_knowledge_base(kb_id)
        sources = website_selectors.web_sources_for_knowledge_base(organization=self.org, knowledge_base=kb)
        return Response(WebSourceOutSerializer(sources, many=True).data)

    @extend_schema(request=WebSourceInSerializer, responses={201: WebSourceOutSerializer})
    def post(self, request: Request, kb_id: int) -> Response:
        """Add a website (sitemap or crawl, with bounds and a schedule); its first sync starts at once."""
        kb = self.get_knowledge_base(kb_id)
        serializer = WebSourceInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        source = website_services.web_source_create(
            knowledge_base=kb, created_by=self.org_context.user, actor=self.org_context, **serializer.validated_data
        )
        return Response(WebSourceOutSerializer(source).data, status=status.HTTP_201_CREATED)


class WebSourceDetailApi(_WebSourceView):
    @extend_schema(responses=WebSourceDetailSerializer)
    def get(self, request: Request, kb_id: int, source_id: int) -> Response:
        return Response(WebSourceDetailSerializer(self.get_source(kb_id, source_id)).data)

    @extend_schema(request=WebSourceUpdateSerializer, responses=WebSourceOutSerializer)
    def patch(self, request: Request, kb_id: int, source_id: int) -> Response:
        source = self.get_source(kb_id, source_id)
        serializer = WebSourceUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        source = website_services.web_source_set_schedule(
            source=source, schedule=serializer.validated_data["schedule"], actor=self.org_context
        )
        return Response(WebSourceOutSerializer(source).data)


class WebSourceSyncApi(_WebSourceView):
    @extend_schema(request=None, responses={202: WebSourceOutSerializer})
    def post(self, request: Request, kb_id: int, source_id: int) -> Response:
        """Sync now: 202 with the source (its status is `queued`, or `syncing` if one was already running)."""
        source = self.get_source(kb_id, source_id)
        website_services.web_source_sync_request(source=source, actor=self.org_context)
        return Response(WebSourceOutSerializer(source).data, status=status.HTTP_202_ACCEPTED)
