"""Text families read without unstructured's help: CSV and TSV (plain text, Markdown, HTML and
e-mail go through unstructured's partitioners, see `kb.pipeline.parse.partition`)."""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING

from kb.pipeline.parse.common import ParseError

if TYPE_CHECKING:
    from unstructured.documents.elements import Element


def _partition_csv(path: Path) -> list[Element]:
    """A CSV (or TSV) file as one table element, each cell as written.

    unstructured's partition_csv fills the missing cells of a short row with the word "None",
    which would then be indexed and quoted as if the file said it; the csv module reads rows as
    they are, and short rows are padded with empty cells.
    """
    from html import escape

    from unstructured.documents.elements import ElementMetadata, Table

    raw = path.read_bytes()
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):
        with contextlib.suppress(UnicodeDecodeError):
            text = raw.decode(encoding)
            break
    dialect = _csv_dialect([line for line in text.splitlines()[:50] if line.strip()], path.suffix.lower())
    csv.field_size_limit(10_000_000)
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline=""), dialect) if any(c.strip() for c in row)]
    except csv.Error as exc:
        raise ParseError("corrupt", "This CSV file could not be read.", detail=str(exc)) from exc
    width = max((len(row) for row in rows), default=0)
    html = (
        "<table>"
        + "".join(
            "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row + [""] * (width - len(row))) + "</tr>"
            for row in rows
        )
        + "</table>"
    )
    plain = "\n".join(" ".join(cell for cell in row if cell) for row in rows)
    return [Table(text=plain, metadata=ElementMetadata(filename=str(path), text_as_html=html))]


def _csv_dialect(lines: list[str], suffix: str) -> type[csv.Dialect]:
    """The delimiter that splits the first row into the most columns and the most rows alike.

    csv.Sniffer is easily fooled: in "item;price" / "Tea;1,20" it picks the decimal comma.
    """
    best: tuple[tuple[float, int], type[csv.Dialect]] | None = None
    for delimiter in (",", ";", "\t", "|"):
        dialect = type("Sniffed", (csv.excel,), {"delimiter": delimiter})
        with contextlib.suppress(csv.Error):
            widths = [len(row) for row in csv.reader(lines, dialect)]
            if widths and widths[0] >= 2:
                score = (sum(1 for w in widths if w == widths[0]) / len(widths), widths[0])
                if best is None or score > best[0]:
                    best = (score, dialect)
    if best is not None:
        return best[1]
    return csv.excel_tab if suffix == ".tsv" else csv.excel
