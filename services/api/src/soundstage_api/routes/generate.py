"""`POST /generate`: validate, record the job, enqueue it. `submit` is shared with every route
that writes a job, `submit_with_audio` with those that take an audio input (`/generate/continue`,
`/generate/melody`, `/separate`).

With `melody_audio_url`, the melody is fetched (`soundstage.fetch`: public addresses only,
MAX_UPLOAD_MB, FETCH_TIMEOUT_SECONDS) and decoded before any job exists, exactly as an upload
is checked; only then is the job written with the fetched bytes stored as `{job_id}_melody.<ext>`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from soundstage import telemetry
from soundstage.audio import AudioInfo, probe_audio
from soundstage.db import new_job_id
from soundstage.db.idempotency import IdempotencyRaceError
from soundstage.errors import AppError, ErrorCode
from soundstage.logs import job_context
from soundstage.pools import Queue, TaskName, pool_of_task
from soundstage.queue import enqueue_job
from soundstage.schemas import (
    ErrorBody,
    GenerateJobParams,
    GenerateRequest,
    JobCreated,
    JobKind,
    JobPending,
    JobStatus,
    JobView,
)
from soundstage.schemas.generate import SEED_MAX
from soundstage.settings import Settings
from soundstage.storage import content_type_for
from soundstage_api import admission, idempotency
from soundstage_api.auth import ApiKey, MayGenerate
from soundstage_api.errors import unavailable
from soundstage_api.guarded_route import GuardedRoute
from soundstage_api.serving import require_servable
from soundstage_api.state import AppState, State
from soundstage_api.uploads import fetched_url
from soundstage_api.viewer import current as current_viewer
from soundstage_api.views import job_view
from soundstage_api.waiting import is_finished, pending_response, requested_wait, wait_for_job

logger = logging.getLogger(__name__)
router = APIRouter(route_class=GuardedRoute, tags=["generate"], dependencies=[ApiKey, MayGenerate])

ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorBody, "description": "X-API-Key missing"},
    403: {"model": ErrorBody, "description": "X-API-Key wrong"},
    422: {"model": ErrorBody, "description": "Invalid field (code `validation_error` or `unknown_model`)"},
    503: {"model": ErrorBody, "description": "Database or queue down"},
}

_GENERATE_ERRORS: dict[int | str, dict[str, object]] = {
    **ERRORS,
    413: {"model": ErrorBody, "description": "`melody_audio_url` larger than MAX_UPLOAD_MB (code `url_too_large`)"},
    422: {
        "model": ErrorBody,
        "description": "Invalid field (`validation_error`, `unknown_model`); with `melody_audio_url`: a model "
        "that is not a melody model (`model_not_melody`), a URL refused (`url_not_allowed`), failing "
        "(`url_fetch_failed`) or too slow (`url_timeout`), or audio that does not decode (`audio_undecodable`, "
        "`audio_empty`, `audio_too_long`)",
    },
    503: {"model": ErrorBody, "description": "Database, queue or storage down"},
}

InputRole = Literal["prompt", "melody", "input", "style", "loop"]
"""What an input audio is to its job; the stored original is named `{job_id}_{role}.<ext>`."""


@dataclass(frozen=True)
class Attachment:
    """A file a job needs in object storage before a worker may see the job (an uploaded prompt)."""

    name: str
    path: Path


_WAIT_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {
        "description": 'Without `Prefer: wait`: `{job_id, status: "queued"}`. With it, when the job finished in '
        "time: the job as `GET /jobs/{job_id}` shows it, and `Preference-Applied: wait=<seconds>`",
    },
    202: {
        "model": JobPending,
        "description": "With `Prefer: wait`: the job did not finish within the wait; poll the `Location` header "
        "(`/jobs/{job_id}`)",
    },
}
PreferHeader = Annotated[
    list[str] | None,
    Header(
        description="`wait=<seconds>` (RFC 7240): answer with the finished job, waiting at most that long "
        "(capped by SYNC_WAIT_SECONDS); a job not finished by then is a 202 with `Location: /jobs/{job_id}`."
    ),
]


@router.post(
    "/generate",
    response_model=JobCreated | JobView,
    responses={**_GENERATE_ERRORS, **_WAIT_RESPONSES},
    summary="Generate music from text",
)
@router.post("/generate/", response_model=JobCreated | JobView, include_in_schema=False)
async def generate(body: GenerateRequest, state: State, prefer: PreferHeader = None) -> JobCreated | Response:
    """Queue a text-to-music job and return its id; poll `GET /jobs/{job_id}` for the result. With
    `melody_audio_url` (melody models only) the music follows the melody of that audio. With
    `Prefer: wait=<seconds>`, answer with the finished job instead (202 if it is not finished in time)."""
    created = await _generate(body, state)
    seconds = requested_wait(prefer or [])
    if seconds is None:
        return created
    applied = min(seconds, state.settings.sync_wait_seconds)
    headers = {"Preference-Applied": f"wait={applied:g}"}
    job = await wait_for_job(state.waiter, lambda: state.repo.get(created.job_id), created.job_id, applied)
    if job is None:
        raise AppError(ErrorCode.JOB_NOT_FOUND, f"Job {created.job_id} no longer exists.", status_code=404)
    if not is_finished(job):
        return pending_response(job.id, job.status, headers)
    return JSONResponse(job_view(job).model_dump(mode="json"), headers=headers)


async def _generate(body: GenerateRequest, state: AppState) -> JobCreated:
    model = validate_generation(body, state.settings)
    return await submit_with_melody(
        state,
        kind=JobKind.GENERATE,
        task=TaskName.MUSICGEN_GENERATE,
        model=model,
        melody_audio_url=body.melody_audio_url,
        params=lambda melody: job_params(body, melody_audio=melody),
    )


async def submit_with_melody(
    state: AppState,
    *,
    kind: JobKind,
    task: TaskName,
    model: str,
    melody_audio_url: str | None,
    params: Callable[[str | None], dict[str, object]],
) -> JobCreated:
    """`submit` a job; with `melody_audio_url`, first check that `model` is a melody model, fetch the melody
    and store it with the job as `{job_id}_melody.<ext>` (`params(name)` gets its name, else None)."""
    if pool_of_task(task).serves_models:
        require_servable(state.capabilities, pool_of_task(task).queue, model)  # before fetching anything
    if melody_audio_url is None:
        return await run_in_threadpool(submit, state, kind=kind, task=task, model=model, params=params(None))
    require_melody_model(model, state)
    async with fetched_url(melody_audio_url, state.settings) as fetched:
        return await submit_with_audio(
            state,
            kind=kind,
            task=task,
            model=model,
            path=fetched.path,
            size=fetched.size,
            role="melody",
            max_seconds=state.settings.max_duration,
            params=lambda name, _: params(name),
        )


def validate_generation(body: GenerateRequest, settings: Settings) -> str:
    """The checks that depend on the server's settings; returns the served model the request names."""
    _check_duration(body.duration, settings)
    return resolve_model(body.model, settings.musicgen.served_models)


