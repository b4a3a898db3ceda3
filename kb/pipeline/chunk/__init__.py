"""Structure-aware chunking of parsed documents (pure Python, no Django, no spaCy).

A document becomes *sections* (the text under one heading path) and *chunks* (retrieval units of
at most `max_chars`). Chunks never cross a section boundary, so a chunk's `section_path` is exactly
where its text sits, and every chunk carries its `section_ordinal`: retrieval can widen a hit to
the whole section (`SectionDraft.text`). Rules, and why:

- A heading with no body of its own whose next section is its child ("Top" directly followed by
  "Top > Sub A") gets no chunk: its title is already in the child's path.
- Consecutive tiny sections (under `min_chars`) are merged while the result still fits one chunk;
  the merged section's path is the paths' common prefix, so it stays exact. Layout-guessed PDF
  headings otherwise make dozens of 40-character chunks that match everything and say nothing.
- Oversized elements are split at paragraph, line, sentence, then word boundaries; tables at row
  boundaries with the header row repeated on every piece, so each piece still reads as a table.
- Consecutive chunks of one section overlap by about `overlap` characters (cut at a word or
  sentence boundary), except after a table piece, which repeats its header instead.
- Slides and spreadsheet sheets are hard boundaries: a chunk never spans two of them.

Stored chunk text is exactly document text; `ChunkDraft.embedding_text()` is what gets embedded
(the section path first, which measurably helps retrieval of chunks whose text never names their
topic).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from kb.pipeline.parse import ParsedDocument, ParsedElement

DEFAULT_MAX_CHARS: Final = 1200
DEFAULT_OVERLAP: Final = 150
DEFAULT_MIN_CHARS: Final = 200
# Widening a hit to "its section" is only useful while the section fits in a prompt; longer
# sections (a 300-page PDF without headings is one section) are cut into parts of this size.
DEFAULT_MAX_SECTION_CHARS: Final = 12_000

PATH_SEPARATOR: Final = " > "
# An overlap tail shorter than this (because the next unit nearly fills the chunk) is not worth it.
_MIN_OVERLAP: Final = 30
# File types whose slides/sheets must not share a chunk.
_PAGE_BOUND_TYPES: Final = frozenset({"pptx", "xlsx"})
_TABLE_SEPARATOR_RE: Final = re.compile(r"^\|(?:\s*:?-{3,}:?\s*\|)+$")
_SENTENCE_END_RE: Final = re.compile(r"(?<=[.!?。！？])\s+")


@dataclass(slots=True)
class SectionDraft:
    """The full text under one heading path (or one part of a very long section)."""

    ordinal: int
    section_path: list[str]
    text: str
    page_start: int | None = None
    page_end: int | None = None
    first_chunk: int = 0  # ordinal of its first chunk
    chunk_count: int = 0

    @property
    def title(self) -> str:
        """The innermost heading, or "" for text before any heading."""
        return self.section_path[-1] if self.section_path else ""

    @property
    def path(self) -> list[str]:
        """Alias of `section_path`."""
        return self.section_path


def embedding_text(text: str, section_path: Sequence[str], document_title: str | None = None) -> str:
    """What a chunk's vector embeds: "Document > Heading > Subheading" on a line, then its text
    (a draft's at ingestion, a stored chunk's when it is embedded later or re-embedded)."""
    path = [document_title, *section_path] if document_title else list(section_path)
    if not path:
        return text
    return PATH_SEPARATOR.join(path) + "\n\n" + text


@dataclass(slots=True)
class ChunkDraft:
    """One retrieval unit: document text (never prefixed), where it sits, and its hash."""

    ordinal: int
    text: str
    section_ordinal: int
    section_path: list[str] = field(default_factory=list)
    page_start: int | None = None
    page_end: int | None = None
    content_hash: str = ""

    def embedding_text(self, document_title: str | None = None) -> str:
        """The text to embed: "Document > Heading > Subheading" on a line, then the chunk."""
        return embedding_text(self.text, self.section_path, document_title)

    def embedding_hash(self, document_title: str | None = None) -> str:
        """Hash of `embedding_text()`: reuse a stored vector only when this matches, since a
        renamed heading changes the embedded text even when `content_hash` does not change."""
        return content_hash(self.embedding_text(document_title))


@dataclass(slots=True)
class Chunking:
    """Sections and chunks of one document, both in reading order."""

    sections: list[SectionDraft]
    chunks: list[ChunkDraft]


def normalize_text(text: str) -> str:
    """The form hashed for `content_hash`: NFC, whitespace runs collapsed, trimmed."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def content_hash(text: str) -> str:
    """sha256 hex of the normalized text: equal for text that differs only in whitespace."""
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()


