"""`POST /separate`: split audio into stems with Demucs (musicgen-api's contract).

One route, two bodies, told apart by `Content-Type`:
- `multipart/form-data`: the audio as a `file` part, the options as form fields or one `params`
  JSON part, read exactly as `/generate/continue` reads its upload (`receive_form`);
- `application/json`: a `SeparateUrlRequest`, the audio fetched from `audio_url` (`fetched_url`:
  public addresses only, MAX_UPLOAD_MB, FETCH_TIMEOUT_SECONDS).

A request with nothing to separate (no body, a JSON body without `audio_url`, a multipart body without a
`file` part) is a 400 `audio_required` with musicgen-api's message, before anything else is checked.

Checked completely before any job exists, in this order: the upload's size while it streams in
(413 `upload_too_large`), the options (422 `validation_error` with field locs), the model among
the served Demucs models (422 `unknown_model`), 6 stems against a six-source model (422
`stems_not_supported`), `segment` against the model's limit (422 `validation_error`); for a URL
then the fetch (`url_not_allowed`, `url_fetch_failed`, `url_timeout`, 413 `url_too_large`); last
the audio itself, decoded in a worker thread (422 `audio_undecodable`, `audio_empty`,
`audio_too_long` past MAX_SEPARATE_SECONDS). Only then is the job row written, the original bytes
stored as `{job_id}_input.<ext>` and the job sent to the `demucs` queue, by `submit_with_audio`
(shared with `/generate/continue` and `/generate/melody`). The URL is not stored: it may carry
credentials.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from python_multipart.multipart import parse_options_header

from soundstage.audio import AudioInfo
from soundstage.errors import AppError, ErrorCode
from soundstage.pools import Queue, TaskName
from soundstage.schemas import ErrorBody, JobCreated, JobKind, SeparateJobParams, SeparateOptions, SeparateUrlRequest
from soundstage.schemas.separate import STEMS_BY_MODE
from soundstage_api.auth import ApiKey, MaySeparate
from soundstage_api.guarded_route import GuardedRoute
from soundstage_api.json_text import JsonTooDeepError, loads_bounded
from soundstage_api.routes.generate import ERRORS, resolve_model, submit_with_audio
from soundstage_api.state import AppState, State
from soundstage_api.uploads import (
    PARAMS_PART,
    ReceivedForm,
    fetched_url,
    form_error,
    multipart_body_schema,
    parse_form_parameters,
    receive_form,
)

router = APIRouter(route_class=GuardedRoute, tags=["separate"], dependencies=[ApiKey, MaySeparate])

FILE_PART = "file"
URL_FIELD = "audio_url"
MAX_JSON_BYTES = 64 * 1024
"""A JSON body holds the options and a URL of at most 2 KiB; anything much larger is not one."""

AUDIO_REQUIRED_MESSAGE = "Either audio_url or file upload is required"
"""musicgen-api's message, word for word."""

_SEPARATE_ERRORS: dict[int | str, dict[str, object]] = {
    400: {
        "model": ErrorBody,
        "description": f"Nothing to separate: no `{FILE_PART}` part and no `{URL_FIELD}` (`audio_required`)",
    },
    **ERRORS,
    413: {
        "model": ErrorBody,
        "description": "`file` (`upload_too_large`) or the audio at `audio_url` (`url_too_large`) larger than "
        "MAX_UPLOAD_MB",
    },
    422: {
        "model": ErrorBody,
        "description": "Invalid field (`validation_error`, `unknown_model`), 6 stems from a model with four "
        "sources (`stems_not_supported`), an `audio_url` refused (`url_not_allowed`), failing (`url_fetch_failed`) "
        "or too slow (`url_timeout`), or audio that does not decode (`audio_undecodable`), holds no samples "
        "(`audio_empty`) or is longer than MAX_SEPARATE_SECONDS (`audio_too_long`)",
    },
    503: {"model": ErrorBody, "description": "Database, queue or storage down"},
}


