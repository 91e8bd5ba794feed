"""The S.Rocks music API under `/srocks`: its clients set their base URL to `http://host/srocks` and work
unchanged.

- `GET /srocks/`: health (`status`, `model`, `device`, `version`), public like `/health`;
- `POST /srocks/generate/` (also without the slash): `{text, duration 1-30, guidance_scale, temperature}`,
  an ordinary generate job through the queue, waited for; 200 `{file_url, duration, timestamp, prompt}`;
- `GET /srocks/files/?limit=&skip=`: stored outputs as S.Rocks lists them;
- `GET /srocks/files/{name}`: the download of `GET /files/{name}` (Range, ETag, HEAD), so
  `base + file_url` works.

S.Rocks documents 400 for invalid parameters, so every 422 of these routes is answered as a 400 (the
same body and code). Auth is the rest of the API's: `X-API-Key` when keys are set (reads public with
PUBLIC_READS).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from soundstage.db import Job
from soundstage.errors import AppError
from soundstage.schemas import ErrorBody, GenerateRequest, SRocksFile, SRocksGenerated, SRocksGenerateRequest
from soundstage.schemas.compat import SRocksHealth
from soundstage_api.auth import ApiKey, MayGenerate
from soundstage_api.guarded_route import GuardedRoute
from soundstage_api.routes.compat_common import WAIT_RESPONSES, generate_and_wait
from soundstage_api.routes.files import DOWNLOAD_RESPONSES, IfNoneMatch, Limit, RangeHeader, Skip, file_response
from soundstage_api.routes.files import stored_files as stored_file_rows
from soundstage_api.routes.system import health
from soundstage_api.state import State
from soundstage_api.views import file_url

PREFIX = "/srocks"
TIMESTAMP = "%Y%m%d_%H%M%S"
LISTED_AT = "%Y-%m-%d %H:%M:%S"


class BadRequestRoute(GuardedRoute):
    """A guarded route that answers its validation errors (422 elsewhere in the API) as 400, body unchanged."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as error:
                render = request.app.exception_handlers[RequestValidationError]
                response: Response = await render(request, error)
                response.status_code = 400
                return response
            except AppError as error:
                if error.status_code != 422:
                    raise
                raise AppError(
                    error.code, error.message, status_code=400, details=error.details, headers=error.headers
                ) from error

        return route


router = APIRouter(prefix=PREFIX, tags=["compat: S.Rocks"], route_class=BadRequestRoute)

_BAD_REQUEST: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorBody, "description": "Invalid parameters (`validation_error`, naming each field)"},
    401: {"model": ErrorBody, "description": "X-API-Key missing (when the server sets API_KEY(S))"},
    403: {"model": ErrorBody, "description": "X-API-Key wrong"},
}


@router.get("/", response_model=SRocksHealth, summary="S.Rocks: health check")
@router.get("", response_model=SRocksHealth, include_in_schema=False)
async def srocks_health(state: State) -> SRocksHealth:
    """Always 200 while the API runs; `device` comes from the live workers, as in `GET /health`. `status` is
    that of the MusicGen pool, the only one these routes use: `healthy` once a worker has loaded its model."""
    fleet = await run_in_threadpool(health, state)
    served = state.settings.musicgen.served_models
    return SRocksHealth(
        status="degraded" if "musicgen" in fleet.problems else "healthy",
        model=served[0].rsplit("/", 1)[-1],
        device=fleet.device,
        version=fleet.version,
        models=served,
    )


@router.post(
    "/generate/",
    response_model=SRocksGenerated,
    responses={**_BAD_REQUEST, **WAIT_RESPONSES},
    dependencies=[ApiKey, MayGenerate],
    summary="S.Rocks: generate music and wait for it",
)
@router.post("/generate", response_model=SRocksGenerated, dependencies=[ApiKey, MayGenerate], include_in_schema=False)
async def srocks_generate(body: SRocksGenerateRequest, state: State) -> SRocksGenerated | Response:
    """Generate music from `text` and answer once the WAV (32 kHz) exists: download it at `base + file_url`.
    The job runs through the ordinary queue; past SYNC_WAIT_SECONDS the answer is 202 `{job_id, status}`."""
    request = GenerateRequest(
        prompt=body.text, duration=body.duration, guidance_scale=body.guidance_scale, temperature=body.temperature
    )
    outcome = await generate_and_wait(state, request)
    if not isinstance(outcome, Job):
        return outcome
    finished = outcome.finished_at or outcome.created_at
    return SRocksGenerated(
        file_url=file_url(outcome.files[0].name),
        duration=body.duration,
        timestamp=finished.strftime(TIMESTAMP),
        prompt=body.text,
        job_id=outcome.id,
    )


@router.get(
    "/files/",
    response_model=list[SRocksFile],
    responses=_BAD_REQUEST,
    dependencies=[ApiKey],
    summary="S.Rocks: list generated files, newest first",
)
@router.get("/files", response_model=list[SRocksFile], dependencies=[ApiKey], include_in_schema=False)
def srocks_files(state: State, limit: Limit = 50, skip: Skip = 0) -> list[SRocksFile]:
    return [
        SRocksFile(
            filename=row.name,
            url=file_url(row.name),
            created_at=row.created_at.strftime(LISTED_AT),
            size_kb=round(row.size_bytes / 1024, 1),
        )
        for row in stored_file_rows(state, limit=limit, skip=skip)
    ]


@router.head("/files/{name}", dependencies=[ApiKey], include_in_schema=False)
@router.get(
    "/files/{name}",
    dependencies=[ApiKey],
    summary="S.Rocks: download a file (as `GET /files/{name}`)",
    response_class=Response,
    responses=DOWNLOAD_RESPONSES,
)
def srocks_download(
    name: str, request: Request, state: State, range_header: RangeHeader = None, if_none_match: IfNoneMatch = None
) -> Response:
    return file_response(state, name, request, range_header=range_header, if_none_match=if_none_match)
