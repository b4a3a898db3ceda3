"""PDFs: checked with pypdf first (in milliseconds), then read by unstructured, then repaired.

`partition_pdf` returns `[]` instead of raising for encrypted, image-only and broken PDFs and for
any PDF one of whose pages trips a "too complex" heuristic. PDFs are therefore checked with pypdf
first, the heuristic is neutralised (`kb.pipeline.parse.setup`), the exception pdfminer raised is
captured, and an empty result is always turned into a `ParseError` with the real reason. Fonts
without a Unicode map come out as `(cid:N)` junk and rotated pages as letter-spaced words; such
pages are re-read with pypdf when its reading is clearly cleaner.
"""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from kb.pipeline.parse.common import (
    _DOCUMENT_JUNK_LIMIT,
    ParsedDocument,
    ParseError,
    _clean_text,
    _Item,
    _items_from_elements,
    _junk_share,
    _letter_spaced_share,
)
from kb.pipeline.parse.ocr import ocr_available, ocr_pdf_pages, pdf_pages_with_images
from kb.pipeline.parse.partition import _TIME_LIMIT_ERRORS, _partition
from kb.pipeline.parse.pdf_ranges import partition_in_ranges
from kb.pipeline.parse.sections import _finish
from kb.pipeline.parse.setup import _pdf_state

if TYPE_CHECKING:
    from pypdf import PdfReader

logger = logging.getLogger(__name__)

# A page whose alphabetic tokens are mostly single letters is letter-spaced (typically rotated text
# that pdfminer splits per glyph): "T h e s e s t a t i s t i c s".
_LETTER_SPACED_LIMIT: Final = 0.5
# A page more than this share junk is re-read with pypdf (kept only if pypdf reads it cleanly).
_PAGE_JUNK_LIMIT: Final = 0.2
_PYPDF_GLYPH_RE: Final = re.compile(r"/g(\d{1,5})")


@dataclass(slots=True)
class _PdfInfo:
    page_count: int | None
    reader: PdfReader | None
    open_error: str | None = None
    scanned: bool = False  # no page declares a font: only OCR can find text


def _parse_pdf(path: Path, *, max_pages: int, processes: int = 1) -> ParsedDocument:
    with path.open("rb") as handle:
        info = _pdf_precheck(handle, max_pages=max_pages)
        if info.scanned and info.page_count:
            return _finish("pdf", _ocr_or_fail(path, list(range(1, info.page_count + 1))), info.page_count, [])
        items = _partition_pdf(path, info, processes=processes)
        warnings: list[str] = []
        items = _repair_pdf_pages(items, info, warnings)
        if items:
            items = _ocr_blank_pages(path, items, info)
        if not items:
            items = _pdf_fallback_or_fail(path, info)
            warnings.append(
                "The standard PDF reader found no text; a simpler text extractor was used, so "
                "headings and layout may be missing."
            )
        return _finish("pdf", items, info.page_count, warnings)


def _partition_pdf(path: Path, info: _PdfInfo, *, processes: int) -> list[_Item]:
    """unstructured's items for the whole file: in page ranges at once when it is long enough and
    more than one process may read it (`pdf_ranges`), else in one piece."""
    if processes > 1 and info.page_count and info.reader is not None and not info.reader.is_encrypted:
        items = partition_in_ranges(path, page_count=info.page_count, processes=processes)
        if items is not None:
            return items
    _pdf_state.error = None
    _pdf_state.too_complex = False
    raw = _partition("pdf", path)
    error = _pdf_state.error
    if error is not None and type(error).__name__ in _TIME_LIMIT_ERRORS:
        raise error  # Celery's soft limit, swallowed by unstructured: let the task see it
    return _items_from_elements(raw, "pdf")


