"""Run unstructured's partitioner for a file type; any failure becomes `ParseError("corrupt")`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from kb.pipeline.parse.common import ParseError
from kb.pipeline.parse.text import _partition_csv

if TYPE_CHECKING:
    from unstructured.documents.elements import Element

logger = logging.getLogger(__name__)

# Celery's time-limit exceptions, matched by name so this package does not import Celery.
_TIME_LIMIT_ERRORS: Final = frozenset({"SoftTimeLimitExceeded", "TimeLimitExceeded"})

# Partitioner per file type: (module, function).
_PARTITION_MODULES: Final = {
    "pdf": ("unstructured.partition.pdf", "partition_pdf"),
    "docx": ("unstructured.partition.docx", "partition_docx"),
    "pptx": ("unstructured.partition.pptx", "partition_pptx"),
    "xlsx": ("unstructured.partition.xlsx", "partition_xlsx"),
    "html": ("unstructured.partition.html", "partition_html"),
    "md": ("unstructured.partition.md", "partition_md"),
    "txt": ("unstructured.partition.text", "partition_text"),
    "csv": ("unstructured.partition.csv", "partition_csv"),
    "eml": ("unstructured.partition.email", "partition_email"),
    "epub": ("unstructured.partition.epub", "partition_epub"),
    "odt": ("unstructured.partition.odt", "partition_odt"),
}


def _partition(kind: str, path: Path, *, first_page: int = 1) -> list[Element]:
    """Run the unstructured partitioner for `kind`; any failure becomes `ParseError("corrupt")`.
    `first_page`: the number of a PDF's first page (a page range cut from a longer file)."""
    if kind == "csv":
        return _partition_csv(path)
    module_name, function_name = _PARTITION_MODULES[kind]
    module = __import__(module_name, fromlist=[function_name])
    partition: Callable[..., list[Element]] = getattr(module, function_name)
    kwargs: dict[str, Any] = {"filename": str(path)}
    if kind == "pdf":
        kwargs.update(
            strategy="fast", infer_table_structure=False, include_page_breaks=False, starting_page_number=first_page
        )
    if kind == "eml":
        kwargs.update(process_attachments=False)
    try:
        return list(partition(**kwargs))
    except ParseError:
        raise
    except MemoryError:
        raise
    except Exception as exc:
        if type(exc).__name__ in _TIME_LIMIT_ERRORS:
            raise
        logger.info("partition_%s failed on %s: %r", kind, path.name, exc)
        raise ParseError(
            "corrupt",
            "This file is damaged or not really the kind of file its contents suggest, so it "
            "could not be read. Try opening and saving it again, then re-upload.",
            detail=f"{type(exc).__name__}: {exc}",
        ) from exc
