"""A knowledge base's language: which Postgres text search configuration its keyword search uses,
and which language the local answerer splits sentences and drops stop words in.

Postgres ships Snowball stemmers for these languages (`english`, `german`, `french`, …); `simple`
only lower-cases (no stemming, no stop words) and suits mixed or other languages. The
configuration is stored on the knowledge base (`text_search_config`) because the index stage and
keyword search read it; `text_search_config(kb)` is the one place that reads it, and
`kb.services.knowledge_base_update` keeps it in step with `language`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from django.db import models

if TYPE_CHECKING:
    from kb.models import KnowledgeBase


class Language(models.TextChoices):
    ENGLISH = "en", "English"
    GERMAN = "de", "German (Deutsch)"
    FRENCH = "fr", "French (Français)"
    SPANISH = "es", "Spanish (Español)"
    ITALIAN = "it", "Italian (Italiano)"
    DUTCH = "nl", "Dutch (Nederlands)"
    PORTUGUESE = "pt", "Portuguese (Português)"
    SWEDISH = "sv", "Swedish (Svenska)"
    DANISH = "da", "Danish (Dansk)"
    OTHER = "other", "Other or mixed (no stemming)"


#: The Postgres regconfig for each language (all built into Postgres).
TEXT_SEARCH_CONFIGS: Final[dict[str, str]] = {
    Language.ENGLISH: "english",
    Language.GERMAN: "german",
    Language.FRENCH: "french",
    Language.SPANISH: "spanish",
    Language.ITALIAN: "italian",
    Language.DUTCH: "dutch",
    Language.PORTUGUESE: "portuguese",
    Language.SWEDISH: "swedish",
    Language.DANISH: "danish",
    Language.OTHER: "simple",
}


def config_for_language(language: str) -> str:
    """The text search configuration for a language code (unknown codes: `simple`)."""
    return TEXT_SEARCH_CONFIGS.get(language, "simple")


def text_search_config(knowledge_base: KnowledgeBase) -> str:
    """The Postgres text search configuration a knowledge base's tsvectors and queries use."""
    return knowledge_base.text_search_config or config_for_language(knowledge_base.language)
