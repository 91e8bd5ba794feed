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
from soundstage.schemas.magenta_model import ModelSelection
from soundstage.schemas.style import MAX_PROMPT_WEIGHT, MAX_STYLE_AUDIO_SECONDS, MAX_STYLE_PROMPTS, StyleText
from soundstage_api.auth import ApiKey, MayGenerate
from soundstage_api.guarded_route import GuardedRoute
from soundstage_api.magenta_checkpoint import model_and_checkpoint
from soundstage_api.routes.compat_common import WAIT_RESPONSES, finished_or_pending
from soundstage_api.routes.files import file_response
from soundstage_api.routes.generate import (
    ERRORS,
    AudioInput,
    PreferHeader,
    resolve_seed,
    submit,
    submit_with_audio,
    submit_with_audios,
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
BLEND_AUDIO_PARTS = frozenset({"audio_files", "audio_files[]"})
"""A blend's audio prompts: the Magenta RT API's `audio_files[]` (or `audio_files`), one part per file."""
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
        description="Comma-separated positive weights, one per prompt (default: equal); normalised to sum to 1 "
        "together with `audio_weights`.",
    )
    audio_weights: str | None = Field(
        default=None,
        description="Comma-separated positive weights, one per `audio_files[]` part, in order (default: equal).",
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


def _blend_schema() -> dict[str, object]:
    fields = BlendStyleForm.model_json_schema(ref_template="#/components/schemas/{model}")
    properties = dict(fields["properties"])
    properties["audio_files[]"] = {
        "type": "array",
        "items": {"type": "string", "format": "binary"},
        "description": "Audio prompts, one part per file (WAV, FLAC, OGG, MP3, M4A/AAC or WebM; together at most "
        f"MAX_UPLOAD_MB, each at most {MAX_STYLE_AUDIO_SECONDS:g} s).",
    }
    urlencoded = {"schema": {"type": "object", "properties": fields["properties"]}}
    content = {
        "multipart/form-data": {"schema": {"type": "object", "properties": properties}},
        "application/x-www-form-urlencoded": urlencoded,
    }
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
        model, checkpoint = await run_in_threadpool(model_and_checkpoint, state, options.model)
        seed = resolve_seed(options.seed)

        def params(name: str, _: AudioInfo) -> dict[str, object]:
            prompts = [StylePrompt(audio=name)]
            if options.prompt is not None:
                prompts.append(StylePrompt(text=options.prompt))
            return _job_params(options, prompts, seed, checkpoint)

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
    summary="Magenta RT: music in a weighted blend of text and audio styles",
    openapi_extra=_blend_schema(),
)
async def generate_blend(
    request: Request, state: State, async_: AsyncQuery = False, prefer: PreferHeader = None
) -> Response:
    """Generate music in a blend of `text_prompts` (comma-separated) weighted by `text_weights` and of
    `audio_files[]` (one part per file) weighted by `audio_weights` (comma-separated numbers, one per
    prompt or file; default equal), all the weights normalised together to sum to 1."""
    async with _form(request, state, repeated=BLEND_AUDIO_PARTS) as form:
        _refuse_audio(form, "/generate/blend takes its audio prompts as `audio_files[]` parts, one per file.")
        options = parse_form_parameters(form.fields, BlendStyleForm, file_field=None, file_received=False)
        texts = blend_prompts(options.text_prompts, options.text_weights, required=not form.files)
        audio_weights = _audio_weights(options.audio_weights, len(form.files))
        if len(texts) + len(audio_weights) > MAX_STYLE_PROMPTS:
            raise form_error(f"at most {MAX_STYLE_PROMPTS} prompts and files in one blend.", ["body", "text_prompts"])
        if not form.files:
            created = await _submit(state, options, texts)
        else:
            model, checkpoint = await run_in_threadpool(model_and_checkpoint, state, options.model)
            seed = resolve_seed(options.seed)

            def params(names: list[str], _: list[AudioInfo]) -> dict[str, object]:
                audios = [StylePrompt(audio=n, weight=w) for n, w in zip(names, audio_weights, strict=True)]
                return _job_params(options, [*texts, *audios], seed, checkpoint)

            created = await submit_with_audios(
                state,
                kind=JobKind.STYLE,
                task=TaskName.MAGENTA_GENERATE,
                model=model,
                inputs=[
                    AudioInput(part.path, part.size, ("body", part.field, index))
                    for index, part in enumerate(form.files)
                ],
                role="style",
                max_seconds=MAX_STYLE_AUDIO_SECONDS,
                params=params,
            )
    return await _answer(request, state, created, async_=async_, prefer=prefer or [])


