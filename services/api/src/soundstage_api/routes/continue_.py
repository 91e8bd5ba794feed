"""`POST /generate/continue`: continue an uploaded piece of audio in the style of a text prompt.

The upload is validated completely before any job exists: its size while it streams in
(413), then the parameters, then the audio itself, decoded in a worker thread (422
`audio_undecodable`, `audio_empty`, `audio_too_long`). Only then is the job row written,
the original upload stored as `{job_id}_prompt.<ext>` and the job enqueued, by the same
`submit` as `POST /generate` (through `submit_with_audio`, shared with `/generate/melody`
and `/separate`).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request

from soundstage.pools import TaskName
from soundstage.schemas import ContinueRequest, ErrorBody, JobCreated, JobKind
from soundstage_api.auth import ApiKey, MayGenerate
from soundstage_api.guarded_route import GuardedRoute
from soundstage_api.routes.generate import ERRORS, job_params, submit_with_audio, validate_generation
from soundstage_api.state import State
from soundstage_api.uploads import form_error, multipart_body_schema, parse_form_parameters, receive_form

logger = logging.getLogger(__name__)
router = APIRouter(route_class=GuardedRoute, tags=["generate"], dependencies=[ApiKey, MayGenerate])

FILE_PART = "audio_file"

_CONTINUE_ERRORS: dict[int | str, dict[str, object]] = {
    **ERRORS,
    413: {"model": ErrorBody, "description": "`audio_file` larger than MAX_UPLOAD_MB (code `upload_too_large`)"},
    422: {
        "model": ErrorBody,
        "description": "Invalid field (`validation_error`, `unknown_model`) or audio that does not decode "
        "(`audio_undecodable`), holds no samples (`audio_empty`) or is longer than MAX_DURATION (`audio_too_long`)",
    },
    503: {"model": ErrorBody, "description": "Database, queue or storage down"},
}


@router.post(
    "/generate/continue",
    response_model=JobCreated,
    responses=_CONTINUE_ERRORS,
    summary="Continue uploaded audio",
    openapi_extra=multipart_body_schema(
        ContinueRequest,
        file_field=FILE_PART,
        file_description="The audio to continue: WAV, FLAC, OGG, MP3, M4A/AAC or WebM, any rate and channel "
        "count, at most MAX_UPLOAD_MB (default 50 MiB) and MAX_DURATION seconds (default 300). "
        "The model uses the end of it as context.",
        exclude=("melody_audio_url",),
    ),
)
@router.post("/generate/continue/", response_model=JobCreated, include_in_schema=False)
async def generate_continue(request: Request, state: State) -> JobCreated:
    """Queue a job that continues the uploaded `audio_file` in the style of `prompt`; `duration` is the
    length of the new audio. Parameters are the fields of `POST /generate` plus `include_prompt`, sent
    as form fields or as one `params` JSON part. Poll `GET /jobs/{job_id}` for the result."""
    settings = state.settings
    async with receive_form(request, file_field=FILE_PART, max_file_bytes=settings.max_upload_bytes) as form:
        body = parse_form_parameters(
            form.fields, ContinueRequest, file_field=FILE_PART, file_received=form.file_received
        )
        if body.melody_audio_url is not None:
            raise form_error(
                "`melody_audio_url` is not supported by /generate/continue (use POST /generate or "
                "POST /generate/melody).",
                ["body", "melody_audio_url"],
            )
        model = validate_generation(body, settings)
        return await submit_with_audio(
            state,
            kind=JobKind.GENERATE,
            task=TaskName.MUSICGEN_GENERATE,
            model=model,
            path=form.file_path,
            size=form.file_size,
            role="prompt",
            max_seconds=settings.max_duration,
            params=lambda name, _: job_params(body, audio_prompt=name),
        )
