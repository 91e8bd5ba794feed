"""HTTP `Range` header parsing (RFC 9110, single byte ranges)."""

from __future__ import annotations

import re

from soundstage.errors import AppError, ErrorCode

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Return the inclusive (start, end) to serve, or None for the whole file.

    Multi-range and malformed headers are ignored (the whole file is served, as RFC 9110
    allows); a well-formed range that lies outside the file is a 416.
    """
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix range: the last N bytes
        length = int(last)
        if length == 0:
            raise _unsatisfiable(size)
        if size == 0:  # the whole (empty) file, never the inverted range (0, -1)
            return None
        return max(size - length, 0), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        raise _unsatisfiable(size)
    return start, end


def _unsatisfiable(size: int) -> AppError:
    return AppError(
        ErrorCode.RANGE_NOT_SATISFIABLE,
        f"Requested range is outside the file ({size} bytes).",
        status_code=416,
        headers={"Content-Range": f"bytes */{size}"},
    )
