"""A real HTTP(S) server in a thread, for tests of code that fetches URLs.

Routes are functions of the request handler; the helpers below cover what fetch tests need:
a body (with its true, a false or no `Content-Length`), a redirect, an error status, a
server that never answers and one that trickles. The server counts hits per path, remembers
the `Host` header of each request and how many body bytes each path managed to send, so
tests can tell "refused before connecting" and "stopped reading early" from the server's side.
"""

from __future__ import annotations

import collections
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit

Route = Callable[["_Handler"], None]

STALL_LIMIT_SECONDS = 30.0
"""Longest a stalling route holds its connection when the test never closes it."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        owner = self.server.owner
        with owner.lock:
            owner.hits[path] += 1
            owner.hosts.append(self.headers.get("Host", ""))
        route = owner.routes.get(path)
        if route is None:
            self.send_error(404)
            return
        try:
            route(self)
        except (BrokenPipeError, ConnectionResetError, TimeoutError, ssl.SSLError):
            owner.disconnects[path] += 1

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: pytest shows failures, not access logs."""

    def send_body(self, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.write_counted(data)

    def write_counted(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()
        with self.server.owner.lock:
            self.server.owner.bytes_sent[urlsplit(self.path).path] += len(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: HttpServer


class HttpServer:
    """`with HttpServer("127.0.0.1") as server:` serves `server.routes` at `server.url(path)`.
    With `tls=(certfile, keyfile)` it speaks HTTPS and `url()` uses `url_host` (a name on the
    certificate) instead of the address."""

    def __init__(
        self, host: str = "127.0.0.1", *, tls: tuple[str, str] | None = None, url_host: str | None = None
    ) -> None:
        self.host = host
        self.url_host = url_host or host
        self.tls = tls
        self.routes: dict[str, Route] = {}
        self.hits: collections.Counter[str] = collections.Counter()
        self.bytes_sent: collections.Counter[str] = collections.Counter()
        self.disconnects: collections.Counter[str] = collections.Counter()
        self.hosts: list[str] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> HttpServer:
        server = _Server((self.host, 0), _Handler)
        server.owner = self
        if self.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self.tls)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        # A short poll interval: `shutdown()` waits for the serving loop's next poll.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="test-http-server", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def port(self) -> int:
        assert self._server is not None, "start the server first (with HttpServer(...) as server)"
        return int(self._server.server_address[1])

    def url(self, path: str) -> str:
        scheme = "https" if self.tls else "http"
        host = f"[{self.url_host}]" if ":" in self.url_host else self.url_host
        return f"{scheme}://{host}:{self.port}{path}"

    # ------------------------------------------------------------------ routes

    def body(self, path: str, data: bytes, *, content_type: str = "application/octet-stream") -> str:
        """`data` with its true Content-Length; returns the URL."""
        self.routes[path] = lambda handler: handler.send_body(data, content_type=content_type)
        return self.url(path)

    def stream(self, path: str, total: int, *, chunk: int = 64 * 1024) -> str:
        """`total` bytes of zeros without Content-Length (the end of the body is the end of the
        connection); `bytes_sent[path]` tells how far it got before the client hung up."""

        def route(handler: _Handler) -> None:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/octet-stream")
            handler.end_headers()
            sent = 0
            while sent < total:
                handler.write_counted(b"\0" * min(chunk, total - sent))
                sent += chunk

        self.routes[path] = route
        return self.url(path)

    def declared(self, path: str, length: int) -> str:
        """Headers claiming `length` bytes, then nothing until the client hangs up (or the test
        ends): a client that waits for the body never finishes."""

        def route(handler: _Handler) -> None:
            handler.send_response(200)
            handler.send_header("Content-Length", str(length))
            handler.end_headers()
            handler.wfile.flush()
            handler.connection.settimeout(STALL_LIMIT_SECONDS)
            if handler.rfile.read(1) == b"":
                self.disconnects[path] += 1

        self.routes[path] = route
        return self.url(path)

    def redirect(self, path: str, location: str, *, status: int = 302) -> str:
        def route(handler: _Handler) -> None:
            handler.send_response(status)
            handler.send_header("Location", location)
            handler.send_header("Content-Length", "0")
            handler.end_headers()

        self.routes[path] = route
        return self.url(path)

    def status(self, path: str, code: int) -> str:
        self.routes[path] = lambda handler: handler.send_error(code)
        return self.url(path)

    def silent(self, path: str) -> str:
        """Accepts the request and never answers (until the test ends)."""
        self.routes[path] = lambda _: self._stall()
        return self.url(path)

    def trickle(self, path: str, *, interval: float = 0.2) -> str:
        """Headers for a 1 MB body, then one byte every `interval` seconds: each read is quick,
        so only a deadline on the whole download stops it."""

        def route(handler: _Handler) -> None:
            handler.send_response(200)
            handler.send_header("Content-Length", str(1_000_000))
            handler.end_headers()
            handler.wfile.flush()
            for _ in range(int(STALL_LIMIT_SECONDS / interval)):
                if self.stopping.wait(interval):
                    return
                handler.write_counted(b"x")

        self.routes[path] = route
        return self.url(path)

    def _stall(self) -> None:
        self.stopping.wait(STALL_LIMIT_SECONDS)
