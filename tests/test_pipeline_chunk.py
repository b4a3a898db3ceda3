"""Structure-aware chunking (kb.pipeline.chunk), no database; one test chunks real files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kb.pipeline.chunk import ChunkDraft, chunk_document, chunk_plain_text, content_hash, split_text
from kb.pipeline.parse import (
    ParsedDocument,
    ParsedElement,
    parse_document,
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
# Chunking.


def _doc(*elements: ParsedElement, file_type: str = "pdf") -> ParsedDocument:
    return ParsedDocument(file_type=file_type, page_count=None, elements=list(elements))


def _para(seed: str, sentences: int, page: int | None = None, path: list[str] | None = None) -> ParsedElement:
    text = " ".join(f"{seed} sentence number {n} says something useful about {seed}." for n in range(sentences))
    return ParsedElement(text=text, category="NarrativeText", page_number=page, section_path=path or [])


def _heading(text: str, path: list[str], page: int | None = None) -> ParsedElement:
    return ParsedElement(text=text, category="Title", page_number=page, section_path=path)


def test_chunks_never_cross_section_boundaries() -> None:
    document = _doc(
        _heading("Alpha", ["Alpha"], page=1),
        _para("alpha", 40, page=1, path=["Alpha"]),
        _heading("Beta", ["Beta"], page=2),
        _para("beta", 40, page=2, path=["Beta"]),
    )
    result = chunk_document(document, max_chars=500, overlap=80)
    assert len(result.sections) == 2
    for chunk in result.chunks:
        section = result.sections[chunk.section_ordinal]
        assert chunk.section_path == section.section_path
        assert ("alpha" in chunk.text) != ("beta" in chunk.text)
        assert len(chunk.text) <= 500
    assert [chunk.ordinal for chunk in result.chunks] == list(range(len(result.chunks)))
    for section in result.sections:
        own = [chunk for chunk in result.chunks if chunk.section_ordinal == section.ordinal]
        assert [chunk.ordinal for chunk in own] == list(
            range(section.first_chunk, section.first_chunk + section.chunk_count)
        )


def test_consecutive_chunks_overlap_at_word_boundaries() -> None:
    result = chunk_document(_doc(_para("gamma", 30, path=["G"])), max_chars=400, overlap=120)
    assert len(result.chunks) > 2
    for previous, chunk in zip(result.chunks, result.chunks[1:], strict=False):
        shared = next(
            (
                size
                for size in range(min(len(previous.text), len(chunk.text)), 0, -1)
                if previous.text.endswith(chunk.text[:size])
            ),
            0,
        )
        assert 20 <= shared <= 120
        assert chunk.text[0].isupper() or chunk.text[0].isalnum()


def test_overlap_zero_means_disjoint_chunks() -> None:
    result = chunk_document(_doc(_para("delta", 30)), max_chars=400, overlap=0)
    joined = " ".join(chunk.text for chunk in result.chunks)
    assert normalize(joined) == normalize(_para("delta", 30).text)


def normalize(text: str) -> str:
    return " ".join(text.split())


def test_page_ranges_follow_the_elements() -> None:
    document = _doc(*[_para(f"p{page}", 3, page=page, path=["Report"]) for page in range(1, 7)])
    result = chunk_document(document, max_chars=600, overlap=0)
    assert result.sections[0].page_start == 1 and result.sections[0].page_end == 6
    for chunk in result.chunks:
        pages = {int(token[1:]) for token in chunk.text.split() if token.startswith("p") and token[1:].isdigit()}
        assert chunk.page_start == min(pages) and chunk.page_end == max(pages)


def test_content_hashes_are_stable_and_whitespace_insensitive() -> None:
    document = _doc(_heading("Alpha", ["Alpha"]), _para("alpha", 20, path=["Alpha"]))
    first = [chunk.content_hash for chunk in chunk_document(document).chunks]
    second = [chunk.content_hash for chunk in chunk_document(document).chunks]
    assert first == second and len(set(first)) == len(first)
    assert content_hash("a  b\n c") == content_hash("a b c") != content_hash("a b d")


def test_big_tables_split_between_rows_with_the_header_repeated() -> None:
    header = "| Zone | Sales | Profit |\n|---|---|---|"
    rows = [f"| Zone {n} | {n * 1000} | {n * 17} |" for n in range(120)]
    table = ParsedElement(text=header + "\n" + "\n".join(rows), category="Table", section_path=["Results"])
    result = chunk_document(_doc(_heading("Results", ["Results"]), table), max_chars=500, overlap=100)
    pieces = [chunk for chunk in result.chunks if "| Zone 5" in chunk.text or "| Zone 9" in chunk.text]
    assert len(result.chunks) > 3
    seen: list[str] = []
    for chunk in result.chunks:
        lines = chunk.text.splitlines()
        body = lines[lines.index("| Zone | Sales | Profit |") + 2 :]
        assert all(line in rows for line in body), "a row was cut"
        seen += body
    assert seen == rows and pieces


def test_body_less_parent_heading_is_only_in_the_path() -> None:
    document = _doc(
        _heading("Handbook", ["Handbook"]),
        _heading("Leave", ["Handbook", "Leave"]),
        _para("leave", 12, path=["Handbook", "Leave"]),
        file_type="docx",
    )
    result = chunk_document(document, min_chars=0)
    assert [section.section_path for section in result.sections] == [["Handbook", "Leave"]]
    assert result.chunks[0].embedding_text().startswith("Handbook > Leave\n\nLeave\n\n")
    assert result.chunks[0].embedding_text("Policies").startswith("Policies > Handbook > Leave\n\n")


def test_tiny_sections_merge_under_their_common_path() -> None:
    document = _doc(
        _heading("Opening hours", ["Contact", "Opening hours"]),
        ParsedElement(text="Mon-Fri 9-17.", category="NarrativeText", section_path=["Contact", "Opening hours"]),
        _heading("Phone", ["Contact", "Phone"]),
        ParsedElement(text="+47 22 00 00 00", category="NarrativeText", section_path=["Contact", "Phone"]),
        file_type="docx",
    )
    result = chunk_document(document, min_chars=200)
    assert len(result.chunks) == 1
    assert result.chunks[0].section_path == ["Contact"]
    assert "Mon-Fri" in result.chunks[0].text and "+47" in result.chunks[0].text
    separate = chunk_document(document, min_chars=0)
    assert [chunk.section_path for chunk in separate.chunks] == [["Contact", "Opening hours"], ["Contact", "Phone"]]


def test_slides_are_hard_chunk_boundaries() -> None:
    document = _doc(
        ParsedElement(text="Slide one text.", category="NarrativeText", page_number=1),
        ParsedElement(text="Slide two text.", category="NarrativeText", page_number=2),
        file_type="pptx",
    )
    result = chunk_document(document)
    assert [(chunk.page_start, chunk.page_end) for chunk in result.chunks] == [(1, 1), (2, 2)]


def test_split_text_prefers_sentence_boundaries() -> None:
    text = "First sentence is here. Second sentence is here. Third one closes it."
    assert split_text(text, 50) == ["First sentence is here. Second sentence is here.", "Third one closes it."]
    assert all(len(piece) <= 10 for piece in split_text("x" * 95, 10))


def test_plain_text_chunks_use_title_and_markdown_headings() -> None:
    text = "Refunds take 30 days.\n\n## Exceptions\n\nSale items cannot be refunded.\n\n" + _para("extra", 40).text
    result = chunk_plain_text(text, title="Refund policy", max_chars=400, overlap=50)
    assert result.chunks[0].section_path == ["Refund policy"]
    assert result.chunks[0].text.startswith("Refunds take 30 days.")
    assert any(chunk.section_path == ["Refund policy", "Exceptions"] for chunk in result.chunks)
    assert all(len(chunk.text) <= 400 for chunk in result.chunks)
    assert isinstance(result.chunks[0], ChunkDraft)


@needs_data
def test_real_documents_chunk_within_limits() -> None:
    for name in ("example-docs-README.md", "2023-half-year-analyses-by-segment.xlsx", "norwich-city.txt"):
        result = chunk_document(_parse(FORMATS / name), max_chars=800, overlap=100)
        assert result.chunks
        assert all(0 < len(chunk.text) <= 800 for chunk in result.chunks)
        assert {chunk.section_ordinal for chunk in result.chunks} == {section.ordinal for section in result.sections}
