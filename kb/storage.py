"""Where uploaded bytes are stored, and their fingerprint (used by uploads and by the URL fetch)."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import PurePath
from typing import IO


def sha256_of(stream: IO[bytes]) -> tuple[str, int]:
    """The SHA-256 and size of a stream, read in blocks; the stream is left at its start."""
    digest = hashlib.sha256()
    size = 0
    stream.seek(0)
    for block in iter(lambda: stream.read(1024 * 1024), b""):
        digest.update(block)
        size += len(block)
    stream.seek(0)
    return digest.hexdigest(), size


def safe_storage_name(organization_id: int, original_name: str) -> str:
    """A storage path that never uses the uploader's file name (no traversal, no collisions)."""
    suffix = PurePath(original_name).suffix.lower()
    if not suffix[1:].isalnum() or len(suffix) > 10:
        suffix = ""
    return f"org-{organization_id}/{uuid.uuid4().hex}{suffix}"
