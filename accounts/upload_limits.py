"""Uploads are refused at the size limit while they arrive, not after they were stored whole.

`LimitedUploadHandler` runs first among Django's upload handlers: it counts each file's bytes as
the multipart body is parsed and stops the parse (Django answers 400) once one file passes
`GROUNDWORK_MAX_UPLOAD_BYTES`, before the rest is copied into memory or a temporary file. The
service's own size check stays as the last word. (Per file, like that check: the staff page
uploads several files at once.)

Under ASGI the server has already read the raw body before Django runs; put a body limit on the
reverse proxy as well (README, Production).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest


def _limit() -> int:
    return int(settings.GROUNDWORK_MAX_UPLOAD_BYTES)


class LimitedUploadHandler(FileUploadHandler):
    """Counts the bytes of each file; past the limit the parse stops."""

    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.received = 0

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > _limit():
            raise RequestDataTooBig(f"Uploaded files exceed GROUNDWORK_MAX_UPLOAD_BYTES ({_limit()} bytes).")
        return raw_data  # handed on to the next handler (memory or temporary file)

    def file_complete(self, file_size: int) -> Any:
        return None  # the next handler builds the file