def chunk_document(
    document: ParsedDocument,
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    overlap: int = DEFAULT_OVERLAP,
    min_chars: int = DEFAULT_MIN_CHARS,
    max_section_chars: int = DEFAULT_MAX_SECTION_CHARS,
) -> Chunking:
    """Split a parsed document into sections and chunks (see the module docstring for rules)."""
    _check_sizes(max_chars=max_chars, overlap=overlap, min_chars=min_chars)
    # Plain-text files come one line per element; a blank line between each would double them.
    joiner = "\n" if document.file_type == "txt" else "\n\n"
    return _chunk_elements(
        document.elements,
        joiner=joiner,
        page_bound=document.file_type in _PAGE_BOUND_TYPES,
        max_chars=max_chars,
        overlap=overlap,
        min_chars=min_chars,
        max_section_chars=max(max_section_chars, max_chars),
    )


def chunk_plain_text(
    text: str,
    *,
    title: str,
    max_chars: int = DEFAULT_MAX_CHARS,
    overlap: int = DEFAULT_OVERLAP,
    min_chars: int = DEFAULT_MIN_CHARS,
) -> Chunking:
    """Chunk typed-in text (a note, a Q&A answer) without going through unstructured.

    Paragraphs are separated by blank lines; Markdown headings ("## Refunds") start sections.
    `title` (the entry's title or question) is the root of every section path, so it reaches the
    embedding through `embedding_text()` without being repeated in the stored text.
    """
    _check_sizes(max_chars=max_chars, overlap=overlap, min_chars=min_chars)
    root = [title.strip()] if title.strip() else []
    elements: list[ParsedElement] = []
    stack: list[tuple[int, str]] = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        lines: list[str] = []
        for line in block.strip().split("\n"):
            heading = re.match(r"^(#{1,6})\s+(.+?)\s*#*\s*$", line)
            if heading is None:
                lines.append(line.rstrip())
                continue
            if lines:
                elements.append(_plain_element("\n".join(lines), root, stack))
                lines = []
            level = len(heading.group(1))
            stack = [(lvl, name) for lvl, name in stack if lvl < level] + [(level, heading.group(2))]
            elements.append(ParsedElement(text=heading.group(2), category="Title", section_path=_path(root, stack)))
        if any(line.strip() for line in lines):
            elements.append(_plain_element("\n".join(lines).strip(), root, stack))
    return _chunk_elements(
        elements,
        joiner="\n\n",
        page_bound=False,
        max_chars=max_chars,
        overlap=overlap,
        min_chars=min_chars,
        max_section_chars=max(DEFAULT_MAX_SECTION_CHARS, max_chars),
    )


def _plain_element(text: str, root: list[str], stack: list[tuple[int, str]]) -> ParsedElement:
    return ParsedElement(text=text, category="NarrativeText", section_path=_path(root, stack))


def _path(root: list[str], stack: list[tuple[int, str]]) -> list[str]:
    return root + [name for _, name in stack]


def _check_sizes(*, max_chars: int, overlap: int, min_chars: int) -> None:
    if max_chars < 100:
        raise ValueError("max_chars must be at least 100")
    if not 0 <= overlap <= max_chars // 2:
        raise ValueError("overlap must be between 0 and max_chars / 2")
    if not 0 <= min_chars <= max_chars:
        raise ValueError("min_chars must be between 0 and max_chars")


# --------------------------------------------------------------------------------------------
# Sections.


@dataclass(slots=True)
class _Unit:
    """A piece of text that is never split further by the packer."""

    text: str
    page: int | None
    category: str
    table_header: str | None = None  # set on table pieces: the header lines they start with


@dataclass(slots=True)
class _Section:
    path: list[str]
    elements: list[ParsedElement]
    heading_only: bool = False

    def size(self, joiner: str) -> int:
        return sum(len(element.text) for element in self.elements) + len(joiner) * (len(self.elements) - 1)


