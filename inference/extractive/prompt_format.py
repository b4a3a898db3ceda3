"""The prompt format shared by the chat prompt builder and the local answerer's LiteLLM adapter.

`build_sources_block` writes the fenced sources; `parse_prompt` reads them back. Keeping both in
one module means the prompt builder and the parser cannot drift apart.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: What ``complete`` returns when the sources do not answer the question. The app stores the
#: message as refused and shows its own "I don't know" text (localised, configurable).
REFUSAL_SENTINEL = "[[REFUSE]]"


@dataclass(frozen=True)
class Source:
    """One retrieved passage as numbered in the prompt (``number`` is what ``[n]`` cites)."""

    number: int
    text: str
    title: str | None = None
    section: str | None = None


_SOURCE_RE = re.compile(
    r'<source id="(?P<id>\d+)"(?P<attrs>(?:\s+[a-z_]+="[^"]*")*)\s*>(?P<body>.*?)</source>',
    re.S,
)
_ATTR_RE = re.compile(r'([a-z_]+)="([^"]*)"')
_QUESTION_RE = re.compile(r"<question>(?P<q>.*?)</question>", re.S)
_SOURCES_WRAPPER_RE = re.compile(r"<sources>.*?</sources>", re.S)


def build_sources_block(sources: Iterable[Source]) -> str:
    """Render sources in the fenced format that :func:`parse_prompt` reads.

    Format (one block, sources in citation order)::

        <sources>
        <source id="1" title="Employee handbook" section="Leave">
        ...passage text, HTML-escaped...
        </source>
        </sources>

    Text and attributes are HTML-escaped, so a document containing ``</source>`` or
    ``<question>`` cannot break out of its fence (retrieved text is untrusted data).
    """
    parts = ["<sources>"]
    for src in sources:
        attrs = f'id="{int(src.number)}"'
        if src.title:
            attrs += f' title="{html.escape(src.title, quote=True)}"'
        if src.section:
            attrs += f' section="{html.escape(src.section, quote=True)}"'
        parts.append(f"<source {attrs}>\n{html.escape(src.text, quote=False)}\n</source>")
    parts.append("</sources>")
    return "\n".join(parts)


@dataclass
class ParsedPrompt:
    """Question and sources recovered from a chat prompt."""

    question: str
    sources: list[Source]


def _message_text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI-style content parts
        return "\n".join(
            str(part.get("text", "")) for part in content if isinstance(part, Mapping) and part.get("type") == "text"
        )
    return ""


def parse_prompt(messages: Sequence[Mapping[str, Any]]) -> ParsedPrompt:
    """Recover the question and the sources from chat ``messages``.

    Sources are every ``<source id="n" ...>`` block in any message (the last occurrence of an id
    wins). The question is the ``<question>...</question>`` element of the last user message if
    present, otherwise that message's text with any sources block removed.
    """
    sources: dict[int, Source] = {}
    for message in messages:
        for m in _SOURCE_RE.finditer(_message_text(message)):
            attrs = {k: html.unescape(v) for k, v in _ATTR_RE.findall(m.group("attrs"))}
            number = int(m.group("id"))
            sources[number] = Source(
                number=number,
                text=html.unescape(m.group("body")).strip(),
                title=attrs.get("title") or None,
                section=attrs.get("section") or None,
            )
    question = ""
    for message in reversed(messages):
        if message.get("role") == "user":
            text = _message_text(message)
            qm = _QUESTION_RE.search(text)
            if qm:
                question = html.unescape(qm.group("q")).strip()
            else:
                question = _SOURCE_RE.sub("", _SOURCES_WRAPPER_RE.sub("", text)).strip()
            break
    return ParsedPrompt(question=question, sources=[sources[k] for k in sorted(sources)])
