"""Every supported format, and the files that cannot be read, end to end: REST upload → real worker → search.

Real documents come from ../shared/data (formats/ and pdf_parsing/), read in place; tests that need
them are skipped when the folder is absent. Each test uploads its files together so the worker's
two slots stay busy, then checks every file and reports all problems at once. The 1,225-page book
of formats/ is left to bench/ingest.py (it alone takes longer than this whole file).
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.models import Organization
from kb.models import Chunk, Document
from tests.conftest import SHARED_DATA

FORMATS = SHARED_DATA / "formats"
PDFS = SHARED_DATA / "pdf_parsing"
SLOW_FORMATS = frozenset({"book-war-and-peace-1225p.txt"})
# Long texts that make ~700 chunks at the default size: embedding those alone takes a minute on two
# shared cores. They go into a knowledge base with 6,000-character chunks (~120 chunks): chunk size
# is not what this file is about (tests/test_pipeline_chunk.py covers chunking at the default size).
LONG_FORMATS = frozenset(
    {
        "fake-html-pre.htm",
        "UDHR_first_article_all.txt",
        "norwich-city.txt",
        "csv-with-long-lines.csv",
        "example-with-scripts.html",
    }
)
TERMINAL = frozenset({"ready", "failed"})

needs_formats = pytest.mark.skipif(
    not FORMATS.is_dir(), reason=f"shared format samples not found at {FORMATS} (tests read them in place)"
)
needs_pdfs = pytest.mark.skipif(
    not PDFS.is_dir(), reason=f"shared PDF samples not found at {PDFS} (tests read them in place)"
)

MakeOrg = Callable[..., Organization]
ApiClientFor = Callable[..., APIClient]


# --------------------------------------------------------------------------------------------
# Helpers.


def _new_kb(client: APIClient, name: str, **options: int) -> int:
    response = client.post("/api/v1/knowledge-bases/", {"name": name, **options}, format="json")
    assert response.status_code == 201, response.content
    kb_id: int = response.json()["id"]
    return kb_id


def _post_file(client: APIClient, kb_id: int, name: str, content: bytes) -> Any:
    return client.post(
        f"/api/v1/knowledge-bases/{kb_id}/documents/",
        {"file": SimpleUploadedFile(name, content, content_type="application/octet-stream")},
        format="multipart",
    )


def _upload(client: APIClient, kb_id: int, name: str, content: bytes) -> int:
    response = _post_file(client, kb_id, name, content)
    assert response.status_code == 201, (name, response.content)
    doc_id: int = response.json()["id"]
    return doc_id


def _wait_terminal(client: APIClient, doc_ids: Iterable[int], *, timeout: float) -> dict[int, dict[str, Any]]:
    """Poll `GET /documents/{id}/` until every document is READY or FAILED; their last bodies."""
    pending = set(doc_ids)
    done: dict[int, dict[str, Any]] = {}
    last: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while pending:
        for doc_id in sorted(pending):
            body = client.get(f"/api/v1/documents/{doc_id}/").json()
            last[doc_id] = body
            if body["status"] in TERMINAL:
                done[doc_id] = body
        pending -= done.keys()
        if not pending:
            break
        if time.monotonic() > deadline:
            stuck = {last[d]["filename"]: (last[d]["status"], last[d]["progress"]) for d in pending}
            pytest.fail(f"not finished within {timeout:.0f}s: {stuck}")
        time.sleep(0.3)
    return done


def _search(client: APIClient, kb_id: int, query: str, *, top_k: int = 10) -> list[dict[str, Any]]:
    response = client.post(f"/api/v1/knowledge-bases/{kb_id}/search/", {"query": query, "top_k": top_k}, format="json")
    assert response.status_code == 200, response.content
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def _squash(text: str) -> str:
    return " ".join(text.split())


def _readable_problem(error: str | None) -> str | None:
    """Why `error` is not a sentence a person can act on, or None when it is one."""
    if not error or len(error) < 20:
        return f"error too short: {error!r}"
    if not error[0].isupper() or not error.rstrip().endswith((".", "!")):
        return f"error is not a sentence: {error!r}"
    technical = ("Traceback", "Exception", "Error:", "errno", "0x", "pdfminer", "pypdf", "unstructured")
    if any(marker in error for marker in technical):
        return f"error leaks technical detail: {error!r}"
    return None


@dataclass(frozen=True)
class Expect:
    """What a file must look like once READY: its detected type, a search that finds it, the text
    the hit must contain, and table rows that must appear as whole lines of the hit (a table
    indexed as a word salad of cells has no such line)."""

    file_type: str
    query: str
    phrase: str = ""
    rows: tuple[str, ...] = ()
    pages: int | None = None


FORMAT_EXPECTATIONS: dict[str, Expect] = {
    "2023-half-year-analyses-by-segment.xlsx": Expect(
        "xlsx",
        "Zone EUR sales and trading operating profit",
        rows=("| Zone EUR | 9467 | 1570 | 1373 | -197 | -5 | -140 | -414 |",),
        pages=5,  # sheets
    ),
    "UDHR_first_article_all.txt": Expect(
        "txt",
        "All human beings are born free and equal in dignity and rights",
        phrase="All human beings are born free and equal in dignity and rights.",
    ),
    "codeblock.md": Expect("md", "Don't forget me this weekend", phrase="<body>Don't forget me this weekend!</body>"),
    "contains-pictures.docx": Expect(
        "docx", "paragraph text that runs through the floating picture", phrase="the floating picture: Lorem ipsum"
    ),
    "csv-with-long-lines.csv": Expect(
        "csv",
        "SpearmanCorrelationCoefficient CD161CD8TfrequencyUnstim",
        phrase="| SpearmanCorrelationCoefficient | 1Freq CD161CD8TfrequencyUnstim | 1Freq Ki67CD8frequencyUnstim |",
    ),
    "docx-hdrftr.docx": Expect("docx", "Main document", phrase="Main document"),
    "docx-tables.docx": Expect(
        "docx",
        "Lorem ipsum link example table",
        rows=("| Header Col 1 | Header Col 2 |", "| Lorem ipsum | A link example |", "| a | c | d |"),
    ),
    "example-docs-README.md": Expect(
        "md", "10-K SEC filing in HTML format", phrase="example-10k.html - A 10-K SEC filing in HTML format"
    ),
    "example-list-items-multiple.docx": Expect("docx", "Trying various lists", phrase="ii) Trying various lists."),
    "example-steelJIS-datasheet.html": Expect(
        "html",
        "chemical composition of steel grade SNB22-3",
        rows=(
            "| C | Si | Mn | P | S | Cr | Mo |",
            "| 0.39 - 0.46 | 0.2 - 0.35 | 0.65 - 1.1 | max 0.025 | max 0.025 | 0.75 - 1.2 | 0.15 - 0.25 |",
        ),
    ),
    "example-with-scripts.html": Expect(
        "html",
        "Russian Offensive Campaign Assessment, December 13",
        phrase="Russian Offensive Campaign Assessment, December 13",
    ),
    "fake-html-pre.htm": Expect(
        "html",
        "USA PATRIOT ACT short title",
        phrase="Intercept and Obstruct Terrorism (USA PATRIOT ACT) Act of 2001",
    ),
    "fake-power-point-table.pptx": Expect(
        "pptx",
        "slide with a table red green blue",
        rows=("| Column 1 | Column 2 | Column 3 |", "| Red | Green | Blue |", "| Tangerine | Pink | Aqua |"),
        pages=1,  # slides
    ),
    "more-than-1k-cells.xlsx": Expect("xlsx", "x x x x", rows=("| " + " | ".join(["x"] * 26) + " |",), pages=1),
    "norwich-city.txt": Expect("txt", "Iwan Roberts full name", phrase="Full name Iwan Wyn Roberts"),
    "page-breaks.docx": Expect("docx", "Text on second page", phrase="<<Text on second page."),
    "science-exploration-1p.pptx": Expect(
        "pptx", "Heliophysics Science Division", phrase="Code 670: Heliophysics Science Division", pages=1
    ),
    "simple-table.md": Expect(
        "md", "Juicy Apples price in stock", rows=("| Item | Price | # In stock |", "| Juicy Apples | 1.99 | 739 |")
    ),
    "stanley-cups.csv": Expect(
        "csv",
        "Stanley Cups Maple Leafs",
        rows=("| Team | Location | Stanley Cups |", "| Maple Leafs | TOR | 13 |", "| Blues | STL | 1 |"),
    ),
    # The folder's own metadata files are documents too: a TSV table and a plain-text note.
    "MANIFEST.tsv": Expect(
        "csv",
        "codeblock.md Unstructured-IO example-docs",
        phrase="| codeblock.md | Unstructured-IO/unstructured | example-docs/codeblock.md | 3e5482bfcdc8 | 606 |",
    ),
    "README.txt": Expect(
        "txt",
        "office web text documents for parser tests",
        phrase="Real office/web/text documents for parser tests",
    ),
}


def _hit_problem(results: list[dict[str, Any]], doc_id: int, expect: Expect) -> str | None:
    """None when a search hit of `doc_id` holds the phrase and all the rows; else what is missing."""
    own = [hit for hit in results if hit["document_id"] == doc_id]
    if not own:
        return f"search {expect.query!r} found nothing of this document"
    for hit in own:
        lines = {line.strip() for line in hit["text"].splitlines()}
        if expect.phrase and _squash(expect.phrase) not in _squash(hit["text"]):
            continue
        if all(row in lines for row in expect.rows):
            return None
    wanted = [expect.phrase] if expect.phrase else list(expect.rows)
    return f"no hit of {expect.query!r} contains {wanted}; got {[hit['text'][:200] for hit in own[:3]]}"


def _manifest(folder: Path) -> dict[str, dict[str, Any]]:
    lines = (folder / "manifest.jsonl").read_text().splitlines()
    return {entry["file"]: entry for entry in map(json.loads, lines) if entry}


# --------------------------------------------------------------------------------------------
# Every format of the sample folder.


@needs_formats
@pytest.mark.worker
def test_every_sample_format_becomes_ready_and_searchable(
    make_org: MakeOrg, api_client_for: ApiClientFor, celery_worker: Any
) -> None:
    names = sorted(p.name for p in FORMATS.iterdir() if p.is_file() and p.name not in SLOW_FORMATS)
    assert set(names) == set(FORMAT_EXPECTATIONS), "a sample file without an expectation (or one that vanished)"
    client = api_client_for(make_org("Formats"))
    kb_ids = {
        "default": _new_kb(client, "Formats"),
        "long": _new_kb(client, "Long formats", chunk_size=6000, chunk_overlap=150),
    }
    kb_of = {name: kb_ids["long" if name in LONG_FORMATS else "default"] for name in names}
    # Longest first, so the two worker slots finish together.
    by_size = sorted(names, key=lambda name: -(FORMATS / name).stat().st_size)
    ids = {name: _upload(client, kb_of[name], name, (FORMATS / name).read_bytes()) for name in by_size}
    # ~35 s on an idle 2-core machine; generous, because this checks results, not speed (the
    # 1,225-page book was still embedding after 70 s at load 5).
    bodies = _wait_terminal(client, ids.values(), timeout=240)

    problems: list[str] = []
    for name in names:
        body, expect = bodies[ids[name]], FORMAT_EXPECTATIONS[name]
        if body["status"] != "ready":
            problems.append(f"{name}: {body['status']} ({body['error_code']}: {body['error']})")
            continue
        if body["chunks"] <= 0 or body["chunks_embedded"] != body["chunks"]:
            problems.append(f"{name}: {body['chunks_embedded']}/{body['chunks']} chunks embedded")
        if body["file_type"] != expect.file_type:
            problems.append(f"{name}: read as {body['file_type']!r}, expected {expect.file_type!r}")
        if expect.pages is not None and body["pages"] != expect.pages:
            problems.append(f"{name}: {body['pages']} pages, expected {expect.pages}")
        problem = _hit_problem(_search(client, kb_of[name], expect.query), ids[name], expect)
        if problem:
            problems.append(f"{name}: {problem}")
    assert not problems, "\n".join(problems)

    # Scripts are not content: none of the page's JavaScript reaches the index.
    scripts = Chunk.objects.filter(document_id=ids["example-with-scripts.html"])
    assert scripts.exists()
    for code in ("GoogleAnalyticsObject", "jQuery.extend", "switchTo5x"):
        assert not scripts.filter(text__contains=code).exists(), code


@needs_formats
@pytest.mark.worker
def test_short_csv_rows_are_padded_with_empty_cells(
    make_org: MakeOrg, api_client_for: ApiClientFor, celery_worker: Any
) -> None:
    client = api_client_for(make_org("Csv"))
    kb_id = _new_kb(client, "Csv")
    doc_id = _upload(client, kb_id, "ragged.csv", b"name,city,note\nAda,London\nGrace,Arlington,admiral\n")
    body = _wait_terminal(client, [doc_id], timeout=30)[doc_id]
    assert body["status"] == "ready", body
    text = Chunk.objects.get(document_id=doc_id).text
    assert "| Ada | London |  |" in text.splitlines(), text


# --------------------------------------------------------------------------------------------
# PDFs: the unreadable ones fail with a reason, the readable ones keep their page counts.


def _truncated(source: Path) -> bytes:
    data = source.read_bytes()
    return data[: len(data) * 6 // 10]


def _pdf_without_pages() -> bytes:
    from pypdf import PdfWriter

    buffer = io.BytesIO()
    PdfWriter().write(buffer)
    return buffer.getvalue()


@needs_pdfs
@pytest.mark.worker
def test_unreadable_pdfs_fail_with_a_reason_and_readable_ones_keep_their_pages(
    make_org: MakeOrg, api_client_for: ApiClientFor, celery_worker: Any
) -> None:
    manifest = _manifest(PDFS)
    client = api_client_for(make_org("Pdfs"))
    kb_id = _new_kb(client, "PDFs")

    # (upload name, bytes, expected error code, words the reason must contain)
    bad = [
        ("password.pdf", (PDFS / "unstructured_example_docs/password.pdf").read_bytes(), "encrypted", "password"),
        (
            "password-example.pdf",
            (PDFS / "pdfplumber_tests/password-example.pdf").read_bytes(),
            "encrypted",
            "password",
        ),
        ("no-pages.pdf", _pdf_without_pages(), "empty", "no pages"),
        (
            "fax-scan.pdf",
            (PDFS / "pypdf_sample_files/imagemagick-CCITTFaxDecode.pdf").read_bytes(),
            "no_text_found",
            "text recognition (OCR)",
        ),
        (
            "grayscale-scan.pdf",
            (PDFS / "pypdf_sample_files/grayscale-image.pdf").read_bytes(),
            "no_text_found",
            "found no text",
        ),
        ("truncated.pdf", _truncated(PDFS / "pypdf_sample_files/pdflatex-4-pages.pdf"), "corrupt", "damaged"),
        ("not-really.pdf", b"%PDF-1.4\n" + b"garbage " * 200, "corrupt", "damaged"),
    ]
    # (manifest file, a phrase of its text)
    good = [
        ("pypdf_sample_files/multicolumn.pdf", "Two-Column Document with Lorem Ipsum"),
        ("pypdf_sample_files/google-doc-document.pdf", "Beautiful is better than ugly."),
        ("pypdf_sample_files/pdflatex-4-pages.pdf", "Huardest gefburn"),
        # Encrypted with an owner password only: anyone may read it, and so do we.
        ("unstructured_example_docs/copy-protected.pdf", "LayoutParser"),
    ]
    bad_ids = {name: (_upload(client, kb_id, name, data), code, words) for name, data, code, words in bad}
    good_ids = {file: _upload(client, kb_id, Path(file).name, (PDFS / file).read_bytes()) for file, _ in good}
    bodies = _wait_terminal(
        client, [i for i, _, _ in bad_ids.values()] + list(good_ids.values()), timeout=240
    )  # the two scans are now read by OCR first

    problems: list[str] = []
    for name, (doc_id, code, words) in bad_ids.items():
        body = bodies[doc_id]
        if body["status"] != "failed" or body["error_code"] != code:
            problems.append(f"{name}: {body['status']}/{body['error_code']!r}, expected failed/{code!r}")
        if (problem := _readable_problem(body["error"])) is not None:
            problems.append(f"{name}: {problem}")
        elif words.lower() not in body["error"].lower():
            problems.append(f"{name}: reason does not mention {words!r}: {body['error']!r}")
        if body["chunks"]:
            problems.append(f"{name}: failed but has {body['chunks']} chunks")
    for file, phrase in good:
        body = bodies[good_ids[file]]
        if body["status"] != "ready":
            problems.append(f"{file}: {body['status']} ({body['error_code']}: {body['error']})")
            continue
        expected_pages = (manifest[file].get("expected") or {}).get("pages")
        if expected_pages is not None and body["pages"] != expected_pages:
            problems.append(f"{file}: {body['pages']} pages, the manifest says {expected_pages}")
        if body["file_type"] != "pdf" or body["chunks"] <= 0:
            problems.append(f"{file}: type {body['file_type']!r}, {body['chunks']} chunks")
        hits = [h for h in _search(client, kb_id, phrase) if h["document_id"] == good_ids[file]]
        if not any(_squash(phrase) in _squash(h["text"]) for h in hits):
            problems.append(f"{file}: no search hit contains {phrase!r}")
        elif any(h["page"] is None or not 1 <= h["page"] <= (expected_pages or body["pages"]) for h in hits):
            problems.append(f"{file}: a hit without a valid page number: {[h['page'] for h in hits]}")
    assert not problems, "\n".join(problems)

    # The bad files left the worker healthy: a normal PDF sent after them is still processed.
    after = "pypdf_sample_files/crazyones-pdfa.pdf"
    doc_id = _upload(client, kb_id, "after-the-bad-ones.pdf", (PDFS / after).read_bytes())
    body = _wait_terminal(client, [doc_id], timeout=30)[doc_id]
    assert body["status"] == "ready", body
    assert body["pages"] == manifest[after]["expected"]["pages"] == 1
    assert any(
        h["document_id"] == doc_id and "round pegs in the square holes" in h["text"]
        for h in _search(client, kb_id, "the round pegs in the square holes")
    )


@needs_pdfs
@pytest.mark.worker
def test_pdf_with_a_wrong_extension_is_read_as_pdf(
    make_org: MakeOrg, api_client_for: ApiClientFor, celery_worker: Any
) -> None:
    client = api_client_for(make_org("Renamed"))
    kb_id = _new_kb(client, "Renamed")
    source = "pypdf_sample_files/pdflatex-outline.pdf"
    doc_id = _upload(client, kb_id, "report.txt", (PDFS / source).read_bytes())
    body = _wait_terminal(client, [doc_id], timeout=30)[doc_id]
    assert body["status"] == "ready", body
    assert body["file_type"] == "pdf"
    assert body["pages"] == _manifest(PDFS)[source]["expected"]["pages"] == 4
    hits = [h for h in _search(client, kb_id, "Huardest gefburn blind text") if h["document_id"] == doc_id]
    assert hits and "Huardest gefburn" in hits[0]["text"]
    assert hits[0]["page"] is not None and 1 <= hits[0]["page"] <= 4
    # Raw PDF syntax would mean the bytes were indexed as text.
    assert not Chunk.objects.filter(document_id=doc_id, text__contains="endobj").exists()


# --------------------------------------------------------------------------------------------
# Refused at upload.


@needs_pdfs
def test_zero_byte_file_is_refused_at_upload(make_org: MakeOrg, api_client_for: ApiClientFor) -> None:
    client = api_client_for(make_org("Empty"))
    kb_id = _new_kb(client, "Empty")
    empty = PDFS / "pdfplumber_tests/empty.pdf"  # the sample set's own 0-byte "PDF"
    assert empty.stat().st_size == 0
    response = _post_file(client, kb_id, "empty.pdf", empty.read_bytes())
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "empty_file"
    assert "empty" in response.json()["detail"]
    assert not Document.objects.exists()


@override_settings(GROUNDWORK_MAX_UPLOAD_BYTES=64 * 1024)
def test_file_over_the_size_limit_is_refused_at_upload(make_org: MakeOrg, api_client_for: ApiClientFor) -> None:
    client = api_client_for(make_org("Big"))
    kb_id = _new_kb(client, "Big")
    response = _post_file(client, kb_id, "big.txt", b"All work and no play. " * 4000)  # ~88 KB
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "too_large"
    assert "upload limit" in response.json()["detail"]
    assert not Document.objects.exists()
    # Just under the limit is accepted.
    assert _post_file(client, kb_id, "small.txt", b"x" * (64 * 1024)).status_code == 201


# --------------------------------------------------------------------------------------------
# A zip bomb disguised as a Word document.


def _peak_rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    # Writing 5 resets VmHWM to the current RSS (Linux >= 4.0): the peak is then this test's own.
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _docx_bomb(path: Path, *, unpacked_mb: int) -> None:
    """A DOCX whose word/document.xml is `unpacked_mb` MB of "0" inside one text run: well-formed
    enough that an XML parser would really build it in memory, yet ~1,000:1 compressed."""
    block = b"0" * (1 << 20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
            'content-types"><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-'
            'officedocument.wordprocessingml.document.main+xml"/></Types>',
        )
        with archive.open("word/document.xml", "w") as member:
            member.write(
                b'<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org/'
                b'wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>'
            )
            for _ in range(unpacked_mb):
                member.write(block)
            member.write(b"</w:t></w:r></w:p></w:body></w:document>")


@pytest.mark.worker
def test_zip_bomb_disguised_as_docx_fails_without_unpacking(
    tmp_path: Path, make_org: MakeOrg, api_client_for: ApiClientFor, celery_worker: Any
) -> None:
    bomb = tmp_path / "quarterly-report.docx"
    _docx_bomb(bomb, unpacked_mb=400)
    packed = bomb.stat().st_size
    assert packed < 1 << 20, packed  # under 1 MB on disk, 400 MB unpacked

    client = api_client_for(make_org("Bomb"))
    kb_id = _new_kb(client, "Bomb")
    measured = _reset_peak_rss()
    before = _peak_rss_mb()
    doc_id = _upload(client, kb_id, bomb.name, bomb.read_bytes())
    body = _wait_terminal(client, [doc_id], timeout=30)[doc_id]
    after = _peak_rss_mb()

    assert body["status"] == "failed", body
    assert body["error_code"] == "zip_bomb"
    assert _readable_problem(body["error"]) is None, body["error"]
    assert "unsafe" in body["error"] and "400 MB" in body["error"]
    # The worker runs in this process: had anything inflated the member, the peak would show it.
    if measured and before is not None and after is not None:
        assert after - before < 100, f"peak RSS grew by {after - before:.0f} MB while refusing the bomb"

    # And the worker is still fine.
    ok = _upload(client, kb_id, "notes.md", b"# Notes\n\nThe quarterly report is due on Friday.\n")
    assert _wait_terminal(client, [ok], timeout=30)[ok]["status"] == "ready"
