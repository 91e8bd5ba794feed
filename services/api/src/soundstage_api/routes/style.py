"""`POST /generate/text`, `/generate/audio` and `/generate/blend`: Magenta RealTime in the style of text and
audio prompts (the Magenta RT API's contract: form fields, the audio itself as the answer).

Each route takes `multipart/form-data` (curl `-F`, a browser's FormData) or, without an upload,
`application/x-www-form-urlencoded` (`requests.post(url, data={...})`), with the options as fields or one
`params` JSON part. It validates everything before a job exists (422 `validation_error` with field locs,
`unknown_model`; an audio prompt is decoded as every upload is: 413 `upload_too_large`, 422
`audio_undecodable`, `audio_empty`, `audio_too_long` past MAX_STYLE_AUDIO_SECONDS), then writes a
`style` job for the `magenta` queue and waits for it (SYNC_WAIT_SECONDS, or less with `Prefer:
wait=<seconds>`): the answer is the audio file (`curl ... --output generated.mp3` works as with the
Magenta RT API), with the job's id in `X-Job-Id`. A job not finished in time is a 202 `{job_id, status}`
with `Location: /jobs/{job_id}`, never a gateway timeout; `?async=true` or `Prefer: respond-async`
answers that 202 at once. A failed job is a 500 with its own error code, a cancelled one a 409.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from soundstage.audio import AudioInfo
from soundstage.pools import TaskName
from soundstage.schemas import ErrorBody, JobKind, StyleJobParams, StyleOptions, StylePrompt
from soundstage.schemas.jobs import JobCreated
from soundstage.schemas.style import MAX_PROMPT_WEIGHT, MAX_STYLE_AUDIO_SECONDS, MAX_STYLE_PROMPTS, StyleText
from soundstage_api.auth import ApiKey, MayGenerate
from soundstage_api.guarded_route import GuardedRoute
from soundstage_api.routes.compat_common import WAIT_RESPONSES, finished_or_pending
from soundstage_api.routes.files import file_response
from soundstage_api.routes.generate import (
    ERRORS,
    PreferHeader,
    resolve_model,
    resolve_seed,
    submit,
    submit_with_audio,
)
from soundstage_api.state import AppState, State
from soundstage_api.uploads import (
    ReceivedForm,
    form_error,
    multipart_body_schema,
    parse_form_parameters,
    receive_fields_or_form,
)
from soundstage_api.waiting import pending_response, requested_wait

router = APIRouter(route_class=GuardedRoute, tags=["magenta"], dependencies=[ApiKey, MayGenerate])

AUDIO_PART = "audio_file"
BLEND_AUDIO_PARTS = ("audio_files", "audio_files[]", "audio_weights")
"""The Magenta RT API's audio fields of a blend, not taken yet: refused with a message naming /generate/audio."""
RESPOND_ASYNC = "respond-async"
"""RFC 7240's preference for an answer before the work is done."""


class TextStyleForm(StyleOptions):
    prompt: StyleText = Field(description='The style, in words ("funky jazz groove with syncopated bass").')


class AudioStyleForm(StyleOptions):
    prompt: StyleText | None = Field(
        default=None, description="Optional text blended with the audio's style, at the same weight."
    )


class BlendStyleForm(StyleOptions):
    text_prompts: str | None = Field(default=None, description=f"Comma-separated prompts, at most {MAX_STYLE_PROMPTS}.")
    text_weights: str | None = Field(
        default=None,
        description="Comma-separated positive weights, one per prompt (default: equal); normalised to sum to 1.",
    )


AsyncQuery = Annotated[
    bool,
    Query(alias="async", description="Answer at once with `{job_id, status}` (202) instead of waiting for the audio."),
]

_AUDIO_ANSWER: dict[int | str, dict[str, object]] = {
    200: {
        "description": "The audio (48 kHz stereo, `format`), with the job's id in `X-Job-Id`",
        "content": {"audio/mpeg": {}, "audio/wav": {}, "audio/flac": {}, "audio/ogg": {}},
    },
    **ERRORS,
    **WAIT_RESPONSES,
    413: {"model": ErrorBody, "description": "`audio_file` larger than MAX_UPLOAD_MB (`upload_too_large`)"},
}


