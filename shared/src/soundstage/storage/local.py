"""Object store on a local folder: the embedded mode and the tests.

Writes go to a hidden temp file in the same folder, are fsynced and then
``os.replace``d over the target, so a reader sees the old object or the new one,
never half of one, and a re-run job overwrites its output cleanly. Temp names
start with ``.`` and so can never be asked for by name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from stat import S_ISREG
from typing import BinaryIO

from soundstage.storage.base import (
    DEFAULT_CHUNK_SIZE,
    ObjectNotFoundError,
    StorageUnavailableError,
    StoredObject,
    check_range,
    content_type_for,
    validate_object_name,
)

logger = logging.getLogger(__name__)

_FILE_MODE = 0o644  # mkstemp makes 0600; other containers on the volume read these files


class LocalObjectStore:
    """Objects are the regular files directly inside ``root``.

    The folder keeps no metadata, so the content type always comes from the
    name (``content_type`` passed to a put is not remembered here).
    """

    kind: str = "local"

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().resolve()
        # Best effort: a root that cannot be created must not stop the process
        # from starting; check() and the first write report it as a 503.
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            logger.warning("cannot create storage folder %s: %s", self.root, exc)

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.root)!r})"

    def put_bytes(self, name: str, data: bytes, content_type: str | None = None) -> StoredObject:
        """Write ``data`` atomically; ``content_type`` is ignored (derived from the name)."""
        validate_object_name(name)
        return self._atomic_write(name, lambda out: out.write(data))

    def put_file(self, name: str, path: Path, content_type: str | None = None) -> StoredObject:
        """Copy ``path`` in atomically, in chunks; a missing source raises ``OSError``."""
        validate_object_name(name)
        with open(path, "rb") as source:  # the caller's file: its errors are not ours
            return self._atomic_write(name, lambda out: shutil.copyfileobj(source, out))

    def stat(self, name: str) -> StoredObject:
        path = self._path(name)
        try:
            info = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFoundError(name) from None
        except OSError as exc:
            raise self._unavailable("stat", name, exc) from exc
        if not S_ISREG(info.st_mode):
            raise ObjectNotFoundError(name)
        return self._stored(name, info)

    def iter_range(
        self,
        name: str,
        start: int = 0,
        end: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> Iterator[bytes]:
        """Open now (so a missing object raises here), then stream lazily.

        The open file descriptor keeps reading the version that was current when
        it was opened, even if the object is overwritten meanwhile.
        """
        check_range(start, end, chunk_size)
        path = self._path(name)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed by the generator below
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFoundError(name) from None
        except OSError as exc:
            raise self._unavailable("open", name, exc) from exc
        return _read_range(handle, start, end, chunk_size, self._unavailable_hook(name))

    def read_bytes(self, name: str) -> bytes:
        return b"".join(self.iter_range(name))

    def delete(self, name: str) -> None:
        path = self._path(name)
        try:
            path.unlink(missing_ok=True)
        except NotADirectoryError:
            return  # the root is not a folder, so the object cannot exist
        except OSError as exc:
            raise self._unavailable("delete", name, exc) from exc

    def names(self, prefix: str) -> list[str]:
        validate_object_name(prefix)
        try:
            return sorted(
                entry.name
                for entry in os.scandir(self.root)
                if entry.name.startswith(prefix) and entry.is_file() and not entry.name.startswith(".")
            )
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise self._unavailable("list", prefix, exc) from exc

    def check(self) -> None:
        """Prove the folder exists and is writable by creating and removing a temp file."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".check-", dir=self.root)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise StorageUnavailableError(
                f"storage folder {self.root} is not writable: {exc}",
                details={"root": str(self.root)},
            ) from exc

    def _path(self, name: str) -> Path:
        """The file for ``name``, refusing anything that resolves outside the root.

        The name check already forbids separators; this also catches a symlink
        planted inside the root that points elsewhere.
        """
        validate_object_name(name)
        path = self.root / name
        if path.resolve().parent != self.root:
            raise ObjectNotFoundError(name)
        return path

    def _atomic_write(self, name: str, write: Callable[[BinaryIO], object]) -> StoredObject:
        target = self._path(name)
        tmp_path: str | None = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp_path = tempfile.mkstemp(prefix=f".{name[:64]}.", suffix=".tmp", dir=self.root)
            with os.fdopen(fd, "wb") as out:
                write(out)
                out.flush()
                os.fchmod(out.fileno(), _FILE_MODE)
                os.fsync(out.fileno())
            os.replace(tmp_path, target)
            tmp_path = None
            _fsync_dir(self.root)
            return self._stored(name, target.stat())
        except OSError as exc:
            raise self._unavailable("write", name, exc) from exc
        finally:
            if tmp_path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_path)

    def _stored(self, name: str, info: os.stat_result) -> StoredObject:
        # Apache-style inode-size-mtime: every atomic write makes a new inode, so
        # two same-size writes inside one clock tick still get different tags.
        return StoredObject(
            name=name,
            size=info.st_size,
            content_type=content_type_for(name),
            modified=datetime.fromtimestamp(info.st_mtime, tz=UTC),
            etag=f"{info.st_ino:x}-{info.st_size:x}-{info.st_mtime_ns:x}",
        )

    def _unavailable_hook(self, name: str) -> Callable[[OSError], StorageUnavailableError]:
        return lambda exc: self._unavailable("read", name, exc)

    def _unavailable(self, action: str, name: str, exc: OSError) -> StorageUnavailableError:
        return StorageUnavailableError(
            f"cannot {action} {name!r} in storage folder {self.root}: {exc}",
            details={"root": str(self.root), "name": name},
        )


def _read_range(
    handle: BinaryIO,
    start: int,
    end: int | None,
    chunk_size: int,
    on_error: Callable[[OSError], StorageUnavailableError],
) -> Iterator[bytes]:
    """Yield ``start..end`` (inclusive) of an open file, closing it however iteration ends."""
    with handle:
        remaining = None if end is None else end - start + 1
        try:
            handle.seek(start)
            while remaining is None or remaining > 0:
                size = chunk_size if remaining is None else min(chunk_size, remaining)
                chunk = handle.read(size)
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        except OSError as exc:
            raise on_error(exc) from exc


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable; some filesystems cannot fsync a folder, which is fine."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
