"""API-key check: `API_KEY` / `API_KEYS`, sent as `X-API-Key`; off when neither is set."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends
from fastapi.security import APIKeyHeader

from soundstage.errors import AppError, ErrorCode
from soundstage_api.state import State

_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="Required when the server sets API_KEY(S).")


def require_api_key(state: State, key: Annotated[str | None, Depends(_header)]) -> None:
    accepted = state.settings.accepted_api_keys
    if not accepted:
        return
    if not key:
        raise AppError(
            ErrorCode.API_KEY_MISSING,
            "Missing X-API-Key header.",
            status_code=401,
            headers={"WWW-Authenticate": "APIKey"},
        )
    # Compare against every key, without stopping early, in constant time per key.
    matched = False
    for candidate in accepted:
        matched |= hmac.compare_digest(key.encode(), candidate.encode())
    if not matched:
        raise AppError(ErrorCode.API_KEY_INVALID, "Invalid API key.", status_code=403)


ApiKey = Depends(require_api_key)
