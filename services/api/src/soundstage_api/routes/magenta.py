"""The MagentaRT Research API under `/magenta` (its iOS client works with its base URL set to
`<server>/magenta`): `POST /magenta/generate` (continue a loop), `/magenta/generate_style` (bars from styles
alone), `GET /magenta/progress` and `GET /magenta/health`.

Both generation routes take `multipart/form-data` (or, without a loop, urlencoded fields), validate
everything before a job exists (422 `validation_error`; a loop is decoded as every upload is: 413
`upload_too_large`, 422 `audio_undecodable`, `audio_empty`, `audio_too_long`), write a `loop` job for the
`magenta` queue and wait for it (SYNC_WAIT_SECONDS): the answer is `{audio_base64 (WAV), metadata,
request_id}` as the research API gives it. A job not finished in time is a 202 `{job_id, status}` with
`Location: /jobs/{job_id}`, never a gateway timeout. A `request_id` given with the request is followed by
`GET /magenta/progress?request_id=` while the request waits (kept REQUEST_TTL_SECONDS, per API key).
"""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from soundstage.audio import AudioInfo
from soundstage.errors import AppError, ErrorCode
from soundstage.pools import Queue, TaskName
from soundstage.schemas import (
    BarOptions,
    ErrorBody,
    JobKind,
    LoopJobParams,
    LoopOptions,
    StylePrompt,
)
from soundstage.schemas.jobs import JobCreated
from soundstage.schemas.loop import (
    MAX_LOOP_OUTPUT_SECONDS,
    MAX_LOOP_SECONDS,
    TARGET_SAMPLE_RATES,
    BarsAnswer,
    BarsProgress,
    MagentaHealth,
    RequestId,
)
from soundstage.schemas.magenta_model import ModelSelection
from soundstage.workers import list_workers
from soundstage_api.auth import ApiKey, MayGenerate
from soundstage_api.guarded_route import GuardedRoute
from soundstage_api.magenta_checkpoint import centroid_weights, check_steering, model_and_checkpoint
from soundstage_api.routes.compat_common import WAIT_RESPONSES, finished_or_pending
from soundstage_api.routes.generate import (
    ERRORS,
    PreferHeader,
    resolve_seed,
    submit,
    submit_with_audio,
)
from soundstage_api.routes.style import blend_prompts
from soundstage_api.routes.system import pool_problem
from soundstage_api.state import AppState, State
from soundstage_api.uploads import form_error, multipart_body_schema, parse_form_parameters, receive_fields_or_form
from soundstage_api.viewer import current as current_viewer
from soundstage_api.viewer import visible_job
from soundstage_api.waiting import requested_wait

PREFIX = "/magenta"
LOOP_PART = "loop_audio"
REQUEST_TTL_SECONDS = 3600
DEFAULT_RATE = 48_000

router = APIRouter(prefix=PREFIX, route_class=GuardedRoute, tags=["magenta research API"])
generating = [ApiKey, MayGenerate]


_ANSWERS: dict[int | str, dict[str, object]] = {
    200: {"model": BarsAnswer, "description": "The bars, as base64 WAV with their metadata"},
    **ERRORS,
    **WAIT_RESPONSES,
    413: {"model": ErrorBody, "description": "`loop_audio` larger than MAX_UPLOAD_MB (`upload_too_large`)"},
}


def _loop_schema() -> dict[str, object]:
    return multipart_body_schema(
        LoopOptions,
        file_field=LOOP_PART,
        file_description=f"The loop to continue: WAV, FLAC, OGG, MP3, M4A/AAC or WebM, at most {MAX_LOOP_SECONDS:g} s "
        "(its last 10 s prime the model).",
    )


def _style_schema() -> dict[str, object]:
    fields = BarOptions.model_json_schema(ref_template="#/components/schemas/{model}")
    form = {"schema": {"type": "object", "properties": fields["properties"], "required": fields.get("required", [])}}
    return {
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": form, "application/x-www-form-urlencoded": form},
        }
    }


