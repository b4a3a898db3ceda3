"""Read a long PDF in page ranges at once: one range here, each other in a child forked for it.

Why: pdfminer (under unstructured's `partition_pdf`) is single-threaded pure Python, ~85 % of a
text PDF's parse, so an 80-page report kept one core busy for ~20 s while the other idled.
unstructured reads each page on its own (measured on the shared corpus: the elements of two halves
equal those of the whole file, at +0-4 % CPU), so the file is cut into contiguous ranges with
pikepdf (milliseconds), each range is partitioned with its true first page number, and the items
are joined in page order.

The cut never changes what a document yields: if pikepdf cannot cut the file, or any range fails,
crashes or trips pdfminer's error or "too complex" capture, the whole file is read in one piece
exactly as before, so a damaged PDF gets the same result and the same reason.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Final

from kb.pipeline.parse.common import ParseError, _Item, _items_from_elements
from kb.pipeline.parse.isolated import ChildCall, child_parsing_available, start_in_child
from kb.pipeline.parse.partition import _TIME_LIMIT_ERRORS, _partition
from kb.pipeline.parse.setup import _pdf_state

logger = logging.getLogger(__name__)

#: A range holds at least this many pages: below that the fork and the cut cost more than they save.
MIN_PAGES_PER_RANGE: Final = 12


def page_ranges(page_count: int, processes: int) -> list[tuple[int, int]]:
    """Contiguous (first, last) page ranges, 1-based and inclusive, as even as the pages allow."""
    count = max(1, min(processes, page_count // MIN_PAGES_PER_RANGE))
    size, extra = divmod(page_count, count)
    ranges = []
    first = 1
    for index in range(count):
        last = first + size - 1 + (1 if index < extra else 0)
        ranges.append((first, last))
        first = last + 1
    return ranges


def partition_in_ranges(path: Path, *, page_count: int, processes: int) -> list[_Item] | None:
    """The items of the whole PDF read in ranges at once; None when it should be read in one piece
    (too short, one process, no fork, a cut or a range that failed)."""
    ranges = page_ranges(page_count, processes)
    if len(ranges) < 2 or not child_parsing_available():
        return None
    with tempfile.TemporaryDirectory(prefix="groundwork-pdf-ranges-") as directory:
        parts = _cut(path, ranges, Path(directory), page_count=page_count)
        if parts is None:
            return None
        children: list[ChildCall] = []
        try:
            for part, (first, _last) in list(zip(parts, ranges, strict=True))[1:]:
                children.append(start_in_child(_read_range, part, first, label=f"{path.name} from page {first}"))
            results = [_read_range(parts[0], ranges[0][0])]
            for child in children:
                try:
                    results.append(child.result())
                except (ParseError, RuntimeError) as exc:
                    logger.info("Reading %s in page ranges failed (%s); reading it whole", path.name, exc)
                    return None
        finally:
            for child in children:
                child.stop()
    if not all(clean for _items, clean in results):
        return None  # pdfminer raised or a page tripped the caps: the whole-file path reports it
    return [item for items, _clean in results for item in items]


def _read_range(part: Path, first_page: int) -> tuple[list[_Item], bool]:
    """One range's items, and whether pdfminer read it without a captured error or cap."""
    _pdf_state.error = None
    _pdf_state.too_complex = False
    try:
        items = _items_from_elements(_partition("pdf", part, first_page=first_page), "pdf")
    except ParseError:
        return [], False
    error = _pdf_state.error
    if error is not None and type(error).__name__ in _TIME_LIMIT_ERRORS:
        raise error  # Celery's soft limit, swallowed by unstructured: let the task see it
    return items, error is None and not _pdf_state.too_complex


def _cut(path: Path, ranges: list[tuple[int, int]], directory: Path, *, page_count: int) -> list[Path] | None:
    """One PDF per range in `directory`, or None if pikepdf cannot cut this file as pypdf counted it."""
    import pikepdf

    parts = []
    try:
        with pikepdf.open(path) as pdf:
            if len(pdf.pages) != page_count:
                return None
            for index, (first, last) in enumerate(ranges):
                part = pikepdf.new()
                for page in pdf.pages[first - 1 : last]:
                    part.pages.append(page)
                target = directory / f"range-{index}.pdf"
                part.save(target)
                parts.append(target)
    except Exception as exc:  # pikepdf refuses what pdfminer may still repair: read it whole
        logger.info("Could not cut %s into page ranges: %r", path.name, exc)
        return None
    return parts
