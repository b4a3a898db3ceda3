"""REST API of the kb app. Views parse input, check permission, call one service or selector."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q
from django.http import Http404
from drf_spectacular.utils import extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api import OrgScopedApiView
from accounts.parsers import SafeJSONParser
from accounts.permissions import Action
from kb import selectors, services
from kb.models import KnowledgeBase
from kb.serializers import (
    DocumentOutSerializer,
    DocumentUpdateSerializer,
    DocumentUploadSerializer,
    KnowledgeBaseInSerializer,
    KnowledgeBaseOutSerializer,
    KnowledgeBaseUpdateSerializer,
    QaEntrySerializer,
    SearchInSerializer,
    SearchResultSerializer,
    TextEntrySerializer,
    UrlEntrySerializer,
)


class KnowledgeBaseScopedView(OrgScopedApiView):
    def get_knowledge_base(self, kb_id: int) -> KnowledgeBase:
        kb = selectors.knowledge_base_get(organization=self.org, pk=kb_id)
        if kb is None:
            raise Http404("No such knowledge base in your organisation.")
        return kb


class KnowledgeBaseListCreateApi(KnowledgeBaseScopedView):
    @extend_schema(responses=KnowledgeBaseOutSerializer(many=True))
    def get(self, request: Request) -> Response:
        kbs = selectors.knowledge_bases_for_org(organization=self.org).annotate(
            document_count=Count("documents", filter=Q(documents__deleted_at__isnull=True))
        )
        return Response(KnowledgeBaseOutSerializer(kbs, many=True).data)

    @extend_schema(request=KnowledgeBaseInSerializer, responses={201: KnowledgeBaseOutSerializer})
    def post(self, request: Request) -> Response:
        serializer = KnowledgeBaseInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        kb = services.knowledge_base_create(
            organization=self.org, created_by=self.org_context.user, actor=self.org_context, **serializer.validated_data
        )
        return Response(KnowledgeBaseOutSerializer(kb).data, status=status.HTTP_201_CREATED)


class KnowledgeBaseDetailApi(KnowledgeBaseScopedView):
    @extend_schema(responses=KnowledgeBaseOutSerializer)
    def get(self, request: Request, kb_id: int) -> Response:
        return Response(KnowledgeBaseOutSerializer(self.get_knowledge_base(kb_id)).data)

    @extend_schema(request=KnowledgeBaseUpdateSerializer, responses=KnowledgeBaseOutSerializer)
    def patch(self, request: Request, kb_id: int) -> Response:
        """Rename, describe, or change the embedding model (re-embeds in the background: 202)."""
        kb = self.get_knowledge_base(kb_id)
        serializer = KnowledgeBaseUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        update = services.knowledge_base_update(
            knowledge_base=kb, changes=dict(serializer.validated_data), actor=self.org_context
        )
        return Response(
            KnowledgeBaseOutSerializer(update.knowledge_base).data,
            status=status.HTTP_202_ACCEPTED if update.reembedding else status.HTTP_200_OK,
        )


class DocumentListUploadApi(KnowledgeBaseScopedView):
    parser_classes = (MultiPartParser, FormParser, SafeJSONParser)

    @extend_schema(responses=DocumentOutSerializer(many=True))
    def get(self, request: Request, kb_id: int) -> Response:
        kb = self.get_knowledge_base(kb_id)
        documents = selectors.documents_for_org(organization=self.org).filter(knowledge_base=kb)
        return Response(DocumentOutSerializer(documents, many=True).data)

    @extend_schema(request={"multipart/form-data": DocumentUploadSerializer}, responses={201: DocumentOutSerializer})
    def post(self, request: Request, kb_id: int) -> Response:
        kb = self.get_knowledge_base(kb_id)
        serializer = DocumentUploadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        upload = serializer.validated_data["file"]
        result = services.document_upload(
            knowledge_base=kb,
            upload=upload,
            filename=upload.name,
            title=serializer.validated_data.get("title"),
            uploaded_by=self.org_context.user,
            actor=self.org_context,
        )
        data = dict(DocumentOutSerializer(result.document).data)
        data["duplicate"] = not result.created
        return Response(data, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


class DocumentDetailApi(OrgScopedApiView):
    def _get(self, doc_id: int):  # type: ignore[no-untyped-def]
        document = selectors.document_get(organization=self.org, pk=doc_id)
        if document is None:
            raise Http404("No such document in your organisation.")
        return document

    @extend_schema(responses=DocumentOutSerializer)
    def get(self, request: Request, doc_id: int) -> Response:
        return Response(DocumentOutSerializer(self._get(doc_id)).data)

    @extend_schema(request=DocumentUpdateSerializer, responses=DocumentOutSerializer)
    def patch(self, request: Request, doc_id: int) -> Response:
        """Switch a document on or off (`enabled`) or rename it; in review mode the switch waits in the draft."""
        document = self._get(doc_id)
        serializer = DocumentUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if "title" in data:
            document = services.document_rename(document=document, title=data["title"], actor=self.org_context)
        if "enabled" in data:
            services.document_set_enabled(document=document, enabled=data["enabled"], actor=self.org_context)
        return Response(DocumentOutSerializer(self._get(doc_id)).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, doc_id: int) -> Response:
        services.document_delete(document=self._get(doc_id), actor=self.org_context)
        return Response(status=status.HTTP_204_NO_CONTENT)


class KnowledgeBaseSearchApi(KnowledgeBaseScopedView):
    # Searching reads only, although it is a POST.
    write_action = Action.VIEW

    @extend_schema(
        request=SearchInSerializer,
        responses=inline_serializer(
            "SearchOut", {"query": serializers.CharField(), "results": SearchResultSerializer(many=True)}
        ),
    )
    def post(self, request: Request, kb_id: int) -> Response:
        kb = self.get_knowledge_base(kb_id)
        serializer = SearchInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        hits = selectors.chunk_search(
            knowledge_bases=[kb],
            query=serializer.validated_data["query"],
            limit=serializer.validated_data["top_k"],
            mode=serializer.validated_data["mode"],
        )
        results = [
            {
                "chunk_id": hit.chunk_id,
                "text": hit.chunk.text,
                "document_id": hit.chunk.document_id,
                "document_title": hit.chunk.document.title,
                "version": hit.chunk.version.number,
                "page": hit.chunk.page_start,
                "page_end": hit.chunk.page_end,
                "section": hit.chunk.section_label,
                "score": hit.score,
                "vector_score": hit.vector_score,
                "keyword_score": hit.keyword_score,
            }
            for hit in hits
            if hit.chunk is not None
        ]
        return Response({"query": serializer.validated_data["query"], "results": results})


class _SourceCreateApi(KnowledgeBaseScopedView):
    """Base of the typed-in sources: validate with `input_serializer`, create with `create`."""

    input_serializer: type[serializers.Serializer[Any]]

    def create(self, kb: KnowledgeBase, data: dict[str, Any]) -> services.UploadResult:
        raise NotImplementedError

    def post(self, request: Request, kb_id: int) -> Response:
        kb = self.get_knowledge_base(kb_id)
        serializer = self.input_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = self.create(kb, dict(serializer.validated_data))
        return Response(DocumentOutSerializer(result.document).data, status=status.HTTP_201_CREATED)


@extend_schema_view(post=extend_schema(request=TextEntrySerializer, responses={201: DocumentOutSerializer}))
class TextEntryCreateApi(_SourceCreateApi):
    input_serializer = TextEntrySerializer

    def create(self, kb: KnowledgeBase, data: dict[str, Any]) -> services.UploadResult:
        return services.document_create_text(
            knowledge_base=kb, created_by=self.org_context.user, actor=self.org_context, **data
        )


@extend_schema_view(post=extend_schema(request=QaEntrySerializer, responses={201: DocumentOutSerializer}))
class QaEntryCreateApi(_SourceCreateApi):
    input_serializer = QaEntrySerializer

    def create(self, kb: KnowledgeBase, data: dict[str, Any]) -> services.UploadResult:
        return services.qa_entry_create(
            knowledge_base=kb, created_by=self.org_context.user, actor=self.org_context, **data
        )


@extend_schema_view(post=extend_schema(request=UrlEntrySerializer, responses={201: DocumentOutSerializer}))
class UrlEntryCreateApi(_SourceCreateApi):
    input_serializer = UrlEntrySerializer

    def create(self, kb: KnowledgeBase, data: dict[str, Any]) -> services.UploadResult:
        return services.document_add_url(
            knowledge_base=kb, url=data["url"], created_by=self.org_context.user, actor=self.org_context
        )
