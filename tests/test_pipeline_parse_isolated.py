"""Parsing in a forked child (kb.pipeline.parse.isolated): the same result as in the worker process,
the same readable failures, and a parser crash fails that one document while the next is ingested."""

from __future__ import annotations

import os
import signal
import threading
import time
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest

from kb.models import DocumentStatus, DocumentVersion
from kb.pipeline import parse as parsing
from kb.pipeline import run
from kb.pipeline.parse import ParsedDocument, ParseError, parse_document
from kb.pipeline.parse.isolated import child_parsing_available, parse_document_in_child
from kb.services import document_upload, knowledge_base_create
from tests.pdf_factory import simple_pdf

pytestmark = pytest.mark.skipif(not child_parsing_available(), reason="needs os.fork")

LIMITS: dict[str, Any] = {"max_pages": 50, "timeout_s": 60.0}


def _write_pdf(tmp_path: Path, name: str = "handbook.pdf") -> Path:
    path = tmp_path / name
    path.write_bytes(
        simple_pdf(
            [
                ["Returns policy", "Unused items can be returned within 30 days for a full refund."],
                ["Shipping", "Orders over 50 euros ship free within the European Union."],
            ]
        )
    )
    return path


def test_a_pdf_parsed_in_a_child_equals_the_same_pdf_parsed_in_process(tmp_path: Path) -> None:
    path = _write_pdf(tmp_path)
    in_process = parse_document(path, filename=path.name, **LIMITS)
    in_child = parse_document_in_child(path, filename=path.name, **LIMITS)
    assert in_child == in_process
    assert in_child.page_count == 2
    assert any("30 days" in element.text for element in in_child.elements)


def test_the_parse_runs_in_another_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def report_pid(path: Path, **_: Any) -> ParsedDocument:
        return ParsedDocument(file_type="txt", page_count=None, elements=[], warnings=[str(os.getpid())])

    monkeypatch.setattr(parsing, "parse_document", report_pid)
    document = parse_document_in_child(_write_pdf(tmp_path), filename="handbook.pdf", **LIMITS)
    assert document.warnings and document.warnings[0] != str(os.getpid())


@pytest.mark.parametrize(
    ("content", "code"),
    [(b"", "empty"), (b"%PDF-1.4\nthis is not a PDF at all\n%%EOF\n", "corrupt")],
)
def test_a_parse_error_in_the_child_arrives_with_its_code_and_message(
    tmp_path: Path, content: bytes, code: str
) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(content)
    with pytest.raises(ParseError) as in_process:
        parse_document(path, filename=path.name, **LIMITS)
    with pytest.raises(ParseError) as in_child:
        parse_document_in_child(path, filename=path.name, **LIMITS)
    assert in_process.value.code == code
    assert (in_child.value.code, in_child.value.message) == (in_process.value.code, in_process.value.message)


def _crash(path: Path, **_: Any) -> ParsedDocument:
    os.kill(os.getpid(), signal.SIGSEGV)  # what a C extension's bug does
    raise AssertionError("unreachable")


def test_a_parser_that_crashes_becomes_a_readable_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsing, "parse_document", _crash)
    with pytest.raises(ParseError) as failure:
        parse_document_in_child(_write_pdf(tmp_path), filename="handbook.pdf", **LIMITS)
    assert failure.value.code == "parser_crashed"
    assert "stopped unexpectedly" in failure.value.message
    assert failure.value.detail == "killed by signal SIGSEGV"


def test_an_unexpected_error_in_the_child_carries_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def bug(path: Path, **_: Any) -> ParsedDocument:
        raise KeyError("layout")

    monkeypatch.setattr(parsing, "parse_document", bug)
    with pytest.raises(RuntimeError, match=r"KeyError: 'layout'[\s\S]*in bug"):
        parse_document_in_child(_write_pdf(tmp_path), filename="handbook.pdf", **LIMITS)


def test_a_child_forked_after_embedding_parses_and_exits(tmp_path: Path) -> None:
    """A pool process embeds, then forks a parse child: the child must not try to free the
    inherited onnxruntime session (its destructor waited forever for threads the child lacks)."""
    from inference.embedder import get_local_embedder

    assert len(get_local_embedder().embed(["The returns policy allows 30 days."])[0]) > 0
    # Before the fix this waited forever (pytest-timeout ends it) for a child stuck in the destructor.
    assert parse_document_in_child(_write_pdf(tmp_path), filename="handbook.pdf", **LIMITS).page_count == 2


class _TimeLimit(Exception):
    """Stands for Celery's SoftTimeLimitExceeded, raised by a signal handler while the parent waits."""


def test_a_time_limit_in_the_parent_kills_the_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pid_file = tmp_path / "child.pid"

    def hang(path: Path, **_: Any) -> ParsedDocument:
        pid_file.write_text(str(os.getpid()))
        time.sleep(120)
        raise AssertionError("unreachable")

    def on_limit(signum: int, frame: object) -> None:
        raise _TimeLimit

    monkeypatch.setattr(parsing, "parse_document", hang)
    previous = signal.signal(signal.SIGUSR1, on_limit)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGUSR1))
    timer.start()
    try:
        with pytest.raises(_TimeLimit):
            parse_document_in_child(_write_pdf(tmp_path), filename="handbook.pdf", **LIMITS)
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)
    child = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # killed and reaped: no such process any more
        os.kill(child, 0)