def _form_schema(model: type[StyleOptions], *, audio: bool) -> dict[str, object]:
    if audio:
        return multipart_body_schema(
            model,
            file_field=AUDIO_PART,
            file_description="The style reference: WAV, FLAC, OGG, MP3, M4A/AAC or WebM, at most MAX_UPLOAD_MB and "
            f"{MAX_STYLE_AUDIO_SECONDS:g} s.",
        )
    fields = model.model_json_schema(ref_template="#/components/schemas/{model}")
    form = {"schema": {"type": "object", "properties": fields["properties"], "required": fields.get("required", [])}}
    content = {"multipart/form-data": form, "application/x-www-form-urlencoded": form}
    return {"requestBody": {"required": True, "content": content}}


@router.post(
    "/generate/text",
    response_class=Response,
    responses=_AUDIO_ANSWER,
    summary="Magenta RT: music in the style of a text prompt",
    openapi_extra=_form_schema(TextStyleForm, audio=False),
)
async def generate_text(
    request: Request, state: State, async_: AsyncQuery = False, prefer: PreferHeader = None
) -> Response:
    """Generate `duration` seconds (2-120, default 10) in the style of `prompt` and answer with the audio."""
    async with _form(request, state) as form:
        _refuse_audio(form, "/generate/text takes no audio; send a style reference to /generate/audio.")
        options = parse_form_parameters(form.fields, TextStyleForm, file_field=None, file_received=False)
        created = await _submit(state, options, [StylePrompt(text=options.prompt)])
    return await _answer(request, state, created, async_=async_, prefer=prefer or [])


@router.post(
    "/generate/audio",
    response_class=Response,
    responses=_AUDIO_ANSWER,
    summary="Magenta RT: music in the style of an audio reference",
    openapi_extra=_form_schema(AudioStyleForm, audio=True),
)
async def generate_audio(
    request: Request, state: State, async_: AsyncQuery = False, prefer: PreferHeader = None
) -> Response:
    """Generate music in the style of `audio_file` (its MusicCoCa embedding), blended at equal weight with
    `prompt` when one is given, and answer with the audio."""
    async with _form(request, state) as form:
        options = parse_form_parameters(
            form.fields, AudioStyleForm, file_field=AUDIO_PART, file_received=form.file_received
        )
        model = resolve_model(options.model, state.settings.magenta.served_models)
        seed = resolve_seed(options.seed)

        def params(name: str, _: AudioInfo) -> dict[str, object]:
            prompts = [StylePrompt(audio=name)]
            if options.prompt is not None:
                prompts.append(StylePrompt(text=options.prompt))
            return _job_params(options, prompts, seed)

        created = await submit_with_audio(
            state,
            kind=JobKind.STYLE,
            task=TaskName.MAGENTA_GENERATE,
            model=model,
            path=form.file_path,
            size=form.file_size,
            role="style",
            max_seconds=MAX_STYLE_AUDIO_SECONDS,
            params=params,
        )
    return await _answer(request, state, created, async_=async_, prefer=prefer or [])


@router.post(
    "/generate/blend",
    response_class=Response,
    responses=_AUDIO_ANSWER,
    summary="Magenta RT: music in a weighted blend of text styles",
    openapi_extra=_form_schema(BlendStyleForm, audio=False),
)
async def generate_blend(
    request: Request, state: State, async_: AsyncQuery = False, prefer: PreferHeader = None
) -> Response:
    """Generate music in a blend of `text_prompts` (comma-separated) weighted by `text_weights`
    (comma-separated numbers, one per prompt; default equal), the weights normalised to sum to 1."""
    async with _form(request, state, file_field=BLEND_AUDIO_PARTS[0]) as form:
        if form.file_received or any(name in form.fields for name in BLEND_AUDIO_PARTS):
            raise form_error(
                "/generate/blend blends text prompts (text_prompts, text_weights) in this version; send an audio "
                "style reference to /generate/audio.",
                ["body", BLEND_AUDIO_PARTS[0]],
            )
        options = parse_form_parameters(form.fields, BlendStyleForm, file_field=None, file_received=False)
        created = await _submit(state, options, blend_prompts(options.text_prompts, options.text_weights))
    return await _answer(request, state, created, async_=async_, prefer=prefer or [])


