"""Domain errors of the chat app; each says what the user can do about it."""

from __future__ import annotations

BUSY_DETAIL = "The service is busy answering other questions. Please try again in a few seconds."


class ChatError(Exception):
    status_code = 400

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ChatModelError(ChatError):
    """The chat model failed (bad key, unknown model, provider down).

    `message` is for staff and API clients of the organisation (it may quote the provider);
    `public_message` is what a website visitor is told: plain words, no model, key or provider text.
    """

    status_code = 502

    def __init__(self, code: str, message: str, public_message: str = "") -> None:
        super().__init__(code, message)
        self.public_message = public_message or "The assistant cannot answer right now. Please try again later."


class ChatbotDisabled(ChatError):
    status_code = 403


class AnswersBusy(ChatError):
    """Too many answers are waiting for the CPU: ask again in a few seconds (nothing was stored)."""

    status_code = 503

    def __init__(self, *, waited: float) -> None:
        from django.conf import settings

        super().__init__("busy", BUSY_DETAIL)
        self.waited = waited
        self.retry_after = settings.GROUNDWORK_BUSY_RETRY_AFTER
