"""Signed, expiring links from a widget answer to its cited source (only where the bot allows it).

A visitor is nobody we know, so a link cannot rely on a session: it carries the bot, the citation
and the document version, signed with the secret key (`TimestampSigner`) and valid for
`SOURCE_LINK_MAX_AGE`. Opening it checks, every time, that the bot in the URL is the bot in the
token, that the bot still allows source links, and that the citation still belongs to an answer
of that bot about that very version — so a link opens one cited place and nothing else.
"""

from __future__ import annotations

from typing import Final

from django.core import signing
from django.urls import reverse

from chat.exceptions import ChatError
from chat.models import Chatbot, Citation

SOURCE_LINK_MAX_AGE: Final = 2 * 60 * 60  # seconds: long enough to read, short enough not to be a share link
_SALT: Final = "groundwork.widget.source-link"


class SourceLinkError(ChatError):
    """A source link that opens nothing; `status_code` is the HTTP answer."""

    def __init__(self, code: str, message: str, *, status_code: int) -> None:
        super().__init__(code, message)
        self.status_code = status_code


def source_link_token(*, chatbot: Chatbot, citation_id: int, version_id: int) -> str:
    return signing.TimestampSigner(salt=_SALT).sign_object({"b": chatbot.pk, "c": citation_id, "v": version_id})


def source_link_url(*, chatbot: Chatbot, citation_id: int | None, version_id: int | None) -> str:
    """The visitor's link to a cited place, or "" when the bot does not hand out its sources."""
    if not chatbot.widget_source_links or citation_id is None or version_id is None:
        return ""
    token = source_link_token(chatbot=chatbot, citation_id=citation_id, version_id=version_id)
    return reverse("widget:source", args=[chatbot.widget_key, token])


def source_link_open(*, chatbot: Chatbot, token: str) -> Citation:
    """The citation a visitor's link points to; a `SourceLinkError` for anything else."""
    not_found = SourceLinkError("source_not_found", "This link does not open a source.", status_code=404)
    if not chatbot.widget_source_links:
        raise SourceLinkError("source_links_off", "This chat does not share its source documents.", status_code=403)
    try:
        payload = signing.TimestampSigner(salt=_SALT).unsign_object(token, max_age=SOURCE_LINK_MAX_AGE)
    except signing.SignatureExpired:
        raise SourceLinkError(
            "source_link_expired", "This link has expired. Open the source again from the chat.", status_code=410
        ) from None
    except signing.BadSignature:
        raise not_found from None
    if not isinstance(payload, dict) or payload.get("b") != chatbot.pk:
        raise not_found
    citation_id, version_id = payload.get("c"), payload.get("v")
    if not isinstance(citation_id, int) or not isinstance(version_id, int):
        raise not_found
    citation = (
        Citation.objects.filter(
            pk=citation_id,
            version_id=version_id,
            message__conversation__chatbot=chatbot,
            document__deleted_at__isnull=True,
        )
        .select_related("version", "document")
        .first()
    )
    if citation is None or citation.version is None:
        raise not_found
    return citation
