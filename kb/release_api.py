"""REST API of drafts and releases: see what is staged, publish or discard it, list and restore releases."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import Action
from kb import releases, selectors, services
from kb.api import KnowledgeBaseScopedView
from kb.exceptions import KnowledgeBaseError
from kb.models import Document, Release
from kb.serializers import DocumentOutSerializer, DocumentUploadSerializer

_DraftOut = inline_serializer(
    "DraftOut",
    {
        "review_changes": serializers.BooleanField(),
        "release": serializers.IntegerField(),
        "changes": inline_serializer(
            "DraftChangeOut",
            {
                "document_id": serializers.IntegerField(),
                "title": serializers.CharField(),
                "action": serializers.CharField(),
                "status": serializers.CharField(),
                "version": serializers.IntegerField(allow_null=True),
                "error": serializers.CharField(),
            },
            many=True,
        ),
        "gate": serializers.DictField(),
    },
)
_ReleaseNumber = inline_serializer("ReleaseNumber", {"release": serializers.IntegerField()})


class ReleaseOutSerializer(serializers.ModelSerializer[Release]):
    created_by = serializers.CharField(source="created_by_label")

    class Meta:
        model = Release
        fields = ("number", "created_at", "created_by", "summary", "changes", "evaluation", "restored_from")


def draft_payload(kb: Any) -> dict[str, Any]:
    changes = []
    for change in releases.draft_changes(kb):
        version = change.version
        changes.append(
            {
                "document_id": change.document_id,
                "title": change.document.title,
                "action": change.action,
                "status": releases.draft_status(change),
                "version": version.number if version is not None else None,
                "error": version.error_message if version is not None else "",
            }
        )
    return {
        "review_changes": kb.review_changes,
        "release": kb.release_number,
        "changes": changes,
        "gate": releases.publish_gate(kb),
    }


class DraftApi(KnowledgeBaseScopedView):
    @extend_schema(responses=_DraftOut)
    def get(self, request: Request, kb_id: int) -> Response:
        """The changes waiting in the draft, with the ingestion status of each staged version."""
        return Response(draft_payload(self.get_knowledge_base(kb_id)))


class DraftPublishApi(KnowledgeBaseScopedView):
    @extend_schema(
        request=inline_serializer("PublishIn", {"override": serializers.BooleanField(required=False)}),
        responses={200: _ReleaseNumber, 409: inline_serializer("PublishBlocked", {"detail": serializers.CharField()})},
    )
    def post(self, request: Request, kb_id: int) -> Response:
        """Make the whole draft live at once as a new release (409 with the reason when blocked)."""
        kb = self.get_knowledge_base(kb_id)
        override = request.data.get("override") in (True, "true", "1", 1) if hasattr(request.data, "get") else False
        try:
            release = releases.draft_publish_gated(
                knowledge_base=kb,
                actor=self.org_context,
                override=override,
                may_override=self.org_context.allows(Action.DELETE_ORGANIZATION),
            )
        except KnowledgeBaseError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response({"release": release.number})


class DraftDiscardApi(KnowledgeBaseScopedView):
    @extend_schema(request=None, responses=inline_serializer("Discarded", {"discarded": serializers.IntegerField()}))
    def post(self, request: Request, kb_id: int) -> Response:
        kb = self.get_knowledge_base(kb_id)
        count = releases.draft_discard(knowledge_base=kb, actor=self.org_context)
        return Response({"discarded": count})


class ReleaseListApi(KnowledgeBaseScopedView):
    @extend_schema(responses=ReleaseOutSerializer(many=True))
    def get(self, request: Request, kb_id: int) -> Response:
        kb = self.get_knowledge_base(kb_id)
        return Response(ReleaseOutSerializer(Release.objects.filter(knowledge_base=kb), many=True).data)


class ReleaseRestoreApi(KnowledgeBaseScopedView):
    @extend_schema(request=None, responses={200: _ReleaseNumber})
    def post(self, request: Request, kb_id: int, number: int) -> Response:
        """Make an earlier release's knowledge live again, atomically (recorded as a new release)."""
        kb = self.get_knowledge_base(kb_id)
        if not Release.objects.filter(knowledge_base=kb, number=number).exists():
            raise Http404("No such release of this knowledge base.")
        try:
            release = releases.release_restore(knowledge_base=kb, number=number, actor=self.org_context)
        except KnowledgeBaseError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response({"release": release.number})


class DocumentVersionCreateApi(KnowledgeBaseScopedView):
    parser_classes = (MultiPartParser, FormParser)

    def get_document(self, doc_id: int) -> Document:
        document = selectors.document_get(organization=self.org, pk=doc_id)
        if document is None:
            raise Http404("No such document in your organisation.")
        return document

    @extend_schema(request={"multipart/form-data": DocumentUploadSerializer}, responses={201: DocumentOutSerializer})
    def post(self, request: Request, doc_id: int) -> Response:
        """Replace a document's content with a new version (the old one answers until it is ready)."""
        document = self.get_document(doc_id)
        serializer = DocumentUploadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        upload = serializer.validated_data["file"]
        result = services.document_upload(
            knowledge_base=document.knowledge_base,
            upload=upload,
            filename=upload.name,
            uploaded_by=self.org_context.user,
            replace_document=document,
            actor=self.org_context,
        )
        data = dict(DocumentOutSerializer(result.document).data)
        data["duplicate"] = not result.created
        return Response(data, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)
