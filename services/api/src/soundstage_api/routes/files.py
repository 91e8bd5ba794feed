"""`/files`: list stored outputs and stream them from whichever backend holds them.

`file_response` and the `Limit`/`Skip`/`RangeHeader`/`IfNoneMatch` parameters are shared with the
compatibility APIs (`GET /srocks/files/{name}` downloads exactly as `GET /files/{name}` does)."""

from __future__ import annotations

from email.utils import format_datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response, StreamingResponse

from soundstage.db import JobFile
from soundstage.schemas import ErrorBody, StoredFile
from soundstage.schemas.jobs import MAX_LIST_SKIP
from soundstage.storage import ObjectNotFoundError, validate_object_name
from soundstage_api.auth import ApiKey
from soundstage_api.guarded_route import GuardedRoute
from soundstage_api.ranges import parse_range
from soundstage_api.state import AppState, State
from soundstage_api.viewer import current as current_viewer
from soundstage_api.viewer import may_open
from soundstage_api.views import stored_file

router = APIRouter(route_class=GuardedRoute, tags=["files"], dependencies=[ApiKey])

Limit = Annotated[int, Query(ge=1, le=100, description="Maximum files to return, 1-100. Default 50.")]
Skip = Annotated[int, Query(ge=0, le=MAX_LIST_SKIP, description=f"Files to skip, 0-{MAX_LIST_SKIP:,}. Default 0.")]
RangeHeader = Annotated[str | None, Header(alias="Range", description="e.g. `bytes=0-1023`")]
IfNoneMatch = Annotated[str | None, Header(description="ETag from an earlier download: 304 if unchanged")]

DOWNLOAD_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"audio/wav": {}, "audio/flac": {}, "audio/mpeg": {}, "audio/ogg": {}}},
    206: {"description": "Partial content for a Range request"},
    404: {"model": ErrorBody, "description": "No such file (also for names that try to leave the store)"},
    416: {"model": ErrorBody, "description": "Range outside the file"},
}


@router.get("/files/", response_model=list[StoredFile], summary="List stored outputs, newest first")
@router.get("/files", response_model=list[StoredFile], include_in_schema=False)
def list_files(state: State, limit: Limit = 50, skip: Skip = 0) -> list[StoredFile]:
    return [stored_file(row) for row in stored_files(state, limit=limit, skip=skip)]


def stored_files(state: AppState, *, limit: int, skip: int) -> list[JobFile]:
    """Stored outputs, newest first (inputs such as uploaded prompts are not listed); a key's own only
    (an admin key's: all)."""
    return state.repo.list_files(limit=limit, skip=skip, only_owner=current_viewer().only_owner)


@router.head("/files/{name}", include_in_schema=False)
@router.get(
    "/files/{name}",
    summary="Download a file (supports Range)",
    response_class=StreamingResponse,
    responses=DOWNLOAD_RESPONSES,
)
def download(
    name: str, request: Request, state: State, range_header: RangeHeader = None, if_none_match: IfNoneMatch = None
) -> Response:
    return file_response(state, name, request, range_header=range_header, if_none_match=if_none_match)


def file_response(
    state: AppState, name: str, request: Request, *, range_header: str | None = None, if_none_match: str | None = None
) -> Response:
    """The stored object `name` as a download: `Range` (206, 416), `If-None-Match` (304), HEAD; 404 for an
    unknown name or one that tries to leave the store."""
    store = state.store
    if not may_open(state.repo, validate_object_name(name)):
        raise ObjectNotFoundError(name)  # another key's file: as if it did not exist
    info = store.stat(name)
    byte_range = parse_range(range_header, info.size)
    start, end = byte_range if byte_range else (0, info.size - 1)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(max(end - start + 1, 0)),
        "Last-Modified": format_datetime(info.modified, usegmt=True),
        "Content-Disposition": f'inline; filename="{info.name}"',
    }
    if info.etag:
        headers["ETag"] = f'"{info.etag.strip(chr(34))}"'
        if if_none_match and _none_match_hits(if_none_match, headers["ETag"]):
            return Response(status_code=304, headers={k: v for k, v in headers.items() if k != "Content-Length"})
    status = 200
    if byte_range:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=info.content_type)
    body = store.iter_range(info.name, start, end) if info.size else iter(())
    return StreamingResponse(body, status_code=status, headers=headers, media_type=info.content_type)


def _none_match_hits(if_none_match: str, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag`` (RFC 9110 13.1.2: weak comparison, so ``W/"x"`` matches
    ``"x"``; ``*`` matches any stored file)."""
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag.removeprefix("W/") in tags
