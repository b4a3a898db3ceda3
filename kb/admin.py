"""Django admin: the operator's back door. Pipeline-owned fields are read-only."""

from django.contrib import admin

from kb.models import Chunk, Document, DocumentVersion, KnowledgeBase, Section


@admin.register(KnowledgeBase)
class KnowledgeBaseAdmin(admin.ModelAdmin):
    list_display = ("name", "organization", "embedding_model", "embedding_dims", "created_at")
    list_filter = ("organization",)
    search_fields = ("name",)
    # The vectors of a knowledge base were computed with this model and dimension.
    readonly_fields = ("embedding_model", "embedding_dims", "created_at", "updated_at")


class VersionInline(admin.TabularInline):
    model = DocumentVersion
    extra = 0
    can_delete = False
    fields = ("number", "original_filename", "status", "error_code", "pages_total", "chunks_total", "queued_at")
    readonly_fields = fields


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = ("title", "knowledge_base", "source_type", "enabled", "latest_version", "live_version")
    list_filter = ("source_type", "enabled")
    search_fields = ("title", "source_url")
    readonly_fields = ("organization", "knowledge_base", "latest_version", "live_version", "created_at", "updated_at")
    inlines = (VersionInline,)


@admin.register(DocumentVersion)
class DocumentVersionAdmin(admin.ModelAdmin):
    list_display = ("document", "number", "status", "error_code", "attempts", "queued_at", "finished_at")
    list_filter = ("status",)
    search_fields = ("document__title", "original_filename", "sha256")
    readonly_fields = [f.name for f in DocumentVersion._meta.fields if f.name not in ("status", "error_message")]


@admin.register(Section)
class SectionAdmin(admin.ModelAdmin):
    list_display = ("version", "ordinal", "page_start", "page_end")
    readonly_fields = ("version", "ordinal", "path", "text", "page_start", "page_end")


@admin.register(Chunk)
class ChunkAdmin(admin.ModelAdmin):
    list_display = ("document", "version", "ordinal", "page_start", "is_live", "embedding_model")
    list_filter = ("is_live", "embedding_model")
    search_fields = ("text",)
    # Chunks are derived data: edit the document and re-index instead.
    exclude = ("embedding", "search_vector")
    readonly_fields = (
        "knowledge_base", "document", "version", "section", "ordinal", "text", "page_start", "page_end",
        "section_path", "content_hash", "is_live", "embedding_model", "embedding_dims",
    )  # fmt: skip
