"""Where a quoted sentence sits in its source: a span of a chunk's text, or boxes on a PDF page.

A citation's quote is a verbatim sentence of the chunk it cites (`chat.rag.cite`), but text comes
back from a PDF's text layer with other line breaks, hyphenation and ligatures than the chunk
(which `unstructured` cleaned). Both sides are therefore compared as their letters and digits
only, case-folded (NFKC: "ﬁ" is "fi"), and positions are mapped back to the original characters.

PDF pages are rendered server-side with pypdfium2 to a PNG and the quote's boxes painted on it:
the browser only ever receives an image of the original, never its bytes' active content.
"""

from __future__ import annotations

import io
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from kb.models import Chunk, DocumentVersion

# Render width of a page image, in pixels (A4/Letter at ~150 dpi); caps a huge page's memory.
PAGE_IMAGE_WIDTH: Final = 1240
MAX_PAGE_PIXELS: Final = 1240 * 2400
HIGHLIGHT_FILL: Final = (255, 214, 0, 110)  # translucent yellow over the text
HIGHLIGHT_EDGE: Final = (230, 150, 0, 255)
# Below this many letters and digits, a match is too likely to be a coincidence.
_MIN_KEY_CHARS: Final = 6
# A quote not found whole is located by its head and tail of this many letters and digits.
_ANCHOR_CHARS: Final = 40


def _folded(text: str) -> tuple[str, list[int]]:
    """`text` reduced to case-folded letters and digits, and each kept character's index in `text`."""
    keys: list[str] = []
    where: list[int] = []
    for index, char in enumerate(text):
        for part in unicodedata.normalize("NFKC", char).casefold():
            if part.isalnum():
                keys.append(part)
                where.append(index)
    return "".join(keys), where


def quote_span(text: str, quote: str) -> tuple[int, int] | None:
    """The `[start, end)` character span of `quote` in `text`, ignoring case, spacing and punctuation.

    A quote that is not found whole (a line break mangled by the text layer) is located by its first
    and last `_ANCHOR_CHARS` letters, when the tail follows the head within about the quote's length.
    """
    haystack, where = _folded(text)
    needle, _ = _folded(quote)
    if len(needle) < _MIN_KEY_CHARS or not haystack:
        return None
    at = haystack.find(needle)
    if at >= 0:
        return where[at], _through_closing_mark(text, where[at + len(needle) - 1] + 1, quote)
    if len(needle) < 2 * _ANCHOR_CHARS:
        return None
    head, tail = needle[:_ANCHOR_CHARS], needle[-_ANCHOR_CHARS:]
    start = haystack.find(head)
    if start < 0:
        return None
    end = haystack.find(tail, start + len(head))
    if end < 0 or end + len(tail) - start > 2 * len(needle):
        return None
    return where[start], _through_closing_mark(text, where[end + len(tail) - 1] + 1, quote)


def _through_closing_mark(text: str, end: int, quote: str) -> int:
    """Extend a span over the full stop (or ?, !, closing quote) the quote itself ends with."""
    closing = quote.rstrip()[-1:]
    if closing and not closing.isalnum() and text[end : end + 1] == closing:
        return end + 1
    return end


@dataclass(frozen=True, slots=True)
class MarkedChunk:
    """A chunk of the source view; `marked` is the quoted span when this chunk holds the quote."""

    chunk: Chunk
    before: str
    marked: str
    after: str


def chunks_marked(*, version: DocumentVersion, quote: str, chunk_id: int | None = None) -> list[MarkedChunk]:
    """The version's chunks in order, the quote marked in the cited chunk (or the first holding it)."""
    chunks = list(version.chunks.without_vectors().order_by("ordinal"))
    candidates = sorted(chunks, key=lambda c: c.pk != chunk_id)  # the cited chunk first
    found: tuple[int, tuple[int, int]] | None = None
    for chunk in candidates if quote else []:
        span = quote_span(chunk.text, quote)
        if span is not None:
            found = (chunk.pk, span)
            break
    rows = []
    for chunk in chunks:
        if found is not None and chunk.pk == found[0]:
            start, end = found[1]
            rows.append(MarkedChunk(chunk, chunk.text[:start], chunk.text[start:end], chunk.text[end:]))
        else:
            rows.append(MarkedChunk(chunk, chunk.text, "", ""))
    return rows


class PageImageError(Exception):
    """The page cannot be rendered (not a PDF, no such page, or the file is unreadable)."""


@dataclass(frozen=True, slots=True)
class PageImage:
    png: bytes
    boxes: int  # how many highlight rectangles were painted (0: the quote was not found on the page)
    page_count: int


