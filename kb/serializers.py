from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from kb.languages import Language
from kb.models import Document, KnowledgeBase
from kb.pipeline.ranking import ranking_progress


class KnowledgeBaseInSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    embedding_model = serializers.CharField(required=False, max_length=200)
    language = serializers.ChoiceField(choices=Language.choices, required=False, default=Language.ENGLISH)
    chunk_size = serializers.IntegerField(required=False, min_value=200, max_value=8000, default=1200)
    chunk_overlap = serializers.IntegerField(required=False, min_value=0, max_value=2000, default=150)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["chunk_overlap"] >= attrs["chunk_size"]:
            raise serializers.ValidationError({"chunk_overlap": "Must be smaller than chunk_size."})
        return attrs


class KnowledgeBaseUpdateSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    embedding_model = serializers.CharField(max_length=200, required=False)
    language = serializers.ChoiceField(choices=Language.choices, required=False)
    review_changes = serializers.BooleanField(required=False)
    publish_min_pass_rate = serializers.FloatField(required=False, allow_null=True, min_value=0.0, max_value=1.0)
    precise_ranking = serializers.BooleanField(
        required=False,
        help_text="Re-rank the best 20 hybrid candidates with the local e5 model (better ranking on long "
        "technical documents; ingestion embeds every chunk a second time). Filled in the background.",
    )


class DocumentUpdateSerializer(serializers.Serializer[Any]):
    enabled = serializers.BooleanField(required=False)
    title = serializers.CharField(max_length=500, required=False)


class KnowledgeBaseOutSerializer(serializers.ModelSerializer[KnowledgeBase]):
    document_count = serializers.SerializerMethodField()
    reembedding = serializers.SerializerMethodField()
    ranking_vectors = serializers.SerializerMethodField()

    class Meta:
        model = KnowledgeBase
        fields = (
            "id",
            "name",
            "description",
            "embedding_model",
            "embedding_dims",
            "language",
            "text_search_config",
            "chunk_size",
            "chunk_overlap",
            "document_count",
            "reembedding",
            "review_changes",
            "release_number",
            "publish_min_pass_rate",
            "precise_ranking",
            "ranking_vectors",
            "created_at",
        )

    def get_reembedding(self, kb: KnowledgeBase) -> dict[str, Any] | None:
        if not kb.reembed_model and not kb.reembed_error:
            return None
        return {
            "model": kb.reembed_model or None,
            "done": kb.reembed_done,
            "total": kb.reembed_total,
            "error": kb.reembed_error or None,
        }

    @extend_schema_field(
        {
            "type": "object",
            "nullable": True,
            "properties": {"ready": {"type": "integer"}, "total": {"type": "integer"}},
            "description": "Live chunks with their precise-ranking vector (null: precise ranking is off). "
            "Until every candidate of a query has one, that query keeps the fused order.",
        }
    )
    def get_ranking_vectors(self, kb: KnowledgeBase) -> dict[str, int] | None:
        progress = ranking_progress(kb)
        return None if progress is None else {"ready": progress.ready, "total": progress.total}

    def get_document_count(self, kb: KnowledgeBase) -> int:
        annotated = getattr(kb, "document_count", None)
        return annotated if annotated is not None else Document.objects.filter(knowledge_base=kb).count()


class DocumentUploadSerializer(serializers.Serializer[Any]):
    file = serializers.FileField(allow_empty_file=True)
    title = serializers.CharField(required=False, max_length=500)


class DocumentOutSerializer(serializers.ModelSerializer[Document]):
    status = serializers.CharField(source="latest_version.status", default=None, allow_null=True)
    error = serializers.SerializerMethodField()
    error_code = serializers.CharField(source="latest_version.error_code", default="")
    version = serializers.IntegerField(source="latest_version.number", default=None, allow_null=True)
    live_version = serializers.IntegerField(source="live_version.number", default=None, allow_null=True)
    filename = serializers.CharField(source="latest_version.original_filename", default="")
    file_type = serializers.CharField(source="latest_version.file_type", default="")
    pages = serializers.IntegerField(source="latest_version.pages_total", default=None, allow_null=True)
    chunks = serializers.IntegerField(source="latest_version.chunks_total", default=0)
    chunks_embedded = serializers.IntegerField(source="latest_version.chunks_embedded", default=0)
    progress = serializers.IntegerField(source="latest_version.progress_percent", default=0)
    attempts = serializers.IntegerField(source="latest_version.attempts", default=0)
    # Set while a long new document is still embedding: search already finds it by its words.
    searchable_at = serializers.DateTimeField(source="latest_version.searchable_at", default=None, allow_null=True)

    class Meta:
        model = Document
        fields = (
            "id",
            "knowledge_base",
            "title",
            "source_type",
            "source_url",
            "enabled",
            "status",
            "error",
            "error_code",
            "version",
            "live_version",
            "filename",
            "file_type",
            "pages",
            "chunks",
            "chunks_embedded",
            "progress",
            "attempts",
            "searchable_at",
            "created_at",
            "updated_at",
        )

    def get_error(self, document: Document) -> str | None:
        version = document.latest_version
        return version.error_message or None if version else None


class SearchInSerializer(serializers.Serializer[Any]):
    query = serializers.CharField(max_length=2000)
    top_k = serializers.IntegerField(required=False, min_value=1, max_value=50, default=5)
    mode = serializers.ChoiceField(choices=("hybrid", "vector", "keyword"), required=False, default="hybrid")


class SearchResultSerializer(serializers.Serializer[Any]):
    chunk_id = serializers.IntegerField()
    text = serializers.CharField()
    document_id = serializers.IntegerField()
    document_title = serializers.CharField()
    version = serializers.IntegerField()
    page = serializers.IntegerField(allow_null=True)
    page_end = serializers.IntegerField(allow_null=True)
    section = serializers.CharField()
    score = serializers.FloatField()
    vector_score = serializers.FloatField(allow_null=True)
    keyword_score = serializers.FloatField(allow_null=True)


class TextEntrySerializer(serializers.Serializer[Any]):
    title = serializers.CharField(max_length=500)
    text = serializers.CharField(max_length=500_000)


class QaEntrySerializer(serializers.Serializer[Any]):
    question = serializers.CharField(max_length=2000)
    answer = serializers.CharField(max_length=20_000)


class UrlEntrySerializer(serializers.Serializer[Any]):
    url = serializers.CharField(max_length=2000)