def _raw_sections(elements: Sequence[ParsedElement], *, page_bound: bool) -> list[_Section]:
    sections: list[_Section] = []
    for element in elements:
        current = sections[-1] if sections else None
        starts_new = (
            current is None
            or element.category == "Title"
            or element.section_path != current.path
            or (page_bound and element.page_number != current.elements[-1].page_number)
        )
        if starts_new:
            sections.append(_Section(path=list(element.section_path), elements=[element]))
        else:
            assert current is not None
            current.elements.append(element)
    for section in sections:
        section.heading_only = len(section.elements) == 1 and section.elements[0].category == "Title"
    return sections


def _drop_implied_headings(sections: list[_Section]) -> list[_Section]:
    """Drop a body-less heading whose next section is its descendant (its title is in that path)."""
    kept: list[_Section] = []
    for index, section in enumerate(sections):
        following = sections[index + 1] if index + 1 < len(sections) else None
        if (
            section.heading_only
            and following is not None
            and len(following.path) > len(section.path)
            and following.path[: len(section.path)] == section.path
        ):
            continue
        kept.append(section)
    return kept


def _merge_tiny(
    sections: list[_Section], *, joiner: str, min_chars: int, max_chars: int, page_bound: bool
) -> list[_Section]:
    merged: list[_Section] = []
    for section in sections:
        previous = merged[-1] if merged else None
        if (
            previous is not None
            and previous.size(joiner) < min_chars
            and previous.size(joiner) + len(joiner) + section.size(joiner) <= max_chars
            and not (page_bound and previous.elements[-1].page_number != section.elements[0].page_number)
        ):
            previous.path = _common_prefix(previous.path, section.path)
            previous.elements.extend(section.elements)
            previous.heading_only = False
        else:
            merged.append(_Section(path=list(section.path), elements=list(section.elements)))
    return merged


def _common_prefix(left: list[str], right: list[str]) -> list[str]:
    prefix: list[str] = []
    for a, b in zip(left, right, strict=False):
        if a != b:
            break
        prefix.append(a)
    return prefix


def _split_long_section(section: _Section, *, joiner: str, max_section_chars: int) -> list[_Section]:
    if section.size(joiner) <= max_section_chars:
        return [section]
    parts: list[_Section] = [_Section(path=section.path, elements=[])]
    size = 0
    for element in section.elements:
        if parts[-1].elements and size + len(joiner) + len(element.text) > max_section_chars:
            parts.append(_Section(path=section.path, elements=[]))
            size = 0
        parts[-1].elements.append(element)
        size += len(element.text) + (len(joiner) if size else 0)
    return parts


# --------------------------------------------------------------------------------------------
# Chunks.


def _chunk_elements(
    elements: Sequence[ParsedElement],
    *,
    joiner: str,
    page_bound: bool,
    max_chars: int,
    overlap: int,
    min_chars: int,
    max_section_chars: int,
) -> Chunking:
    sections = _drop_implied_headings(_raw_sections(elements, page_bound=page_bound))
    sections = _merge_tiny(sections, joiner=joiner, min_chars=min_chars, max_chars=max_chars, page_bound=page_bound)
    parts = [
        part
        for section in sections
        for part in _split_long_section(section, joiner=joiner, max_section_chars=max_section_chars)
    ]
    section_drafts: list[SectionDraft] = []
    chunks: list[ChunkDraft] = []
    for part in parts:
        pages = [element.page_number for element in part.elements if element.page_number is not None]
        draft = SectionDraft(
            ordinal=len(section_drafts),
            section_path=list(part.path),
            text=_join([(element.text, element.category) for element in part.elements], joiner),
            page_start=min(pages) if pages else None,
            page_end=max(pages) if pages else None,
            first_chunk=len(chunks),
        )
        units = [unit for element in part.elements for unit in _units(element, max_chars, overlap)]
        for text, unit_pages in _pack(units, joiner=joiner, max_chars=max_chars, overlap=overlap):
            chunks.append(
                ChunkDraft(
                    ordinal=len(chunks),
                    text=text,
                    section_ordinal=draft.ordinal,
                    section_path=list(part.path),
                    page_start=min(unit_pages) if unit_pages else None,
                    page_end=max(unit_pages) if unit_pages else None,
                    content_hash=content_hash(text),
                )
            )
        draft.chunk_count = len(chunks) - draft.first_chunk
        section_drafts.append(draft)
    return Chunking(sections=section_drafts, chunks=chunks)


def _join(pieces: Iterable[tuple[str, str]], joiner: str) -> str:
    """Join (text, category) pieces; consecutive list items stay on consecutive lines."""
    out: list[str] = []
    previous_category = ""
    for text, category in pieces:
        if out:
            out.append("\n" if category == previous_category == "ListItem" else joiner)
        out.append(text)
        previous_category = category
    return "".join(out)