def _pdf_precheck(handle: io.BufferedReader, *, max_pages: int) -> _PdfInfo:
    """Encryption, page count and text-layer checks with pypdf: milliseconds, not a parse."""
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, EmptyFileError, FileNotDecryptedError

    head = handle.read(1024)
    handle.seek(0)
    if b"%PDF-" not in head:
        raise ParseError("corrupt", "This file is not a valid PDF (it has no PDF header).")
    try:
        reader = PdfReader(handle, strict=False)
    except EmptyFileError as exc:
        raise ParseError("empty", "This PDF is empty.") from exc
    except Exception as exc:
        # pdfminer repairs some files pypdf refuses; let it try and report pypdf's reason if
        # it finds nothing either.
        logger.info("pypdf could not open PDF: %s", exc)
        return _PdfInfo(page_count=None, reader=None, open_error=f"{type(exc).__name__}: {exc}")

    if reader.is_encrypted:
        try:
            # Owner-password-only ("copy-protected") PDFs open with an empty user password, and
            # pdfminer reads them the same way.
            opened = bool(reader.decrypt(""))
        except (DependencyError, NotImplementedError, FileNotDecryptedError, ValueError):
            opened = False
        if not opened:
            raise ParseError(
                "encrypted",
                "This PDF is password-protected. Remove the password (for example by printing it "
                "to a new PDF) and upload it again.",
            )
    try:
        page_count = len(reader.pages)
    except Exception as exc:
        logger.info("pypdf could not count pages: %s", exc)
        return _PdfInfo(page_count=None, reader=None, open_error=f"{type(exc).__name__}: {exc}")
    if page_count == 0:
        raise ParseError("empty", "This PDF has no pages.")
    if page_count > max_pages:
        raise ParseError(
            "too_many_pages",
            f"This PDF has {page_count:,} pages; the limit is {max_pages:,}. Split it into smaller files.",
        )
    if _pdf_fonts_absent(reader):
        if ocr_available():
            return _PdfInfo(page_count=page_count, reader=reader, scanned=True)
        raise ParseError(
            "no_text_layer",
            "This PDF has no text layer (is it a scan?), and text recognition (OCR) is not "
            "installed on this server. Upload a PDF with selectable text.",
        )
    return _PdfInfo(page_count=page_count, reader=reader)


def _pdf_fonts_absent(reader: PdfReader, *, budget_s: float = 0.5) -> bool:
    """True only when no page (nor any form XObject on it) declares a font: text cannot be drawn
    without one. Stops at the first font; gives up (returns False) when over the time budget."""
    started = time.monotonic()
    try:
        for page in reader.pages:
            if _resources_have_font(page.get("/Resources"), depth=0):
                return False
            if time.monotonic() - started > budget_s:
                return False
    except Exception as exc:  # a broken page tree: let the parser decide
        logger.info("font scan failed: %s", exc)
        return False
    return True


def _resources_have_font(resources: Any, *, depth: int) -> bool:
    if resources is None or depth > 3:
        return False
    resources = resources.get_object()
    fonts = resources.get("/Font")
    if fonts is not None and len(fonts.get_object()) > 0:
        return True
    xobjects = resources.get("/XObject")
    if xobjects is None:
        return False
    for ref in xobjects.get_object().values():
        xobject = ref.get_object()
        if xobject.get("/Subtype") == "/Form" and _resources_have_font(xobject.get("/Resources"), depth=depth + 1):
            return True
    return False


def _ocr_or_fail(path: Path, pages: list[int]) -> list[_Item]:
    """Every page of a PDF without a text layer, recognised; a readable failure if none has text."""
    items = ocr_pdf_pages(path, pages)
    if not items:
        raise ParseError(
            "no_text_found",
            "This PDF has no text layer, and text recognition (OCR) found no text on its pages "
            "(they look like pictures without words). Upload a document with text.",
        )
    return items


def _ocr_blank_pages(path: Path, items: list[_Item], info: _PdfInfo) -> list[_Item]:
    """A PDF with text on some pages and scans on others: recognise the pages with no text that
    draw an image, and put their paragraphs in page order."""
    if not info.page_count or not ocr_available():
        return items
    with_text = {item.page for item in items}
    blank = [page for page in range(1, info.page_count + 1) if page not in with_text]
    if not blank:
        return items
    scanned = pdf_pages_with_images(path, blank)
    if not scanned:
        return items
    recognised = ocr_pdf_pages(path, scanned)
    if not recognised:
        return items
    # Stable sort: unstructured's order within a page is kept.
    return sorted([*items, *recognised], key=lambda item: item.page or 0)


