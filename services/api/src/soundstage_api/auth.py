"""API-key check: `API_KEY` / `API_KEYS`, sent as `X-API-Key`; off when neither is set.

With `PUBLIC_READS` (musicgen-api's behaviour) the key is required only on requests that change
something: GET and HEAD pass without it, POST and DELETE still need it.

The check also records, for the rest of the request, which of this server's own files its URL inputs
may name and whether the caller may read them (:class:`soundstage_api.own_files.OwnFiles`): a URL input
naming `/files/<name>` is read from storage only when the same request could `GET /files/<name>`.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from soundstage.errors import AppError, ErrorCode
from soundstage.settings import Settings
from soundstage_api.own_files import OwnFiles, remember_own_files
from soundstage_api.state import State
from soundstage_api.viewer import may_open, remember_viewer

KEY_HEADER = "X-API-Key"
_header = APIKeyHeader(name=KEY_HEADER, auto_error=False, description="Required when the server sets API_KEY(S).")

READ_METHODS = frozenset({"GET", "HEAD"})


def key_error(settings: Settings, key: str | None) -> AppError | None:
    """Why `key` does not pass (401 `api_key_missing`, 403 `api_key_invalid`), or None when it does
    (or auth is off)."""
    accepted = settings.accepted_api_keys
    if not accepted:
        return None
    if not key:
        return AppError(
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
        return AppError(ErrorCode.API_KEY_INVALID, "Invalid API key.", status_code=403)
    return None


def may_read(settings: Settings, key: str | None) -> bool:
    """Whether a caller with `key` may read jobs and files (`GET /files/{name}`)."""
    return settings.public_reads or key_error(settings, key) is None


def _remember(request: Request, state: State, key: str | None) -> None:
    remember_viewer(state.settings, key, key_valid=key_error(state.settings, key) is None)
    remember_own_files(
        OwnFiles(
            store=state.store,
            base_urls=(str(request.base_url), *state.settings.public_base_urls),
            readable=may_read(state.settings, key),
            may_open=lambda name: may_open(state.repo, name),
        )
    )


async def require_api_key(request: Request, state: State, key: Annotated[str | None, Depends(_header)]) -> None:
    _remember(request, state, key)
    if state.settings.public_reads and request.method in READ_METHODS:
        return
    error = key_error(state.settings, key)
    if error is not None:
        raise error


async def require_api_key_401(request: Request, state: State, key: Annotated[str | None, Depends(_header)]) -> None:
    """The same check for APIs that know no 403 (the hosted MusicGen API): a wrong key is a 401 too, with
    its own code `api_key_invalid`. The header is the same (`x-api-key`: header names ignore case)."""
    _remember(request, state, key)
    error = key_error(state.settings, key)
    if error is not None:
        raise AppError(
            error.code, error.message, status_code=401, details=error.details, headers={"WWW-Authenticate": "APIKey"}
        )


KEY_CHECKS = (require_api_key, require_api_key_401)
"""The key checks a route may declare: soundstage_api.guarded_route runs them before reading the body."""
ApiKey = Depends(require_api_key)
ApiKeyOr401 = Depends(require_api_key_401)