def require_melody_model(model: str, state: AppState) -> None:
    """422 `model_not_melody` when a live worker reports that `model` (a served name) is not a melody model.
    While no worker has reported it, the worker checks (and fails the job with the same code)."""
    capabilities = state.capabilities.of(Queue.MUSICGEN, model)
    if capabilities is None or capabilities.melody:
        return
    reported = state.capabilities.reported(Queue.MUSICGEN, state.settings.musicgen.served_models)
    melody_models = [name for name, abilities in reported.items() if abilities.melody]
    raise AppError(
        ErrorCode.MODEL_NOT_MELODY,
        f"Melody conditioning needs a melody model; {model!r} is not one. This server's melody models: "
        f"{', '.join(melody_models) or 'none'}.",
        status_code=422,
        details=[
            {
                "loc": ["body", "model"],
                "msg": "not a melody model",
                "type": "model_not_melody",
                "choices": melody_models,
            }
        ],
    )


def job_params(
    body: GenerateRequest, *, audio_prompt: str | None = None, melody_audio: str | None = None
) -> dict[str, object]:
    """What the job row stores (JSON). The seed is resolved here, not in the worker, so a
    redelivered job makes the same audio."""
    seed = resolve_seed(body.seed)
    params = GenerateJobParams.from_request(body, seed, audio_prompt=audio_prompt, melody_audio=melody_audio)
    return params.model_dump(mode="json", exclude={"model", "melody_audio_url"})


