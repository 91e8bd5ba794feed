"""The MagentaRT Research API's HTTP jam under `/magenta/jam` (its iOS looper's contract): start a session
from a loop, take its chunks one by one, steer it live, stop it.

A session lives on the magenta worker whose slot it holds (soundstage_magenta.jam_host); these routes reach
it through Redis (soundstage_api.jam_sessions), so any API replica serves any call. `next` hands each chunk
out once, in order; the worker stays at most MAGENTA_MAX_AHEAD_CHUNKS past the last chunk the client
`consume`d. A session whose client makes no call for MAGENTA_JAM_IDLE_SECONDS ends and frees its slot.
Another key's session is answered as unknown (404), as jobs are.

The control routes (`consume`, `update`, `reseed`, `reseed_splice`, `stop`) take form fields (multipart or
urlencoded, as the research API) or a JSON object.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from soundstage.errors import AppError, ErrorCode
from soundstage.schemas import ErrorBody
from soundstage.schemas.generate import SEED_MAX
from soundstage.schemas.jam import (
    JamChunk,
    JamNext,
    JamOptions,
    JamParams,
    JamStarted,
    JamStatus,
    JamStopped,
    JamUpdateOptions,
    SessionId,
)
from soundstage.schemas.jam_stream import (
    MAX_CHUNK_INDEX,
    Consumption,
    Pace,
    ReseedControl,
    SpliceControl,
)
from soundstage.schemas.loop import MAX_LOOP_SECONDS
from soundstage_api.auth import ApiKey, MayJam
from soundstage_api.guarded_route import GuardedRoute
from soundstage_api.jam_requests import begin, prepare_start, store_upload, update_control
from soundstage_api.jam_sessions import SessionRecord, not_found, session_ended
from soundstage_api.json_text import loads_bounded
from soundstage_api.state import AppState, State
from soundstage_api.uploads import (
    MAX_FIELD_BYTES,
    ReceivedForm,
    form_error,
    multipart_body_schema,
    parse_form_parameters,
    receive_fields_or_form,
)
from soundstage_api.viewer import current as current_viewer

logger = logging.getLogger(__name__)

PREFIX = "/magenta/jam"
LOOP_PART = "loop_audio"
COMBINED_PART = "combined_audio"
NEXT_WAIT_SECONDS = 30.0

router = APIRouter(prefix=PREFIX, route_class=GuardedRoute, tags=["magenta jam"])
jamming = [ApiKey, MayJam]

_SESSION_ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorBody, "description": "Unknown session (`session_not_found`) or ended (`session_ended`)"},
    422: {"model": ErrorBody, "description": "Invalid fields (`validation_error`)"},
}


@asynccontextmanager
async def received(request: Request, state: AppState, file_field: str) -> AsyncIterator[ReceivedForm]:
    """A control route's fields: a JSON object, or form fields (with at most one file, ``file_field``)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json":
        body = await request.body()
        if len(body) > MAX_FIELD_BYTES:
            raise AppError(ErrorCode.BODY_TOO_LARGE, "The JSON body is too large.", status_code=413)
        try:
            data = loads_bounded(body.decode("utf-8")) if body else {}
        except (ValueError, UnicodeDecodeError) as error:
            raise form_error("the body is not a JSON object.") from error
        if not isinstance(data, dict):
            raise form_error("the body is not a JSON object.")
        fields = {str(name): value for name, value in data.items()}
        yield ReceivedForm(fields=fields, file_path=Path(), file_received=False, file_size=0, filename=None)
        return
    async with receive_fields_or_form(
        request, file_field=file_field, max_file_bytes=state.settings.max_upload_bytes
    ) as form:
        yield form


async def visible(state: AppState, session_id: str) -> SessionRecord:
    """The session if the caller may see it; else 404 `session_not_found`, as for an unknown id."""
    record = await state.jams.record(session_id)
    if record is None or not current_viewer().may_see(record.owner):
        raise not_found(session_id)
    return record


