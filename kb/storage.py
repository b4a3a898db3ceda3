"""Where uploaded bytes are stored, their fingerprint, and how to read them back from any storage.

The default storage is the local filesystem (MEDIA_ROOT); with GROUNDWORK_STORAGE=s3 it is an
S3-compatible bucket (config.settings). Code that reads an original goes through `local_copy`
(a parser needs a path) or `open_original` (a download), never through `FieldFile.path`.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import IO

from django.db.models.fields.files import FieldFile

_BLOCK = 1024 * 1024


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


@contextmanager
def local_copy(file: FieldFile) -> Iterator[Path]:
    """A local path to a stored original, for parsers that need a real file.

    On the filesystem storage that is the stored file itself; on object storage (GROUNDWORK_STORAGE=s3,
    workers on other machines) the object is downloaded into a temporary file, removed afterwards.
    The suffix is kept: some parsers look at it.
    """
    try:
        yield Path(file.path)
        return
    except NotImplementedError:
        pass  # a remote storage: no local path
    name = str(file.name)
    with tempfile.NamedTemporaryFile(prefix="groundwork-", suffix=PurePath(name).suffix) as copy:
        with file.storage.open(name, "rb") as source:
            shutil.copyfileobj(source, copy, _BLOCK)
        copy.flush()
        yield Path(copy.name)


def open_original(file: FieldFile) -> tuple[IO[bytes], int | None]:
    """A readable stream of a stored original and its size (None when unknown), for a download.

    From object storage the body is streamed as it arrives (never buffered whole in the web
    process); from the filesystem it is the file itself.
    """
    storage = file.storage
    bucket = getattr(storage, "bucket", None)
    if bucket is not None and hasattr(storage, "_normalize_name"):
        # django-storages' S3Storage: the object's streaming body, not its spooled download.
        obj = bucket.Object(storage._normalize_name(file.name)).get()
        return obj["Body"], int(obj["ContentLength"])
    handle = storage.open(str(file.name), "rb")
    return handle, file.size