def _pdf_fallback_or_fail(path: Path, info: _PdfInfo) -> list[_Item]:
    """unstructured found nothing: OCR if possible, else pypdf's text, else the real reason."""
    if ocr_available() and info.page_count:
        ocr_items = ocr_pdf_pages(path, list(range(1, info.page_count + 1)))
        if ocr_items:
            return ocr_items
    error = _pdf_state.error
    items: list[_Item] = []
    if info.reader is not None:
        for index in range(len(info.reader.pages)):
            items.extend(_pypdf_page_items(info.reader, index))
    if items and _junk_share(" ".join(item.text for item in items)) <= _DOCUMENT_JUNK_LIMIT:
        return items
    if error is not None or info.open_error is not None:
        detail = f"{type(error).__name__}: {error}" if error is not None else info.open_error
        raise ParseError(
            "corrupt",
            "This PDF is damaged and could not be read. Try opening it and saving or printing it "
            "to a new PDF, then upload that.",
            detail=detail,
        )
    if _pdf_state.too_complex:
        raise ParseError(
            "corrupt",
            "This PDF's page content is too large or malformed to read safely.",
            detail="is_pdf_too_complex safety caps tripped",
        )
    if items:
        raise ParseError(
            "garbled_text",
            "The text in this PDF can't be read: its fonts don't map to real characters. Try "
            "exporting it again from the original program.",
        )
    raise ParseError(
        "no_text_layer",
        "This PDF has no extractable text (is it a scan?), and text recognition (OCR) is not "
        "installed on this server. Upload a PDF with selectable text.",
    )


def _pypdf_page_items(reader: PdfReader, index: int) -> list[_Item]:
    """Paragraphs of one page as pypdf reads it (simpler than pdfminer, but robust)."""
    try:
        text = reader.pages[index].extract_text() or ""
    except Exception as exc:
        logger.info("pypdf could not read page %d: %s", index + 1, exc)
        return []
    if len(_PYPDF_GLYPH_RE.findall(text)) >= 5:
        # pypdf spells unmapped glyphs by name ("/g18/g152"); make them count as junk.
        text = _PYPDF_GLYPH_RE.sub(lambda match: f"(cid:{match.group(1)})", text)
    items = []
    for block in re.split(r"\n\s*\n", text):
        block = _clean_text(block)
        if block:
            items.append(_Item(text=block, category="NarrativeText", page=index + 1, from_pypdf=True))
    return items


def _repair_pdf_pages(items: list[_Item], info: _PdfInfo, warnings: list[str]) -> list[_Item]:
    """Re-read with pypdf the pages pdfminer garbles: rotated text split per glyph ("T h e s e")
    and fonts whose mapping pdfminer misses but pypdf decodes ("(cid:224)" for "à"). A page is
    replaced only when pypdf's reading is clearly cleaner."""
    if info.reader is None:
        return items
    by_page: dict[int | None, list[_Item]] = {}
    for item in items:
        by_page.setdefault(item.page, []).append(item)
    repaired: list[int] = []
    for page, page_items in by_page.items():
        if page is None or page > len(info.reader.pages):
            continue
        text = " ".join(item.text for item in page_items)
        junk = _junk_share(text)
        spaced = _letter_spaced_share(text) > _LETTER_SPACED_LIMIT
        if not spaced and junk <= _PAGE_JUNK_LIMIT:
            continue
        replacement = _pypdf_page_items(info.reader, page - 1)
        replacement_text = " ".join(item.text for item in replacement)
        replacement_junk = _junk_share(replacement_text)
        cleaner = replacement_junk < min(0.05, junk / 2) if junk > _PAGE_JUNK_LIMIT else replacement_junk <= 0.05
        if replacement and cleaner and (not spaced or _letter_spaced_share(replacement_text) <= _LETTER_SPACED_LIMIT):
            by_page[page] = replacement
            repaired.append(page)
    if not repaired:
        return items
    warnings.append(
        "Some pages had rotated, letter-spaced or oddly encoded text and were read with a simpler "
        "extractor, so their layout may be lost: " + _page_list(repaired) + "."
    )
    result: list[_Item] = []
    seen: set[int | None] = set()
    for item in items:  # keep page order as unstructured gave it
        if item.page in seen:
            continue
        seen.add(item.page)
        result.extend(by_page[item.page])
    return result


def _page_list(pages: Sequence[int]) -> str:
    shown = ", ".join(str(page) for page in sorted(pages)[:10])
    more = len(pages) - 10
    label = "page" if len(pages) == 1 else "pages"
    return f"{label} {shown}" + (f" and {more} more" if more > 0 else "")