def resolve_seed(seed: int) -> int:
    """A request's seed, -1 replaced by a random one: resolved in the API, not in the worker, so that a
    redelivered job makes the same audio."""
    return secrets.randbelow(SEED_MAX + 1) if seed == -1 else seed


@dataclass(frozen=True)
class AudioInput:
    """An uploaded or fetched audio file a job takes as input, on disk until the job is submitted."""

    path: Path
    size: int
    loc: tuple[str | int, ...] = ()
    """Where the request had it (`("body", "audio_files", 1)`): named in the error of a bad one."""


async def submit_with_audio(
    state: AppState,
    *,
    kind: JobKind,
    task: TaskName,
    model: str,
    path: Path,
    size: int,
    role: InputRole,
    max_seconds: float,
    params: Callable[[str, AudioInfo], dict[str, object]],
) -> JobCreated:
    """Check the input audio at `path` by decoding it in a worker thread without keeping its samples
    (422 `audio_undecodable`, `audio_empty`,
    `audio_too_long` past `max_seconds`), then `submit` a job with the original bytes stored as
    `{job_id}_{role}.<ext>`; `params(name, decoded)` gives the job's parameters."""
    return await submit_with_audios(
        state,
        kind=kind,
        task=task,
        model=model,
        inputs=[AudioInput(path, size)],
        role=role,
        max_seconds=max_seconds,
        params=lambda names, decoded: params(names[0], decoded[0]),
    )


async def submit_with_audios(
    state: AppState,
    *,
    kind: JobKind,
    task: TaskName,
    model: str,
    inputs: Sequence[AudioInput],
    role: InputRole,
    max_seconds: float,
    params: Callable[[list[str], list[AudioInfo]], dict[str, object]],
) -> JobCreated:
    """`submit_with_audio` for several input files, all checked before the job exists (a bad one's error
    names its `loc`), stored as `{job_id}_{role}<n>.<ext>` (n from 1; `{job_id}_{role}.<ext>` for one)."""
    probed = []
    for item in inputs:
        try:
            probed.append(await run_in_threadpool(probe_audio, item.path, max_seconds=max_seconds))
        except AppError as error:
            if item.loc:
                where = f"{item.loc[1]} #{item.loc[2]}" if len(item.loc) > 2 else str(item.loc[-1])
                error.message = f"{where}: {error.message}"
                error.details = [{"loc": list(item.loc), "msg": error.message, "type": error.code.value}]
            raise
    job_id = new_job_id()
    several = len(inputs) > 1
    names = [f"{job_id}_{role}{index + 1 if several else ''}.{decoded.format}" for index, decoded in enumerate(probed)]
    for item, decoded, name in zip(inputs, probed, names, strict=True):
        logger.info(
            "job %s: %s audio %s, %.2f s, %d Hz, %d channel(s), %d bytes",
            job_id,
            name,
            decoded.format,
            decoded.duration,
            decoded.sample_rate,
            decoded.channels,
            item.size,
        )
    return await run_in_threadpool(
        submit,
        state,
        kind=kind,
        task=task,
        model=model,
        params=params(names, probed),
        job_id=job_id,
        attachments=[Attachment(name, item.path) for name, item in zip(names, inputs, strict=True)],
    )


