"""Give the memory a finished stage freed back to the operating system (glibc only; a no-op elsewhere).

Parsing a long PDF allocates hundreds of megabytes of small objects (pdfminer's layout of every
page, unstructured's elements) that are all freed when the parse stage returns, but glibc's
allocator keeps freed heap memory for re-use instead of returning it: the pool process then
embeds on top of it. Measured on freeculture.pdf (352 pages): parsing raised a warm process's RSS
by 350 MB, freeing the result returned nothing, `malloc_trim(0)` returned 215 MB of it.

`configure_allocator` caps glibc's per-thread arenas in the worker (each thread that allocates,
such as the warm-up thread or onnxruntime's, can otherwise get an arena of its own that fragments
apart from the others); `release_freed_memory` runs between the stages of an ingestion.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from typing import Final

# mallopt parameter number of M_ARENA_MAX in glibc's malloc.h.
_M_ARENA_MAX: Final = -8


@functools.cache
def glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    # musl (Alpine) has neither function: nothing to tune there.
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def configure_allocator(*, arena_max: int) -> bool:
    """Cap glibc's malloc arenas at `arena_max` for this process and the processes it forks
    (call before threads start allocating). False where the allocator is not glibc's."""
    libc = glibc()
    if libc is None or arena_max < 1:
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, arena_max))


def release_freed_memory() -> bool:
    """Return free heap memory to the operating system (`malloc_trim(0)`); True if some was.

    Costs a few milliseconds on a large heap: called between stages, not in loops.
    """
    libc = glibc()
    if libc is None:
        return False
    return bool(libc.malloc_trim(0))