def _request_body() -> dict[str, Any]:
    """Both bodies in OpenAPI: the multipart upload and the JSON body with `audio_url`."""
    extra = multipart_body_schema(
        SeparateOptions,
        file_field=FILE_PART,
        file_description="The audio to separate: WAV, FLAC, OGG, MP3, M4A/AAC or WebM, any rate and channel "
        "count, at most MAX_UPLOAD_MB (default 50 MiB) and MAX_SEPARATE_SECONDS (default 1800). Or send no "
        "upload: a JSON body with `audio_url` instead.",
    )
    url_schema = SeparateUrlRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    url_schema.pop("$defs", None)
    extra["requestBody"]["content"]["application/json"] = {"schema": url_schema}
    return extra


@router.post(
    "/separate",
    response_model=JobCreated,
    responses=_SEPARATE_ERRORS,
    summary="Separate audio into stems",
    openapi_extra=_request_body(),
)
@router.post("/separate/", response_model=JobCreated, include_in_schema=False)
async def separate(request: Request, state: State) -> JobCreated:
    """Queue a job that splits audio into stems (4: drums, bass, other, vocals; 2: vocals and
    accompaniment; 6 with a six-source model: plus guitar and piano). Send the audio either as the
    `file` part of a `multipart/form-data` body, with the options as form fields or one `params` JSON
    part, or as `audio_url` in an `application/json` body next to the options. Poll
    `GET /jobs/{job_id}` for the result: one file per stem in `result_urls`."""
    if _no_body(request):
        raise audio_required()
    media_type, options = parse_options_header(request.headers.get("content-type"))
    if media_type == b"multipart/form-data" and options.get(b"boundary"):
        return await _separate_upload(request, state)
    if media_type == b"application/json":
        return await _separate_url(request, state)
    raise form_error(
        f"send multipart/form-data (a `{FILE_PART}` part plus option fields or a `params` JSON part), or "
        f"application/json with `{URL_FIELD}`.",
        kind="content_type",
    )


async def _separate_upload(request: Request, state: AppState) -> JobCreated:
    settings = state.settings
    async with receive_form(request, file_field=FILE_PART, max_file_bytes=settings.max_upload_bytes) as form:
        if not form.file_received and not _form_names_url(form):
            raise audio_required()
        options = _form_options(form)
        model = validate_separation(options, state)
        return await _submit(state, options, model, form.file_path, form.file_size)


async def _separate_url(request: Request, state: AppState) -> JobCreated:
    settings = state.settings
    data = await _json_body(request)
    if data is None or (isinstance(data, dict) and data.get(URL_FIELD) is None):
        raise audio_required()
    body = _url_request(data)
    model = validate_separation(body, state)
    async with fetched_url(body.audio_url, settings) as fetched:
        return await _submit(state, body, model, fetched.path, fetched.size)


def validate_separation(options: SeparateOptions, state: AppState) -> str:
    """The checks that depend on the model; returns the served model the request names. Stems and segment
    are checked against what the model's workers report (its sources, its longest segment); while no live
    worker has reported the model, the worker checks them and fails the job with the same codes."""
    served = state.settings.demucs.served_models
    model = resolve_model(options.model, served)
    capabilities = state.capabilities.of(Queue.DEMUCS, model)
    if capabilities is None:
        return model
    missing = [stem for stem in STEMS_BY_MODE[options.stems] if stem not in (*capabilities.sources, "accompaniment")]
    if missing:
        reported = state.capabilities.reported(Queue.DEMUCS, served)
        able = [name for name, abilities in reported.items() if set(missing) <= set(abilities.sources)]
        raise AppError(
            ErrorCode.STEMS_NOT_SUPPORTED,
            f"{options.stems} stems need a model with {', '.join(missing)} sources; {model!r} separates "
            f"{', '.join(capabilities.sources)}. This server's models that can: {', '.join(able) or 'none'}.",
            status_code=422,
            details=[
                {
                    "loc": ["body", "stems"],
                    "msg": "the model lacks these sources",
                    "type": "stems_not_supported",
                    "missing": missing,
                    "choices": able,
                }
            ],
        )
    limit = capabilities.max_segment
    if options.segment is not None and limit is not None and options.segment > limit:
        raise AppError(
            ErrorCode.VALIDATION_ERROR,
            f"Invalid request: segment must be at most {limit:g} seconds with {model!r} (the length it was "
            "trained on).",
            status_code=422,
            details=[
                {
                    "loc": ["body", "segment"],
                    "msg": f"Input should be less than or equal to {limit:g}",
                    "type": "less_than_equal",
                }
            ],
        )
    return model


