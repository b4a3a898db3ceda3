"""Turn an uploaded file into clean, structured text elements (pure Python, no Django).

`parse_document()` is the only entry point the pipeline needs. It identifies the file from its
bytes, rejects what cannot be read with a `ParseError` whose message a non-engineer understands,
and otherwise returns a `ParsedDocument`: a flat list of `ParsedElement`s (text, category, page,
the heading path it sits under, and HTML for tables) that `kb.pipeline.chunk` packs into chunks.

One module per concern, by format family:

- `setup`: configures unstructured offline (no telemetry, no model downloads); `warm_up()`.
- `detect`: the file type from its first bytes.
- `pdf`: pypdf pre-check, unstructured's reading, repair of garbled pages, fallbacks.
- `ocr`: text recognition for scanned PDF pages and images (RapidOCR, models inside the wheel).
- `office`: ZIP-container checks (zip bombs, page counts) for DOCX, PPTX, XLSX, ODT, EPUB.
- `text`: CSV/TSV read as written; `partition`: unstructured's partitioner per type.
- `common`: the result types, `ParseError`, cleaning and junk detection; `sections`: headings
  and section paths; `tables`: HTML tables as Markdown rows.

Parsing goes through `unstructured`, which has traps on an offline machine (see the project docs on
parsing and the docstrings of `setup` and `pdf`). Page furniture (page breaks, page numbers, DOCX
headers and footers, empty images) is dropped.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from kb.pipeline.parse.common import (
    DEFAULT_MAX_PAGES,
    FILE_TYPES,
    HEAD_BYTES,
    IMAGE_TYPES,
    TEXT_TYPES,
    ZIP_TYPES,
    ParsedDocument,
    ParsedElement,
    ParseError,
    _items_from_elements,
)
from kb.pipeline.parse.detect import _unsupported, detect_file_type
from kb.pipeline.parse.locks import PARSER_LOCK
from kb.pipeline.parse.ocr import ocr_available, ocr_image
from kb.pipeline.parse.office import _check_zip_container
from kb.pipeline.parse.partition import _partition
from kb.pipeline.parse.pdf import _parse_pdf
from kb.pipeline.parse.sections import _finish
from kb.pipeline.parse.setup import (
    SPACY_MODEL_NAME,
    _configure_pdf,
    _configure_unstructured,
    warm_up,
    warm_up_formats,
    warm_up_text,
)
from kb.pipeline.parse.tables import table_html_to_text

__all__ = [
    "DEFAULT_MAX_PAGES",
    "FILE_TYPES",
    "HEAD_BYTES",
    "SPACY_MODEL_NAME",
    "TEXT_TYPES",
    "ZIP_TYPES",
    "ParseError",
    "ParsedDocument",
    "ParsedElement",
    "detect_file_type",
    "ocr_available",
    "parse_document",
    "table_html_to_text",
    "warm_up",
    "warm_up_formats",
    "warm_up_text",
]


def parse_document(
    path: Path,
    *,
    filename: str,
    max_pages: int = DEFAULT_MAX_PAGES,
    timeout_s: float | None = None,
    file_type: str | None = None,
    processes: int = 1,
) -> ParsedDocument:
    """Parse the file at `path` (uploaded as `filename`) into elements, or raise `ParseError`.

    `max_pages` bounds PDFs (pypdf page count) and presentations (slide count) before any heavy
    work. `timeout_s` is a hint enforced with SIGALRM when called from the main thread (Celery's
    prefork children are); elsewhere only the caller's own limits apply. `file_type` skips
    detection when the caller already knows it. Always uses `strategy="fast"` for PDFs. `processes`
    above 1 lets a long PDF be read in that many page ranges at once, each but the first in a child
    forked for it (`kb.pipeline.parse.pdf`).
    """
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ParseError("corrupt", "The uploaded file could not be read.", detail=str(exc)) from exc
    if size == 0:
        raise ParseError("empty", "This file is empty (0 bytes).")
    with path.open("rb") as handle:
        head = handle.read(HEAD_BYTES)
    kind = file_type or detect_file_type(head, filename, path=path)
    if kind not in FILE_TYPES:
        raise _unsupported(f"of type {kind!r}")

    # No fork from another thread while this process parses (kb.pipeline.parse.locks).
    with PARSER_LOCK, _deadline(timeout_s):
        if kind in ZIP_TYPES:
            _check_zip_container(path, kind, max_pages=max_pages)
        _configure_unstructured()
        if kind == "pdf":
            _configure_pdf()
            return _parse_pdf(path, max_pages=max_pages, processes=processes)
        if kind in IMAGE_TYPES:
            return _parse_image(path, kind)
        return _parse_other(path, kind)


# ---- time limit


class _Deadline(BaseException):
    """Raised by the SIGALRM handler. A BaseException on purpose: unstructured wraps PDF extraction
    in `except Exception`, which would swallow an ordinary exception and return nothing."""


@contextlib.contextmanager
def _deadline(timeout_s: float | None) -> Iterator[None]:
    """Raise `ParseError("timeout")` after `timeout_s` seconds of parsing (main thread only).

    Uses a wall-clock timer (SIGALRM) when nobody else has claimed that signal; when something
    has (pytest-timeout does), a CPU-time timer (SIGVTALRM) instead: parsing is CPU-bound, so the
    two differ only on an overloaded machine. Without either, the hint is ignored and the caller's
    own limit (Celery's time limit) applies.
    """
    if timeout_s is None or timeout_s <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return
    timer: tuple[int, signal.Signals] | None = None
    for which, signum in (("ITIMER_REAL", "SIGALRM"), ("ITIMER_VIRTUAL", "SIGVTALRM")):
        if hasattr(signal, which) and hasattr(signal, signum):
            sig = getattr(signal, signum)
            if signal.getsignal(sig) in (signal.SIG_DFL, signal.SIG_IGN, None):
                timer = (getattr(signal, which), sig)
                break
    if timer is None:
        yield
        return
    which_timer, sig = timer

    def on_alarm(signum: int, frame: object) -> None:
        raise _Deadline

    previous = signal.signal(sig, on_alarm)
    signal.setitimer(which_timer, timeout_s)
    try:
        yield
    except _Deadline:
        raise ParseError(
            "timeout",
            f"Reading this file took longer than the limit of {timeout_s:.0f} seconds. "
            "Try splitting it into smaller files.",
        ) from None
    finally:
        signal.setitimer(which_timer, 0)
        signal.signal(sig, previous)


def _parse_image(path: Path, kind: str) -> ParsedDocument:
    """A photo or scan (PNG, JPEG, TIFF with one page per frame): its text by OCR."""
    items, frames = ocr_image(path)
    return _finish(kind, items, frames if kind == "tiff" else None, [])


def _parse_other(path: Path, kind: str) -> ParsedDocument:
    raw = _partition(kind, path)
    items = _items_from_elements(raw, kind)
    page_count: int | None = None
    pages = [item.page for item in items if item.page is not None]
    if kind in ("pptx", "xlsx", "docx") and pages:
        page_count = max(pages)
    return _finish(kind, items, page_count, [])
