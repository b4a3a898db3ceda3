from django.contrib import admin

from chat.models import Chatbot, Citation, Conversation, Correction, Message, ProviderKey


@admin.register(Chatbot)
class ChatbotAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "organization", "chat_model", "enabled", "created_at")
    list_filter = ("enabled", "organization")
    search_fields = ("name", "slug")
    filter_horizontal = ("knowledge_bases",)
    readonly_fields = ("widget_key", "created_at", "updated_at")


@admin.register(ProviderKey)
class ProviderKeyAdmin(admin.ModelAdmin):
    list_display = ("organization", "provider", "last_four", "api_base", "created_at")
    # The encrypted value is never shown nor editable here; staff set keys in the settings page.
    exclude = ("encrypted_key",)
    readonly_fields = ("organization", "provider", "last_four", "created_at")


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    can_delete = False
    fields = ("role", "content", "refused", "model", "feedback", "grounding_label", "total_ms")
    readonly_fields = fields


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("pk", "chatbot", "channel", "title", "reviewed", "lead_email", "created_at")
    list_filter = ("channel", "reviewed")
    search_fields = ("title", "lead_email")
    readonly_fields = ("organization", "chatbot", "channel", "visitor_id", "visitor_token_hash", "origin", "created_at")
    inlines = (MessageInline,)


class CitationInline(admin.TabularInline):
    model = Citation
    extra = 0
    can_delete = False
    exclude = ("chunk", "document", "version")
    readonly_fields = ("number", "document_title", "version_number", "page", "section", "quote", "source_url")


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("pk", "conversation", "role", "refused", "feedback", "model", "created_at")
    list_filter = ("role", "refused", "feedback")
    search_fields = ("content",)
    # The audit trail of an answer is evidence: read-only.
    readonly_fields = [f.name for f in Message._meta.fields]
    inlines = (CitationInline,)


@admin.register(Correction)
class CorrectionAdmin(admin.ModelAdmin):
    list_display = ("message", "question", "document", "created_by", "created_at")
    readonly_fields = ("message", "question", "answer", "document", "created_by", "created_at")
