"""Offline phrase matching: does an answer say what a test case expects?

Both texts are normalised before a phrase is looked for as a run of whole words:

- case and accents folded ("Café" == "cafe"), punctuation dropped;
- numbers canonical: thousands separators removed ("1,000" == "1000"), trailing decimal zeros
  dropped ("5.0" == "5", "2.50" == "2.5"), and number words up to twenty plus the tens
  ("five" == "5", "forty" == "40") written as digits.

Larger spelled-out numbers ("two hundred and five") are left alone: they are rare in support
answers, and a wrong parse would make a failing case pass.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_SMALL = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty"
).split()
_TENS = {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
NUMBER_WORDS: dict[str, str] = {word: str(n) for n, word in enumerate(_SMALL)} | {
    word: str(n) for word, n in _TENS.items()
}

# 1,000 / 12,500,000 — a comma between digit groups of three is a thousands separator.
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_DECIMAL = re.compile(r"\b(\d+)\.(\d+)\b")


def _canonical_decimal(match: re.Match[str]) -> str:
    whole, fraction = match.group(1), match.group(2).rstrip("0")
    return f"{whole}.{fraction}" if fraction else whole


def normalize(text: str) -> list[str]:
    """The words of `text`, folded as the module docstring says."""
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    # Thousands separators before decimals: "1,000.50" -> "1000.50" -> "1000.5".
    text = _THOUSANDS.sub("", text)
    text = _DECIMAL.sub(_canonical_decimal, text)
    # Keep the decimal point inside numbers; every other non-word character separates words.
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text)
    words = re.findall(r"\d+(?:\.\d+)?|\w+", text)
    return [NUMBER_WORDS.get(word, word) for word in words]


def contains_phrase(answer: str, phrase: str) -> bool:
    """Whether the normalised `phrase` occurs in the normalised `answer` as whole words."""
    needle = normalize(phrase)
    if not needle:
        return False
    hay = normalize(answer)
    size = len(needle)
    return any(hay[i : i + size] == needle for i in range(len(hay) - size + 1))


def first_match(answer: str, phrases: Iterable[str]) -> str | None:
    """The first of `phrases` the answer contains, or None."""
    return next((phrase for phrase in phrases if contains_phrase(answer, phrase)), None)
