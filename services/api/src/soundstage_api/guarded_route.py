"""The route class of every API router: the key is checked before a byte of the body is read, and a body
that is not a multipart upload is read through a size cap.

FastAPI reads and parses a route's JSON body before it solves the route's dependencies, so a 300 MB
`POST /generate` without a key was parsed whole (12 s, 1 GB of memory) before its 401. A
:class:`GuardedRoute` first runs the route's own key check (the ``require_api_key*`` dependency it
declares: it needs only the headers, and FastAPI runs it again later at no cost), then reads the body of a
request that is not ``multipart/form-data`` with at most MAX_BODY_KB (413 ``body_too_large``: at once when
``Content-Length`` says so, else as soon as the bytes pass it) and hands the route a request that replays
those bytes. Multipart uploads are streamed to disk by their routes, with their own caps
(soundstage_api.uploads). A POST with ``Idempotency-Key`` has its body fingerprinted on the way
(soundstage_api.idempotency).

The cap is the server's setting, read per request, which is why this is not FastAPI's own per-route
``max_body_size`` (fixed when the routes are declared, at import).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message

from soundstage.errors import AppError, ErrorCode
from soundstage_api import admission, idempotency
from soundstage_api.auth import KEY_CHECKS, KEY_HEADER, READ_METHODS, RequireScope
from soundstage_api.state import AppState, get_state
from soundstage_api.viewer import current as current_viewer

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class GuardedRoute(APIRoute):
    def get_route_handler(self) -> Handler:
        handler = _unparsable_is_422(super().get_route_handler())
        checks = [call for call in _calls(self.dependant) if call in KEY_CHECKS]
        scopes = [call for call in _calls(self.dependant) if isinstance(call, RequireScope)]

        async def guarded(request: Request) -> Response:
            state = get_state(request)
            api_key = request.headers.get(KEY_HEADER)
            for check in checks:
                await check(request, state, api_key)
            for scope in scopes:
                await scope()
            if scopes and current_viewer().owner is None:
                await state.limits.admit_address(request)  # a job-creating request without a key
            started = idempotency.start(request, state.settings)
            claim = started[0] if started else None
            try:
                if request.method in READ_METHODS:
                    response = await handler(request)
                    await _tell_credits(state, response)
                    return response
                if _is_multipart(request):
                    response = await handler(request if claim is None else _hashing(request, claim.body))
                else:
                    body = await read_capped(request, state.settings.max_body_kb * 1024)
                    if claim is not None:
                        claim.body.update(body)
                    response = await handler(_replaying(request, body))
                if claim is not None and claim.replayed:
                    response.headers[idempotency.REPLAYED_HEADER] = "true"
                await _tell_credits(state, response)
                return response
            finally:
                if started:
                    idempotency.finish(started[1])

        return guarded


def _unparsable_is_422(handler: Handler) -> Handler:
    """A body FastAPI cannot parse at all (not UTF-8, a broken form) is a 422 ``validation_error`` with a
    code, as malformed JSON is, not FastAPI's bare 400."""

    async def parsing(request: Request) -> Response:
        try:
            return await handler(request)
        except StarletteHTTPException as error:
            if error.status_code != 400 or isinstance(error.__cause__, RecursionError):
                raise  # nesting too deep: soundstage_api.errors answers it
            message = "Invalid request: the body could not be parsed (not UTF-8 JSON, or a broken form)."
            details = [{"loc": ["body"], "msg": "could not be parsed", "type": "body_unparsable"}]
            raise AppError(ErrorCode.VALIDATION_ERROR, message, status_code=422, details=details) from None

    return parsing


async def _tell_credits(state: AppState, response: Response) -> None:
    """``X-Remaining-Credits`` on an answer to a key while the daily quota is on (soundstage_api.admission)."""
    owner = current_viewer().owner
    if owner is not None and state.settings.daily_audio_seconds_per_key:
        value = await run_in_threadpool(admission.credits_header, state.settings, state.repo, owner)
        response.headers[admission.CREDITS_HEADER] = value


def body_too_large(limit: int) -> AppError:
    return AppError(
        ErrorCode.BODY_TOO_LARGE,
        f"The request body is larger than {limit // 1024} KiB (MAX_BODY_KB); send audio as a multipart upload "
        "or an `audio_url`.",
        status_code=413,
        details={"max_bytes": limit},
    )


async def read_capped(request: Request, limit: int) -> bytes:
    """The whole body, or 413 ``body_too_large`` as soon as it is known to pass ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise body_too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _replaying(request: Request, body: bytes) -> Request:
    """``request`` with a receive that hands out ``body`` first (then what the client sends: a disconnect)."""
    replayed = False

    async def receive() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await request.receive()

    return Request(request.scope, receive)


def _hashing(request: Request, fingerprint: idempotency.BodyFingerprint) -> Request:
    """``request`` with a receive that feeds every body chunk to ``fingerprint`` as the route reads it."""

    async def receive() -> Message:
        message = await request.receive()
        if message["type"] == "http.request":
            fingerprint.update(message.get("body", b""))
        return message

    return Request(request.scope, receive)


def _is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    """Every dependency callable of a route, depth first."""
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)
