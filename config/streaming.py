"""File responses sent block by block when the app is served through ASGI (uvicorn: make run, compose).

Given a response that streams a file object (Django's FileResponse: stored originals, and
WhiteNoise's static files), Django's ASGI handler reads the whole file into a list before sending
a byte ("StreamingHttpResponse must consume synchronous iterators"): a 48 MB original cost the
web process 49.6 MB per download. This middleware hands such a response an asynchronous
iterator over the same file instead; under WSGI the server reads the file object itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import IO, Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import FileResponse, HttpRequest
from django.http.response import HttpResponseBase

BLOCK_SIZE = 1024 * 1024


async def read_blocks(stream: IO[bytes], block_size: int = BLOCK_SIZE) -> AsyncIterator[bytes]:
    """`stream` block by block, each read in a worker thread, then closed."""
    read = sync_to_async(stream.read, thread_sensitive=False)
    try:
        while block := await read(block_size):
            yield block
    finally:
        stream.close()  # not awaited: it must also run when the download is cancelled mid-way


def file_streaming_middleware(get_response: Any) -> Any:
    """Under ASGI, a file response streams its file asynchronously (placed before WhiteNoise,
    whose static file responses return early). It runs in whichever mode the middleware below it
    runs (sync today: WhiteNoise is sync-only), so it never adds a switch between the two."""
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponseBase:
            return _streamed(request, await get_response(request))

        return markcoroutinefunction(middleware)

    def sync_middleware(request: HttpRequest) -> HttpResponseBase:
        return _streamed(request, get_response(request))

    return sync_middleware


file_streaming_middleware.sync_capable = True  # type: ignore[attr-defined]
file_streaming_middleware.async_capable = True  # type: ignore[attr-defined]


def _streamed(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    # `file_to_stream` is set only while the response streams a file object (not an iterator).
    if isinstance(request, ASGIRequest) and isinstance(response, FileResponse) and response.file_to_stream is not None:
        response.streaming_content = read_blocks(response.file_to_stream)
    return response
