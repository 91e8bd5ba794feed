"""``X-Request-ID`` and the HTTP request counter, as one pure ASGI middleware (no per-request task or
body copy, unlike Starlette's BaseHTTPMiddleware).

- A client's ``X-Request-ID`` (1 to 128 characters of letters, digits and ``-_.:``) is kept, anything
  else replaced by a fresh id; it is echoed on the answer, on every log line of the request
  (soundstage.logs) and on the task message of any job it creates, so that the worker's lines for that job
  carry it too.
- ``soundstage_http_requests_total{method, route, status}`` counts answers per route template (a path
  no route matched counts as ``unmatched``, so clients cannot grow the label set): the 5xx-rate alert
  (deploy/prometheus/alerts.yml) reads it.
"""

from __future__ import annotations

import re
import uuid

from prometheus_client import CollectorRegistry, Counter
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from soundstage.logs import request_context

HEADER = "X-Request-ID"
_VALID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def requests_counter(registry: CollectorRegistry) -> Counter:
    return Counter(
        "soundstage_http_requests",
        "HTTP answers of this API replica, by method, route template and status.",
        ["method", "route", "status"],
        registry=registry,
    )


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp, counter: Counter) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = _header(scope)
        request_id = sent if sent is not None and _VALID.fullmatch(sent) else uuid.uuid4().hex
        status = 500  # what the client gets if the app raises before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message).append(HEADER, request_id)
            await send(message)

        with request_context(request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                self.counter.labels(scope["method"], template, str(status)).inc()


def _header(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return bytes(value).decode("latin-1")
    return None
