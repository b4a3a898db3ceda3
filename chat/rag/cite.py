"""Step 5 of an answer: citation rows, each with the verbatim sentence of the source it cites."""

from __future__ import annotations

import re
from typing import Any

from chat.models import Chatbot, Citation, Message
from chat.rag.retrieve import Retrieval
from inference.text import split_sentences

#: Passages a refusal may point to (`Chatbot.refusal_pointers`).
MAX_POINTERS = 3
POINTERS_LEAD = "I couldn't find a direct answer, but these passages may help:"
MIN_QUOTE_WORDS = 4


def citations_save(*, answer: Message, retrieval: Retrieval, claims: dict[int, list[str]]) -> None:
    """Store a Citation per cited source number; `claims` are the answer sentences citing it."""
    hits = {i: h for i, h in enumerate(retrieval.hits, start=1)}
    source_texts = {s.number: s.text for s in retrieval.sources}
    rows = []
    for number, sentences in sorted(claims.items()):
        hit = hits.get(number)
        if hit is None or hit.chunk is None:
            continue
        # The source the model read: the chunk, or its whole (small) section.
        quote = best_quote(source_texts.get(number, hit.chunk.text), sentences)
        chunk = _chunk_holding(hit.chunk, quote)
        rows.append(
            Citation(
                message=answer,
                number=number,
                chunk=chunk,
                document_id=chunk.document_id,
                version_id=chunk.version_id,
                document_title=chunk.document.title,
                version_number=chunk.version.number,
                page=chunk.page_start,
                page_end=chunk.page_end,
                section=chunk.section_label,
                quote=quote,
                source_url=chunk.document.source_url,
            )
        )
    Citation.objects.bulk_create(rows)


def pointer_claims(*, retrieval: Retrieval, chatbot: Chatbot) -> dict[int, list[str]]:
    """The passages a refused answer points to: up to three hits whose vector similarity reaches
    the bot's relevance threshold, best first, each "claimed" by the question (so its quote is the
    chunk sentence closest to the question). Empty when the bot's `refusal_pointers` is off.

    Keyword-only hits do not count: a shared word is no sign that a passage is about the question.
    """
    if not chatbot.refusal_pointers:
        return {}
    question = str(retrieval.trace.get("query") or "")
    numbers = [
        number
        for number, hit in enumerate(retrieval.hits, start=1)
        if hit.chunk is not None and (hit.vector_score or 0.0) >= chatbot.min_relevance
    ]
    return {number: [question] for number in numbers[:MAX_POINTERS]}


def pointers_text(*, retrieval: Retrieval, claims: dict[int, list[str]]) -> str:
    """The lines a refusal adds for its pointers: the lead sentence, then "- Title › section [n]".

    Only document titles and section labels: the bot points, it does not answer.
    """
    lines = [POINTERS_LEAD]
    for number in sorted(claims):
        chunk = retrieval.hits[number - 1].chunk
        if chunk is None:
            continue
        place = chunk.document.title + (f" › {chunk.section_label}" if chunk.section_label else "")
        lines.append(f"- {place} [{number}]")
    return "\n".join(lines)


def best_quote(chunk_text: str, claims: list[str]) -> str:
    """The sentence of the chunk that best matches what the answer said with this citation.

    Always verbatim from the chunk, so a reader can find it in the document.
    """
    sentences = split_sentences(chunk_text) or [chunk_text]
    # A heading ("Returns window") shares words with a question but says nothing: quote a sentence.
    sentences = [s for s in sentences if len(s.split()) >= MIN_QUOTE_WORDS] or sentences
    claim_words = {w.lower() for claim in claims for w in claim.split() if len(w) > 2}
    if not claim_words:
        return exact_span(chunk_text, sentences[0])[:600]

    def overlap(sentence: str) -> float:
        words = {w.lower() for w in sentence.split() if len(w) > 2}
        return len(words & claim_words) / (len(words) ** 0.5 or 1)

    return exact_span(chunk_text, max(sentences, key=overlap))[:600]


def exact_span(text: str, sentence: str) -> str:
    """`sentence` as it stands in `text` (sentence splitting folds whitespace; quotes must be
    verbatim so a reader — and the citation check — finds them in the source)."""
    words = sentence.split()
    if not words:
        return sentence
    match = re.search(r"\s+".join(re.escape(w) for w in words), text)
    return match.group(0) if match else sentence


def _chunk_holding(chunk: Any, quote: str) -> Any:
    """The chunk of the same section that contains `quote` (for its exact page), else `chunk`."""
    if quote in chunk.text or not chunk.section_id:
        return chunk
    from kb.models import Chunk

    siblings = (
        Chunk.objects.filter(version_id=chunk.version_id, section_id=chunk.section_id)
        .without_vectors()
        .select_related("document", "version")
    )
    return next((c for c in siblings if quote in c.text), chunk)
