"""`POST /generate/melody`: text-to-music that follows the melody of an uploaded file (melody models).

Checked completely before any job exists, as `/generate/continue` is: the upload's size while
it streams in (413 `upload_too_large`), then the parameters, then that the model is a melody
model (422 `model_not_melody`), then the audio itself, decoded in a worker thread (422
`audio_undecodable`, `audio_empty`, `audio_too_long`). The original upload is stored as
`{job_id}_melody.<ext>` and named by the job's `melody_audio`; the worker conditions on its chroma.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from soundstage.pools import TaskName
from soundstage.schemas import ErrorBody, GenerateRequest, JobCreated, JobKind
from soundstage_api.auth import ApiKey, MayGenerate
from soundstage_api.guarded_route import GuardedRoute
from soundstage_api.routes.generate import (
    ERRORS,
    job_params,
    require_melody_model,
    submit_with_audio,
    validate_generation,
)
from soundstage_api.state import State
from soundstage_api.uploads import form_error, multipart_body_schema, parse_form_parameters, receive_form

router = APIRouter(route_class=GuardedRoute, tags=["generate"], dependencies=[ApiKey, MayGenerate])

FILE_PART = "melody_file"
URL_FIELD = "melody_audio_url"

_MELODY_ERRORS: dict[int | str, dict[str, object]] = {
    **ERRORS,
    413: {"model": ErrorBody, "description": "`melody_file` larger than MAX_UPLOAD_MB (code `upload_too_large`)"},
    422: {
        "model": ErrorBody,
        "description": "Invalid field (`validation_error`, `unknown_model`), a model that is not a melody model "
        "(`model_not_melody`), or audio that does not decode (`audio_undecodable`), holds no samples "
        "(`audio_empty`) or is longer than MAX_DURATION (`audio_too_long`)",
    },
    503: {"model": ErrorBody, "description": "Database, queue or storage down"},
}


@router.post(
    "/generate/melody",
    response_model=JobCreated,
    responses=_MELODY_ERRORS,
    summary="Generate music that follows an uploaded melody",
    openapi_extra=multipart_body_schema(
        GenerateRequest,
        file_field=FILE_PART,
        file_description="The melody to follow: WAV, FLAC, OGG, MP3, M4A/AAC or WebM, any rate and channel "
        "count, at most MAX_UPLOAD_MB (default 50 MiB) and MAX_DURATION seconds (default 300). The model "
        "conditions on its chroma (which pitch classes sound when), not on its timbre.",
        exclude=(URL_FIELD,),
    ),
)
@router.post("/generate/melody/", response_model=JobCreated, include_in_schema=False)
async def generate_melody(request: Request, state: State) -> JobCreated:
    """Queue a job whose music follows the melody of the uploaded `melody_file`, in the style of
    `prompt`. Needs a melody model (`model` naming one, or a melody model as the server's default).
    Parameters are the fields of `POST /generate`, sent as form fields or as one `params` JSON part.
    Poll `GET /jobs/{job_id}` for the result."""
    settings = state.settings
    async with receive_form(request, file_field=FILE_PART, max_file_bytes=settings.max_upload_bytes) as form:
        body = parse_form_parameters(
            form.fields, GenerateRequest, file_field=FILE_PART, file_received=form.file_received
        )
        if body.melody_audio_url is not None:
            raise form_error(
                f"give the melody either as `{FILE_PART}` or as `{URL_FIELD}` (with POST /generate), not both.",
                ["body", URL_FIELD],
            )
        model = validate_generation(body, settings)
        require_melody_model(model, state)
        return await submit_with_audio(
            state,
            kind=JobKind.GENERATE,
            task=TaskName.MUSICGEN_GENERATE,
            model=model,
            path=form.file_path,
            size=form.file_size,
            role="melody",
            max_seconds=settings.max_duration,
            params=lambda name, _: job_params(body, melody_audio=name),
        )