async def running(state: AppState, session_id: str) -> SessionRecord:
    record = await visible(state, session_id)
    if record.ended:
        raise session_ended(record)
    await state.jams.touch(session_id, state.settings.magenta.jam_idle_seconds)
    return record


def _start_schema() -> dict[str, object]:
    return multipart_body_schema(
        JamOptions,
        file_field=LOOP_PART,
        file_description="The loop the jam continues (optional with styles): WAV, FLAC, OGG, MP3, M4A/AAC or WebM, "
        f"at most {MAX_LOOP_SECONDS:g} s.",
    )


@router.post(
    "/start",
    dependencies=jamming,
    response_model=JamStarted,
    responses={
        422: {"model": ErrorBody, "description": "Invalid fields or loop (`validation_error`, `audio_*`)"},
        429: {"model": ErrorBody, "description": "Every jam slot is taken (`capacity`), with `Retry-After`"},
        503: {"model": ErrorBody, "description": "No worker hosts jams (`model_unavailable`)"},
    },
    summary="Start a jam: a stream of bar-exact chunks continuing a loop",
    openapi_extra=_start_schema(),
)
async def start_jam(request: Request, state: State) -> JamStarted:
    """Start a jam session at `bpm` from `loop_audio` (its last 10 s prime the model; its style weighs
    `loop_weight` beside `styles`) or from `styles` alone; chunks of `bars_per_chunk` bars follow, from
    `GET /magenta/jam/next`."""
    async with received(request, state, LOOP_PART) as form:
        options = parse_form_parameters(form.fields, JamOptions, file_field=None, file_received=False)
        start = await prepare_start(
            state,
            options,
            loop=form.file_path if form.file_received else None,
            pace=Pace.ASAP,
            consumption=Consumption.EXPLICIT,
        )
    started = await begin(state, start)
    params = start.params
    return JamStarted(
        session_id=start.session_id,
        status="started",
        model=started.model,
        random_weights=started.random_weights,
        checkpoint=started.checkpoint,
        steering_assets=started.steering_assets.model_dump(),
        bpm=params.bpm,
        bars_per_chunk=params.bars_per_chunk,
        beats_per_bar=params.beats_per_bar,
        chunk_duration_seconds=params.chunk_seconds,
        target_sample_rate=params.target_sample_rate,
        seed=params.seed,
    )


@router.get(
    "/next",
    dependencies=[ApiKey],
    response_model=JamNext,
    responses={
        204: {"description": "`wait=false` and no chunk is ready yet"},
        408: {"model": ErrorBody, "description": "No chunk within `timeout` seconds (`chunk_timeout`)"},
        **_SESSION_ERRORS,
    },
    summary="The jam's next chunk (waits for it up to 30 s)",
)
async def next_chunk(
    state: State,
    session_id: Annotated[SessionId, Query(description="The session.")],
    wait: Annotated[bool, Query(description="Wait for the chunk (false: 204 at once when none is ready).")] = True,
    timeout: Annotated[float, Query(ge=0.0, le=NEXT_WAIT_SECONDS, description="Seconds to wait, at most 30.")] = (
        NEXT_WAIT_SECONDS
    ),
) -> Response:
    """The chunk after the last one handed out: each chunk is handed out once, in order (index 1 first)."""
    await running(state, session_id)
    taken = await state.jams.take_chunk(session_id, timeout if wait else 0.0)
    await state.jams.touch(session_id, state.settings.magenta.jam_idle_seconds)
    if taken is None:
        if not wait:
            return Response(status_code=204)
        ahead = state.settings.magenta.max_ahead_chunks
        raise AppError(
            ErrorCode.CHUNK_TIMEOUT,
            f"No chunk within {timeout:g} s. The jam runs at most {ahead} chunk(s) past the last one consumed: "
            "POST /magenta/jam/consume each chunk you play.",
            status_code=408,
        )
    event, audio = taken
    encoded = await run_in_threadpool(base64.b64encode, audio)  # megabytes: off the event loop
    body = JamNext(
        chunk=JamChunk(
            index=event.index,
            audio_base64=encoded.decode("ascii"),
            metadata=event.metadata,
            lateness_seconds=event.lateness_seconds,
        )
    )
    return Response(body.model_dump_json(), media_type="application/json")


