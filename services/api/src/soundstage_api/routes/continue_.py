"""`POST /generate/continue`: continue an uploaded piece of audio in the style of a text prompt.

The upload is validated completely before any job exists: its size while it streams in
(413), then the parameters, then the audio itself, decoded in a worker thread (422
`audio_undecodable`, `audio_empty`, `audio_too_long`). Only then is the job row written,
the original upload stored as `{job_id}_prompt.<ext>` and the job enqueued, by the same
`submit` as `POST /generate`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from soundstage.audio import decode_audio
from soundstage.db import new_job_id
from soundstage.queue import TaskName
from soundstage.schemas import ContinueRequest, ErrorBody, JobCreated, JobKind
from soundstage_api.auth import ApiKey
from soundstage_api.routes.generate import ERRORS, Attachment, job_params, submit, validate_generation
from soundstage_api.state import State
from soundstage_api.uploads import form_error, receive_form

logger = logging.getLogger(__name__)
router = APIRouter(tags=["generate"], dependencies=[ApiKey])

FILE_PART = "audio_file"
PARAMS_PART = "params"

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


def _request_body_schema() -> dict[str, Any]:
    """The multipart body as OpenAPI shows it (the route reads the stream itself)."""
    fields = ContinueRequest.model_json_schema(ref_template="#/components/schemas/{model}")["properties"]
    properties = {
        FILE_PART: {
            "type": "string",
            "format": "binary",
            "description": "The audio to continue: WAV, FLAC, OGG, MP3, M4A/AAC or WebM, any rate and channel "
            "count, at most MAX_UPLOAD_MB (default 50 MiB) and MAX_DURATION seconds (default 300). "
            "The model uses the end of it as context.",
        },
        PARAMS_PART: {
            "type": "string",
            "description": "Alternatively, all the other fields as one JSON object (not together with form fields).",
        },
        **fields,
    }
    schema = {"type": "object", "required": [FILE_PART], "properties": properties}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


@router.post(
    "/generate/continue",
    response_model=JobCreated,
    responses=_CONTINUE_ERRORS,
    summary="Continue uploaded audio",
    openapi_extra=_request_body_schema(),
)
@router.post("/generate/continue/", response_model=JobCreated, include_in_schema=False)
async def generate_continue(request: Request, state: State) -> JobCreated:
    """Queue a job that continues the uploaded `audio_file` in the style of `prompt`; `duration` is the
    length of the new audio. Parameters are the fields of `POST /generate` plus `include_prompt`, sent
    as form fields or as one `params` JSON part. Poll `GET /jobs/{job_id}` for the result."""
    settings = state.settings
    async with receive_form(request, file_field=FILE_PART, max_file_bytes=settings.max_upload_bytes) as form:
        body = parse_parameters(form.fields, file_received=form.file_received)
        model = validate_generation(body, settings)
        decoded = await run_in_threadpool(decode_audio, form.file_path, max_seconds=settings.max_duration)
        job_id = new_job_id()
        prompt_name = f"{job_id}_prompt.{decoded.format}"
        logger.info(
            "job %s: prompt audio %s, %.2f s, %d Hz, %d channel(s), %d bytes",
            job_id,
            decoded.format,
            decoded.duration,
            decoded.sample_rate,
            decoded.channels,
            form.file_size,
        )
        return await run_in_threadpool(
            submit,
            state,
            kind=JobKind.GENERATE,
            task=TaskName.MUSICGEN_GENERATE,
            model=model,
            params=job_params(body, audio_prompt=prompt_name),
            job_id=job_id,
            attachments=[Attachment(prompt_name, form.file_path)],
        )


def parse_parameters(fields: dict[str, str], *, file_received: bool) -> ContinueRequest:
    """The request from form fields (an empty field counts as not sent) or from one `params` JSON
    part; 422 with every invalid field, and with `audio_file` when it is missing."""
    if PARAMS_PART in fields:
        others = sorted(set(fields) - {PARAMS_PART})
        if others:
            raise form_error(
                f"send the parameters either as form fields or as one `params` JSON part, not both "
                f"(also got: {', '.join(others)}).",
                ["body", PARAMS_PART],
            )
        data = _params_object(fields[PARAMS_PART])
        prefix: list[str | int] = ["body", PARAMS_PART]
    else:
        data = {name: value for name, value in fields.items() if value != ""}
        prefix = ["body"]
    errors: list[dict[str, Any]] = []
    body = None
    try:
        body = ContinueRequest.model_validate(data)
    except ValidationError as error:
        errors = [{"loc": [*prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in error.errors()]
    if not file_received:
        errors.append({"loc": ["body", FILE_PART], "msg": "Field required", "type": "missing"})
    if errors or body is None:
        raise RequestValidationError(errors)
    return body


def _params_object(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as error:
        raise form_error("the `params` part is not valid JSON.", ["body", PARAMS_PART], "json_invalid") from error
    if not isinstance(data, dict):
        raise form_error("the `params` part must be a JSON object.", ["body", PARAMS_PART], "dict_type")
    return data
