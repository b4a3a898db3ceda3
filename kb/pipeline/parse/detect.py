"""File type detection: from the first bytes, the name's extension only breaking ties between text types."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import re
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Final

from kb.pipeline.parse.common import ParseError
from kb.pipeline.parse.ocr import ocr_available

_OLE2_MAGIC: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# Images read by OCR (kb.pipeline.parse.ocr), when it is installed.
_IMAGE_SIGNATURES: Final[tuple[tuple[bytes, str], ...]] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)
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
    "PDF, Word (.docx), PowerPoint (.pptx), Excel (.xlsx), HTML, Markdown, plain text, CSV, e-mail (.eml) "
    "and scanned images (PNG, JPEG, TIFF)"
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
    for signature, kind in _IMAGE_SIGNATURES:
        if data_head.startswith(signature) and ocr_available():
            return kind
    for signature, what in _BINARY_SIGNATURES:
        if data_head.startswith(signature):
            if what.endswith("image"):
                raise ParseError(
                    "unsupported_type",
                    f"This file is {what}. Only PNG, JPEG and TIFF images are read (by text "
                    "recognition, when it is installed on this server); upload a PDF or document "
                    "with real text instead.",
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
