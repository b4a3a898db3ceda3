"""Office files (DOCX, PPTX, XLSX, ODT, EPUB) are ZIP containers: refuse zip bombs and over-long
documents from the central directory alone, before any XML parser sees them."""

from __future__ import annotations

import contextlib
import re
import zipfile
from pathlib import Path
from typing import Final

from kb.pipeline.parse.common import ParseError

# Zip-bomb limits. zipfile never yields more than a member's *declared* size (it truncates and then
# fails the CRC check), so checking the declared sizes bounds what the XML parsers will ever see.
ZIP_MAX_TOTAL_BYTES: Final = 1 << 30  # 1 GiB unpacked, all members
ZIP_MAX_XML_BYTES: Final = 256 << 20  # 256 MiB of XML/text members: python-docx/openpyxl build DOMs
ZIP_MAX_MEMBERS: Final = 20_000
ZIP_MAX_RATIO: Final = 100.0  # unpacked/packed, only enforced above ZIP_RATIO_FLOOR
ZIP_RATIO_FLOOR: Final = 64 << 20


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
