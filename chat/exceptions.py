"""Domain errors of the chat app; each says what the user can do about it."""

from __future__ import annotations


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
