"""The embeddable widget: snippet and origin checks (the widget itself is built in the widget issue)."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.utils.html import escape

from chat.models import Chatbot


def normalize_origin(origin: str) -> str | None:
    """`scheme://host[:port]` in lower case, or None when `origin` is not one."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        return None
    if parts.query or parts.fragment or parts.username:
        return None
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname.lower()}{port}"


def widget_snippet(bot: Chatbot, *, base_url: str) -> str:
    src = f"{base_url}/static/widget/widget.js"
    return f'<script src="{escape(src)}" data-bot="{escape(bot.widget_key)}" async></script>'