@router.post(
    "/consume",
    dependencies=jamming,
    responses=_SESSION_ERRORS,
    summary="Mark a chunk consumed (played): the jam runs on past it",
)
async def consume(request: Request, state: State) -> dict[str, Any]:
    """`session_id`, `chunk_index`: the jam stays at most MAGENTA_MAX_AHEAD_CHUNKS past the last chunk consumed."""
    async with received(request, state, LOOP_PART) as form:
        session_id = _session_field(form.fields)
        index = _int_field(form.fields, "chunk_index", minimum=1)
    consumed = await state.jams.consume(await running(state, session_id), index)
    return {"ok": True, "session_id": session_id, "consumed": consumed}


@router.post(
    "/update",
    dependencies=jamming,
    responses=_SESSION_ERRORS,
    summary="Change the jam's styles and knobs, from the next chunk",
)
async def update(request: Request, state: State) -> dict[str, Any]:
    """Styles (they replace the old ones; an empty `styles` clears them), `loop_weight`, `mean`,
    `centroid_weights`, `use_current_mix_as_style`, `guidance_weight`, `temperature`, `topk`: heard from
    the next chunk made."""
    async with received(request, state, LOOP_PART) as form:
        styles_sent = "styles" in form.fields  # an empty one clears the text styles
        options = parse_form_parameters(form.fields, JamUpdateOptions, file_field=None, file_received=False)
    record = await running(state, options.session_id)
    control = await update_control(state, record, options, styles_sent=styles_sent)
    await state.jams.send(options.session_id, control)
    return {"ok": True, "session_id": options.session_id, "applied_from": "the next chunk"}


@router.post(
    "/reseed",
    dependencies=jamming,
    responses=_SESSION_ERRORS,
    summary="Start the jam's stream again from its loop (or a new `loop_audio`)",
)
async def reseed(request: Request, state: State) -> dict[str, Any]:
    """The stream starts again from the session's loop, or from `loop_audio` when sent, with a fresh seed
    (or `seed`), from the next chunk; the old stream fades out under the new one (40 ms)."""
    async with received(request, state, LOOP_PART) as form:
        session_id = _session_field(form.fields)
        seed = None
        if form.fields.get("seed") not in (None, "", -1, "-1"):  # -1: a new random seed, as everywhere
            seed = _int_field(form.fields, "seed", minimum=0, maximum=SEED_MAX)
        await running(state, session_id)
        name = None
        if form.file_received:
            name = await store_upload(
                state, form.file_path, f"jam-{session_id}_reseed-{uuid.uuid4().hex[:8]}", LOOP_PART
            )
    await state.jams.send(session_id, ReseedControl(audio=name, seed=seed))
    return {"ok": True, "session_id": session_id, "applied_from": "the next chunk"}


@router.post(
    "/reseed_splice",
    dependencies=jamming,
    responses=_SESSION_ERRORS,
    summary="Start the jam's stream again from what the client hears (`combined_audio`)",
)
async def reseed_splice(request: Request, state: State) -> dict[str, Any]:
    """The model continues from `combined_audio` (the mix the client plays), with the loop's last
    `anchor_bars` bars (default 2) before it so that its groove stays in the model's context."""
    async with received(request, state, COMBINED_PART) as form:
        session_id = _session_field(form.fields)
        anchor = _float_field(form.fields, "anchor_bars", default=2.0, maximum=16.0)
        await running(state, session_id)
        if not form.file_received:
            raise form_error("send the mix as combined_audio.", ["body", COMBINED_PART], "missing")
        name = await store_upload(
            state, form.file_path, f"jam-{session_id}_splice-{uuid.uuid4().hex[:8]}", COMBINED_PART
        )
    await state.jams.send(session_id, SpliceControl(audio=name, anchor_bars=anchor))
    return {"ok": True, "session_id": session_id, "applied_from": "the next chunk"}


