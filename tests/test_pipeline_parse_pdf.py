"""PDF parsing (kb.pipeline.parse.pdf) on real files, no database: page counts, unreadable PDFs
with their reasons, repair of garbled pages. Real files from ../shared/data, read in place."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kb.pipeline.parse import (
    ParsedDocument,
    ParseError,
    parse_document,
    pdf,
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


def _manifest() -> dict[str, dict[str, Any]]:
    lines = (PDFS / "manifest.jsonl").read_text().splitlines()
    return {entry["file"]: entry for entry in map(json.loads, lines) if entry}


# --------------------------------------------------------------------------------------------
# PDFs and failures.


@needs_data
@pytest.mark.parametrize(
    "name",
    [
        "pypdf_sample_files/minimal-document.pdf",
        "pypdf_sample_files/pdflatex-4-pages.pdf",
        "pypdf_sample_files/multicolumn.pdf",
        "pypdf_sample_files/pdflatex-outline.pdf",
        "pypdf_sample_files/crazyones-pdfa.pdf",
        "pypdf_sample_files/habibi.pdf",
    ],
)
def test_pdf_page_counts_match_the_manifest(name: str) -> None:
    expected = _manifest()[name]["expected"]
    document = _parse(PDFS / name)
    assert document.page_count == expected["pages"]
    pages = {element.page_number for element in document.elements}
    assert pages <= set(range(1, expected["pages"] + 1))
    assert document.text.strip()


@needs_data
@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("unstructured_example_docs/password.pdf", "encrypted"),
        ("pdfplumber_tests/password-example.pdf", "encrypted"),
        ("pdfplumber_tests/empty.pdf", "empty"),
        # A picture without words: OCR finds nothing (tests/test_ocr.py reads a scan with text).
        ("pypdf_sample_files/grayscale-image.pdf", "no_text_found"),
    ],
)
def test_unreadable_pdfs_fail_with_a_reason(name: str, code: str) -> None:
    with pytest.raises(ParseError) as caught:
        _parse(PDFS / name)
    assert caught.value.code == code
    assert caught.value.message[0].isupper() and caught.value.message.endswith(".")


@needs_data
def test_encrypted_pdf_is_rejected_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    # pypdf's pre-check refuses it: unstructured's partitioner (the slow part) never runs.
    partitioned: list[str] = []

    def partition(kind: str, path: Path) -> list[object]:
        partitioned.append(kind)
        return []

    monkeypatch.setattr(pdf, "_partition", partition)
    with pytest.raises(ParseError, match="password-protected"):
        _parse(PDFS / "unstructured_example_docs/password.pdf")
    assert partitioned == []


@needs_data
def test_owner_password_only_pdf_is_read() -> None:
    # "Copy-protected": encrypted with an empty user password, readable by anyone.
    document = _parse(PDFS / "unstructured_example_docs/copy-protected.pdf")
    assert document.page_count == 2
    assert "LayoutParser" in document.text
    # The rotated arXiv margin stamp ("n u J") is neither text nor a heading.
    assert all("n u J" not in element.text for element in document.elements)


@needs_data
def test_truncated_pdf_fails_as_data(tmp_path: Path) -> None:
    source = (PDFS / "pypdf_sample_files/pdflatex-4-pages.pdf").read_bytes()
    path = tmp_path / "cut.pdf"
    path.write_bytes(source[:2000])
    with pytest.raises(ParseError) as caught:
        _parse(path)
    assert caught.value.code in {"corrupt", "no_text_layer", "empty"}


def test_bytes_that_claim_to_be_a_pdf_fail_as_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "fake.pdf"
    path.write_bytes(b"%PDF-1.4\n" + b"garbage " * 200)
    with pytest.raises(ParseError) as caught:
        _parse(path)
    assert caught.value.code == "corrupt"


@needs_data
def test_too_many_pages_is_refused_up_front() -> None:
    with pytest.raises(ParseError) as caught:
        _parse(PDFS / "pypdf_sample_files/GeoTopo-komprimiert.pdf", max_pages=50)
    assert caught.value.code == "too_many_pages"
    assert "117" in caught.value.message


@needs_data
def test_letter_spaced_pages_are_reread() -> None:
    # pdfminer splits pages 5-8 of this file into single letters ("t h e n e x t d a y");
    # pypdf reads them whole. (nics-background-checks-2015-11-rotated.pdf is the same case, but
    # pdfminer's layout analysis needs ~40 s for its one dense page: it is left to the benchmark.)
    document = _parse(PDFS / "pdfplumber_tests/issue-848.pdf")
    assert "The movie opens with a news report" in document.text
    assert "t h e n e x t" not in document.text
    assert any("pages 5, 6, 7, 8" in warning for warning in document.warnings)


@needs_data
def test_pages_with_unmapped_glyphs_are_reread() -> None:
    # pdfminer gives "(cid:224) (cid:192)" for this page; pypdf maps the same glyphs to "à À".
    document = _parse(PDFS / "pdfjs_test_subset/french_diacritics.pdf")
    assert "à À â Â ä Ä ç Ç é É" in document.text


@needs_data
def test_unreadable_fonts_fail_as_garbled() -> None:
    # Both pdfminer ("(cid:2)(cid:3)") and pypdf ("/g18/g152") read this file's fonts as glyph ids.
    with pytest.raises(ParseError) as caught:
        _parse(PDFS / "pdfjs_test_subset/TAMReview.pdf")
    assert caught.value.code == "garbled_text"
