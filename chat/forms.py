from __future__ import annotations

from typing import Any

from django import forms

from accounts.models import Organization
from chat.exceptions import ChatError
from chat.models import AnswerCaution, Chatbot
from chat.services import chat_model_check, fallback_models_check
from chat.widget import normalize_origin
from inference.extractive import caution
from kb.models import KnowledgeBase


def caution_help_text() -> str:
    """The measured trade-off of each caution setting, in plain words (built-in answerer only)."""
    parts = [f"{label.split(':')[0]}: {caution.describe(value)}." for value, label in AnswerCaution.choices]
    return "Applies to the built-in offline answerer (local/extractive). " + " ".join(parts)


class ChatbotForm(forms.ModelForm):  # type: ignore[type-arg]
    suggested_questions_text = forms.CharField(
        label="Suggested questions", required=False, widget=forms.Textarea(attrs={"rows": 3}), help_text="One per line."
    )
    allowed_origins_text = forms.CharField(
        label="Allowed website origins",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="One per line, e.g. https://www.example.com — the widget answers only there.",
    )

    fallback_models_text = forms.CharField(
        label="Fallback models",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="One per line, tried in order when the chat model keeps failing, e.g. anthropic/claude-3-5-haiku.",
    )

    class Meta:
        model = Chatbot
        fields = (
            "name",
            "knowledge_bases",
            "system_prompt",
            "chat_model",
            "temperature",
            "top_k",
            "min_relevance",
            "refusal_pointers",
            "answer_language",
            "answer_caution",
            "fallback_message",
            "welcome_message",
            "enabled",
            "theme_color",
            "widget_title",
            "widget_position",
            "lead_capture",
        )
        widgets = {
            "knowledge_bases": forms.CheckboxSelectMultiple,
            "system_prompt": forms.Textarea(attrs={"rows": 4}),
            "fallback_message": forms.Textarea(attrs={"rows": 2}),
            "welcome_message": forms.Textarea(attrs={"rows": 2}),
            "theme_color": forms.TextInput(attrs={"type": "color"}),
        }

    def __init__(self, *args: Any, organization: Organization, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["knowledge_bases"].queryset = KnowledgeBase.objects.filter(organization=organization)  # type: ignore[attr-defined]
        # The fallback list belongs next to the model it stands in for.
        names = [n for n in self.fields if n != "fallback_models_text"]
        names.insert(names.index("chat_model") + 1, "fallback_models_text")
        self.order_fields(names)
        self.fields["chat_model"].widget.attrs["placeholder"] = (
            "local/extractive (default) — or e.g. openai/gpt-4o-mini"
        )
        self.fields["answer_caution"].label = "How readily the offline answerer answers"
        self.fields["answer_caution"].help_text = caution_help_text()
        if self.instance.pk:
            self.fields["suggested_questions_text"].initial = "\n".join(self.instance.suggested_questions)
            self.fields["allowed_origins_text"].initial = "\n".join(self.instance.allowed_origins)
            self.fields["fallback_models_text"].initial = "\n".join(self.instance.fallback_models)

    def clean_chat_model(self) -> str:
        model = str(self.cleaned_data.get("chat_model") or "").strip()
        try:
            chat_model_check(model)
        except ChatError as exc:
            raise forms.ValidationError(exc.message) from None
        return model

    def clean_fallback_models_text(self) -> list[str]:
        try:
            return fallback_models_check(self.cleaned_data["fallback_models_text"].splitlines())
        except ChatError as exc:
            raise forms.ValidationError(exc.message) from None

    def clean_suggested_questions_text(self) -> list[str]:
        return [line.strip() for line in self.cleaned_data["suggested_questions_text"].splitlines() if line.strip()]

    def clean_allowed_origins_text(self) -> list[str]:
        origins = []
        for line in self.cleaned_data["allowed_origins_text"].splitlines():
            if not line.strip():
                continue
            origin = normalize_origin(line)
            if origin is None:
                raise forms.ValidationError(f"“{line.strip()}” is not an origin like https://www.example.com")
            origins.append(origin)
        return origins
