"""Per-key base URLs for clients that send no credentials (the MagentaRT Research API's iOS looper sends no
header at all): `/k/<api-key>/<path>` is served as `<path>` with `X-API-Key: <api-key>`, for HTTP and
WebSocket alike. The operator gives such a client `https://<server>/k/<its key>/magenta` as its base URL;
auth stays on for everyone else, and a wrong key in the path is a 403 like a wrong header.

The prefix is removed here, before anything else sees the request (this middleware is the outermost), so
the key never reaches a log line, a metric label or an error message: the request id middleware, the
routes and the error handlers all see the plain path. (Uvicorn's access log, which would print the raw
path, is off: soundstage_api.__main__.)
"""

from __future__ import annotations

from urllib.parse import unquote

from starlette.types import ASGIApp, Receive, Scope, Send

PREFIX = "/k/"
KEY_HEADER = b"x-api-key"


class KeyPathMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope["path"].startswith(PREFIX):
            scope = strip_key(scope)
        await self.app(scope, receive, send)


def strip_key(scope: Scope) -> Scope:
    """``scope`` with its `/k/<key>` prefix moved into the `X-API-Key` header (the path's key wins over a
    header's). A path with nothing after the key is the root, `/`."""
    raw = scope.get("raw_path") or scope["path"].encode()
    token, _, rest = raw[len(PREFIX) :].partition(b"/")
    if not token:
        return scope
    key = unquote(token.decode("latin-1"))
    path = "/" + unquote(rest.decode("latin-1"))
    headers = [(name, value) for name, value in scope.get("headers", []) if name.lower() != KEY_HEADER]
    return {
        **scope,
        "path": path,
        "raw_path": b"/" + rest,
        "headers": [*headers, (KEY_HEADER, key.encode("latin-1"))],
    }
