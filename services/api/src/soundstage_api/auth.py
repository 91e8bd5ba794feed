"""API-key check, sent as `X-API-Key`: the environment's keys (`API_KEY`, `API_KEYS`, `ADMIN_API_KEYS`)
and the keys stored hashed in the database (`soundstage keys create`); off when there are none
(soundstage_api.key_ring).

With `PUBLIC_READS` (musicgen-api's behaviour) the key is required only on requests that change
something: GET and HEAD pass without it, POST and DELETE still need it.

A route that does something more than read names the scope it needs (:class:`RequireScope`): a key
without it gets 403 `api_key_scope`. The check also makes the caller the request's viewer (per-key
isolation, soundstage_api.viewer), and records which of this server's own files its URL inputs may name
(:class:`soundstage_api.own_files.OwnFiles`): a URL input naming `/files/<name>` is read from storage only
when the same request could `GET /files/<name>`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from soundstage.errors import AppError, ErrorCode
from soundstage.keys import Scope
from soundstage_api.admission import answer_quota_with
from soundstage_api.own_files import OwnFiles, remember_own_files
from soundstage_api.state import AppState, State
from soundstage_api.viewer import current, may_open, remember_viewer

KEY_HEADER = "X-API-Key"
_header = APIKeyHeader(
    name=KEY_HEADER,
    auto_error=False,
    description="Required when the server has API keys (API_KEYS or `soundstage keys`).",
)

READ_METHODS = frozenset({"GET", "HEAD"})


def _missing() -> AppError:
    return AppError(
        ErrorCode.API_KEY_MISSING, "Missing X-API-Key header.", status_code=401, headers={"WWW-Authenticate": "APIKey"}
    )


_CHECKED = "soundstage_key_error"  # request.state: the check ran (soundstage_api.guarded_route runs it first)


async def _authenticate(request: Request, state: State, key: str | None) -> AppError | None:
    """Why ``key`` does not pass (401 `api_key_missing`, 403 `api_key_invalid`), or None when it does (or
    auth is off); the caller becomes the request's viewer either way. Counts the request against its
    key's rate limit, and a wrong key against its address's (429 past either: soundstage_api.rate_limits).
    Runs once per request: a second call answers as the first."""
    if hasattr(request.state, _CHECKED):
        error: AppError | None = getattr(request.state, _CHECKED)
        return error
    enabled = await state.keys.auth_enabled()
    if enabled and key:
        await state.limits.refuse_guessing(request)
    caller = await state.keys.resolve(key) if enabled and key else None
    error = None
    if enabled and not key:
        error = _missing()
    elif enabled and caller is None:
        error = AppError(ErrorCode.API_KEY_INVALID, "Invalid API key.", status_code=403)
        await state.limits.count_failed_key(request)
    setattr(request.state, _CHECKED, error)
    remember_viewer(caller)
    remember_own_files(
        OwnFiles(
            store=state.store,
            base_urls=(str(request.base_url), *state.settings.public_base_urls),
            readable=state.settings.public_reads or error is None,
            may_open=lambda name: may_open(state.repo, name),
        )
    )
    if caller is not None:
        await state.limits.admit_key(caller.owner)
    return error


async def require_api_key(request: Request, state: State, key: Annotated[str | None, Depends(_header)]) -> None:
    error = await _authenticate(request, state, key)
    if state.settings.public_reads and request.method in READ_METHODS:
        return
    if error is not None:
        raise error


async def require_api_key_401(request: Request, state: State, key: Annotated[str | None, Depends(_header)]) -> None:
    """The same check for APIs that know no 403 (the hosted MusicGen API): a wrong key is a 401 too, with
    its own code `api_key_invalid`. The header is the same (`x-api-key`: header names ignore case)."""
    error = await _authenticate(request, state, key)
    if error is not None:
        raise AppError(
            error.code, error.message, status_code=401, details=error.details, headers={"WWW-Authenticate": "APIKey"}
        )


class RequireScope:
    """A route's dependency: the caller's key must have ``scope`` (any caller passes while auth is off).
    Declared after the key check, which it relies on; soundstage_api.guarded_route runs both before the
    body is read."""

    def __init__(self, scope: Scope, *, status_code: int = 403, quota_status_code: int = 429) -> None:
        self.scope = scope
        self.status_code = status_code  # 401 on the hosted MusicGen API's routes, which know no 403
        self.quota_status_code = quota_status_code  # 406 there: how it says the credits ran out

    async def __call__(self) -> None:
        answer_quota_with(self.quota_status_code)
        if not current().may(self.scope):
            raise AppError(
                ErrorCode.API_KEY_SCOPE,
                f"This API key may not do this: it lacks the {self.scope.value!r} scope.",
                status_code=self.status_code,
                details={"scope": self.scope.value},
            )


KEY_CHECKS = (require_api_key, require_api_key_401)
"""The key checks a route may declare: soundstage_api.guarded_route runs them before reading the body."""
ApiKey = Depends(require_api_key)
ApiKeyOr401 = Depends(require_api_key_401)
MayGenerate = Depends(RequireScope(Scope.GENERATE))
MayJam = Depends(RequireScope(Scope.JAM))
MaySeparate = Depends(RequireScope(Scope.SEPARATE))
MayGenerateOr401 = Depends(RequireScope(Scope.GENERATE, status_code=401, quota_status_code=406))


async def authenticate_socket(headers: Mapping[str, str], state: AppState) -> AppError | None:
    """The key check of a WebSocket (its `X-API-Key` header, or the per-key path prefix that sets it): why
    it does not pass, or None (the caller is then the socket's viewer)."""
    key = headers.get(KEY_HEADER.lower()) or None
    if not await state.keys.auth_enabled():
        remember_viewer(None)
        return None
    caller = await state.keys.resolve(key) if key else None
    remember_viewer(caller)
    if not key:
        return _missing()
    if caller is None:
        return AppError(ErrorCode.API_KEY_INVALID, "Invalid API key.", status_code=403)
    if Scope.JAM not in caller.scopes and not caller.admin:
        return AppError(
            ErrorCode.API_KEY_SCOPE,
            "This API key may not do this: it lacks the 'jam' scope.",
            status_code=403,
            details={"scope": Scope.JAM.value},
        )
    try:
        await state.limits.admit_key(caller.owner)
    except AppError as limited:
        return limited
    return None
