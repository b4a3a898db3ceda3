"""A long PDF read in page ranges at once (kb.pipeline.parse.pdf_ranges): the same document as
read in one piece, the ranges really in other processes, and a range that fails or hangs never
costs the document its text or leaves a process behind."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from kb.pipeline.parse import parse_document, pdf_ranges
from kb.pipeline.parse.isolated import child_parsing_available, parse_document_in_child
from tests.pdf_factory import simple_pdf

pytestmark = pytest.mark.skipif(not child_parsing_available(), reason="needs os.fork")

PAGES = 30


@pytest.fixture
def long_pdf(tmp_path: Path) -> Path:
    path = tmp_path / "annual-report.pdf"
    path.write_bytes(
        simple_pdf(
            [
                [f"Chapter {page}", f"Revenue in region {page} grew by {page} percent over the year."]
                for page in range(1, PAGES + 1)
            ]
        )
    )
    return path


def test_ranges_are_even_contiguous_and_never_shorter_than_the_minimum() -> None:
    assert pdf_ranges.page_ranges(80, 2) == [(1, 40), (41, 80)]
    assert pdf_ranges.page_ranges(31, 2) == [(1, 16), (17, 31)]
    assert pdf_ranges.page_ranges(30, 4) == [(1, 15), (16, 30)]  # 12 pages per range at least
    assert pdf_ranges.page_ranges(23, 4) == [(1, 23)]
    assert pdf_ranges.page_ranges(100, 1) == [(1, 100)]


def test_a_long_pdf_read_in_ranges_equals_the_pdf_read_in_one_piece(long_pdf: Path) -> None:
    whole = parse_document(long_pdf, filename=long_pdf.name, processes=1)
    in_ranges = parse_document(long_pdf, filename=long_pdf.name, processes=2)
    assert in_ranges == whole
    assert {element.page_number for element in in_ranges.elements} == set(range(1, PAGES + 1))
    assert any("region 30 grew by 30 percent" in element.text for element in in_ranges.elements)


def test_each_range_is_read_in_its_own_process(long_pdf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readers = tmp_path / "readers.txt"
    real_partition = pdf_ranges._partition

    def recording_partition(kind: str, path: Path, *, first_page: int = 1) -> Any:
        with readers.open("a") as log:
            log.write(f"{first_page} {os.getpid()}\n")
        return real_partition(kind, path, first_page=first_page)

    monkeypatch.setattr(pdf_ranges, "_partition", recording_partition)
    document = parse_document(long_pdf, filename=long_pdf.name, processes=2)
    assert document.page_count == PAGES
    pid_by_first_page = dict(line.split() for line in readers.read_text().splitlines())
    assert set(pid_by_first_page) == {"1", "16"}
    assert pid_by_first_page["1"] == str(os.getpid())
    assert pid_by_first_page["16"] != str(os.getpid())


def test_a_range_that_crashes_is_read_again_in_one_piece(long_pdf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_partition = pdf_ranges._partition

    def crash_after_the_first_range(kind: str, path: Path, *, first_page: int = 1) -> Any:
        if first_page > 1:
            os.kill(os.getpid(), signal.SIGSEGV)  # a C extension's bug, in the range's process only
        return real_partition(kind, path, first_page=first_page)

    whole = parse_document(long_pdf, filename=long_pdf.name, processes=1)
    monkeypatch.setattr(pdf_ranges, "_partition", crash_after_the_first_range)
    assert parse_document(long_pdf, filename=long_pdf.name, processes=2) == whole


def test_a_pdf_pikepdf_cannot_cut_is_read_in_one_piece(long_pdf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = parse_document(long_pdf, filename=long_pdf.name, processes=1)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("unexpected xref")

    monkeypatch.setattr("pikepdf.open", refuse)
    assert parse_document(long_pdf, filename=long_pdf.name, processes=2) == whole


class _TimeLimit(Exception):
    """Stands for Celery's SoftTimeLimitExceeded, raised in the pool process while it waits."""