def submit(
    state: AppState,
    *,
    kind: JobKind,
    task: TaskName,
    model: str,
    params: dict[str, object],
    job_id: str | None = None,
    attachments: Sequence[Attachment] = (),
) -> JobCreated:
    """Store the job's attachments, write its row, then enqueue it.

    With an ``Idempotency-Key`` that already created a job, that job is the answer (or 409 for another
    request: soundstage_api.idempotency). A job no live worker can serve is refused first (503
    `model_unavailable`, soundstage_api.serving). A job whose attachments could not be stored (503
    `storage_unavailable`) or that the broker refused (503 `broker_unavailable`) is removed again, with
    what was stored for it.
    """
    pool = pool_of_task(task)
    claim = idempotency.current()
    if claim is not None and (prior := claim.prior(state.repo)) is not None:
        return prior  # the job this Idempotency-Key already created
    if pool.serves_models:
        require_servable(state.capabilities, pool.queue, model)
    owner = current_viewer().owner
    seconds = admission.requested_seconds(kind, params)
    if owner is not None:
        admission.admit(state.settings, state.repo, owner, seconds)
    # The inputs first, then the row: from its creation on, a queued row older than JOB_REAP_AFTER_SECONDS
    # without a message is taken for one the broker lost and sent again (soundstage.reaper), so no slow
    # upload may stand between the row and its message.
    try:
        for attachment in attachments:
            state.store.put_file(attachment.name, attachment.path, content_type_for(attachment.name))
    except Exception as error:
        logger.warning("job %s: storing its input failed (%s)", job_id, error)
        _remove_attachments(state, job_id, attachments)
        raise unavailable(ErrorCode.STORAGE_UNAVAILABLE, "file storage") from error
    try:
        job = state.repo.create(
            kind=kind.value,
            queue=pool.queue.value,
            model=model,
            params=params,
            job_id=job_id,
            idempotency=claim.record() if claim is not None else None,
            owner=owner,
            audio_seconds=seconds,
        )
    except IdempotencyRaceError:
        _remove_attachments(state, job_id, attachments)
        prior = claim.prior(state.repo) if claim is not None else None
        if prior is None:  # the other request's job was removed again (its enqueue failed)
            raise AppError(
                ErrorCode.IDEMPOTENCY_KEY_IN_USE,
                "Another request with this Idempotency-Key was being made at the same time; send it again.",
                status_code=409,
            ) from None
        return prior
    except Exception:
        _remove_attachments(state, job_id, attachments)
        raise
    try:
        enqueue_job(state.celery, task, job.id)
    except Exception as error:
        logger.warning("job %s: enqueue failed (%s); removing it", job.id, error)
        _discard(state, job.id, attachments)
        raise unavailable(ErrorCode.BROKER_UNAVAILABLE, "job queue (Redis)") from error
    with job_context(job.id):  # the line that ties the request id to the job
        logger.info("job %s: queued (%s, model %s)", job.id, kind.value, model)
    try:
        telemetry.record_submitted(state.redis, kind.value, model)
    except Exception as error:
        logger.warning("could not count submitted job: %s", error)
    return JobCreated(job_id=job.id, status=JobStatus.QUEUED)


def _discard(state: AppState, job_id: str, attachments: Sequence[Attachment]) -> None:
    state.repo.delete(job_id)
    _remove_attachments(state, job_id, attachments)


def _remove_attachments(state: AppState, job_id: str | None, attachments: Sequence[Attachment]) -> None:
    for attachment in attachments:
        try:
            state.store.delete(attachment.name)
        except Exception as error:
            logger.warning("job %s: could not remove %s (%s)", job_id, attachment.name, error)


def _check_duration(duration: float, settings: Settings) -> None:
    if duration > settings.max_duration:
        raise AppError(
            ErrorCode.VALIDATION_ERROR,
            f"Invalid request: duration must be at most {settings.max_duration:g} seconds.",
            status_code=422,
            details=[
                {
                    "loc": ["body", "duration"],
                    "msg": f"Input should be less than or equal to {settings.max_duration:g}",
                    "type": "less_than_equal",
                }
            ],
        )


def resolve_model(requested: str | None, served: list[str]) -> str:
    """The served model a request names (`facebook/musicgen-small` may be written `musicgen-small`)."""
    if requested is None:
        return served[0]
    for name in served:
        if requested in (name, name.rsplit("/", 1)[-1]):
            return name
    raise AppError(
        ErrorCode.UNKNOWN_MODEL,
        f"Unknown model {requested!r}; this server serves: {', '.join(served)}.",
        status_code=422,
        details=[{"loc": ["body", "model"], "msg": "unknown model", "type": "unknown_model", "choices": served}],
    )
