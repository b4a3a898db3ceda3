"""Scanned PDFs and images are read by OCR (RapidOCR, models inside its wheel), offline.

The scans are made in the test: text drawn on a white page with Pillow's bundled font, saved as
PNG and as an image-only PDF (no font, no text layer: what a scanner writes).
"""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image, ImageDraw, ImageFont

from kb.models import Document
from kb.pipeline.parse import ParseError, detect_file_type, parse_document
from tests.conftest import SHARED_DATA, wait_for

PDFS = SHARED_DATA / "pdf_parsing"
needs_pdfs = pytest.mark.skipif(not PDFS.is_dir(), reason=f"shared PDF samples not found at {PDFS}")

KETTLE = (
    "Warranty of the Zephyr kettle",
    "",
    "The Zephyr kettle has a warranty of 27 months.",
    "Repairs are free of charge in that time.",
)
TOASTER = (
    "Returns of the Solano toaster",
    "",
    "The Solano toaster can be returned within 45 days.",
    "Bring the receipt to any of our shops.",
)


def _scan(lines: tuple[str, ...]) -> Image.Image:
    font = ImageFont.load_default(size=34)
    image = Image.new("L", (1240, 80 + 58 * len(lines)), 255)
    draw = ImageDraw.Draw(image)
    for index, line in enumerate(lines):
        draw.text((70, 50 + 58 * index), line, fill=0, font=font)
    return image


def _png(lines: tuple[str, ...]) -> bytes:
    buffer = io.BytesIO()
    _scan(lines).save(buffer, format="PNG")
    return buffer.getvalue()


def _pdf(lines: tuple[str, ...], tmp_path: Path) -> Path:
    path = tmp_path / "scan.pdf"
    _scan(lines).save(path, resolution=150)  # an image-only PDF: no font on any page
    return path


def test_image_uploads_are_detected_as_images() -> None:
    assert detect_file_type(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "scan.bin") == "png"
    assert detect_file_type(b"\xff\xd8\xff\xe0" + b"\x00" * 100, "photo") == "jpeg"
    assert detect_file_type(b"II*\x00" + b"\x00" * 100, "fax.tif") == "tiff"


def test_scanned_pdf_is_read_by_ocr_and_its_pages_are_marked(tmp_path: Path) -> None:
    document = parse_document(_pdf(KETTLE, tmp_path), filename="scan.pdf")
    assert document.file_type == "pdf" and document.page_count == 1
    assert document.ocr_pages == [1]
    text = " ".join(document.text.split())
    assert "warranty of 27 months" in text
    assert all(element.ocr for element in document.elements)


def test_damaged_image_fails_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 300)
    with pytest.raises(ParseError) as caught:
        parse_document(path, filename="broken.png")
    assert caught.value.code == "corrupt" and caught.value.message.endswith(".")


@needs_pdfs
def test_shared_scanned_table_is_read_and_a_photo_fails_with_a_reason() -> None:
    table = parse_document(PDFS / "unstructured_example_docs/table-multi-row-column-cells.pdf", filename="t.pdf")
    assert table.ocr_pages == [1]
    assert "Ballots" in table.text and "Low Vision" in table.text
    # A photo with no words in it: recognised as such, not indexed as garbage.
    with pytest.raises(ParseError) as caught:
        parse_document(PDFS / "pypdf_sample_files/grayscale-image.pdf", filename="g.pdf")
    assert caught.value.code == "no_text_found"
    assert "found no text" in caught.value.message


def test_ocr_needs_no_network(tmp_path: Path) -> None:
    """In a fresh process where every internet connection fails, OCR still reads the scan."""
    path = _pdf(KETTLE, tmp_path)
    script = textwrap.dedent(
        f"""
        import socket

        def refuse(*args, **kwargs):
            raise OSError("network is off in this test")

        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse

        from pathlib import Path
        from kb.pipeline.parse.ocr import ocr_pdf_pages

        items = ocr_pdf_pages(Path({str(path)!r}), [1])
        print(" ".join(item.text for item in items))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "27 months" in " ".join(result.stdout.split())


def _upload(client: Any, kb_id: int, name: str, content: bytes) -> dict[str, Any]:
    response = client.post(
        f"/api/v1/knowledge-bases/{kb_id}/documents/",
        {"file": SimpleUploadedFile(name, content, content_type="application/octet-stream")},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.worker
@pytest.mark.timeout(900)  # OCR and the first model loads; minutes only on a loaded shared box
def test_scanned_pdf_and_png_become_ready_and_answerable(  # type: ignore[no-untyped-def]
    make_org, make_user, api_client_for, celery_worker, tmp_path: Path
) -> None:
    org = make_org()
    client = api_client_for(org)
    kb_id = client.post("/api/v1/knowledge-bases/", {"name": "Scans"}, format="json").json()["id"]
    pdf = _upload(client, kb_id, "kettle-warranty.pdf", _pdf(KETTLE, tmp_path).read_bytes())
    png = _upload(client, kb_id, "toaster-returns.png", _png(TOASTER))

    def ready() -> bool:
        states = [client.get(f"/api/v1/documents/{d['id']}/").json() for d in (pdf, png)]
        assert all(s["status"] != "failed" for s in states), states
        return all(s["status"] == "ready" for s in states)

    wait_for(ready, timeout=600)
    assert client.get(f"/api/v1/documents/{pdf['id']}/").json()["file_type"] == "pdf"
    assert client.get(f"/api/v1/documents/{png['id']}/").json()["file_type"] == "png"

    bot = client.post("/api/v1/chatbots/", {"name": "Helper", "knowledge_bases": [kb_id]}, format="json").json()
    for question, fact, doc in (
        ("How long is the warranty of the Zephyr kettle?", "27 months", pdf),
        ("Within how many days can the Solano toaster be returned?", "45 days", png),
    ):
        body = client.post(f"/api/v1/chatbots/{bot['id']}/chat/", {"message": question}, format="json").json()
        assert body["refused"] is False, body
        assert fact in body["answer"]
        assert body["citations"][0]["document_id"] == doc["id"]

    # The chunk viewer says the text was recognised, not read.
    editor = make_user(org)
    browser = Client()
    browser.force_login(editor)
    document = Document.objects.get(pk=pdf["id"])
    assert document.live_version is not None and document.live_version.ocr_pages == [1]
    html = browser.get(f"/documents/{pdf['id']}/").content.decode()
    assert "recognised from an image (OCR)" in html
