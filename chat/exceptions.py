"""Domain errors of the chat app; each says what the user can do about it."""

from __future__ import annotations


class ChatError(Exception):
    status_code = 400

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ChatModelError(ChatError):
    """The chat model failed (bad key, unknown model, provider down)."""

    status_code = 502


class ChatbotDisabled(ChatError):
    status_code = 403
