"""Headings and section paths: which titles are real headings, and the path every element sits under.

Categories after parsing: an element whose category is ``Title`` is an accepted heading (it starts
a section and is the last entry of its own `section_path`); titles that fail the sanity checks are
demoted to ``UncategorizedText``.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from kb.pipeline.parse.common import (
    IMAGE_TYPES,
    ParsedDocument,
    ParsedElement,
    ParseError,
    _clean_text,
    _drop_junk,
    _Item,
)

# How the hierarchy of headings is known: from the author's heading levels, or guessed.
_HIERARCHICAL_TYPES: Final = frozenset({"docx", "md", "html", "odt", "epub"})
_CODEISH_RE: Final = re.compile(r"[=;{}<>@|\\]|://")


def _is_plausible_heading(text: str, *, strict: bool) -> bool:
    """Whether a Title element can label a section in citations.

    Strict mode (PDF, text, slides, sheets, where titles are guessed from layout) rejects rotated
    margin text ("n u J"), numbers, fragments, sentences and code; relaxed mode (headings the author
    marked) only rejects what cannot be a label at all.
    """
    stripped = text.strip()
    letters = sum(1 for ch in stripped if ch.isalpha())
    if not letters or len(stripped) > (150 if strict else 300) or "\n\n" in stripped:
        return False
    if not strict:
        return True
    if len(stripped) < 3 and not any(unicodedata.east_asian_width(ch) == "W" for ch in stripped):
        return False
    non_space = len(stripped.replace(" ", ""))
    if letters / non_space < 0.5:
        return False
    words = stripped.split()
    if len(words) > 20:
        return False
    if len(words) >= 3 and sum(1 for word in words if len(word) == 1) / len(words) >= 0.5:
        return False
    if _CODEISH_RE.search(stripped) or stripped.endswith((",", ";", ":", "-")):
        return False
    return not (stripped.endswith(".") and len(words) >= 6)


def _assign_sections(items: list[_Item], kind: str) -> list[ParsedElement]:
    """Decide which titles are headings and give every element its heading path."""
    hierarchical = kind in _HIERARCHICAL_TYPES
    repeated = _repeated_titles(items) if kind == "pdf" else set()
    elements: list[ParsedElement] = []
    stack: list[tuple[int, str]] = []  # (level, heading)
    root: list[str] = []
    current_page: int | None = None
    for index, item in enumerate(items):
        # Slides and sheets are self-contained: headings do not carry over to the next one.
        if kind in ("pptx", "xlsx") and item.page != current_page:
            current_page = item.page
            stack = []
            root = [item.page_name] if kind == "xlsx" and item.page_name else []
        if kind == "eml" and not root and item.subject:
            root = [_clean_text(item.subject)]
        category = item.category
        if hierarchical and item.bold and category in ("UncategorizedText", "NarrativeText"):
            # Many Word/HTML authors bold a normal paragraph instead of using a heading style.
            following = items[index + 1] if index + 1 < len(items) else None
            if (
                len(item.text) <= 120
                and len(item.text.split()) <= 12
                and not item.text.rstrip().endswith((".", ":", ","))
                and following is not None
                and not following.bold
                and following.category != "Title"
            ):
                category = "Title"
                item.depth = None
        if category == "Title":
            heading = " ".join(item.text.split())
            accepted = _is_plausible_heading(heading, strict=not hierarchical)
            if accepted and not hierarchical:
                following = items[index + 1] if index + 1 < len(items) else None
                # In layout-guessed formats a title followed directly by another title is a
                # table cell, label or running header, not a heading of content.
                if following is not None and following.category == "Title":
                    accepted = False
                if heading.lower() in repeated:
                    accepted = False
            if accepted:
                level = item.depth if hierarchical and item.depth is not None else 0
                if hierarchical and item.depth is None:
                    level = 99  # a guessed title inside a structured document: a leaf heading
                stack = [(lvl, text) for lvl, text in stack if lvl < level] + [(level, heading)]
            else:
                category = "UncategorizedText"
        path = root + [text for _, text in stack]
        elements.append(
            ParsedElement(
                text=item.text,
                category=category,
                page_number=item.page,
                section_path=path,
                html=item.html,
                ocr=item.ocr,
            )
        )
    return elements


def _repeated_titles(items: list[_Item]) -> set[str]:
    """Titles on three or more pages: running headers, not section headings."""
    pages_by_title: dict[str, set[int | None]] = {}
    for item in items:
        if item.category == "Title":
            pages_by_title.setdefault(" ".join(item.text.split()).lower(), set()).add(item.page)
    return {title for title, pages in pages_by_title.items() if len(pages) >= 3}


def _finish(kind: str, items: list[_Item], page_count: int | None, warnings: list[str]) -> ParsedDocument:
    items = _drop_junk(items, kind, warnings)
    if not items:
        if kind in IMAGE_TYPES:
            raise ParseError(
                "no_text_found",
                "Text recognition (OCR) found no text in this image. Upload a sharper scan, or a document with text.",
            )
        if kind == "pdf":
            raise ParseError(
                "no_text_layer",
                "This PDF has no extractable text (is it a scan?), and text recognition (OCR) is "
                "not installed on this server. Upload a PDF with selectable text.",
            )
        raise ParseError("empty", "No text could be found in this file.")
    elements = _assign_sections(items, kind)
    ocr_pages = sorted({e.page_number for e in elements if e.ocr and e.page_number is not None})
    return ParsedDocument(
        file_type=kind, page_count=page_count, elements=elements, warnings=warnings, ocr_pages=ocr_pages
    )