def blend_prompts(texts: str | None, weights: str | None) -> list[StylePrompt]:
    """The prompts of a blend: comma-separated texts, and as many comma-separated positive weights (all 1
    when none are given). 422 `validation_error` for no prompts, weights that do not parse, are not
    positive, or do not match the prompts one for one."""
    prompts = [part.strip() for part in (texts or "").split(",") if part.strip()]
    if not prompts:
        raise form_error("give at least one prompt in text_prompts (comma-separated).", ["body", "text_prompts"])
    if len(prompts) > MAX_STYLE_PROMPTS:
        raise form_error(f"at most {MAX_STYLE_PROMPTS} prompts in one blend.", ["body", "text_prompts"])
    if weights is None or not weights.strip():
        values = [1.0] * len(prompts)
    else:
        try:
            values = [float(part) for part in weights.split(",")]
        except ValueError as error:
            raise form_error(
                "text_weights must be comma-separated numbers.", ["body", "text_weights"], "float_parsing"
            ) from error
        if len(values) != len(prompts):
            raise form_error(
                f"text_weights has {len(values)} weights for {len(prompts)} text_prompts; give one per prompt.",
                ["body", "text_weights"],
                "weights_mismatch",
            )
        if not all(0.0 < value <= MAX_PROMPT_WEIGHT for value in values):
            raise form_error(
                f"every weight must be above 0 and at most {MAX_PROMPT_WEIGHT:g}.", ["body", "text_weights"]
            )
    return [StylePrompt(text=text, weight=weight) for text, weight in zip(prompts, values, strict=True)]


def _form(
    request: Request, state: AppState, *, file_field: str = AUDIO_PART
) -> AbstractAsyncContextManager[ReceivedForm]:
    return receive_fields_or_form(request, file_field=file_field, max_file_bytes=state.settings.max_upload_bytes)


def _refuse_audio(form: ReceivedForm, message: str) -> None:
    if form.file_received:
        raise form_error(message, ["body", AUDIO_PART])


def _job_params(options: StyleOptions, prompts: list[StylePrompt], seed: int) -> dict[str, object]:
    params = StyleJobParams(
        prompts=prompts,
        duration=options.duration,
        temperature=options.temperature,
        top_k=options.top_k,
        guidance_weight=options.guidance_weight,
        seed=seed,
        format=options.format,
        loudness_target=options.loudness_target,
    )
    return params.model_dump(mode="json")


async def _submit(state: AppState, options: StyleOptions, prompts: list[StylePrompt]) -> JobCreated:
    model = resolve_model(options.model, state.settings.magenta.served_models)
    return await run_in_threadpool(
        submit,
        state,
        kind=JobKind.STYLE,
        task=TaskName.MAGENTA_GENERATE,
        model=model,
        params=_job_params(options, prompts, resolve_seed(options.seed)),
    )


async def _answer(
    request: Request, state: AppState, created: JobCreated, *, async_: bool, prefer: list[str]
) -> Response:
    """The audio once the job is done; the 202 at once when asked, or when it is not done in time."""
    if async_ or _prefers_async(prefer):
        return pending_response(created.job_id, created.status.value)
    limit = state.settings.sync_wait_seconds
    asked = requested_wait(prefer)
    outcome = await finished_or_pending(state, created.job_id, min(asked, limit) if asked is not None else limit)
    if isinstance(outcome, Response):
        return outcome
    response = await run_in_threadpool(file_response, state, outcome.files[0].name, request)
    response.headers["X-Job-Id"] = outcome.id
    return response


def _prefers_async(prefer: list[str]) -> bool:
    return any(
        preference.split(";", 1)[0].strip().lower() == RESPOND_ASYNC
        for header in prefer
        for preference in header.split(",")
    )
