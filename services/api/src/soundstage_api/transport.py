"""HTTP/1.1 transport limits uvicorn lacks: a cap on the size of a request's head, and timeouts for slow
clients.

uvicorn's httptools protocol accepts a request line and headers of any size (a 64 MB header line was
taken whole) and waits for an unfinished request for ever (500 half-sent requests were all still held
after 60 s: each a file descriptor and a buffer). This protocol, a subclass of it, adds:

- **head size**: the request line and headers together may not pass ``max_header_bytes``; a larger head
  is answered 431 ``headers_too_large`` and the connection closed;
- **head timeout**: a connection that opened, or began a request, has ``header_timeout`` seconds to
  finish the head; then 408 ``request_timeout`` and close;
- **body idle timeout**: while a request body is unfinished, ``body_idle_timeout`` seconds without a
  byte close the connection (the route sees a client disconnect). A slow but steady upload goes on;
  time the app itself spends before reading more (reading paused by flow control) does not count.

A deployment's ingress should apply its own, tighter limits in front (see README: "Transport limits").
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from soundstage.errors import ErrorCode


@dataclass(frozen=True)
class TransportLimits:
    max_header_bytes: int
    header_timeout: float
    body_idle_timeout: float


class _HeadTooLargeError(Exception):
    """Raised from a parser callback to stop parsing a head that is too large."""


def _error_response(status: bytes, code: ErrorCode, message: str) -> bytes:
    body = json.dumps({"error": {"code": code.value, "message": message}}).encode()
    return b"".join(
        [
            b"HTTP/1.1 " + status + b"\r\n",
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
    )


def guarded_protocol(limits: TransportLimits) -> type[HttpToolsProtocol]:
    """The httptools protocol class with ``limits``, for ``uvicorn.run(http=...)``."""

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head_bytes = 0
            self._head_refused = False
            self._timer: asyncio.TimerHandle | None = None

        # --- timers -----------------------------------------------------------------------------
        def _arm(self, seconds: float, handler: Any) -> None:
            self._disarm()
            self._timer = self.loop.call_later(seconds, handler)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _head_timed_out(self) -> None:
            self._timer = None
            if not self.transport.is_closing():
                message = f"The request's headers did not arrive within {limits.header_timeout:g} s."
                self.transport.write(_error_response(b"408 Request Timeout", ErrorCode.REQUEST_TIMEOUT, message))
                self.transport.close()

        def _body_idle(self) -> None:
            self._timer = None
            if self.transport.is_closing():
                return
            if self.flow.read_paused:  # the app has not read what came: the client is not the slow one
                self._arm(limits.body_idle_timeout, self._body_idle)
                return
            self.logger.info("closing a connection whose request body stalled for %gs", limits.body_idle_timeout)
            self.transport.close()

        # --- connection and parser callbacks ----------------------------------------------------
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm(limits.header_timeout, self._head_timed_out)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_bytes = 0
            self._arm(limits.header_timeout, self._head_timed_out)

        def _count(self, size: int) -> None:
            self._head_bytes += size
            if self._head_bytes > limits.max_header_bytes:
                self._head_refused = True
                raise _HeadTooLargeError

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)  # ": " and CRLF
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()
            if self.cycle is not None and self.cycle.more_body and not self.transport.is_closing():
                self._arm(limits.body_idle_timeout, self._body_idle)

        def on_body(self, body: bytes) -> None:
            super().on_body(body)
            if self._timer is not None:
                self._arm(limits.body_idle_timeout, self._body_idle)

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def send_400_response(self, msg: str) -> None:
            if not self._head_refused:
                super().send_400_response(msg)
                return
            self._disarm()
            message = f"The request line and headers are larger than {limits.max_header_bytes // 1024} KiB."
            self.logger.warning("refused a request head over %d bytes", limits.max_header_bytes)
            self.transport.write(
                _error_response(b"431 Request Header Fields Too Large", ErrorCode.HEADERS_TOO_LARGE, message)
            )
            self.transport.close()

    return GuardedHttpToolsProtocol
