"""A jam request, HTTP or WebSocket, turned into what the worker is sent: the checks both routes make before
a slot is claimed (the fields, the chunk length, the model and its steering assets, the loop decoded as
every upload is), the stored loop, the start request, and the update control."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from soundstage.audio import probe_audio
from soundstage.errors import AppError, ErrorCode
from soundstage.schemas import StylePrompt
from soundstage.schemas.jam import JamOptions, JamParams, JamUpdateOptions
from soundstage.schemas.jam_stream import Consumption, JamStart, Pace, StartedEvent, UpdateControl
from soundstage.schemas.jam_ws import UpdateMessage
from soundstage.schemas.loop import MAX_LOOP_SECONDS, TARGET_SAMPLE_RATES
from soundstage_api.jam_sessions import SessionRecord
from soundstage_api.magenta_checkpoint import centroid_weights, check_steering, model_and_checkpoint
from soundstage_api.routes.generate import resolve_seed
from soundstage_api.routes.style import blend_prompts
from soundstage_api.state import AppState
from soundstage_api.uploads import form_error
from soundstage_api.viewer import current as current_viewer

logger = logging.getLogger(__name__)

LOOP_FIELD = "loop_audio"
DEFAULT_RATE = 48_000


async def store_upload(state: AppState, path: Path, name_stem: str, loc: str) -> str:
    """The file at ``path`` checked as audio (422 `audio_*`, naming ``loc``) and stored as
    ``<name_stem>.<format>``."""
    try:
        decoded = await run_in_threadpool(probe_audio, path, max_seconds=MAX_LOOP_SECONDS)
    except AppError as error:
        error.details = [{"loc": ["body", loc], "msg": error.message, "type": error.code.value}]
        raise
    name = f"{name_stem}.{decoded.format}"
    try:
        await run_in_threadpool(state.store.put_file, name, path)
    except Exception as error:
        logger.warning("jam: could not store %s: %s", name, error)
        raise AppError(ErrorCode.STORAGE_UNAVAILABLE, "Storage is unavailable; try again.", status_code=503) from error
    return name


async def prepare_start(
    state: AppState,
    options: JamOptions,
    *,
    loop: Path | None,
    pace: Pace,
    consumption: Consumption,
    style_ramp_seconds: float = 0.0,
) -> JamStart:
    """Check a jam's options (422 with the field) and store its loop (``loop``: the uploaded file)."""
    texts = blend_prompts(
        options.styles, options.style_weights, texts_field="styles", weights_field="style_weights", required=False
    )
    limit = state.settings.magenta.max_chunk_seconds
    if options.chunk_seconds > limit:
        raise form_error(
            f"{options.bars_per_chunk} bars of {options.beats_per_bar} beats at {options.bpm:g} bpm last "
            f"{options.chunk_seconds:.1f} s; a chunk lasts at most {limit:g} s (MAGENTA_MAX_CHUNK_SECONDS).",
            ["body", "bars_per_chunk"],
        )
    model, checkpoint = await run_in_threadpool(model_and_checkpoint, state, options.model)
    steering = centroid_weights(options.centroid_weights)
    await run_in_threadpool(check_steering, state, checkpoint, options.mean, steering)
    if loop is None and not texts and not (options.mean > 0 or any(steering)):
        raise form_error("send loop_audio, or at least one style in styles.", ["body", LOOP_FIELD])
    session_id = uuid.uuid4().hex
    rate = options.target_sample_rate or DEFAULT_RATE
    loop_name = None
    prompts = list(texts)
    if loop is not None:
        loop_name = await store_upload(state, loop, f"jam-{session_id}_loop", LOOP_FIELD)
        if options.target_sample_rate is None:
            decoded = await run_in_threadpool(probe_audio, loop, max_seconds=MAX_LOOP_SECONDS)
            rate = decoded.sample_rate if decoded.sample_rate in TARGET_SAMPLE_RATES else DEFAULT_RATE
        if options.loop_weight > 0:
            prompts.append(StylePrompt(audio=loop_name, weight=options.loop_weight))
    params = JamParams(
        bpm=options.bpm,
        bars_per_chunk=options.bars_per_chunk,
        beats_per_bar=options.beats_per_bar,
        prompts=prompts,
        guidance_weight=options.guidance_weight,
        temperature=options.temperature,
        top_k=options.topk,
        target_sample_rate=rate,
        seed=resolve_seed(options.seed),
        mean=options.mean,
        centroid_weights=steering,
        loop=loop_name,
        checkpoint=checkpoint,
    )
    return JamStart(
        session_id=session_id,
        owner=current_viewer().owner,
        model=model,
        params=params,
        pace=pace,
        consumption=consumption,
        style_ramp_seconds=style_ramp_seconds,
    )


async def begin(state: AppState, start: JamStart) -> StartedEvent:
    """Claim a slot and start ``start`` on its worker (soundstage_api.jam_sessions); a refused start leaves
    no stored loop behind."""
    try:
        return await state.jams.start(start, idle_seconds=state.settings.magenta.jam_idle_seconds)
    except AppError:
        if start.params.loop is not None:
            await run_in_threadpool(_forget, state, start.params.loop)
        raise


def _forget(state: AppState, name: str) -> None:
    try:
        state.store.delete(name)
    except Exception:
        logger.warning("jam: could not delete %s", name, exc_info=True)


async def update_control(
    state: AppState, record: SessionRecord, options: JamUpdateOptions | UpdateMessage, *, styles_sent: bool
) -> UpdateControl:
    """The control for an update (``styles_sent``: `styles` was given, empty clearing the text styles),
    its steering checked against the session's checkpoint (422 `steering_unavailable`)."""
    prompts = None
    if styles_sent:
        prompts = blend_prompts(
            options.styles or "",
            options.style_weights,
            texts_field="styles",
            weights_field="style_weights",
            required=False,
        )
    weights = None if options.centroid_weights is None else centroid_weights(options.centroid_weights)
    params = JamParams.model_validate(record.params)
    await run_in_threadpool(
        check_steering,
        state,
        params.checkpoint,
        options.mean if options.mean is not None else params.mean,
        weights if weights is not None else params.centroid_weights,
    )
    return UpdateControl(
        prompts=prompts,
        mean=options.mean,
        centroid_weights=weights,
        use_current_mix_as_style=options.use_current_mix_as_style,
        loop_weight=options.loop_weight,
        temperature=options.temperature,
        top_k=options.topk,
        guidance_weight=options.guidance_weight,
        style_ramp_seconds=options.style_ramp_seconds,
    )
