"""Deadline-bounded polling for tests.

Tests must never "sleep and hope": a fixed pause is either too short on a slow
CI runner (flaky) or too long everywhere else (slow).  Instead they poll a
condition until it holds or a deadline passes, and fail with a message that
says what was being waited for and what was last observed.

This module is the ONLY place in the test suite that is allowed to pause
between polls; everything else calls :func:`wait_until`.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["free_port", "wait_until"]

T = TypeVar("T")

_NOTHING_SEEN = object()


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float,
    interval: float = 0.05,
    message: str = "",
) -> T:
    """Poll ``predicate`` until it returns a truthy value, and return that value.

    An exception raised by ``predicate`` counts as "not yet" (a server that is
    still starting typically refuses connections), but the last one is kept so
    that the ``TimeoutError`` raised when ``timeout`` seconds have passed says
    why the condition never held.  The predicate is always called at least
    once, and once more at (or just after) the deadline, so a condition that
    becomes true right at the end is not reported as a timeout.

    ``predicate`` may return any type: ``bool`` for a plain condition, or an
    object (e.g. a connection) that the caller wants back; ``None``, ``False``
    and other falsy values mean "not yet".
    """
    if timeout < 0:
        raise ValueError(f"timeout must be >= 0, got {timeout!r}")
    if interval <= 0:
        raise ValueError(f"interval must be > 0, got {interval!r}")

    deadline = time.monotonic() + timeout
    attempts = 0
    last_error: BaseException | None = None
    last_value: object = _NOTHING_SEEN
    while True:
        attempts += 1
        try:
            value = predicate()
        except Exception as exc:
            last_error = exc
        else:
            if value:
                return value
            last_value = value
            last_error = None

        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(_timeout_text(message, timeout, attempts, last_error, last_value)) from last_error
        # The one sanctioned pause in the test suite: bounded by the deadline.
        time.sleep(min(interval, remaining))  # the poll interval of a deadline-bounded wait


def _timeout_text(
    message: str,
    timeout: float,
    attempts: int,
    last_error: BaseException | None,
    last_value: object,
) -> str:
    """Build the failure text: what we waited for, for how long, what we saw."""
    what = message or "condition"
    text = f"timed out after {timeout:g}s ({attempts} attempts) waiting for {what}"
    if last_error is not None:
        text += f"; last error: {type(last_error).__name__}: {last_error}"
    elif last_value is not _NOTHING_SEEN:
        text += f"; last value: {last_value!r}"
    return text


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    The kernel picks it (bind to port 0), so parallel test processes do not
    collide the way hard-coded ports do.  There is an unavoidable window
    between closing this socket and the server binding the port; callers that
    start servers retry with a new port if the bind loses that race.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
