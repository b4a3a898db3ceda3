"""Glue between stored versions and the parser/chunker: file in, sections and chunk drafts out.

Kept apart from `kb.services` so the pipeline's orchestration (claim, store, embed, publish) does
not depend on how a format is parsed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from kb.exceptions import ParseFailure
from kb.models import DocumentVersion, KnowledgeBase


@dataclass
class SectionDraft:
    ordinal: int
    path: list[str]
    text: str
    page_start: int | None = None
    page_end: int | None = None


@dataclass
class ChunkDraft:
    ordinal: int
    text: str
    section_path: list[str]
    content_hash: str
    section_ordinal: int | None
    page_start: int | None = None
    page_end: int | None = None
    embedding_text: str = ""


@dataclass
class Parsed:
    file_type: str
    page_count: int | None
    sections: list[SectionDraft] = field(default_factory=list)


_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def _text_sections(text: str) -> list[SectionDraft]:
    """Split Markdown-ish text into sections at headings, tracking the heading path."""
    sections: list[SectionDraft] = []
    path: list[tuple[int, str]] = []
    buffer: list[str] = []

    def flush() -> None:
        body = "\n".join(buffer).strip()
        if body:
            sections.append(SectionDraft(ordinal=len(sections), path=[t for _, t in path], text=body))
        buffer.clear()

    for line in text.splitlines():
        match = _HEADING.match(line)
        if match:
            flush()
            level = len(match.group(1))
            path = [(lvl, t) for lvl, t in path if lvl < level] + [(level, match.group(2))]
        else:
            buffer.append(line)
    flush()
    return sections


def parse_version(version: DocumentVersion) -> Parsed:
    data = version.file.open("rb").read()
    version.file.close()
    if not data.strip():
        raise ParseFailure("empty", "This file is empty.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseFailure("unsupported_type", "Only UTF-8 text and Markdown files are supported yet.") from None
    return Parsed(
        file_type="md" if version.original_filename.endswith(".md") else "txt",
        page_count=None,
        sections=_text_sections(text),
    )


def _hash(text: str) -> str:
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()


def chunk_parsed(
    parsed: Parsed, *, knowledge_base: KnowledgeBase, title: str
) -> tuple[list[SectionDraft], list[ChunkDraft]]:
    size, overlap = knowledge_base.chunk_size, knowledge_base.chunk_overlap
    chunks: list[ChunkDraft] = []
    for section in parsed.sections:
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", section.text) if p.strip()]
        current = ""
        pieces: list[str] = []
        for paragraph in paragraphs:
            if current and len(current) + len(paragraph) + 2 > size:
                pieces.append(current)
                current = current[-overlap:] if overlap else ""
            current = f"{current}\n\n{paragraph}".strip()
        if current:
            pieces.append(current)
        for piece in pieces:
            heading = " › ".join([title, *section.path])
            chunks.append(
                ChunkDraft(
                    ordinal=len(chunks),
                    text=piece,
                    section_path=section.path,
                    content_hash=_hash(piece),
                    section_ordinal=section.ordinal,
                    embedding_text=f"{heading}\n{piece}",
                )
            )
    return parsed.sections, chunks


def warm_up_parsers() -> None:
    """Import the parsing stack once (worker parent, before forking)."""


def warm_up_models() -> None:
    """Load the local embedding model (each worker process, after forking)."""
    from kb.embedding import LOCAL_EMBEDDING_MODEL, embed_query

    embed_query("warm up", model=LOCAL_EMBEDDING_MODEL)
