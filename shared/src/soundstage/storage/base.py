"""What every object store shares: the object record, the errors, the name rules.

Object names are flat file names chosen by the platform (``<job-id>.wav``), and
the API serves them straight from a URL path, so the name check here is the
security boundary between ``GET /files/<name>`` and the rest of the disk or
bucket. Backends call :func:`validate_object_name` on every public method.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from soundstage.errors import AppError, ErrorCode

MAX_NAME_LENGTH = 255
DEFAULT_CHUNK_SIZE = 64 * 1024

# Letters, digits, dot, underscore, hyphen; the first character is not a dot, so
# ".", "..", hidden files and the stores' own ".tmp" files can never be named.
_NAME_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}")

# Set here rather than read from `mimetypes`, whose table differs between
# platforms (it says audio/x-wav for .wav on most Linux distributions).
_CONTENT_TYPES: dict[str, str] = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "m4a": "audio/mp4",
    "aac": "audio/aac",
    "webm": "audio/webm",
    "aiff": "audio/aiff",
    "json": "application/json",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class StoredObject:
    """One stored object as the API needs it to answer a download.

    ``modified`` is timezone-aware UTC. ``etag`` is the bare opaque tag, without
    the double quotes HTTP puts around it; ``None`` when the backend has none.
    """

    name: str
    size: int
    content_type: str
    modified: datetime
    etag: str | None


class ObjectNotFoundError(AppError):
    """No object by that name, or a name that is not allowed.

    Both answer the same 404 on purpose: a client probing with ``../`` learns
    nothing it would not learn from asking for a file that does not exist.
    """

    def __init__(self, name: str) -> None:
        shown = name if len(name) <= 80 else name[:80] + "..."
        super().__init__(
            ErrorCode.FILE_NOT_FOUND,
            f"File {shown!r} not found",
            status_code=404,
            details={"name": shown},
        )


class StorageUnavailableError(AppError):
    """The store cannot be reached or written: a dependency outage, not a client error."""

    def __init__(self, message: str, details: object = None) -> None:
        super().__init__(ErrorCode.STORAGE_UNAVAILABLE, message, status_code=503, details=details)


@runtime_checkable
class ObjectStore(Protocol):
    """A flat namespace of immutable-ish audio files (overwrite replaces whole objects)."""

    kind: str
    """``"local"`` or ``"s3"``: for logs and the health endpoint."""

    def put_bytes(self, name: str, data: bytes, content_type: str | None = None) -> StoredObject:
        """Store ``data`` under ``name``, replacing any previous object whole."""
        ...

    def put_file(self, name: str, path: Path, content_type: str | None = None) -> StoredObject:
        """Store the file at ``path`` under ``name`` without reading it all into memory."""
        ...

    def stat(self, name: str) -> StoredObject:
        """Describe ``name``; :class:`ObjectNotFoundError` if it does not exist."""
        ...

    def iter_range(
        self,
        name: str,
        start: int = 0,
        end: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> Iterator[bytes]:
        """Stream bytes ``start..end`` (inclusive; ``None`` = to the end) in chunks.

        The object is opened before this returns, so a missing object raises
        here, before an HTTP response has started. The range is clipped to the
        object; a range starting at or past the end yields nothing.
        """
        ...

    def read_bytes(self, name: str) -> bytes:
        """The whole object in memory: for small objects (JSON, tests) only."""
        ...

    def delete(self, name: str) -> None:
        """Remove ``name``; deleting a missing object is not an error."""
        ...

    def names(self, prefix: str) -> list[str]:
        """The names of every object starting with ``prefix`` (a job's are ``{job_id}_...``), sorted."""
        ...

    def check(self) -> None:
        """Readiness probe: :class:`StorageUnavailableError` naming the problem."""
        ...


def validate_object_name(name: str) -> str:
    """Return ``name`` if it is a flat object name, else raise :class:`ObjectNotFoundError`.

    Allowed: 1-255 characters of ``[A-Za-z0-9._-]`` not starting with ``.``.
    Nothing is decoded: ``%`` is not in the alphabet, so percent-encoded tricks
    are refused as they stand, and their decoded forms (``/``, ``..``) are
    refused too. Separators, NUL and non-ASCII letters never match.
    """
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        raise ObjectNotFoundError(name if isinstance(name, str) else repr(name))
    return name


def content_type_for(name: str) -> str:
    """The MIME type the API sends for ``name``, from its extension (case-insensitive)."""
    _, dot, extension = name.rpartition(".")
    if not dot:
        return DEFAULT_CONTENT_TYPE
    return _CONTENT_TYPES.get(extension.lower(), DEFAULT_CONTENT_TYPE)


def check_range(start: int, end: int | None, chunk_size: int) -> None:
    """Refuse ranges no caller should build (the API turns bad Range headers into 416 itself)."""
    if start < 0:
        raise ValueError(f"range start must be >= 0, got {start}")
    if end is not None and end < start:
        raise ValueError(f"range end {end} is before start {start}")
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be > 0, got {chunk_size}")