def _gone(pid: int) -> bool:
    """No such process, or a zombie waiting for a reaper (killed either way)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def test_a_time_limit_ends_the_parse_child_and_every_range_process(
    long_pdf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "range.pid"
    real_partition = pdf_ranges._partition

    def hang_after_the_first_range(kind: str, path: Path, *, first_page: int = 1) -> Any:
        if first_page > 1:
            pid_file.write_text(str(os.getpid()))
            time.sleep(120)
        return real_partition(kind, path, first_page=first_page)

    def on_limit(signum: int, frame: object) -> None:
        raise _TimeLimit

    monkeypatch.setattr(pdf_ranges, "_partition", hang_after_the_first_range)
    previous = signal.signal(signal.SIGUSR1, on_limit)
    stop_waiting = threading.Event()

    def limit_once_the_range_runs() -> None:
        while not pid_file.exists() and not stop_waiting.wait(0.05):
            pass
        if not stop_waiting.is_set():
            os.kill(os.getpid(), signal.SIGUSR1)

    timer = threading.Thread(target=limit_once_the_range_runs)
    timer.start()
    try:
        with pytest.raises(_TimeLimit):
            parse_document_in_child(long_pdf, filename=long_pdf.name, max_pages=100, timeout_s=60.0, processes=2)
    finally:
        stop_waiting.set()
        timer.join()
        signal.signal(signal.SIGUSR1, previous)
    range_pid = int(pid_file.read_text())
    # The kernel kills it when its parent (the killed parse child) dies; give it a moment.
    for _ in range(100):
        if _gone(range_pid):
            break
        time.sleep(0.05)
    assert _gone(range_pid)


def _report_pdf(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    pages = [[f"{name} chapter {page}", f"Sales in {name} rose {page} percent."] for page in range(1, PAGES + 1)]
    path.write_bytes(simple_pdf(pages))
    return path


@pytest.mark.django_db
def test_a_worker_busy_with_another_document_reads_a_long_pdf_in_one_piece(
    make_org: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    from django.db.models import Max, Min

    from kb.models import Chunk, DocumentStatus, DocumentVersion
    from kb.pipeline import run
    from kb.pipeline.parse import stage
    from kb.services import document_upload, knowledge_base_create

    settings.GROUNDWORK_PARSE_PROCESSES = 2
    processes_used: list[int] = []
    parse_in_child = stage.parse_document_in_child

    def recording(path: Path, **kwargs: Any) -> Any:
        processes_used.append(kwargs["processes"])
        return parse_in_child(path, **kwargs)

    monkeypatch.setattr(stage, "parse_document_in_child", recording)
    kb = knowledge_base_create(organization=make_org(), name="Reports", created_by=None)

    def upload(name: str) -> DocumentVersion:
        with _report_pdf(tmp_path, name).open("rb") as handle:
            return document_upload(knowledge_base=kb, upload=handle, filename=name, uploaded_by=None).version

    def ingest(name: str, *, worker: str) -> DocumentVersion:
        version = upload(name)
        run.version_ingest(version_id=version.pk, worker=worker)
        return DocumentVersion.objects.get(pk=version.pk)

    alone = ingest("north.pdf", worker="node-a")
    # Another document is being embedded on this node: its core is taken.
    busy = upload("south.pdf")
    DocumentVersion.objects.filter(pk=busy.pk).update(status=DocumentStatus.EMBEDDING, claimed_by="node-a")
    while_busy = ingest("east.pdf", worker="node-a")
    # ...while a document on another machine takes none of this node's cores.
    elsewhere = ingest("west.pdf", worker="node-b")

    assert processes_used == [2, 1, 2]
    for version in (alone, while_busy, elsewhere):
        assert version.status == DocumentStatus.READY
        pages = Chunk.objects.filter(version=version).aggregate(first=Min("page_start"), last=Max("page_end"))
        assert pages == {"first": 1, "last": PAGES}, "every page is read either way"
