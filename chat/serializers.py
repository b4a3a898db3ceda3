from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers

from chat.models import AnswerCaution, AnswerLanguage, Chatbot
from chat.widget import widget_snippet


class ChatbotInSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200)
    knowledge_bases = serializers.ListField(child=serializers.IntegerField(), allow_empty=True)
    slug = serializers.SlugField(required=False, max_length=80)
    system_prompt = serializers.CharField(required=False, allow_blank=True)
    chat_model = serializers.CharField(required=False, allow_blank=True, max_length=200)
    fallback_models = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False, max_length=3, allow_empty=True
    )
    temperature = serializers.FloatField(required=False, min_value=0, max_value=2)
    top_k = serializers.IntegerField(required=False, min_value=1, max_value=20)
    min_relevance = serializers.FloatField(required=False, min_value=0, max_value=1)
    refusal_pointers = serializers.BooleanField(required=False)
    answer_language = serializers.ChoiceField(choices=AnswerLanguage.choices, required=False)
    answer_caution = serializers.ChoiceField(choices=AnswerCaution.choices, required=False)
    fallback_message = serializers.CharField(required=False)
    welcome_message = serializers.CharField(required=False, allow_blank=True)
    suggested_questions = serializers.ListField(child=serializers.CharField(max_length=200), required=False)
    enabled = serializers.BooleanField(required=False)
    allowed_origins = serializers.ListField(child=serializers.CharField(max_length=300), required=False)
    theme_color = serializers.RegexField(r"^#[0-9a-fA-F]{6}$", required=False)
    widget_title = serializers.CharField(required=False, allow_blank=True, max_length=100)
    widget_position = serializers.ChoiceField(choices=("right", "left"), required=False)
    lead_capture = serializers.BooleanField(required=False)

    def validate_allowed_origins(self, origins: list[str]) -> list[str]:
        from chat.widget import normalize_origin

        cleaned = []
        for origin in origins:
            normalized = normalize_origin(origin)
            if normalized is None:
                raise serializers.ValidationError(
                    f"{origin!r} is not an origin: use scheme://host[:port], e.g. https://www.example.com"
                )
            cleaned.append(normalized)
        return cleaned


class ChatbotOutSerializer(serializers.ModelSerializer[Chatbot]):
    knowledge_bases: serializers.PrimaryKeyRelatedField[Any] = serializers.PrimaryKeyRelatedField(
        many=True, read_only=True
    )
    widget_snippet = serializers.SerializerMethodField()
    effective_chat_model = serializers.CharField(read_only=True)

    class Meta:
        model = Chatbot
        fields = (
            "id",
            "name",
            "slug",
            "knowledge_bases",
            "system_prompt",
            "chat_model",
            "effective_chat_model",
            "fallback_models",
            "temperature",
            "top_k",
            "min_relevance",
            "refusal_pointers",
            "answer_language",
            "answer_caution",
            "fallback_message",
            "welcome_message",
            "suggested_questions",
            "enabled",
            "widget_key",
            "allowed_origins",
            "theme_color",
            "widget_title",
            "widget_position",
            "lead_capture",
            "widget_snippet",
            "created_at",
            "updated_at",
        )

    def get_widget_snippet(self, bot: Chatbot) -> str:
        request = self.context.get("request")
        base = settings.PUBLIC_URL or (request.build_absolute_uri("/").rstrip("/") if request else "")
        return widget_snippet(bot, base_url=base)


class ChatInSerializer(serializers.Serializer[Any]):
    message = serializers.CharField(max_length=4000, trim_whitespace=True)
    conversation_id = serializers.IntegerField(required=False, allow_null=True)
    stream = serializers.BooleanField(required=False, default=False)
