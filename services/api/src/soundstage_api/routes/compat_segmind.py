"""The hosted MusicGen API (Segmind's) under `/segmind`: its clients post to
`<base>/v1/meta-musicgen-<size>` with `x-api-key` and get the audio itself back.

`POST /segmind/v1/meta-musicgen-small|-medium|-large` takes `{prompt, duration 1-30, seed -1..9999}`, runs
an ordinary generate job through the queue on the served model of that size (HOSTED_API_MODELS, else the
served model whose name ends with `musicgen-<size>`), waits for it, and answers 200 `audio/wav` with the
generated WAV. The status codes are the ones that API documents: 401 for a missing or a wrong key (it has
no 403), 404 for a size (or any other path) this server does not serve, 405 for another method, 500 for a
failed job; past SYNC_WAIT_SECONDS 202 `{job_id, status}`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from soundstage.db import Job
from soundstage.errors import AppError, ErrorCode
from soundstage.schemas import ErrorBody, GenerateRequest, HostedGenerateRequest
from soundstage.settings import HOSTED_MODEL_SIZES, Settings
from soundstage_api.auth import ApiKeyOr401, MayGenerateOr401
from soundstage_api.guarded_route import GuardedRoute
from soundstage_api.routes.compat_common import WAIT_RESPONSES, generate_and_wait
from soundstage_api.routes.files import file_response
from soundstage_api.state import State

PREFIX = "/segmind/v1"
SLUG_PREFIX = "meta-musicgen-"

router = APIRouter(
    route_class=GuardedRoute,
    prefix=PREFIX,
    tags=["compat: hosted MusicGen"],
    dependencies=[ApiKeyOr401, MayGenerateOr401],
)

_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"audio/wav": {}}, "description": "The generated WAV (16-bit PCM, 32 kHz)"},
    401: {"model": ErrorBody, "description": "x-api-key missing (`api_key_missing`) or wrong (`api_key_invalid`)"},
    404: {"model": ErrorBody, "description": "A size this server does not serve (`not_found`)"},
    405: {"model": ErrorBody, "description": "Another method than POST (`method_not_allowed`)"},
    406: {
        "model": ErrorBody,
        "description": "Not enough credits: the key's daily audio quota is spent (`quota_exhausted`)",
    },
    422: {"model": ErrorBody, "description": "Invalid field (`validation_error`, naming each field)"},
    **WAIT_RESPONSES,
}


def model_for_size(size: str, settings: Settings) -> str | None:
    """The served MusicGen model that answers `size`: HOSTED_API_MODELS' entry (when served), else the
    served model whose name ends with `musicgen-<size>`; None when there is none."""
    served = settings.musicgen.served_models
    configured = settings.hosted_api_models.get(size)
    if configured is not None:
        return next((name for name in served if configured in (name, name.rsplit("/", 1)[-1])), None)
    return next((name for name in served if name.endswith(f"musicgen-{size}")), None)


def _served_model(
    model_slug: Annotated[str, Path(description="`meta-musicgen-small`, `meta-musicgen-medium` or `-large`.")],
    state: State,
) -> str:
    size = model_slug.removeprefix(SLUG_PREFIX) if model_slug.startswith(SLUG_PREFIX) else ""
    model = model_for_size(size, state.settings) if size in HOSTED_MODEL_SIZES else None
    if model is None:
        raise AppError(
            ErrorCode.NOT_FOUND,
            f"This server does not serve {model_slug!r}; see HOSTED_API_MODELS.",
            status_code=404,
            details={"path": f"{PREFIX}/{model_slug}"},
        )
    return model


@router.post(
    "/{model_slug}",
    response_class=Response,
    responses=_RESPONSES,
    summary="Hosted MusicGen API: generate and answer with the audio",
)
async def hosted_generate(
    body: HostedGenerateRequest, model: Annotated[str, Depends(_served_model)], request: Request, state: State
) -> Response:
    """Generate `duration` seconds of music from `prompt` with the model of the size in the path and
    answer with the WAV itself. The same seed, prompt and duration give the same audio (-1: a random seed)."""
    outcome = await generate_and_wait(
        state, GenerateRequest(prompt=body.prompt, duration=body.duration, seed=body.seed, model=model)
    )
    if not isinstance(outcome, Job):
        return outcome
    return await run_in_threadpool(file_response, state, outcome.files[0].name, request)
