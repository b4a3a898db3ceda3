"""Tables (HTML from unstructured, or built from CSV rows) rendered as text that reads on its own."""

from __future__ import annotations


def table_html_to_text(table_html: str) -> str:
    """Render an HTML table as readable text: a Markdown table, or lines for one-column tables.

    Merged cells (rowspan/colspan) are repeated into every cell they cover so each row reads on
    its own; columns and rows that are empty everywhere (common in spreadsheets) are dropped.
    """
    from lxml import html as lxml_html

    try:
        root = lxml_html.fragment_fromstring(table_html, create_parent="div")
    except Exception:
        return ""
    grid: list[list[str]] = []
    pending: dict[tuple[int, int], str] = {}  # (row, col) -> text carried down by rowspan
    for row_index, row in enumerate(root.iter("tr")):
        cells: list[str] = []
        col = 0
        for cell in row:
            if cell.tag not in ("td", "th"):
                continue
            while (row_index, col) in pending:
                cells.append(pending.pop((row_index, col)))
                col += 1
            value = " ".join(cell.text_content().split())
            colspan = _span(cell.get("colspan"))
            rowspan = _span(cell.get("rowspan"))
            for offset in range(colspan):
                cells.append(value)
                for below in range(1, rowspan):
                    pending[(row_index + below, col + offset)] = value
            col += colspan
        while (row_index, col) in pending:
            cells.append(pending.pop((row_index, col)))
            col += 1
        grid.append(cells)
    width = max((len(row) for row in grid), default=0)
    grid = [row + [""] * (width - len(row)) for row in grid if any(cell for cell in row)]
    keep = [col for col in range(width) if any(row[col] for row in grid)]
    grid = [[row[col] for col in keep] for row in grid]
    if not grid or not keep:
        return ""
    if len(keep) == 1:
        return "\n".join(row[0] for row in grid)
    rows = [" | ".join(cell.replace("|", "\\|") for cell in row) for row in grid]
    lines = [f"| {rows[0]} |", "|" + "---|" * len(keep)] + [f"| {row} |" for row in rows[1:]]
    return "\n".join(lines)


def _span(value: str | None) -> int:
    try:
        return max(1, min(int(value or 1), 1000))
    except ValueError:
        return 1