@router.post("/stop", dependencies=jamming, response_model=JamStopped, responses=_SESSION_ERRORS, summary="Stop a jam")
async def stop(request: Request, state: State) -> JamStopped:
    """`{"session_id": ...}` (JSON or a form field): the session ends after the chunk it is making and its
    slot is freed. Stopping an ended session is not an error."""
    async with received(request, state, LOOP_PART) as form:
        session_id = _session_field(form.fields)
    record = await visible(state, session_id)
    if not record.ended:
        await _stop(state, session_id)
    return JamStopped(stopped=[session_id], ok=True)


@router.post("/stop_all", dependencies=jamming, response_model=JamStopped, summary="Stop every jam of this key")
async def stop_all(state: State) -> JamStopped:
    """Every running session of the caller's key (an admin key, or any caller with auth off: every session)."""
    viewer = current_viewer()
    stopped = await state.jams.stop_running("stopped by the client", viewer.owner, everyone=viewer.sees_all)
    return JamStopped(stopped=stopped, ok=True)


async def _stop(state: AppState, session_id: str) -> None:
    await state.jams.stop(session_id, "stopped by the client")


@router.get(
    "/status", dependencies=[ApiKey], response_model=JamStatus, responses=_SESSION_ERRORS, summary="A jam's state"
)
async def status(state: State, session_id: Annotated[SessionId, Query(description="The session.")]) -> JamStatus:
    """Where the session is: chunks made, handed out and consumed, its tempo and chunk length; an ended
    session says why."""
    record = await visible(state, session_id)
    if not record.ended:
        await state.jams.touch(session_id, state.settings.magenta.jam_idle_seconds)
    params = JamParams.model_validate(record.params)
    generated, delivered, consumed = (record.index(name) for name in ("generated", "delivered", "consumed"))
    return JamStatus(
        session_id=session_id,
        running=not record.ended,
        state=record.fields.get("state", "starting"),
        last_generated_index=generated,
        last_delivered_index=delivered,
        last_consumed_index=consumed,
        buffer_ahead=max(0, generated - consumed),
        queued_chunks=max(0, generated - delivered),
        max_ahead_chunks=state.settings.magenta.max_ahead_chunks,
        bpm=params.bpm,
        beats_per_bar=params.beats_per_bar,
        bars_per_chunk=params.bars_per_chunk,
        chunk_duration_seconds=params.chunk_seconds,
        target_sample_rate=params.target_sample_rate,
        worker=record.fields.get("worker") or None,
        end_reason=record.fields.get("end_reason") or None,
        end_code=record.fields.get("end_code") or None,
    )


# -- fields -------------------------------------------------------------------------------------------------


def _session_field(fields: dict[str, Any]) -> str:
    value = fields.get("session_id")
    if not isinstance(value, str) or not value.strip():
        raise form_error("session_id is required.", ["body", "session_id"], "missing")
    text = value.strip()
    if len(text) > 64 or not text.replace("-", "").replace("_", "").isalnum():
        raise not_found(text[:64])
    return text


def _int_field(fields: dict[str, Any], name: str, *, minimum: int, maximum: int = MAX_CHUNK_INDEX) -> int:
    value = fields.get(name)
    try:
        number = int(value) if not isinstance(value, bool) and value not in (None, "") else None
    except (TypeError, ValueError, OverflowError):
        number = None
    if number is None or not minimum <= number <= maximum:
        raise form_error(f"{name} must be a whole number from {minimum} to {maximum}.", ["body", name], "int_parsing")
    return number


def _float_field(fields: dict[str, Any], name: str, *, default: float, maximum: float) -> float:
    value = fields.get(name)
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        number = -1.0
    if not 0.0 <= number <= maximum:
        raise form_error(f"{name} must be a number from 0 to {maximum:g}.", ["body", name], "float_parsing")
    return number
