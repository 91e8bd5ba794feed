"""The OpenAPI document as the API really answers, where FastAPI's defaults say otherwise.

FastAPI adds a 422 with its own `HTTPValidationError` shape to every operation that takes parameters,
but the error handlers answer every 422 as an `ErrorBody` (and the S.Rocks routes answer them as 400);
and operations behind the API key did not all list the 401/403/429 it gives. A client generated from the
document (or a schema checker run against it) must see the answers it will get.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

_FASTAPI_422 = "#/components/schemas/HTTPValidationError"
_ERROR_BODY = "#/components/schemas/ErrorBody"
_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})
_KEY_ERRORS = {
    "401": "X-API-Key missing (code `api_key_missing`)",
    "403": "X-API-Key wrong or revoked (code `api_key_invalid`), or without the route's scope (`api_key_scope`)",
    "429": "A rate limit, per-key cap or daily quota, with Retry-After (codes `rate_limited`, "
    "`too_many_failed_keys`, `too_many_active_jobs`, `quota_exhausted`)",
}


def install_openapi(app: FastAPI) -> None:
    """Serve the corrected document (built once, on its first request, like FastAPI's own)."""

    build = app.openapi  # FastAPI's own: builds the document once and keeps it in app.openapi_schema

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = corrected(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def corrected(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with every 422 in the error body's shape (or gone where the route answers 400
    instead) and the key's 401/403/429 on every operation that needs the key."""
    for item in document.get("paths", {}).values():
        for method, operation in item.items():
            if method in _HTTP_METHODS:
                _correct(operation)
            if method == "post":
                _correct_post(operation)
    schemas = document.get("components", {}).get("schemas", {})
    if _FASTAPI_422 not in repr(document.get("paths", {})):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    return document


_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Send the request again with the same key to get the same job instead of a second one "
    "(for IDEMPOTENCY_HOURS); the same key with another request is 409 `idempotency_key_reused`.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
}


def _correct_post(operation: dict[str, Any]) -> None:
    """Every POST creates a job: it takes ``Idempotency-Key`` (soundstage_api.idempotency)."""
    parameters: list[dict[str, Any]] = operation.setdefault("parameters", [])
    if not any(parameter.get("name") == _IDEMPOTENCY_KEY["name"] for parameter in parameters):
        parameters.append(dict(_IDEMPOTENCY_KEY))
    operation.setdefault("responses", {}).setdefault(
        "409", _error_response("Idempotency-Key used for another request (code `idempotency_key_reused`)")
    )


def _correct(operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    fastapi_422 = responses.get("422")
    if fastapi_422 is not None and _FASTAPI_422 in repr(fastapi_422):
        if "400" in responses:  # the route answers its validation errors as 400 (S.Rocks)
            del responses["422"]
        else:
            responses["422"] = _error_response("Invalid field or query parameter (code `validation_error`)")
    if operation.get("security"):
        for status, description in _KEY_ERRORS.items():
            responses.setdefault(status, _error_response(description))


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": _ERROR_BODY}}}}
