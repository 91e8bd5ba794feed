"""`/files`: list stored outputs and stream them from whichever backend holds them."""

from __future__ import annotations

from email.utils import format_datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response, StreamingResponse

from soundstage.schemas import ErrorBody, StoredFile
from soundstage.storage import validate_object_name
from soundstage_api.auth import ApiKey
from soundstage_api.ranges import parse_range
from soundstage_api.state import State
from soundstage_api.views import stored_file

router = APIRouter(tags=["files"], dependencies=[ApiKey])


@router.get("/files/", response_model=list[StoredFile], summary="List stored outputs, newest first")
@router.get("/files", response_model=list[StoredFile], include_in_schema=False)
def list_files(
    state: State,
    limit: Annotated[int, Query(ge=1, le=100, description="Maximum files to return, 1-100. Default 50.")] = 50,
    skip: Annotated[int, Query(ge=0, description="Files to skip. Default 0.")] = 0,
) -> list[StoredFile]:
    return [stored_file(row) for row in state.repo.list_files(limit=limit, skip=skip)]


@router.head("/files/{name}", include_in_schema=False)
@router.get(
    "/files/{name}",
    summary="Download a file (supports Range)",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"audio/wav": {}, "audio/flac": {}, "audio/mpeg": {}, "audio/ogg": {}}},
        206: {"description": "Partial content for a Range request"},
        404: {"model": ErrorBody, "description": "No such file (also for names that try to leave the store)"},
        416: {"model": ErrorBody, "description": "Range outside the file"},
    },
)
def download(
    name: str,
    request: Request,
    state: State,
    range_header: Annotated[str | None, Header(alias="Range", description="e.g. `bytes=0-1023`")] = None,
    if_none_match: Annotated[str | None, Header(description="ETag from an earlier download: 304 if unchanged")] = None,
) -> Response:
    store = state.store
    info = store.stat(validate_object_name(name))
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
        if if_none_match and headers["ETag"] in {tag.strip() for tag in if_none_match.split(",")}:
            return Response(status_code=304, headers={k: v for k, v in headers.items() if k != "Content-Length"})
    status = 200
    if byte_range:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=info.content_type)
    body = store.iter_range(info.name, start, end) if info.size else iter(())
    return StreamingResponse(body, status_code=status, headers=headers, media_type=info.content_type)