@router.post(
    "/generate",
    dependencies=generating,
    responses=_ANSWERS,
    response_model=BarsAnswer,
    summary="Continue a loop: bars of music at its tempo",
    openapi_extra=_loop_schema(),
)
async def generate_bars(request: Request, state: State, prefer: PreferHeader = None) -> Response:
    """Continue `loop_audio` for `bars` bars at `bpm`: the model hears the loop (its codec tokens prime the
    stream) and its style (at `loop_weight`, blended with `styles`); the answer is exactly
    `bars * beats_per_bar * 60 / bpm` seconds at `target_sample_rate`."""
    async with receive_fields_or_form(
        request, file_field=LOOP_PART, max_file_bytes=state.settings.max_upload_bytes
    ) as form:
        options = parse_form_parameters(
            form.fields, LoopOptions, file_field=LOOP_PART, file_received=form.file_received
        )
        texts = _checked(options)
        model, checkpoint = await run_in_threadpool(model_and_checkpoint, state, options.model)
        steering = await run_in_threadpool(_steering, state, options, checkpoint)
        seed = resolve_seed(options.seed)

        def params(name: str, decoded: AudioInfo) -> dict[str, object]:
            prompts = list(texts)
            if options.loop_weight > 0:
                prompts.append(StylePrompt(audio=name, weight=options.loop_weight))
            rate = options.target_sample_rate or (
                decoded.sample_rate if decoded.sample_rate in TARGET_SAMPLE_RATES else DEFAULT_RATE
            )
            return _job_params(options, prompts, seed, rate, loop=name, checkpoint=checkpoint, steering=steering)

        created = await submit_with_audio(
            state,
            kind=JobKind.LOOP,
            task=TaskName.MAGENTA_LOOP,
            model=model,
            path=form.file_path,
            size=form.file_size,
            role="loop",
            max_seconds=MAX_LOOP_SECONDS,
            params=params,
        )
    await run_in_threadpool(_remember_request, state, options.request_id, created.job_id)
    return await _answer(state, created, options.request_id, prefer or [])


@router.post(
    "/generate_style",
    dependencies=generating,
    responses=_ANSWERS,
    response_model=BarsAnswer,
    summary="Bars of music at a tempo from styles alone",
    openapi_extra=_style_schema(),
)
async def generate_style(request: Request, state: State, prefer: PreferHeader = None) -> Response:
    """`bars` bars at `bpm` in the blend of `styles` (comma-separated, weighted by `style_weights`), with no
    input audio; exactly `bars * beats_per_bar * 60 / bpm` seconds at `target_sample_rate` (default 48000)."""
    async with receive_fields_or_form(
        request, file_field=LOOP_PART, max_file_bytes=state.settings.max_upload_bytes
    ) as form:
        if form.file_received:
            raise form_error(
                "/magenta/generate_style takes no audio; send a loop to /magenta/generate.", ["body", LOOP_PART]
            )
        options = parse_form_parameters(form.fields, BarOptions, file_field=None, file_received=False)
    texts = _checked(options)
    model, checkpoint = await run_in_threadpool(model_and_checkpoint, state, options.model)
    steering = await run_in_threadpool(_steering, state, options, checkpoint)
    if not texts and not (options.mean > 0 or any(steering)):
        raise form_error(
            "give at least one style in styles (comma-separated), or steer with mean or centroid_weights.",
            ["body", "styles"],
        )
    params = _job_params(
        options,
        texts,
        resolve_seed(options.seed),
        options.target_sample_rate or DEFAULT_RATE,
        loop=None,
        checkpoint=checkpoint,
        steering=steering,
    )
    created = await run_in_threadpool(
        submit, state, kind=JobKind.LOOP, task=TaskName.MAGENTA_LOOP, model=model, params=params
    )
    await run_in_threadpool(_remember_request, state, options.request_id, created.job_id)
    return await _answer(state, created, options.request_id, prefer or [])


@router.get(
    "/progress",
    dependencies=[ApiKey],
    response_model=BarsProgress,
    responses={404: {"model": ErrorBody, "description": "No request with this id (`request_not_found`)"}},
    summary="Progress of a generation by its request_id",
)
def progress(
    state: State, request_id: Annotated[RequestId, Query(description="The id sent with the request.")]
) -> BarsProgress:
    """How far the generation sent with `request_id` has got (the ids are kept an hour, per API key); a job id
    works as well."""
    raw = state.redis.get(_request_key(request_id))
    job_id = raw.decode() if raw is not None else request_id
    try:
        job = visible_job(state.repo, job_id)
    except AppError as missing:
        raise AppError(
            ErrorCode.REQUEST_NOT_FOUND, f"No generation with request_id {request_id!r}.", status_code=404
        ) from missing
    finished = job.status in ("completed", "failed", "cancelled")
    return BarsProgress(
        request_id=request_id,
        job_id=job.id,
        status=job.status,
        percent=100 if job.status == "completed" else int(job.progress or 0),
        stage=(job.progress_detail or {}).get("message"),
        done=finished,
        error=job.error if job.status == "failed" else None,
    )


