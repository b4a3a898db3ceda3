"""The JSON parser of every API view: malformed, hostile or unstorable JSON is a 400, never a 500.

- Nesting: `[` × 100,000 makes the decoder raise `RecursionError`; a few hundred levels parse
  but break whatever recurses over the data later (storing a JSONField, rendering). Anything
  nested deeper than `MAX_DEPTH` is refused.
- Text PostgreSQL cannot store: NUL (`\\u0000`) and unpaired surrogates (`\\ud800`) are refused,
  in keys and values alike, so no view has to remember them. (DRF's CharField already rejects NUL;
  views that read `request.data` directly did not.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_DEPTH = 64


def _storable_text(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # an unpaired surrogate
        return False
    return True


def json_check(data: Any) -> None:
    """Raise `ParseError` if `data` nests deeper than `MAX_DEPTH` or holds unstorable text."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if not _storable_text(value):
                raise ParseError("Text must not contain NUL characters or unpaired surrogates.")
        elif isinstance(value, Mapping | list):
            if depth > MAX_DEPTH:
                raise ParseError(f"JSON nested deeper than {MAX_DEPTH} levels.")
            items = list(value.keys()) + list(value.values()) if isinstance(value, Mapping) else value
            stack.extend((item, depth + 1) for item in items)


class SafeJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON nested deeper than {MAX_DEPTH} levels.") from None
        json_check(data)
        return data
