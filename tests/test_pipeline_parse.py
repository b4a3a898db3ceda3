"""Parsing (kb.pipeline.parse) on real files, no database: type detection, every non-PDF format, failures.

Real documents come from ../shared/data (formats/ and pdf_parsing/), read in place; tests that need
them are skipped when that folder is absent. The full robustness sweep over every PDF is
bench/parse_sweep.py; PDFs are in test_pipeline_parse_pdf.py, chunking in test_pipeline_chunk.py.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest

from kb.pipeline import parse as parsing
from kb.pipeline.parse import (
    ParsedDocument,
    ParseError,
    detect,
    detect_file_type,
    office,
    parse_document,
    sections,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FORMATS = SHARED_DATA / "formats"
PDFS = SHARED_DATA / "pdf_parsing"

needs_data = pytest.mark.skipif(
    not FORMATS.is_dir() or not PDFS.is_dir(),
    reason=f"shared evaluation data not found at {SHARED_DATA} (tests read it in place)",
)


def _parse(path: Path, **kwargs: Any) -> ParsedDocument:
    return parse_document(path, filename=path.name, **kwargs)


# --------------------------------------------------------------------------------------------
# File type detection.

FORMAT_TYPES = {
    "2023-half-year-analyses-by-segment.xlsx": "xlsx",
    "UDHR_first_article_all.txt": "txt",
    "codeblock.md": "md",  # libmagic says text/html: it holds an HTML code block
    "contains-pictures.docx": "docx",
    "csv-with-long-lines.csv": "csv",
    "docx-hdrftr.docx": "docx",
    "docx-tables.docx": "docx",
    "example-docs-README.md": "md",
    "example-list-items-multiple.docx": "docx",
    "example-steelJIS-datasheet.html": "html",
    "example-with-scripts.html": "html",
    "fake-html-pre.htm": "html",
    "fake-power-point-table.pptx": "pptx",
    "more-than-1k-cells.xlsx": "xlsx",
    "norwich-city.txt": "txt",
    "page-breaks.docx": "docx",
    "science-exploration-1p.pptx": "pptx",  # libmagic says application/octet-stream
    "simple-table.md": "md",
    "stanley-cups.csv": "csv",
}


@needs_data
@pytest.mark.parametrize(("name", "expected"), sorted(FORMAT_TYPES.items()))
def test_detect_file_type_from_content(name: str, expected: str) -> None:
    path = FORMATS / name
    head = path.read_bytes()[: parsing.HEAD_BYTES]
    assert detect_file_type(head, name, path=path) == expected


def test_detect_file_type_uses_content_over_misleading_extension() -> None:
    assert detect_file_type(b"<!DOCTYPE html><html><body><p>Hi</p></body></html>", "notes.txt") == "html"
    assert detect_file_type(b"%PDF-1.7\n...", "report.docx") == "pdf"
    assert detect_file_type(b"GPL Ghostscript 10.02.0\n%PDF-1.7\n1 0 obj\n<<>>\nendobj\n", "x.pdf") == "pdf"
    assert detect_file_type(b"# Notes\n\nA PDF starts with %PDF-1.7 bytes.\n", "notes.md") == "md"
    email = b"From: a@example.com\nTo: b@example.com\nSubject: Hello\nDate: Mon, 3 Nov 2025\n\nBody text.\n"
    assert detect_file_type(email, "message.txt") == "eml"


def test_detect_file_type_extension_breaks_ties_between_text_types() -> None:
    text = b"# Heading\n\nname,age\nann,3\n"
    assert detect_file_type(text, "x.md") == "md"
    assert detect_file_type(text, "x.txt") == "txt"
    assert detect_file_type(b"name,age,city\nann,3,Oslo\nbob,4,Rome\n", "data") == "csv"
    assert detect_file_type(b"Just a sentence of text.\n", "README") == "txt"


@pytest.mark.parametrize(
    ("head", "code"),
    [
        (b"", "empty"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "unsupported_type"),  # .doc/.xls
        (b"GIF89a" + b"\x00" * 100, "unsupported_type"),  # images other than PNG, JPEG, TIFF
        (b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 100, "unsupported_type"),
    ],
)
def test_detect_file_type_rejects_unreadable_kinds(head: bytes, code: str) -> None:
    with pytest.raises(ParseError) as caught:
        detect_file_type(head, "upload.bin")
    assert caught.value.code == code
    assert caught.value.message.endswith(".")


@pytest.mark.parametrize(
    ("mimetype", "label"),
    [("application/epub+zip", "EPUB"), ("application/vnd.oasis.opendocument.text", "OpenDocument")],
)
def test_epub_and_odt_are_rejected_without_pandoc(tmp_path: Path, mimetype: str, label: str) -> None:
    if detect._pandoc_available():
        pytest.skip("pandoc is installed here, so these formats are accepted")
    path = tmp_path / "book.bin"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", mimetype, compress_type=zipfile.ZIP_STORED)
        archive.writestr("content.xml", "<x/>")
    with pytest.raises(ParseError) as caught:
        detect_file_type(path.read_bytes()[:100], path.name, path=path)
    assert caught.value.code == "unsupported_type"
    assert label in caught.value.message and "pandoc" in caught.value.message


# --------------------------------------------------------------------------------------------
# Every non-PDF format.

# Two of the 20 files are left to the benchmark: the 3 MB novel alone takes longer than this file.
SLOW_FORMATS = {"book-war-and-peace-1225p.txt", "UDHR_first_article_all.txt"}


@needs_data
@pytest.mark.parametrize("name", sorted(set(FORMAT_TYPES) - SLOW_FORMATS))
def test_every_format_parses_into_text_elements(name: str) -> None:
    document = _parse(FORMATS / name)
    assert document.file_type == FORMAT_TYPES[name]
    assert document.elements
    assert all(element.text.strip() for element in document.elements)
    assert not {"PageBreak", "PageNumber"} & {element.category for element in document.elements}


def _table_texts(document: ParsedDocument) -> list[str]:
    return [element.text for element in document.elements if element.category == "Table"]


@needs_data
@pytest.mark.parametrize(
    ("name", "expected_rows"),
    [
        ("docx-tables.docx", ["| Header Col 1 | Header Col 2 |", "| Lorem ipsum | A link example |"]),
        ("fake-power-point-table.pptx", ["| Column 1 | Column 2 | Column 3 |", "| Red | Green | Blue |"]),
        ("simple-table.md", ["| Item | Price | # In stock |", "| Juicy Apples | 1.99 | 739 |"]),
        ("stanley-cups.csv", ["| Team | Location | Stanley Cups |", "| Maple Leafs | TOR | 13 |"]),
        ("example-steelJIS-datasheet.html", ["| C | Si | Mn | P | S | Cr | Mo |"]),
        ("2023-half-year-analyses-by-segment.xlsx", ["| Zone EUR | 9467 | 1570 | 1373 | -197 | -5 | -140 | -414 |"]),
    ],
)
def test_tables_are_stored_as_markdown_rows(name: str, expected_rows: list[str]) -> None:
    document = _parse(FORMATS / name)
    tables = _table_texts(document)
    assert tables, "no Table element"
    lines = {line for table in tables for line in table.splitlines()}
    for row in expected_rows:
        assert row in lines
    table = next(element for element in document.elements if element.category == "Table")
    assert table.html and table.html.startswith("<table")


def test_csv_cells_are_read_as_written(tmp_path: Path) -> None:
    # Semicolon-separated, Windows-1252, a short row, and a cell that really says "None".
    path = tmp_path / "prices.csv"
    path.write_bytes("item;price;note\nCrème;2,50\nTea;1,20;None\n".encode("cp1252"))
    lines = _table_texts(_parse(path))[0].splitlines()
    assert lines == ["| item | price | note |", "|---|---|---|", "| Crème | 2,50 |  |", "| Tea | 1,20 | None |"]


@needs_data
def test_merged_table_cells_are_repeated_into_every_row() -> None:
    document = _parse(FORMATS / "docx-tables.docx")
    merged = _table_texts(document)[-1].splitlines()
    # <td rowspan=2>a</td><td colspan=2>b</td> / <td>c</td><td rowspan=2>d</td> / <td colspan=2>e</td>
    assert merged == ["| a | b | b |", "|---|---|---|", "| a | c | d |", "| e | e | d |"]


@needs_data
def test_markdown_headings_become_nested_section_paths() -> None:
    document = _parse(FORMATS / "example-docs-README.md")
    by_text = {element.text: element for element in document.elements}
    assert by_text["The sample docs directory contains the following files:"].section_path == ["Example Docs"]
    assert by_text["You can parse this document using the HTML parser."].section_path == ["Example Docs", "XBRL 10-K"]


@needs_data
def test_html_headings_become_section_paths() -> None:
    document = _parse(FORMATS / "example-steelJIS-datasheet.html")
    heading = "SNB22-3 Chemical composition, standards and properties"
    tables = [element for element in document.elements if element.category == "Table" and "| C | Si |" in element.text]
    # The bold caption above the table is a sub-heading of the page's <h1>.
    assert tables and tables[0].section_path == [heading, "Chemical composition 成分 % of grade SNB22-3"]


@needs_data
def test_bold_docx_paragraphs_act_as_headings() -> None:
    # This file's headings are "Normal" paragraphs in bold, as many real Word files are.
    document = _parse(FORMATS / "example-list-items-multiple.docx")
    item = next(element for element in document.elements if element.text.startswith("2) This is simply"))
    assert item.section_path == ["Lorem Ipsum 2"]


def test_docx_heading_styles_become_nested_section_paths(tmp_path: Path) -> None:
    # None of the shared DOCX files uses Word's heading styles, so write one with python-docx.
    import docx

    word = docx.Document()
    word.add_heading("Employee handbook", 1)
    word.add_paragraph("This handbook explains how we work together every day.")
    word.add_heading("Leave", 2)
    word.add_heading("Parental leave", 3)
    word.add_paragraph("Parents get sixteen weeks of paid leave after a birth or adoption.")
    word.add_heading("Expenses", 2)
    word.add_paragraph("Submit receipts within thirty days of the purchase date.")
    path = tmp_path / "handbook.docx"
    word.save(str(path))

    document = _parse(path)
    paths = {element.text: element.section_path for element in document.elements}
    assert paths["Parents get sixteen weeks of paid leave after a birth or adoption."] == [
        "Employee handbook",
        "Leave",
        "Parental leave",
    ]
    assert paths["Submit receipts within thirty days of the purchase date."] == ["Employee handbook", "Expenses"]


@needs_data
def test_slides_and_sheets_carry_page_numbers_and_sheet_names() -> None:
    slides = _parse(FORMATS / "fake-power-point-table.pptx")
    assert slides.page_count == 1
    assert all(element.page_number == 1 for element in slides.elements)
    sheets = _parse(FORMATS / "2023-half-year-analyses-by-segment.xlsx")
    assert sheets.page_count == 5
    assert sheets.elements[0].section_path[0] == "OS-Rev.and results 30 06 2023"


@needs_data
def test_docx_headers_and_footers_are_left_out() -> None:
    document = _parse(FORMATS / "docx-hdrftr.docx")
    assert [element.text for element in document.elements] == ["Main document"]


@needs_data
def test_mojibake_in_text_files_is_repaired() -> None:
    document = _parse(FORMATS / "norwich-city.txt")
    assert "1986–1990 Watford 63 (9)" in document.text
    assert "\u00e2\u0080" not in document.text


def test_email_body_sits_under_its_subject(tmp_path: Path) -> None:
    path = tmp_path / "policy.eml"
    path.write_text(
        "From: Alice <alice@example.com>\nTo: Bob <bob@example.com>\nSubject: Refund policy update\n"
        "Date: Mon, 3 Nov 2025 10:00:00 +0000\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n"
        "From December our refund window changes from 14 to 30 days.\n"
    )
    document = _parse(path)
    assert document.file_type == "eml"
    assert "refund window changes from 14 to 30 days" in document.text
    assert document.elements[0].section_path[0] == "Refund policy update"


# --------------------------------------------------------------------------------------------
# Failures of any format.


def test_zero_byte_file_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "nothing.docx"
    path.write_bytes(b"")
    with pytest.raises(ParseError) as caught:
        _parse(path)
    assert caught.value.code == "empty"


def test_cid_junk_document_fails_as_garbled(tmp_path: Path) -> None:
    path = tmp_path / "junk.txt"
    junk = "".join(f"(cid:{n})" for n in range(40))
    path.write_text(f"{junk}\n\n{junk}{junk}\n\nok\n")
    with pytest.raises(ParseError) as caught:
        _parse(path)
    assert caught.value.code == "garbled_text"


def test_a_little_cid_junk_is_marked_not_dropped(tmp_path: Path) -> None:
    path = tmp_path / "maths.txt"
    path.write_text("A set U(cid:18)M is open when every point of it has a neighbourhood inside it.\n")
    document = _parse(path)
    assert "U□M is open" in document.text


def test_zip_bomb_is_refused_before_unpacking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Same check as production, scaled down so the test file stays small.
    monkeypatch.setattr(office, "ZIP_RATIO_FLOOR", 1 << 20)
    path = tmp_path / "bomb.docx"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", b"\0" * (8 << 20))
    with pytest.raises(ParseError) as caught:
        _parse(path)
    assert caught.value.code == "zip_bomb"


def test_random_zip_is_not_a_document(tmp_path: Path) -> None:
    path = tmp_path / "photos.docx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("holiday/readme.txt", "pictures")
    with pytest.raises(ParseError) as caught:
        _parse(path)
    assert caught.value.code == "unsupported_type"


def test_damaged_docx_fails_as_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "broken.docx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document><unclosed>")
    with pytest.raises(ParseError) as caught:
        _parse(path)
    assert caught.value.code == "corrupt"


@needs_data
def test_timeout_hint_stops_a_long_parse() -> None:
    with pytest.raises(ParseError) as caught:
        _parse(FORMATS / "book-war-and-peace-1225p.txt", timeout_s=0.5)
    assert caught.value.code == "timeout"


@pytest.mark.parametrize(
    ("title", "accepted"),
    [
        ("3.1 Layout Detection Models", True),
        ("Vorwort", True),
        ("n u J", False),
        ("2 0 5", False),
        ("F / M M F F F / M", False),
        ("4 5 layout = model.detect(image)", False),
        ("(b) Trading operating profit before Net other trading income/(expenses).", False),
        ("x", False),
    ],
)
def test_noisy_pdf_titles_are_not_headings(title: str, accepted: bool) -> None:
    assert sections._is_plausible_heading(title, strict=True) is accepted