async def _submit(state: AppState, options: SeparateOptions, model: str, path: Path, size: int) -> JobCreated:
    def params(name: str, audio: AudioInfo) -> dict[str, object]:
        job = SeparateJobParams.model_validate(
            {
                **options.model_dump(exclude={"model", URL_FIELD}),
                "model": model,
                "input_audio": name,
                "input_sample_rate": audio.sample_rate,
                "input_channels": audio.channels,
                "input_seconds": audio.duration,
            }
        )
        return job.model_dump(mode="json")

    return await submit_with_audio(
        state,
        kind=JobKind.SEPARATE,
        task=TaskName.DEMUCS_SEPARATE,
        model=model,
        path=path,
        size=size,
        role="input",
        max_seconds=state.settings.max_separate_seconds,
        params=params,
    )


def _form_options(form: ReceivedForm) -> SeparateOptions:
    """The options of a multipart body; `audio_url` there is refused with a message saying where it goes."""
    try:
        return parse_form_parameters(
            form.fields, SeparateOptions, file_field=FILE_PART, file_received=form.file_received
        )
    except RequestValidationError as error:
        if any(detail["loc"][-1] == URL_FIELD for detail in error.errors()):
            raise form_error(
                f"give the audio either as the `{FILE_PART}` part of a multipart body or as `{URL_FIELD}` in "
                "a JSON body (Content-Type: application/json), not both.",
                ["body", URL_FIELD],
            ) from error
        raise


async def _json_body(request: Request) -> object:
    """The parsed JSON body, read up to MAX_JSON_BYTES (413 past it); None for an empty body; 422 when it is
    not JSON."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_JSON_BYTES:
        raise _json_too_large()
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_JSON_BYTES:
            raise _json_too_large()
    if not raw.strip():
        return None
    try:
        return loads_bounded(raw)
    except JsonTooDeepError as error:
        raise RequestValidationError([{"loc": ["body"], "msg": str(error), "type": "json_too_deep"}]) from error
    except ValueError as error:
        raise RequestValidationError([{"loc": ["body"], "msg": "JSON decode error", "type": "json_invalid"}]) from error


def _url_request(data: object) -> SeparateUrlRequest:
    """The JSON body as a request; 422 with every invalid field (a body that is not an object included)."""
    try:
        return SeparateUrlRequest.model_validate(data)
    except ValidationError as error:
        errors = [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in error.errors()]
        raise RequestValidationError(errors) from error


def _json_too_large() -> AppError:
    return AppError(
        ErrorCode.UPLOAD_TOO_LARGE,
        f"The JSON body is larger than {MAX_JSON_BYTES // 1024} KiB; it holds only the options and `{URL_FIELD}`.",
        status_code=413,
        details={"max_bytes": MAX_JSON_BYTES},
    )


def audio_required() -> AppError:
    """400 `audio_required`: the request gives no audio at all (musicgen-api's refusal)."""
    return AppError(
        ErrorCode.AUDIO_REQUIRED,
        AUDIO_REQUIRED_MESSAGE,
        status_code=400,
        details=[
            {"loc": ["body", FILE_PART], "msg": "Field required", "type": "missing"},
            {"loc": ["body", URL_FIELD], "msg": "Field required", "type": "missing"},
        ],
    )


def _no_body(request: Request) -> bool:
    """No request body at all: `Content-Length: 0`, or neither a length nor chunked transfer."""
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() == "0"
    return "chunked" not in request.headers.get("transfer-encoding", "").lower()


def _form_names_url(form: ReceivedForm) -> bool:
    """Whether a multipart body gives `audio_url` (as a field or in the `params` part): refused further on
    with the message that says where it goes, not as a request without audio."""
    if URL_FIELD in form.fields:
        return True
    try:
        params = loads_bounded(form.fields.get(PARAMS_PART, "null"))
    except ValueError:
        return False
    return isinstance(params, dict) and URL_FIELD in params
