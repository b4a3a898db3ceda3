"""A worker that has just started: a small plain-text or Markdown document does not wait for the PDF
reader to load (kb.pipeline.warm), and everything else still waits for all parsers before a child
is forked."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from kb.pipeline import warm
from kb.pipeline.parse import ParsedDocument, stage
from tests.pdf_factory import simple_pdf

HANG_GUARD_S = 120  # only ever reached when a parse waits for a stage that never ends


def test_plain_text_and_markdown_are_read_without_importing_the_pdf_stack_and_pdfs_are_still_patched(
    tmp_path: Path,
) -> None:
    text = tmp_path / "hours.txt"
    text.write_text("Opening hours\n\nThe shop opens at nine on weekdays.\n", encoding="utf-8")
    markdown = tmp_path / "returns.md"
    markdown.write_text("# Returns\n\nUnused items can be returned within **30 days**.\n", encoding="utf-8")
    pdf = tmp_path / "handbook.pdf"
    pdf.write_bytes(simple_pdf([["Returns", "Unused items can be returned within 30 days."]]))
    # A fresh interpreter: this test process may have imported the PDF stack already.
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from kb.pipeline import parse

        parse.warm_up_text()
        document = parse.parse_document(Path({str(text)!r}), filename="hours.txt")
        assert any("nine on weekdays" in e.text for e in document.elements), document
        document = parse.parse_document(Path({str(markdown)!r}), filename="returns.md")
        assert any("within 30 days" in e.text for e in document.elements), document
        assert any(e.section_path == ["Returns"] and "30 days" in e.text for e in document.elements), document
        print("pdf stack loaded:", "unstructured.partition.pdf" in sys.modules)

        document = parse.parse_document(Path({str(pdf)!r}), filename="handbook.pdf")
        assert any("30 days" in e.text for e in document.elements), document
        from unstructured.partition import pdf as pdf_module
        print("pdf patched:", pdf_module.is_pdf_too_complex.__name__ == "too_complex_caps_only")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=HANG_GUARD_S, cwd=Path.cwd()
    )
    assert result.returncode == 0, result.stderr
    assert "pdf stack loaded: False" in result.stdout
    assert "pdf patched: True" in result.stdout


def pool_process_warming_up(monkeypatch: pytest.MonkeyPatch, *, loaded: tuple[str, ...]) -> warm.WarmUp:
    """This process as a pool process whose warm-up has loaded the `loaded` stages so far."""
    state = warm.WarmUp()
    state.started = True
    for stage_name in loaded:
        getattr(state, stage_name).set()
    monkeypatch.setattr(warm, "_warm_up", state)
    return state


@pytest.fixture
def half_warm(monkeypatch: pytest.MonkeyPatch) -> warm.WarmUp:
    """A pool process whose text parser and embedder are loaded while the other parsers still load."""
    return pool_process_warming_up(monkeypatch, loaded=("text", "embedder"))


def _in_thread(target: Any) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = target()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


@pytest.mark.parametrize(
    ("filename", "kind"),
    [("hours.txt", "txt"), ("hours.md", "md")],
)
def test_a_small_text_file_is_parsed_while_the_other_parsers_still_load(
    half_warm: warm.WarmUp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, filename: str, kind: str
) -> None:
    def no_fork(*_: Any, **__: Any) -> ParsedDocument:
        raise AssertionError("forked a parse child while the warm-up thread was importing")

    monkeypatch.setattr(stage, "parse_document_in_child", no_fork)
    path = tmp_path / filename
    path.write_text("# Opening hours\n\nThe shop opens at nine on weekdays.\n", encoding="utf-8")

    thread, outcome = _in_thread(lambda: stage._parse_file(path, filename=filename, processes=1))
    thread.join(HANG_GUARD_S)

    assert not half_warm.complete.is_set()
    assert "error" not in outcome, outcome
    parsed = outcome["value"]
    assert parsed.file_type == kind
    assert any("nine on weekdays" in element.text for element in parsed.document.elements)


@pytest.mark.parametrize("filename", ["handbook.pdf", "handbook.md"])
def test_a_pdf_or_a_long_markdown_waits_for_every_parser_before_its_child_is_forked(
    half_warm: warm.WarmUp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, filename: str
) -> None:
    forked_when_complete: list[bool] = []

    def record(*_: Any, **__: Any) -> ParsedDocument:
        forked_when_complete.append(half_warm.complete.is_set())
        return ParsedDocument(file_type="pdf", page_count=1, elements=[], warnings=[])

    monkeypatch.setattr(stage, "parse_document_in_child", record)
    monkeypatch.setattr(stage, "child_parsing_available", lambda: True)
    path = tmp_path / filename
    if filename.endswith(".pdf"):
        path.write_bytes(simple_pdf([["Returns", "Unused items can be returned within 30 days."]]))
    else:  # past the in-process cap: its HTML tree is parsed in a child
        section = "## Returns\n\nUnused items can be returned within 30 days of delivery.\n\n"
        path.write_text("# Handbook\n\n" + section * (stage.SMALL_TEXT_BYTES["md"] // len(section) + 1))

    thread, outcome = _in_thread(lambda: stage._parse_file(path, filename=filename, processes=1))
    half_warm.complete.set()  # the PDF stack has loaded
    thread.join(HANG_GUARD_S)

    assert "error" not in outcome, outcome
    assert forked_when_complete == [True]


def test_a_failed_warm_up_releases_the_waiting_documents() -> None:
    def broken() -> None:
        raise RuntimeError("the spaCy model package is not installed")

    state = warm.WarmUp()
    state.start((broken, lambda: None, lambda: None))

    assert state.text.wait(HANG_GUARD_S)
    assert state.embedder.wait(HANG_GUARD_S)
    assert state.complete.wait(HANG_GUARD_S)


@pytest.mark.parametrize("module", ["litellm", "unstructured.partition.text", "celery.worker", "django.db.models"])
def test_the_installed_packages_carry_their_compiled_bytecode(module: str) -> None:
    """What a fresh worker imports is read from .pyc (`make install` compiles it), not compiled again
    by every process: where PYTHONDONTWRITEBYTECODE is set, nothing else writes it, and a worker's
    ping took 7.2 s instead of 3.2 (bench/results/worker_start.json)."""
    import importlib
    import importlib.util

    source = importlib.import_module(module).__file__
    assert source is not None
    cached = Path(importlib.util.cache_from_source(source))
    assert cached.exists(), f"{module} has no compiled bytecode at {cached}: install with `make install`"
