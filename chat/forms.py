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
            "widget_source_links",
        )
        widgets = {
            "knowledge_bases": forms.CheckboxSelectMultiple,
            "system_prompt": forms.Textarea(attrs={"rows": 4}),
            "fallback_message": forms.Textarea(attrs={"rows": 2}),
            "welcome_message": forms.Textarea(attrs={"rows": 2}),
            "theme_color": forms.TextInput(attrs={"type": "color"}),
            "chat_model": forms.TextInput(attrs={"list": "model-choices", "autocomplete": "off"}),
            "temperature": forms.NumberInput(attrs={"step": "0.1", "min": "0", "max": "2"}),
            "min_relevance": forms.NumberInput(attrs={"step": "0.05", "min": "0", "max": "1"}),
        }
        labels = {
            "chat_model": "Model",
            "top_k": "Sources per answer",
            "min_relevance": "Minimum relevance",
            "refusal_pointers": "Point to related passages when there is no answer",
            "widget_source_links": "Visitors may open the cited documents",
        }
        help_texts = {
            "chat_model": "Pick one from the list or type any LiteLLM model as provider/model. "
            "The built-in local/extractive needs no key.",
            "temperature": "0 keeps answers close to the documents' words; higher values vary the wording.",
            "top_k": "How many passages the bot reads before answering. 3–5 suits short policies; "
            "8–10 helps when answers are spread over several pages (slower, and more to pay with hosted models).",
            "min_relevance": "How close a passage must be to the question, from 0 to 1. Example: with 0.25, "
            "“When will my parcel arrive?” still finds “Standard delivery takes 2–4 business days”; "
            "with 0.6 only near-identical wording counts and the bot says “I don't know” more often. "
            "A passage sharing the question's key words is always considered.",
        }

    #: The form's sections, in order: (title, what it is about, fields).
    SECTIONS = (
        (
            "Persona",
            "Who the bot is and how it greets and apologises.",
            ("name", "system_prompt", "welcome_message", "fallback_message", "answer_language", "enabled"),
        ),
        (
            "Knowledge",
            "What the bot answers from, and how picky it is about relevance.",
            ("knowledge_bases", "top_k", "min_relevance", "refusal_pointers"),
        ),
        (
            "Answer behaviour",
            "The model that writes answers, and the questions offered to start with.",
            ("chat_model", "fallback_models_text", "answer_caution", "temperature", "suggested_questions_text"),
        ),
        (
            "Widget",
            "How the chat looks on your website and who may use it.",
            (
                "widget_title",
                "theme_color",
                "widget_position",
                "allowed_origins_text",
                "lead_capture",
                "widget_source_links",
            ),
        ),
    )

    def sections(self) -> list[tuple[str, str, list[forms.BoundField]]]:
        return [(title, intro, [self[name] for name in names]) for title, intro, names in self.SECTIONS]

    def __init__(self, *args: Any, organization: Organization, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["knowledge_bases"].queryset = KnowledgeBase.objects.filter(organization=organization)  # type: ignore[attr-defined]
        self.fields["chat_model"].widget.attrs["placeholder"] = "local/extractive (the default)"
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