def _units(element: ParsedElement, max_chars: int, overlap: int) -> list[_Unit]:
    """The element as one unit, or as pieces short enough to take an overlap tail in front."""
    if len(element.text) <= max_chars:
        return [_Unit(element.text, element.page_number, element.category)]
    if element.category == "Table":
        pieces = _table_pieces(element.text, max_chars)
        if pieces is not None:
            return [_Unit(text, element.page_number, "Table", table_header=header) for text, header in pieces]
    limit = max_chars - overlap - 2
    return [_Unit(piece, element.page_number, element.category) for piece in split_text(element.text, limit)]


def _table_pieces(table: str, max_chars: int) -> list[tuple[str, str]] | None:
    """Markdown table rows packed into pieces, each starting with the header; None if the table
    has no header separator (then it is split as text)."""
    lines = table.split("\n")
    if len(lines) < 3 or not _TABLE_SEPARATOR_RE.match(lines[1]):
        return None
    header = "\n".join(lines[:2])
    room = max_chars - len(header) - 1
    if room < max_chars // 4:  # a header that eats the chunk: fall back to plain splitting
        return None
    pieces: list[tuple[str, str]] = []
    rows: list[str] = []
    size = 0
    for row in lines[2:]:
        for part in [row] if len(row) <= room else split_text(row, room):
            if rows and size + 1 + len(part) > room:
                pieces.append((header + "\n" + "\n".join(rows), header))
                rows, size = [], 0
            rows.append(part)
            size += len(part) + (1 if size else 0)
    if rows:
        pieces.append((header + "\n" + "\n".join(rows), header))
    return pieces


def split_text(text: str, max_chars: int) -> list[str]:
    """Split text into pieces of at most `max_chars`, at the coarsest boundary that works:
    paragraphs, lines, sentences, words, and only as a last resort inside a word."""
    text = text.strip()
    if len(text) <= max_chars:
        return [text] if text else []
    for pattern in (r"\n\s*\n", r"\n", _SENTENCE_END_RE.pattern, r"\s+"):
        parts = [part.strip() for part in re.split(pattern, text) if part.strip()]
        if len(parts) > 1:
            glue = "\n\n" if pattern == r"\n\s*\n" else ("\n" if pattern == r"\n" else " ")
            pieces: list[str] = []
            for part in parts:
                for sub in split_text(part, max_chars):
                    if pieces and len(pieces[-1]) + len(glue) + len(sub) <= max_chars:
                        pieces[-1] += glue + sub
                    else:
                        pieces.append(sub)
            return pieces
    return [text[start : start + max_chars] for start in range(0, len(text), max_chars)]


def _pack(units: list[_Unit], *, joiner: str, max_chars: int, overlap: int) -> list[tuple[str, list[int]]]:
    """Greedily fill chunks with whole units; start each next chunk with an overlap tail."""
    chunks: list[tuple[str, list[int]]] = []
    current: list[_Unit] = []

    def size_with(unit: _Unit) -> int:
        return len(_join([(u.text, u.category) for u in [*current, unit]], joiner))

    def flush() -> None:
        text = _join([(u.text, u.category) for u in current], joiner)
        chunks.append((text, sorted({u.page for u in current if u.page is not None})))

    for unit in units:
        if current and size_with(unit) > max_chars:
            last = current[-1]
            flush()
            current = []
            # Table pieces repeat their header instead, and half a table row is no context.
            room = min(overlap, max_chars - len(joiner) - len(unit.text))
            if room >= _MIN_OVERLAP and "Table" not in (last.category, unit.category):
                tail = overlap_tail(last.text, room)
                if tail:
                    current.append(_Unit(tail, last.page, last.category))
        current.append(unit)
    if current:
        flush()
    return chunks


def overlap_tail(text: str, overlap: int) -> str:
    """About the last `overlap` characters of `text`, starting at a sentence start if one lies in
    that window, else at a word start (never mid-word)."""
    if overlap <= 0:
        return ""
    if len(text) <= overlap:
        return text
    window = text[-overlap:]
    sentence = _SENTENCE_END_RE.search(window)
    if sentence is not None and sentence.end() < len(window) - 20:
        return window[sentence.end() :].strip()
    space = re.search(r"\s", window)
    if space is None:
        return ""
    return window[space.end() :].strip()
