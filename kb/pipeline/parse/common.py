"""What every format family shares: the parse result, the error, and cleaning of extracted text.

An element travels from unstructured (or pypdf) as an `_Item`, is cleaned (`_clean_text`), junk
glyphs are dropped or marked (`_drop_junk`), and `kb.pipeline.parse.sections` turns the items into
`ParsedElement`s with their heading paths.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from kb.pipeline.parse.tables import table_html_to_text

if TYPE_CHECKING:
    from unstructured.documents.elements import Element

FILE_TYPES: Final = (
    "pdf",
    "docx",
    "pptx",
    "xlsx",
    "html",
    "md",
    "txt",
    "csv",
    "eml",
    "epub",
    "odt",
    "png",
    "jpeg",
    "tiff",
)
IMAGE_TYPES: Final = frozenset({"png", "jpeg", "tiff"})
TEXT_TYPES: Final = frozenset({"html", "md", "txt", "csv", "eml"})
ZIP_TYPES: Final = frozenset({"docx", "pptx", "xlsx", "epub", "odt"})

DEFAULT_MAX_PAGES: Final = 2000
HEAD_BYTES: Final = 8192

# Junk thresholds: an element more than this share junk is dropped; a document where more than
# this share of all text was junk fails as `garbled_text`.
_ELEMENT_JUNK_LIMIT: Final = 0.3
_DOCUMENT_JUNK_LIMIT: Final = 0.5

_DROPPED_CATEGORIES: Final = frozenset({"PageBreak", "PageNumber"})
# DOCX headers/footers are real page furniture (repeated "Confidential" lines); in PDFs unstructured
# guesses them from position and the guess catches table rows, so they are kept there.
_FURNITURE_CATEGORIES: Final = frozenset({"Header", "Footer"})

_CID_RE: Final = re.compile(r"\(cid:\d+\)")
# U+FFFD, private-use glyphs and control characters (other than \t \n \r) are what fonts without a
# Unicode map decode to.
_JUNK_CHAR_RE: Final = re.compile("[\ufffd\ue000-\uf8ff\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MOJIBAKE_RE: Final = re.compile("[\u00c2\u00c3\u00e2][\u0080-\u00bf\u20ac\u201a-\u2122]")
_LIGATURES: Final = {cp: unicodedata.normalize("NFKC", chr(cp)) for cp in range(0xFB00, 0xFB07)}


class ParseError(Exception):
    """A document that cannot be turned into text, with a stable `code` and a readable message.

    `message` is written for the person who uploaded the file; `detail` (optional) carries the
    technical cause for logs. Codes: empty, encrypted, no_text_layer, corrupt, too_many_pages,
    unsupported_type, zip_bomb, garbled_text, timeout. None of them is worth retrying.
    """

    def __init__(self, code: str, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"ParseError({self.code!r}, {self.message!r})"


@dataclass(slots=True)
class ParsedElement:
    """One block of text: a paragraph, heading, list item or table.

    `section_path` is the heading path the element sits under (for a heading, including itself).
    `text` is what gets indexed; for tables it is a Markdown table, and `html` keeps the original
    table markup.
    """

    text: str
    category: str
    page_number: int | None = None
    section_path: list[str] = field(default_factory=list)
    html: str | None = None
    ocr: bool = False  # recognised from an image (scan, photo) rather than read from text


@dataclass(slots=True)
class ParsedDocument:
    """The result of `parse_document`: never empty (an empty result is a `ParseError`)."""

    file_type: str
    page_count: int | None
    elements: list[ParsedElement]
    # Sentences for the uploader about partial problems, e.g. unreadable blocks that were dropped.
    warnings: list[str] = field(default_factory=list)
    # Pages (1-based; frames of an image) whose text was recognised by OCR.
    ocr_pages: list[int] = field(default_factory=list)

    @property
    def text(self) -> str:
        """All element text, for previews and full-text checks."""
        return "\n\n".join(element.text for element in self.elements)


@dataclass(slots=True)
class _Item:
    """An element on its way from unstructured to `ParsedElement`."""

    text: str
    category: str
    page: int | None = None
    depth: int | None = None
    html: str | None = None
    page_name: str | None = None
    subject: str | None = None
    bold: bool = False  # the whole text is bold: a heading typed as a normal paragraph
    from_pypdf: bool = False  # read by the pypdf fallback, which never splits words into glyphs
    ocr: bool = False  # recognised by OCR (kb.pipeline.parse.ocr)


def _items_from_elements(elements: Sequence[Element], kind: str) -> list[_Item]:
    items: list[_Item] = []
    for element in elements:
        category = element.category
        if category in _DROPPED_CATEGORIES:
            continue
        if category in _FURNITURE_CATEGORIES and kind != "pdf":
            continue
        metadata = element.metadata
        html = getattr(metadata, "text_as_html", None) if category == "Table" else None
        if html and kind == "xlsx":
            # unstructured escapes line breaks inside spreadsheet cells as a literal "\\n".
            html = html.replace("\\n", "\n")
        # Tables become Markdown rows; unstructured's own table text is every cell space-joined.
        text = (table_html_to_text(html) if html else "") or _clean_text(element.text or "")
        if not text:
            continue
        items.append(
            _Item(
                text=text,
                category=category,
                page=metadata.page_number,
                depth=metadata.category_depth,
                html=html or None,
                page_name=getattr(metadata, "page_name", None),
                subject=getattr(metadata, "subject", None),
                bold=_is_all_bold(text, metadata),
            )
        )
    return items


def _is_all_bold(text: str, metadata: Any) -> bool:
    contents = getattr(metadata, "emphasized_text_contents", None) or []
    tags = getattr(metadata, "emphasized_text_tags", None) or []
    bold = "".join(part for part, tag in zip(contents, tags, strict=False) if "b" in tag)
    return bool(bold) and "".join(bold.split()) == "".join(text.split())


def _clean_text(text: str) -> str:
    if _MOJIBAKE_RE.search(text):
        text = _fix_mojibake(text)
    # Typographic ligatures ("ﬁ", "ﬂ") from PDFs would make "ﬁnance" miss a search for "finance".
    text = unicodedata.normalize("NFC", text.replace("\x00", "").translate(_LIGATURES))
    lines = [re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _fix_mojibake(text: str) -> str:
    """Undo UTF-8 read as Latin-1/CP-1252 ("â€“" for "–"), when the round trip is clean."""
    for encoding in ("latin-1", "cp1252"):
        with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
            return text.encode(encoding).decode("utf-8")
    return text


def _junk_glyphs(text: str) -> tuple[int, int]:
    """(unreadable glyphs, all glyphs) in `text`; a `(cid:N)` token is one glyph."""
    cids = _CID_RE.findall(text)
    rest = _CID_RE.sub("", text) if cids else text
    junk = len(cids) + len(_JUNK_CHAR_RE.findall(rest))
    return junk, len(cids) + sum(1 for ch in rest if not ch.isspace())


def _junk_share(text: str) -> float:
    junk, total = _junk_glyphs(text)
    return junk / max(1, total)


def _letter_spaced_share(text: str) -> float:
    words = [word for word in text.split() if word.isalpha()]
    if len(words) < 20:
        return 0.0
    return sum(1 for word in words if len(word) == 1) / len(words)


def _drop_junk(items: list[_Item], kind: str, warnings: list[str]) -> list[_Item]:
    """Remove `(cid:N)` and similar junk; fail when junk is most of the document.

    A block that is mostly junk is dropped; in one with a little (a maths symbol in a LaTeX PDF)
    each unmapped glyph becomes "□", so "U(cid:18)M" does not silently read "UM". In PDFs, blocks
    made only of single characters ("n u J", rotated margin stamps) are dropped too.
    """
    kept: list[_Item] = []
    junk_total = 0
    glyph_total = 0
    dropped = 0
    for item in items:
        junk, glyphs = _junk_glyphs(item.text)
        junk_total += junk
        glyph_total += glyphs
        if junk:
            if junk / max(1, glyphs) > _ELEMENT_JUNK_LIMIT:
                dropped += 1
                continue
            item.text = _clean_text(_JUNK_CHAR_RE.sub("", _CID_RE.sub("\u25a1", item.text)))
            if not any(ch.isalnum() for ch in item.text):
                dropped += 1
                continue
        if kind == "pdf" and not item.from_pypdf and item.category != "Table" and _is_glyph_soup(item.text):
            continue
        kept.append(item)
    if glyph_total and junk_total / glyph_total > _DOCUMENT_JUNK_LIMIT:
        raise ParseError(
            "garbled_text",
            f"Most of the text in this file can't be read ({junk_total / glyph_total:.0%} is "
            "unreadable: its fonts don't map to real characters). Try exporting it again from "
            "the original program, or upload a version with real text.",
        )
    if dropped:
        warnings.append(f"{dropped} unreadable text block(s) (broken font encoding) were left out.")
    return kept


def _is_glyph_soup(text: str) -> bool:
    """ "n u J", "2 v 8 4 3 5 1 . 3 0 1 2 : v i X r a": every token one character, some letters."""
    tokens = text.split()
    return len(tokens) >= 3 and all(len(token) == 1 for token in tokens) and any(t.isalpha() for t in tokens)