@pytest.mark.django_db
def test_a_crashing_document_fails_alone_and_the_next_one_is_ingested(  # type: ignore[no-untyped-def]
    make_org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kb = knowledge_base_create(organization=make_org(), name="Handbook", created_by=None)

    def crash_on_the_bad_one(path: Path, *, filename: str, **kwargs: Any) -> ParsedDocument:
        if filename == "bad.pdf":
            _crash(path)
        return parse_document(path, filename=filename, **kwargs)

    monkeypatch.setattr(parsing, "parse_document", crash_on_the_bad_one)
    versions = {}
    for name in ("bad.pdf", "good.pdf"):
        uploaded = document_upload(
            knowledge_base=kb,
            upload=BytesIO(_write_pdf(tmp_path, name).read_bytes()),
            filename=name,
            uploaded_by=None,
            enqueue=False,
        )
        run.version_ingest(version_id=uploaded.version.pk)
        versions[name] = DocumentVersion.objects.get(pk=uploaded.version.pk)
    assert versions["bad.pdf"].status == DocumentStatus.FAILED
    assert versions["bad.pdf"].error_code == "parser_crashed"
    assert "stopped unexpectedly" in versions["bad.pdf"].error_message
    assert versions["good.pdf"].status == DocumentStatus.READY


def test_documents_parsed_in_children_from_several_threads_at_once_all_succeed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker with a thread pool (the test worker, `--pool threads`) forks from several threads at
    once. filelock's fork audit hook refuses an `os.fork` while another thread is inside its own fork
    (CI failed on "os.fork is unsafe while filelock is changing descriptor ownership")."""
    import filelock  # noqa: F401 - installs the audit hook, as unstructured's imports do in the worker

    def quick(path: Path, *, filename: str, **_: Any) -> ParsedDocument:
        return ParsedDocument(file_type="txt", page_count=None, elements=[], warnings=[filename])

    monkeypatch.setattr(parsing, "parse_document", quick)
    path = _write_pdf(tmp_path)
    threads, rounds = 6, 8
    start = threading.Barrier(threads)
    results: list[str] = []
    failures: list[BaseException] = []

    def parse_many(thread: int) -> None:
        start.wait()
        for round_ in range(rounds):
            name = f"{thread}-{round_}.pdf"
            try:
                results.extend(parse_document_in_child(path, filename=name, **LIMITS).warnings)
            except BaseException as exc:  # collected: an exception in a thread would otherwise vanish
                failures.append(exc)

    workers = [threading.Thread(target=parse_many, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert failures == []
    assert sorted(results) == sorted(f"{t}-{r}.pdf" for t in range(threads) for r in range(rounds))


def test_no_child_is_forked_while_another_thread_parses_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test worker (`--pool threads`) parses small text in process on one thread while another
    forks parse children. A fork while spaCy's matrix library (blis) was initialising on another
    thread copied its lock held, and the child hung forever in its first spaCy call (the suite
    crawled: every later worker test waited a minute for the stuck task; reproduced outside the
    suite in 2 of 200 forks). Forks now wait for in-process parses and warm-ups to finish."""
    from kb.pipeline.parse import isolated

    notes = tmp_path / "notes.txt"
    notes.write_text("The warranty lasts two years.")
    inside, release = threading.Event(), threading.Event()
    real_parse_other = parsing._parse_other

    def slow_parse_other(path: Path, kind: str) -> ParsedDocument:
        inside.set()
        release.wait(30)
        return real_parse_other(path, kind)

    monkeypatch.setattr(parsing, "_parse_other", slow_parse_other)
    in_process = threading.Thread(target=parse_document, args=(notes,), kwargs={"filename": notes.name})
    in_process.start()
    assert inside.wait(30)
    forked = threading.Event()

    def fork_a_child() -> None:
        isolated.start_in_child(os.getpid, label="probe").result()
        forked.set()

    forking = threading.Thread(target=fork_a_child)
    forking.start()
    try:
        assert not forked.wait(1.0), "a child was forked in the middle of an in-process parse"
    finally:
        release.set()
        in_process.join()
        forking.join()
    assert forked.is_set()


def test_a_child_stuck_beyond_its_own_limit_is_killed_and_the_document_times_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kb.pipeline.parse import isolated

    pid_file = tmp_path / "child.pid"

    def stuck(path: Path, **_: Any) -> ParsedDocument:
        pid_file.write_text(str(os.getpid()))
        # Where no signal handler runs: a C call waiting on a lock forever.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGVTALRM})
        time.sleep(120)
        raise AssertionError("unreachable")

    monkeypatch.setattr(parsing, "parse_document", stuck)
    monkeypatch.setattr(isolated, "_CHILD_GRACE_S", 0.5)
    with pytest.raises(ParseError) as failure:
        parse_document_in_child(_write_pdf(tmp_path), filename="handbook.pdf", max_pages=50, timeout_s=1.0)
    assert failure.value.code == "timeout"
    assert "longer than the limit" in failure.value.message
    with pytest.raises(ProcessLookupError):  # killed and reaped
        os.kill(int(pid_file.read_text()), 0)