def pdf_page_image(*, path: Path, page: int, quote: str) -> PageImage:
    """Page `page` (1-based) of the PDF at `path` as a PNG, with `quote`'s text boxes painted."""
    import pypdfium2 as pdfium
    from PIL import Image, ImageDraw

    try:
        pdf = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        raise PageImageError(f"The PDF cannot be opened: {exc}") from exc
    try:
        page_count = len(pdf)
        if not 1 <= page <= page_count:
            raise PageImageError(f"This document has no page {page}.")
        pdf_page = pdf[page - 1]
        width, height = pdf_page.get_size()
        scale = min(PAGE_IMAGE_WIDTH / max(width, 1.0), (MAX_PAGE_PIXELS / max(width * height, 1.0)) ** 0.5)
        rects = _quote_rects(pdf_page, quote) if quote else []
        image = pdf_page.render(scale=scale).to_pil().convert("RGBA")
        overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        for left, bottom, right, top in rects:
            box = (left * scale - 2, (height - top) * scale - 2, right * scale + 2, (height - bottom) * scale + 2)
            draw.rectangle(box, fill=HIGHLIGHT_FILL, outline=HIGHLIGHT_EDGE, width=2)
        out = io.BytesIO()
        Image.alpha_composite(image, overlay).convert("RGB").save(out, format="PNG", optimize=False)
        return PageImage(png=out.getvalue(), boxes=len(rects), page_count=page_count)
    finally:
        pdf.close()


def _quote_rects(pdf_page: object, quote: str) -> list[tuple[float, float, float, float]]:
    """The text rectangles (PDF points: left, bottom, right, top) covering the quote on the page."""
    textpage = pdf_page.get_textpage()  # type: ignore[attr-defined]
    try:
        count = textpage.count_chars()
        if count <= 0:
            return []
        text = textpage.get_text_range(0, count)
        if len(text) != count:  # characters outside the BMP: read one index at a time
            text = "".join(textpage.get_text_range(i, 1)[:1] or " " for i in range(count))
        span = quote_span(text, quote)
        if span is None:
            return []
        start, end = span
        return [textpage.get_rect(i) for i in range(textpage.count_rects(start, end - start))]
    finally:
        textpage.close()


@dataclass(frozen=True, slots=True)
class SourceView:
    """What the "cited source" page shows: the rendered PDF page, or the chunks with the quote marked."""

    version: DocumentVersion
    page: int | None
    quote: str
    is_pdf: bool
    chunks: list[MarkedChunk]

    @property
    def found(self) -> bool:
        return any(c.marked for c in self.chunks)


def source_view(*, version: DocumentVersion, page: int | None, quote: str, chunk_id: int | None) -> SourceView:
    """The cited place in `version`: a PDF's page (rendered separately by `pdf_page_image`), or the
    chunk viewer with the quote marked. Without a page, a PDF opens at the cited chunk's page."""
    quote = quote.strip()[:2000]
    chunks = chunks_marked(version=version, quote=quote, chunk_id=chunk_id)
    cited = next((c.chunk for c in chunks if c.marked), None) or next(
        (c.chunk for c in chunks if c.chunk.pk == chunk_id), None
    )
    if page is None and cited is not None:
        page = cited.page_start
    is_pdf = version.file_type == "pdf" and bool(version.file)
    if is_pdf:
        page = page or 1
        if quote and cited is not None and (cited.page_end or 0) > page:
            # A chunk spanning pages is cited at its first page: show the page holding the quote.
            page = _pdf_page_holding(version, quote, first=page, last=cited.page_end or page) or page
    return SourceView(version=version, page=page, quote=quote, is_pdf=is_pdf, chunks=chunks)


def _pdf_page_holding(version: DocumentVersion, quote: str, *, first: int, last: int) -> int | None:
    """The first page in `first..last` whose text layer holds the quote's beginning."""
    import pypdfium2 as pdfium

    from kb.storage import local_copy

    head = quote[: max(_ANCHOR_CHARS, 12)]
    try:
        with local_copy(version.file) as path:
            pdf = pdfium.PdfDocument(str(path))
            try:
                for number in range(first, min(last, len(pdf), first + 20) + 1):
                    textpage = pdf[number - 1].get_textpage()
                    try:
                        if quote_span(textpage.get_text_range(), head) is not None:
                            return number
                    finally:
                        textpage.close()
            finally:
                pdf.close()
    except (pdfium.PdfiumError, OSError):
        return None
    return None


def page_image_for(*, version: DocumentVersion, page: int, quote: str) -> PageImage:
    """`pdf_page_image` of a stored version (only PDFs; the file is read from storage)."""
    if version.file_type != "pdf" or not version.file:
        raise PageImageError("Only PDF pages are rendered as images.")
    from kb.storage import local_copy

    try:
        with local_copy(version.file) as path:  # on S3 storage: a temporary download
            return pdf_page_image(path=path, page=page, quote=quote.strip()[:2000])
    except OSError as exc:
        raise PageImageError("The stored file cannot be read.") from exc
