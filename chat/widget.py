"""The embeddable widget: the snippet, origin parsing and the iframe page's security headers."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from django.utils.html import escape

from chat.models import Chatbot

_DEFAULT_PORTS = {"http": 80, "https": 443}
# What a browser puts in an `Origin` header: ASCII (punycode) labels only. Anything else is
# refused, which also keeps the value safe to write into a CSP header.
_HOSTNAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")


def normalize_origin(origin: str) -> str | None:
    """`scheme://host[:port]` as a browser sends it in `Origin`, or None when `origin` is not one.

    Lower case, default ports dropped (`https://a.com:443` is `https://a.com`), IPv6 hosts in
    brackets, international names in punycode.
    """
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:  # bad port or bracket syntax
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    if parts.query or parts.fragment or parts.username or parts.password:
        return None
    host = parts.hostname.rstrip(".")
    try:
        host = f"[{ipaddress.IPv6Address(host).compressed}]"
    except ValueError:
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            return None
        if not _HOSTNAME.match(host):
            return None
    suffix = f":{port}" if port and port != _DEFAULT_PORTS[parts.scheme] else ""
    return f"{parts.scheme}://{host}{suffix}"


def normalized_origins(origins: Iterable[str]) -> list[str]:
    """The valid origins of `origins`, normalised, without duplicates, in order."""
    seen: dict[str, None] = {}
    for origin in origins:
        normalized = normalize_origin(origin) if isinstance(origin, str) else None
        if normalized:
            seen.setdefault(normalized)
    return list(seen)


def widget_snippet(bot: Chatbot, *, base_url: str) -> str:
    src = f"{base_url}/static/widget/widget.js"
    return f'<script src="{escape(src)}" data-bot="{escape(bot.widget_key)}" async></script>'


def frame_content_security_policy(*, frame_ancestors: list[str] | None) -> str:
    """CSP of the iframe page: its own scripts, styles and API only; framed only by `frame_ancestors`.

    `None` means any ancestor: only for pages that say "not available here" and hold nothing else.
    """
    ancestors = "*" if frame_ancestors is None else " ".join(["'self'", *normalized_origins(frame_ancestors)])
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            f"frame-ancestors {ancestors}",
        ]
    )
