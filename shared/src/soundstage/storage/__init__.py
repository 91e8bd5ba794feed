"""Object storage for generated audio: a local folder or S3 behind one interface.

Workers write results with ``put_file``/``put_bytes``; the API answers
``GET /files/<name>`` with ``stat`` and ``iter_range`` and probes ``check`` for
readiness. Which backend is used is decided once, from the storage URL in the
settings, by :func:`open_store`.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from soundstage.storage.base import (
    ObjectNotFoundError,
    ObjectStore,
    StorageUnavailableError,
    StoredObject,
    content_type_for,
    validate_object_name,
)
from soundstage.storage.local import LocalObjectStore

__all__ = [
    "LocalObjectStore",
    "ObjectNotFoundError",
    "ObjectStore",
    "StorageUnavailableError",
    "StoredObject",
    "content_type_for",
    "open_store",
    "validate_object_name",
]

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def open_store(
    storage_url: str,
    *,
    s3_endpoint_url: str | None = None,
    s3_region: str | None = None,
) -> ObjectStore:
    """The store a storage URL names; makes no network call.

    - ``s3://bucket`` or ``s3://bucket/some/prefix``: S3, or any S3-compatible
      server when ``s3_endpoint_url`` is given (path-style addressing then).
    - ``file:///abs/path`` or a plain path: a local folder, created if missing.

    Any other ``scheme://`` is a configuration mistake and raises ``ValueError``
    rather than silently becoming a folder called ``gs:``.
    """
    if not storage_url.strip():
        raise ValueError("storage URL is empty")
    match = _SCHEME_RE.match(storage_url)
    scheme = match.group(1).lower() if match else ""
    if scheme == "s3":
        # Imported here so that processes on local storage never import boto3.
        from soundstage.storage.s3 import S3ObjectStore

        parts = urlsplit(storage_url)
        if not parts.netloc:
            raise ValueError(f"storage URL {storage_url!r} names no bucket")
        return S3ObjectStore(parts.netloc, parts.path, endpoint_url=s3_endpoint_url, region=s3_region)
    if scheme == "file":
        parts = urlsplit(storage_url)
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file URL {storage_url!r} must be local (file:///abs/path)")
        return LocalObjectStore(Path(unquote(parts.path)))
    if scheme:
        raise ValueError(f"unsupported storage URL scheme {scheme!r} in {storage_url!r}")
    return LocalObjectStore(Path(storage_url))
