"""Test-case files: CSV and JSON lines, in and out.

Columns (CSV header / JSON keys):

    question               the question (required)
    expected               phrases the answer must contain, any one of them;
                           CSV: alternatives separated by "|"; JSON: a list of strings (or one string)
    must_refuse            true/false (also 1/0, yes/no; empty: false)
    expected_document_ids  ids of documents one of which the answer must cite;
                           CSV: separated by "|" or ","; JSON: a list of integers

A file is read whole before anything is stored: the first bad row raises `CaseFileError` with
its line number, and nothing is imported.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rest_framework.exceptions import ParseError

from accounts.parsers import json_check
from chat.exceptions import ChatError

COLUMNS = ("question", "expected", "must_refuse", "expected_document_ids")
MAX_QUESTION_CHARS = 4000
MAX_ROWS = 5000


class CaseFileError(ChatError):
    """A test-case file that cannot be imported; `line` is the 1-based line of the bad row."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__("bad_test_case_file", f"Line {line}: {message}" if line else message)
        self.line = line


@dataclass
class CaseRow:
    question: str
    expected: list[str] = field(default_factory=list)
    must_refuse: bool = False
    expected_document_ids: list[int] = field(default_factory=list)


def _boolean(value: Any, line: int) -> bool:
    if isinstance(value, bool):
        return value
    raw = str(value if value is not None else "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise CaseFileError(line, f"must_refuse must be true or false, not {value!r}.")


def _document_ids(values: Iterable[Any], line: int) -> list[int]:
    ids = []
    for value in values:
        text = str(value).strip()
        if not text:
            continue
        if isinstance(value, bool) or not text.isdigit():
            raise CaseFileError(line, f"expected_document_ids must be document ids (numbers), not {value!r}.")
        ids.append(int(text))
    return ids


def case_row_clean(
    *, question: Any, expected: Any, must_refuse: Any, expected_document_ids: Any, line: int = 0
) -> CaseRow:
    """Validate one case's values (from a file or the API); raise CaseFileError on a bad one."""
    if not isinstance(question, str) or not question.strip():
        raise CaseFileError(line, "question is empty.")
    if len(question) > MAX_QUESTION_CHARS:
        raise CaseFileError(line, f"question is longer than {MAX_QUESTION_CHARS} characters.")
    if expected is None:
        expected = []
    if isinstance(expected, str):
        expected = [expected]
    if not isinstance(expected, list) or not all(isinstance(p, str) for p in expected):
        raise CaseFileError(line, "expected must be a list of phrases.")
    phrases = [p.strip() for p in expected if p.strip()]
    refuse = _boolean(must_refuse, line)
    if refuse and phrases:
        raise CaseFileError(line, "a must-refuse case cannot also expect phrases.")
    if expected_document_ids is None:
        expected_document_ids = []
    if not isinstance(expected_document_ids, list):
        raise CaseFileError(line, "expected_document_ids must be a list of document ids.")
    return CaseRow(
        question=question.strip(),
        expected=phrases,
        must_refuse=refuse,
        expected_document_ids=_document_ids(expected_document_ids, line),
    )


def parse_csv(text: str) -> list[CaseRow]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "question" not in [f.strip() for f in reader.fieldnames]:
        raise CaseFileError(1, f"the header must name the columns {', '.join(COLUMNS)} (question is required).")
    unknown = {f.strip() for f in reader.fieldnames} - set(COLUMNS)
    if unknown:
        raise CaseFileError(1, f"unknown columns {sorted(unknown)}; the columns are {', '.join(COLUMNS)}.")
    rows = []
    for raw in reader:
        line = reader.line_num
        if None in raw:  # more cells than header columns
            raise CaseFileError(line, "more cells than the header has columns.")
        values = {k.strip(): (v or "") for k, v in raw.items()}
        if not any(v.strip() for v in values.values()):
            continue
        rows.append(
            case_row_clean(
                question=values.get("question", ""),
                expected=values.get("expected", "").split("|"),
                must_refuse=values.get("must_refuse", ""),
                expected_document_ids=values.get("expected_document_ids", "").replace(",", "|").split("|"),
                line=line,
            )
        )
    return rows


def parse_jsonl(text: str) -> list[CaseRow]:
    rows = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise CaseFileError(line, f"not valid JSON ({exc.msg}).") from None
        except RecursionError:
            raise CaseFileError(line, "nested too deeply.") from None
        try:
            json_check(data)  # what the API's JSON parser refuses (accounts.parsers)
        except ParseError as exc:
            raise CaseFileError(line, str(exc.detail)) from None
        if not isinstance(data, dict):
            raise CaseFileError(line, "each line must be a JSON object.")
        unknown = set(data) - set(COLUMNS)
        if unknown:
            raise CaseFileError(line, f"unknown keys {sorted(unknown)}; the keys are {', '.join(COLUMNS)}.")
        rows.append(
            case_row_clean(
                question=data.get("question"),
                expected=data.get("expected"),
                must_refuse=data.get("must_refuse", False),
                expected_document_ids=data.get("expected_document_ids"),
                line=line,
            )
        )
    return rows


def parse_case_file(*, name: str, content: bytes) -> list[CaseRow]:
    """Rows of a CSV or JSON-lines file (by extension, else by its first character)."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CaseFileError(0, "The file must be UTF-8 text (CSV or JSON lines).") from None
    lower = name.lower()
    is_jsonl = lower.endswith((".jsonl", ".ndjson", ".json")) or (
        not lower.endswith(".csv") and text.lstrip().startswith("{")
    )
    rows = parse_jsonl(text) if is_jsonl else parse_csv(text)
    if not rows:
        raise CaseFileError(0, "The file holds no test cases.")
    if len(rows) > MAX_ROWS:
        raise CaseFileError(0, f"At most {MAX_ROWS} test cases per file.")
    return rows


def cases_to_csv(rows: Iterable[CaseRow]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(
            [
                row.question,
                "|".join(row.expected),
                "true" if row.must_refuse else "false",
                "|".join(str(i) for i in row.expected_document_ids),
            ]
        )
    return buffer.getvalue()


def cases_to_jsonl(rows: Iterable[CaseRow]) -> str:
    return "".join(
        json.dumps(
            {
                "question": row.question,
                "expected": row.expected,
                "must_refuse": row.must_refuse,
                "expected_document_ids": row.expected_document_ids,
            },
            ensure_ascii=False,
        )
        + "\n"
        for row in rows
    )