def _audio_weights(weights: str | None, files: int) -> list[float]:
    """One positive weight per audio file (all 1 when none are given); 422 for weights without files, that
    do not parse, are not positive, or do not match the files one for one."""
    if weights is None or not weights.strip():
        return [1.0] * files
    if files == 0:
        raise form_error("audio_weights given without audio_files[] parts.", ["body", "audio_weights"])
    try:
        values = [float(part) for part in weights.split(",")]
    except ValueError as error:
        raise form_error(
            "audio_weights must be comma-separated numbers.", ["body", "audio_weights"], "float_parsing"
        ) from error
    if len(values) != files:
        raise form_error(
            f"audio_weights has {len(values)} weights for {files} audio_files[]; give one per file.",
            ["body", "audio_weights"],
            "weights_mismatch",
        )
    if not all(0.0 < value <= MAX_PROMPT_WEIGHT for value in values):
        raise form_error(f"every weight must be above 0 and at most {MAX_PROMPT_WEIGHT:g}.", ["body", "audio_weights"])
    return values


def blend_prompts(
    texts: str | None,
    weights: str | None,
    *,
    texts_field: str = "text_prompts",
    weights_field: str = "text_weights",
    required: bool = True,
) -> list[StylePrompt]:
    """The prompts of a blend: comma-separated texts, and as many comma-separated positive weights (all 1
    when none are given). 422 `validation_error` for no prompts (when ``required``), weights that do not
    parse, are not positive, or do not match the prompts one for one."""
    prompts = [part.strip() for part in (texts or "").split(",") if part.strip()]
    if not prompts:
        if required:
            raise form_error(f"give at least one prompt in {texts_field} (comma-separated).", ["body", texts_field])
        if weights is not None and weights.strip():
            raise form_error(f"{weights_field} given without {texts_field}.", ["body", weights_field])
        return []
    if len(prompts) > MAX_STYLE_PROMPTS:
        raise form_error(f"at most {MAX_STYLE_PROMPTS} prompts in one blend.", ["body", texts_field])
    if weights is None or not weights.strip():
        values = [1.0] * len(prompts)
    else:
        try:
            values = [float(part) for part in weights.split(",")]
        except ValueError as error:
            raise form_error(
                f"{weights_field} must be comma-separated numbers.", ["body", weights_field], "float_parsing"
            ) from error
        if len(values) != len(prompts):
            raise form_error(
                f"{weights_field} has {len(values)} weights for {len(prompts)} {texts_field}; give one per prompt.",
                ["body", weights_field],
                "weights_mismatch",
            )
        if not all(0.0 < value <= MAX_PROMPT_WEIGHT for value in values):
            raise form_error(
                f"every weight must be above 0 and at most {MAX_PROMPT_WEIGHT:g}.", ["body", weights_field]
            )
    return [StylePrompt(text=text, weight=weight) for text, weight in zip(prompts, values, strict=True)]


def _form(
    request: Request, state: AppState, *, repeated: frozenset[str] = frozenset()
) -> AbstractAsyncContextManager[ReceivedForm]:
    return receive_fields_or_form(
        request, file_field=AUDIO_PART, max_file_bytes=state.settings.max_upload_bytes, repeated_file_fields=repeated
    )


def _refuse_audio(form: ReceivedForm, message: str) -> None:
    if form.file_received:
        raise form_error(message, ["body", AUDIO_PART])


def _job_params(
    options: StyleOptions, prompts: list[StylePrompt], seed: int, checkpoint: ModelSelection | None
) -> dict[str, object]:
    params = StyleJobParams(
        prompts=prompts,
        duration=options.duration,
        temperature=options.temperature,
        top_k=options.top_k,
        guidance_weight=options.guidance_weight,
        seed=seed,
        format=options.format,
        loudness_target=options.loudness_target,
        checkpoint=checkpoint,
    )
    return params.model_dump(mode="json")


async def _submit(state: AppState, options: StyleOptions, prompts: list[StylePrompt]) -> JobCreated:
    model, checkpoint = await run_in_threadpool(model_and_checkpoint, state, options.model)
    return await run_in_threadpool(
        submit,
        state,
        kind=JobKind.STYLE,
        task=TaskName.MAGENTA_GENERATE,
        model=model,
        params=_job_params(options, prompts, resolve_seed(options.seed), checkpoint),
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
