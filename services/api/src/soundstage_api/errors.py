"""One place that turns every exception into `{"error": {code, message, details}, "detail": message}`."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from soundstage.errors import AppError, ErrorCode
from soundstage_api.json_text import MAX_JSON_DEPTH, JsonTooDeepError

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "5"


def unavailable(code: ErrorCode, what: str) -> AppError:
    return AppError(
        code,
        f"The {what} is unavailable right now; retry shortly.",
        status_code=503,
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


def _render(error: AppError) -> JSONResponse:
    return JSONResponse(error.to_body(), status_code=error.status_code, headers=error.headers)


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    # The offending input is left out: it may be megabytes of prompt.
    return [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]


def _validation_message(details: list[dict[str, Any]]) -> str:
    if any(d["type"] == "json_too_deep" for d in details):
        return f"Invalid request: the JSON nests more than {MAX_JSON_DEPTH} levels deep."
    if any(d["type"] == "json_invalid" for d in details):
        return "Invalid request: the body is not valid JSON."
    if any(d["loc"] == ["body"] and d["type"].endswith("_type") for d in details):
        return "Invalid request: the body must be a JSON object (send `Content-Type: application/json`)."
    for d in details:
        if d["loc"] == ["body"] and d["type"] == "value_error":
            return f"Invalid request: {str(d['msg']).removeprefix('Value error, ')}."
    fields = sorted(
        {".".join(str(part) for part in d["loc"][1:] if not isinstance(part, int)) or "body" for d in details}
    )
    return f"Invalid request: {', '.join(fields)}." if fields else "Invalid request."


_HTTP_CODES = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}


def allowed_methods(request: Request) -> list[str]:
    """Every method the API document lists for the request's path (FastAPI makes one route per method,
    and its routers resolve routes lazily, so the document is where they are all named)."""
    path = request.url.path
    methods: set[str] = set()
    for template, item in request.app.openapi().get("paths", {}).items():
        if re.fullmatch(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)), path):
            methods |= {method.upper() for method in item if method in _HTTP_METHODS}
    return sorted(methods)


_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})


def install_error_handlers(app: FastAPI) -> None:
    import kombu.exceptions
    import redis.exceptions
    import sqlalchemy.exc

    @app.exception_handler(AppError)
    async def app_error(_: Request, exc: AppError) -> JSONResponse:
        return _render(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = _validation_details(exc)
        message = _validation_message(details)
        return _render(AppError(ErrorCode.VALIDATION_ERROR, message, status_code=422, details=details))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, RecursionError):  # FastAPI's body parser met JSON nested too deep
            details = [{"loc": ["body"], "msg": str(JsonTooDeepError()), "type": "json_too_deep"}]
            message = _validation_message(details)
            return _render(AppError(ErrorCode.VALIDATION_ERROR, message, status_code=422, details=details))
        code = _HTTP_CODES.get(exc.status_code, ErrorCode.HTTP_ERROR)
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:  # Starlette names the methods of the first route on the path only
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return _render(AppError(code, str(exc.detail), status_code=exc.status_code, headers=headers))

    @app.exception_handler(sqlalchemy.exc.OperationalError)
    @app.exception_handler(sqlalchemy.exc.InterfaceError)
    @app.exception_handler(sqlalchemy.exc.TimeoutError)
    async def database_down(_: Request, exc: Exception) -> JSONResponse:
        logger.warning("database unavailable: %s", exc)
        return _render(unavailable(ErrorCode.DATABASE_UNAVAILABLE, "database"))

    @app.exception_handler(redis.exceptions.ConnectionError)
    @app.exception_handler(redis.exceptions.TimeoutError)
    @app.exception_handler(kombu.exceptions.OperationalError)
    async def broker_down(_: Request, exc: Exception) -> JSONResponse:
        logger.warning("broker unavailable: %s", exc)
        return _render(unavailable(ErrorCode.BROKER_UNAVAILABLE, "job queue (Redis)"))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error")
        return _render(AppError(ErrorCode.INTERNAL_ERROR, "Internal server error.", status_code=500))
