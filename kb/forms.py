from __future__ import annotations

from django import forms

from kb.embedding import LOCAL_EMBEDDING_CHOICES
from kb.languages import Language


class KnowledgeBaseForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    language = forms.ChoiceField(
        choices=Language.choices,
        initial=Language.ENGLISH,
        help_text="The language of the documents: keyword search stems words and skips stop words in it.",
    )
    embedding_model = forms.ChoiceField(
        choices=LOCAL_EMBEDDING_CHOICES,
        initial=LOCAL_EMBEDDING_CHOICES[0][0],
        label="Embedding model",
        help_text="For documents or visitors in other languages than English choose Multilingual: "
        "a question in one language then finds answers written in another.",
    )
    chunk_size = forms.IntegerField(min_value=200, max_value=8000, initial=1200)
    chunk_overlap = forms.IntegerField(min_value=0, max_value=2000, initial=150)

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        size, overlap = data.get("chunk_size"), data.get("chunk_overlap")
        if isinstance(size, int) and isinstance(overlap, int) and overlap >= size:
            self.add_error("chunk_overlap", "Must be smaller than the chunk size.")
        return data