@router.get("/health", response_model=MagentaHealth, summary="The research API's health (no key needed)")
def magenta_health(state: State) -> MagentaHealth:
    """Always 200 while the API runs: `status` is `ready` once a magenta worker has its model loaded and
    compiled, `initializing` before (the iOS client waits for `ready`)."""
    try:
        workers = [w for w in list_workers(state.redis) if w.queue == Queue.MAGENTA.value]
    except Exception:  # Redis away: no worker can be seen (the API's own /health says why)
        workers = []
    problem = pool_problem(workers)
    return MagentaHealth(
        ok=True,
        status="ready" if problem is None else "initializing",
        warmed=problem is None,
        mode="serve",
        models=state.settings.magenta.served_models,
        workers=len(workers),
        detail=problem,
    )


def _checked(options: BarOptions) -> list[StylePrompt]:
    """The text styles, after the checks that span fields (the output's length)."""
    seconds = options.seconds(options.bars + options.intro_bars_to_drop)
    if seconds > MAX_LOOP_OUTPUT_SECONDS:
        raise form_error(
            f"{options.bars} bars (and {options.intro_bars_to_drop} intro bars) of {options.beats_per_bar} beats at "
            f"{options.bpm:g} bpm last {seconds:.1f} s; at most {MAX_LOOP_OUTPUT_SECONDS:g} s per generation.",
            ["body", "bars"],
        )
    return blend_prompts(
        options.styles, options.style_weights, texts_field="styles", weights_field="style_weights", required=False
    )


def _steering(state: AppState, options: BarOptions, checkpoint: ModelSelection | None) -> list[float]:
    weights = centroid_weights(options.centroid_weights)
    check_steering(state, checkpoint, options.mean, weights)
    return weights


def _job_params(
    options: BarOptions,
    prompts: list[StylePrompt],
    seed: int,
    rate: int,
    *,
    loop: str | None,
    checkpoint: ModelSelection | None,
    steering: list[float],
) -> dict[str, object]:
    params = LoopJobParams(
        loop=loop,
        prompts=prompts,
        bpm=options.bpm,
        bars=options.bars,
        beats_per_bar=options.beats_per_bar,
        intro_bars=options.intro_bars_to_drop,
        duration=options.seconds(options.bars + options.intro_bars_to_drop),
        guidance_weight=options.guidance_weight,
        temperature=options.temperature,
        top_k=options.topk,
        target_sample_rate=rate,
        loudness_mode=options.loudness_mode,
        loudness_headroom_db=options.loudness_headroom_db,
        seed=seed,
        request_id=options.request_id,
        mean=options.mean,
        centroid_weights=steering,
        checkpoint=checkpoint,
    )
    return params.model_dump(mode="json")


def _request_key(request_id: str) -> str:
    return f"soundstage:magenta:request:{current_viewer().owner or '-'}:{request_id}"


def _remember_request(state: AppState, request_id: str | None, job_id: str) -> None:
    if request_id is not None:
        state.redis.set(_request_key(request_id), job_id, ex=REQUEST_TTL_SECONDS)


async def _answer(state: AppState, created: JobCreated, request_id: str | None, prefer: list[str]) -> Response:
    """The bars once the job is done (waiting SYNC_WAIT_SECONDS, or less with `Prefer: wait=<seconds>`), else
    the 202 with the job's id."""
    limit = state.settings.sync_wait_seconds
    asked = requested_wait(prefer)
    outcome = await finished_or_pending(state, created.job_id, min(asked, limit) if asked is not None else limit)
    if isinstance(outcome, Response):
        return outcome
    job = outcome

    def body() -> bytes:
        # Up to 120 s of WAV (23 MB, 31 MB as base64): read, encoded and serialised off the event loop.
        audio = state.store.read_bytes(job.files[0].name)
        answer = BarsAnswer(
            audio_base64=base64.b64encode(audio).decode("ascii"),
            metadata=dict((job.result or {}).get("metadata") or {}),
            request_id=request_id or job.id,
            job_id=job.id,
        )
        return answer.model_dump_json().encode()

    content = await run_in_threadpool(body)
    return Response(content, media_type="application/json", headers={"X-Job-Id": job.id})
