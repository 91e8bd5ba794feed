"""URLs that name this server's own files, read straight from storage instead of over HTTP.

A URL input (`audio_url`, `melody_audio_url`) may name one of this server's files: a relative
`/files/<name>` or `/srocks/files/<name>`, or the same under the request's own base URL or a
PUBLIC_BASE_URLS entry. Such a file is copied from storage, under the same size cap as a download, and
only when the caller may read it (the API-key check records that for the request): the server never
fetches itself over HTTP (the loopback check would refuse it, and with a key set it would get a 401).
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from soundstage.errors import AppError, ErrorCode
from soundstage.fetch import FetchedFile
from soundstage.storage import ObjectNotFoundError, ObjectStore, validate_object_name

OWN_FILE_PATHS = ("/files/", "/srocks/files/")
"""The download routes (`GET /files/{name}` and its S.Rocks twin) whose URLs name a stored object."""
OWN_HOST = "this server"
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class OwnFiles:
    """This server's files as one request may name them in a URL input, recorded by the API-key check.

    `base_urls` are the request's own base URL as the client addressed it (scheme, `Host`, root path)
    followed by PUBLIC_BASE_URLS; `readable` is whether the caller may `GET /files/{name}`."""

    store: ObjectStore
    base_urls: tuple[str, ...]
    readable: bool
    may_open: Callable[[str], bool] = lambda _name: True  # per-key isolation (soundstage_api.viewer)


_own_files: ContextVar[OwnFiles | None] = ContextVar("soundstage_own_files", default=None)


def remember_own_files(own: OwnFiles) -> None:
    """Record what the current request may read of this server's files (for uploads.fetched_url)."""
    _own_files.set(own)


def current_own_files() -> OwnFiles | None:
    """What the API-key check recorded for the current request (None outside a request)."""
    return _own_files.get()


def own_file_name(url: str, base_urls: tuple[str, ...]) -> str | None:
    """The object name (possibly invalid, or empty) when `url` is a download URL of this server: a
    relative `/files/<name>` or `/srocks/files/<name>`, or the same under one of `base_urls`
    (same scheme, host and port, path below the base's path). None for any other URL."""
    parts = urlsplit(url.strip())
    if not parts.scheme and not parts.netloc:
        return _file_in(parts.path)
    origin = _origin(url.strip())
    if origin is None:
        return None
    for base in base_urls:
        base_origin = _origin(base)
        if base_origin is None or base_origin[:3] != origin[:3]:
            continue
        base_path = base_origin[3].rstrip("/")
        if origin[3].startswith(f"{base_path}/"):
            name = _file_in(origin[3][len(base_path) :])
            if name is not None:
                return name
    return None


def _origin(url: str) -> tuple[str, str, int, str] | None:
    """(scheme, host, port, path) of an absolute http(s) URL without credentials, else None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username is not None or parts.password is not None:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme], parts.path


def _file_in(path: str) -> str | None:
    for prefix in OWN_FILE_PATHS:
        if path.startswith(prefix):
            return path[len(prefix) :]
    return None


def copy_own_file(own: OwnFiles, name: str, url: str, dest: Path, max_bytes: int) -> FetchedFile:
    """Copy a stored object into `dest` (blocking: run in a worker thread)."""
    if not own.readable:
        raise _own_file_failed(name, "the caller may not read this server's files", 403)
    try:
        if not own.may_open(validate_object_name(name)):  # another key's file: as if it did not exist
            raise ObjectNotFoundError(name)
        info = own.store.stat(name)
    except ObjectNotFoundError as error:
        raise _own_file_failed(name, "no such file", 404) from error
    if info.size > max_bytes:
        raise _own_file_too_large(max_bytes)
    written = 0
    with dest.open("wb") as sink:
        for chunk in own.store.iter_range(info.name, 0, None) if info.size else ():
            written += len(chunk)
            if written > max_bytes:
                raise _own_file_too_large(max_bytes)
            sink.write(chunk)
    return FetchedFile(path=dest, size=written, content_type=info.content_type, final_url=url)


def _own_file_failed(name: str, reason: str, status: int) -> AppError:
    shown = name if len(name) <= 80 else name[:80] + "..."
    return AppError(
        ErrorCode.URL_FETCH_FAILED,
        f"Could not fetch the URL from {OWN_HOST}: {reason} ({shown!r}, HTTP {status}).",
        status_code=422,
        details={"host": OWN_HOST, "reason": reason, "status": status, "name": shown},
    )


def _own_file_too_large(max_bytes: int) -> AppError:
    return AppError(
        ErrorCode.URL_TOO_LARGE,
        f"The file at {OWN_HOST} is larger than {max_bytes / (1024 * 1024):g} MiB (MAX_UPLOAD_MB).",
        status_code=413,
        details={"host": OWN_HOST, "max_bytes": max_bytes},
    )
