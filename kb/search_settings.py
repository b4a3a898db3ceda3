"""Changes to how a knowledge base is searched, each applied without interrupting its answers.

- language: every chunk's keyword vector and the BM25 statistics, rebuilt in one transaction;
- embedding model: every chunk re-embedded in the background while the old vectors serve;
- precise ranking: the e5 ranking vectors filled in the background (kb.precise_ranking).

`kb.services.knowledge_base_update` is the entry point; these are its steps.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from kb import embedding as embedding_api
from kb.exceptions import EmbeddingError, KnowledgeBaseError
from kb.languages import config_for_language
from kb.models import Chunk, KnowledgeBase
from kb.pipeline.index import reindex_knowledge_base, term_stats
from kb.pipeline.index.vector_indexes import ensure_vector_index
from kb.precise_ranking import RANKING_MODEL
from kb.tasks import enqueue_reembed

# --- precise ranking -------------------------------------------------------------------------


def precise_ranking_starts(*, knowledge_base: KnowledgeBase, changes: dict[str, Any]) -> bool:
    """True when `changes` turn precise ranking on (its vectors must then be filled).

    Refused when the knowledge base would have precise ranking and search with e5 itself (it
    would add nothing), whichever of the two the change sets: before anything is saved.
    """
    model_after = str(
        changes.get("embedding_model", knowledge_base.reembed_model or knowledge_base.embedding_model)
    ).strip()
    precise_after = changes.get("precise_ranking", knowledge_base.precise_ranking)
    if precise_after and model_after == RANKING_MODEL:
        raise KnowledgeBaseError(
            "precise_ranking_redundant",
            "Precise ranking re-ranks with the e5 model, so it adds nothing to a knowledge base that "
            "searches with e5. Turn precise ranking off, or choose another embedding model.",
        )
    return bool(changes.get("precise_ranking")) and not knowledge_base.precise_ranking


# --- changing the language -------------------------------------------------------------------


def knowledge_base_change_language(*, knowledge_base: KnowledgeBase, language: str) -> KnowledgeBase:
    """Switch a knowledge base's language: every chunk's keyword-search vector is recomputed with
    the new text search configuration and the BM25 statistics recounted, in one transaction
    (searches see the old index or the new one). Takes a few seconds per 100k chunks."""
    with transaction.atomic():
        locked = KnowledgeBase.objects.select_for_update().get(pk=knowledge_base.pk)
        locked.language = language
        locked.text_search_config = config_for_language(language)
        locked.save(update_fields=["language", "text_search_config", "updated_at"])
        reindex_knowledge_base(locked)
        term_stats.rebuild(locked)
    knowledge_base.refresh_from_db()
    return knowledge_base


# --- changing the embedding model ------------------------------------------------------------


def knowledge_base_change_embedding_model(*, knowledge_base: KnowledgeBase, model: str) -> KnowledgeBase:
    """Start re-embedding every chunk with `model` in the background; old vectors keep serving."""
    model = model.strip()
    if model == knowledge_base.embedding_model and not knowledge_base.reembed_model:
        return knowledge_base
    try:
        dims = embedding_api.embedding_dimensions(model)
    except EmbeddingError as exc:
        raise KnowledgeBaseError("embedding_model_unusable", f"The model {model} cannot be used: {exc}") from exc
    ensure_vector_index(dims)
    with transaction.atomic():
        Chunk.objects.filter(knowledge_base=knowledge_base).update(next_embedding=None)
        KnowledgeBase.objects.filter(pk=knowledge_base.pk).update(
            reembed_model=model,
            reembed_dims=dims,
            reembed_done=0,
            reembed_total=Chunk.objects.filter(knowledge_base=knowledge_base).count(),
            reembed_error="",
        )
        transaction.on_commit(lambda: enqueue_reembed(knowledge_base.pk))
    knowledge_base.refresh_from_db()
    return knowledge_base
